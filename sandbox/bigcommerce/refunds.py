"""Transactions, capture, refund quotes and refunds (one at a time per order)."""
from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Callable

from sandbox.bigcommerce.wire import ApiError, GATEWAYS, STORE_TENDERS, ZERO, dec, now_utc, q2


class RefundBook:
    """Transactions, capture, refund quotes and refunds (one at a time per order)."""

    # ---- payments -----------------------------------------------------------------------
    def add_transaction(self, order: dict, event: str, amount: Decimal, gateway: str,
                        reference: str = "", **extra: Any) -> dict:
        method, _, _ = GATEWAYS.get(gateway, ("custom", gateway, True))
        txn = {"id": self.next_id("transaction", 9000), "order_id": str(order["id"]),
               "event": event, "method": method, "amount": amount, "currency": order["currency"],
               "gateway": gateway, "gateway_transaction_id": reference or secrets.token_hex(8),
               "date_created": now_utc(), "test": False, "status": "ok", "fraud_review": False,
               "reference_transaction_id": None, "offline": None, "custom": None,
               "payment_method_id": f"{gateway}.card" if method == "credit_card" else None,
               "gift_certificate": None, "store_credit": None, **extra}
        order["transactions"].append(txn)
        self.emit("store/order/transaction/created", {
            "type": "transaction", "order_id": str(order["id"]), "transaction_id": txn["id"],
            "transaction_status": "ok", "transaction_type": event})
        return txn

    def unpaid(self, order: dict) -> Decimal:
        """What no purchase, settled payment or authorization covers yet."""
        return order["total_inc_tax"] - sum((t["amount"] for t in order["transactions"] if (
            t["status"] == "ok" and t["event"] in ("purchase", "settled", "authorization"))), ZERO)

    def take_payment(self, order: dict, gateway: str, capture: bool, reference: str = "") -> dict:
        """What a checkout's gateway records for the whole order (control surface)."""
        return self.take_payments(order, [{"gateway": gateway, "capture": capture,
                                           "reference": reference}])[0]

    def take_payments(self, order: dict, tenders: list[dict]) -> list[dict]:
        """What a checkout records (control surface; v2 create takes no payment): one
        transaction per tender, each for its ``amount`` (default: the rest unpaid). Gift
        certificates and store credit are taken at once (``purchase``), offline methods
        ``settled``, a card ``purchase`` or, without ``capture``, ``authorization``. All
        tenders are checked before any is recorded."""
        left, plan = self.unpaid(order), []
        for spec in tenders:
            if not isinstance(spec, dict):
                raise ApiError(422, "A payment must be an object.")
            gateway = str(spec.get("gateway") or "braintree")
            if gateway not in GATEWAYS:
                raise ApiError(422, f"Unknown payment gateway '{gateway}'.")
            amount = left if spec.get("amount") in (None, "") else q2(dec(spec["amount"], "amount"))
            if amount < 0 or amount > left or (amount == 0 and order["total_inc_tax"]):
                raise ApiError(422, f"A payment of {amount} does not fit the {left} left to pay.")
            if gateway == "storecredit" and not order["customer_id"]:
                raise ApiError(422, "Unable to use store credit for a guest customer.")
            offline = GATEWAYS[gateway][2]
            event = ("settled" if offline else "purchase"
                     if spec.get("capture", True) or gateway in STORE_TENDERS else "authorization")
            plan.append((gateway, event, amount, str(spec.get("reference") or ""),
                         str(spec.get("code") or "")))
            left -= amount
        made = [self._tender(order, *step) for step in plan]
        primary = next((t for t in reversed(made) if t["gateway"] not in STORE_TENDERS), made[-1])
        order["payment_method"] = GATEWAYS[primary["gateway"]][1]
        order["payment_provider_id"] = primary["gateway_transaction_id"]
        order["gateway"] = primary["gateway"]
        authorized = any(t["event"] == "authorization" for t in order["transactions"])
        order["payment_status"] = ("pending" if left else "authorized" if authorized else "captured")
        if not left and order["status_id"] in (0, 1, 7):
            self.order_status(order, 7 if authorized else 11)
        self.touch(order)
        return made

    def _tender(self, order: dict, gateway: str, event: str, amount: Decimal, reference: str,
                code: str) -> dict:
        extra: dict[str, Any] = {}
        if gateway == "giftcertificate":
            code = code or f"GC-{secrets.token_hex(3).upper()}"
            extra["gift_certificate"] = {"code": code, "original_balance": amount,
                                         "starting_balance": amount, "remaining_balance": ZERO,
                                         "status": "active"}
            order["gift_certificate_amount"] = order.get("gift_certificate_amount", ZERO) + amount
        elif gateway == "storecredit":
            extra["store_credit"] = {"remaining_balance": ZERO}
            order["store_credit_amount"] = order.get("store_credit_amount", ZERO) + amount
        return self.add_transaction(order, event, amount, gateway, reference or code, **extra)

    def capture(self, order: dict, amount: Any = None) -> None:
        """Capture ``amount`` of the authorization (default: all of it not captured yet); the
        ``capture`` transaction lands asynchronously (``capture pending`` until then). Several
        partial captures are several ``capture`` transactions of one authorization."""
        auth = next((t for t in order["transactions"]
                     if t["event"] == "authorization" and t["status"] == "ok"), None)
        if auth is None or order.get("payment_status") not in ("authorized", "capture pending"):
            raise ApiError(422, "The order has no authorized payment to capture.")
        pending = order.get("capture_pending", ZERO)
        open_amount = auth["amount"] - self._captured(order, auth) - pending
        amount = open_amount if amount in (None, "") else q2(dec(amount, "amount"))
        if open_amount <= 0 or amount <= 0 or amount > open_amount:
            raise ApiError(422, f"A capture of {amount} does not fit the {open_amount} left to capture.")
        order["capture_pending"] = pending + amount
        order["payment_status"] = "capture pending"
        self.touch(order)

        def settle() -> None:
            self.add_transaction(order, "capture", amount, auth["gateway"],
                                 reference_transaction_id=auth["id"])
            order["capture_pending"] -= amount
            if not order["capture_pending"]:
                whole = self._captured(order, auth) >= auth["amount"]
                order["payment_status"] = "captured" if whole else "authorized"
            if order["status_id"] in (0, 1, 7):
                self.order_status(order, 11)
            self.touch(order)

        self.later(settle)

    @staticmethod
    def _captured(order: dict, auth: dict) -> Decimal:
        return sum((t["amount"] for t in order["transactions"] if t["event"] == "capture"
                    and t["status"] == "ok" and t["reference_transaction_id"] == auth["id"]), ZERO)

    def later(self, action: Callable[[], None], seconds: float | None = None) -> None:
        delay = self.settings.async_delay_ms / 1000 if seconds is None else seconds
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            action()
            return
        self.timers.append(loop.call_later(delay, action))

    # ---- refunds (§5) -------------------------------------------------------------------
    def refunded_total(self, order: dict) -> Decimal:
        return sum((self.refunds[r]["total_amount"] for r in order["refund_ids"]), ZERO)

    def _shipping_refunded(self, order: dict, kind: str, address_id: int) -> Decimal:
        out = ZERO
        for rid in order["refund_ids"]:
            for item in self.refunds[rid]["items"]:
                if item["item_type"] == kind and item["item_id"] == address_id:
                    out += item["requested_amount"]
        return out

    def quote(self, order: dict, body: Any) -> dict:
        """Amounts of a refund request: (total, tax, order-level, items as stored)."""
        if not isinstance(body, dict):
            raise ApiError(422, "JSON data is missing or invalid", errors={"items": "error.path.missing"})
        if order.get("payment_status") not in ("captured", "partially refunded"):
            raise ApiError(422, "The order has no settled payment to refund.", wrap_data=True)
        if "tax_adjustment_amount" in body and not body.get("items"):
            amount = q2(dec(body["tax_adjustment_amount"], "tax_adjustment_amount"))
            return self._quote_result(order, amount, amount, ZERO, [])
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise ApiError(422, "JSON data is missing or invalid", errors={"items": "error.path.missing"})
        total, tax, order_level, stored = ZERO, ZERO, ZERO, []
        for item in items:
            net, item_tax, entry = self._refund_item(order, item)
            total, tax = total + net + item_tax, tax + item_tax
            order_level += net if entry["item_type"] == "ORDER" else ZERO
            stored.append(entry)
        return self._quote_result(order, total, tax, order_level, stored)

    def _quote_result(self, order: dict, total: Decimal, tax: Decimal, order_level: Decimal,
                      items: list[dict]) -> dict:
        remaining = order["total_inc_tax"] - self.refunded_total(order)
        if total > remaining:
            raise ApiError(422, f"The refund amount {total} exceeds the refundable amount {remaining}.",
                           wrap_data=True)
        gateway = order.get("gateway", "custom")
        methods = [[self._option(provider, amount) for provider, amount in self._split(order, total)]]
        if gateway != "custom":
            methods.append([{"provider_id": "custom", "provider_description": "Custom", "amount": total,
                             "offline": True, "offline_provider": True,
                             "offline_reason": "This is an offline payment provider."}])
        if order["customer_id"]:
            methods.append([{"provider_id": "storecredit", "provider_description": "Store Credit",
                             "amount": total, "offline": False, "offline_provider": False,
                             "offline_reason": ""}])
        return {"order_id": order["id"], "total_refund_amount": total, "total_refund_tax_amount": tax,
                "order_level_refund_amount": order_level, "rounding": ZERO, "adjustment": ZERO,
                "tax_inclusive": True, "refund_methods": methods, "items": items}

    @staticmethod
    def _option(provider: str, amount: Decimal) -> dict:
        offline = GATEWAYS.get(provider, ("", "", True))[2]
        return {"provider_id": provider,
                "provider_description": GATEWAYS.get(provider, ("", provider))[1], "amount": amount,
                "offline": offline, "offline_provider": offline,
                "offline_reason": "This is an offline payment provider." if offline else ""}

    def _split(self, order: dict, total: Decimal) -> list[tuple[str, Decimal]]:
        """The refund back to the tenders that paid, each at most what it still holds: the
        order's gateways first, then gift certificates and store credit (the spec's example
        splits bank deposit + store credit this way). One tender: all of it goes there."""
        held: dict[str, Decimal] = {}
        for t in order["transactions"]:
            if t["status"] == "ok" and t["event"] in ("purchase", "capture", "settled"):
                held[t["gateway"]] = held.get(t["gateway"], ZERO) + t["amount"]
        for rid in order["refund_ids"]:
            for p in self.refunds[rid]["payments"]:
                if p["provider_id"] in held:
                    held[p["provider_id"]] -= p["amount"]
        if len(held) < 2:
            return [(order.get("gateway", "custom"), total)]
        order_of = sorted(held, key=lambda g: (g in STORE_TENDERS, g != order.get("gateway")))
        out, rest = [], total
        for provider in order_of:
            share = min(rest, max(held[provider], ZERO))
            if share:
                out.append((provider, share))
                rest -= share
        if rest or not out:  # more than the tenders hold (refunded elsewhere before): the first
            first = out[0] if out else (order_of[0], ZERO)
            out[:1] = [(first[0], first[1] + rest)]
        return out

    def _refund_item(self, order: dict, item: Any) -> tuple[Decimal, Decimal, dict]:
        if not isinstance(item, dict):
            raise ApiError(422, "JSON data is missing or invalid", errors={"items": "error.type.object"})
        kind = str(item.get("item_type") or "")
        item_id = int(dec(item.get("item_id", 0), "item_id"))
        reason = str(item.get("reason") or "")[:1000]
        entry = {"item_type": kind, "item_id": item_id, "reason": reason, "quantity": None,
                 "requested_amount": None, "adjustments": []}
        if kind == "PRODUCT":
            line = next((ln for ln in order["lines"] if ln["id"] == item_id), None)
            qty = int(dec(item.get("quantity", 0), "quantity"))
            if line is None:
                raise ApiError(422, f"Order product {item_id} does not exist.", wrap_data=True)
            if qty < 1 or qty > line["quantity"] - line["quantity_refunded"]:
                raise ApiError(422, f"Quantity {qty} of order product {item_id} is not refundable.",
                               wrap_data=True)
            entry["quantity"] = qty
            net = q2(line["net"] * qty / line["quantity"])
            tax = q2(sum(line["taxes"].values(), ZERO) * qty / line["quantity"])
            return net, tax, entry
        if kind in ("SHIPPING", "HANDLING"):
            address = next((a for a in order["addresses"] if a["id"] == item_id), None)
            if address is None:
                raise ApiError(422, f"Order address {item_id} does not exist.", wrap_data=True)
            amount = q2(dec(item.get("amount", 0), "amount"))
            base, net, taxes = ((address["base"], address["net"], address["taxes"]) if kind == "SHIPPING"
                                else (address["handling_base"], address["handling_net"], address["handling_taxes"]))
            if amount <= 0 or amount > base - self._shipping_refunded(order, kind, item_id):
                raise ApiError(422, f"Amount {amount} of {kind.lower()} {item_id} is not refundable.",
                               wrap_data=True)
            entry["requested_amount"] = amount
            line_tax = sum(taxes.values(), ZERO)
            if order["inclusive"]:
                tax = q2(amount * line_tax / base) if base else ZERO
                return amount - tax, tax, entry
            return amount, (q2(amount * line_tax / net) if net else ZERO), entry
        if kind == "ORDER":
            if item_id != order["id"]:
                raise ApiError(422, f"ORDER items refund order {order['id']}, not {item_id}.", wrap_data=True)
            amount = q2(dec(item.get("amount", 0), "amount"))
            if amount <= 0:
                raise ApiError(422, "The amount must be positive.", wrap_data=True)
            entry["requested_amount"] = amount
            return amount, ZERO, entry
        raise ApiError(422, f"Refunds of item_type '{kind}' are not available for this order.",
                       wrap_data=True)

    async def create_refund(self, order: dict, body: Any) -> dict:
        lock = self.refund_locks.setdefault(order["id"], asyncio.Lock())
        if lock.locked():
            raise ApiError(409, f"A refund for order {order['id']} is still being processed; "
                                "refunds on one order must be submitted sequentially.")
        async with lock:
            quote = self.quote(order, body)
            total, tax, overridden = quote["total_refund_amount"], quote["total_refund_tax_amount"], False
            override = body.get("merchant_calculated_override")
            if isinstance(override, dict):
                total = q2(dec(override.get("total_amount"), "total_amount"))
                tax = q2(dec(override.get("total_tax", override.get("tax_amount", 0)), "total_tax"))
                overridden = True
            payments = self._check_payments(order, body, quote, total)
            if self.settings.refund_processing_ms:
                await asyncio.sleep(self.settings.refund_processing_ms / 1000)
            return self._commit_refund(order, quote, total, tax, overridden, payments)

    def _check_payments(self, order: dict, body: dict, quote: dict, total: Decimal) -> list[dict]:
        """Each payment must be one the quote offered, for the amount it offered (with a
        merchant override: for the override's amount), and together they pay the refund."""
        payments = body.get("payments")
        if quote["items"] and (not isinstance(payments, list) or not payments):
            raise ApiError(422, "JSON data is missing or invalid", errors={"payments": "error.path.missing"})
        payments = payments or [{"provider_id": order.get("gateway", "custom"), "amount": total,
                                 "offline": False}]
        overridden = total != quote["total_refund_amount"]
        offered = {(o["provider_id"], o["amount"]) for method in quote["refund_methods"] for o in method}
        providers = {provider for provider, _ in offered}
        checked, paid = [], ZERO
        for p in payments:
            if not isinstance(p, dict):
                raise ApiError(422, "JSON data is missing or invalid", errors={"payments": "error.type.object"})
            provider = str(p.get("provider_id") or "")
            amount = q2(dec(p.get("amount", 0), "amount"))
            if provider == "storecredit" and not order["customer_id"]:
                raise ApiError(422, "Unable to provide store credit for a guest customer.", wrap_data=True)
            if provider not in providers or (not overridden and (provider, amount) not in offered):
                raise ApiError(422, f"The payment of {amount} with '{provider}' does not match the "
                                    "refund quote.", wrap_data=True)
            paid += amount
            checked.append({"provider_id": provider, "amount": amount, "offline": bool(p.get("offline"))})
        if paid != total:
            raise ApiError(422, f"The payments add up to {paid}, the refund to {total}.", wrap_data=True)
        return checked

    def _commit_refund(self, order: dict, quote: dict, total: Decimal, tax: Decimal,
                       overridden: bool, payments: list[dict]) -> dict:
        refund_id = self.next_id("refund", 1)
        out_payments = []
        for p in payments:
            txn = None
            if not p["offline"] and p["provider_id"] not in ("custom", "storecredit"):
                txn = self.add_transaction(order, "refund", p["amount"], p["provider_id"])
            out_payments.append({"id": self.next_id("refund_payment", 1), **p, "is_declined": False,
                                 "declined_message": "", "transaction_id": str(txn["id"]) if txn else None})
        for item in quote["items"]:
            if item["item_type"] == "PRODUCT":
                line = next(ln for ln in order["lines"] if ln["id"] == item["item_id"])
                line["quantity_refunded"] += item["quantity"]
        refund = {"id": refund_id, "order_id": order["id"], "user_id": 0, "created": datetime.now(UTC),
                  "reason": next((i["reason"] for i in quote["items"] if i["reason"]), ""),
                  "total_amount": total, "total_tax": tax, "uses_merchant_override_values": overridden,
                  "items": quote["items"], "payments": out_payments}
        self.refunds[refund_id] = refund
        order["refund_ids"].append(refund_id)
        fully = self.refunded_total(order) >= order["total_inc_tax"]
        order["payment_status"] = "refunded" if fully else "partially refunded"
        self.emit("store/order/refund/created", {"type": "order", "id": order["id"],
                                                 "refund": {"refund_id": refund_id}})
        self.order_status(order, 4 if fully else 14)
        self.touch(order)
        return refund
