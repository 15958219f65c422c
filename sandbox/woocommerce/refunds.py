"""Refund rules: amounts from lines, gateway refunds, restock, and the refund failures core raises."""
from __future__ import annotations

import copy
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.woocommerce.constants import GATEWAYS, ZERO
from sandbox.woocommerce.model import Refund, RefundItem, TaxLine
from sandbox.woocommerce.pricing import unknown_rate
from sandbox.woocommerce.wire import ApiError, is_number, round2, to_bool, to_decimal, to_int

if TYPE_CHECKING:
    from sandbox.woocommerce.model import Order


class RefundBook:
    """Refunds against orders, with gateway refunds and restock."""

    # ---- refunds ---------------------------------------------------------------------------
    def refunded_total(self, order: Order) -> Decimal:
        return sum((self.refunds[r].amount for r in order.refund_ids if r in self.refunds), ZERO)

    def create_refund(self, order_id: int, body: dict) -> dict:
        """``POST /orders/{id}/refunds`` without HTTP; returns the refund JSON."""
        return self.refund_json(self._create_refund(order_id, body), self.home)

    def _create_refund(self, order_id: int, body: dict) -> Refund:
        order = self.orders.get(order_id)
        if order is None:
            raise ApiError(404, "woocommerce_rest_invalid_order_id", "Invalid order ID.")
        lines = body.get("line_items") or []
        if body.get("amount") not in (None, ""):
            amount = to_decimal(body["amount"], "amount")
        else:
            amount = sum((line_refund_amount(line) for line in lines), ZERO)
        if amount < 0:
            raise ApiError(400, "woocommerce_rest_invalid_order_refund", "Refund amount must be greater than zero.")
        return self._make_refund(order, round2(amount), str(body.get("reason") or ""), lines,
                                 refund_payment=to_bool(body.get("api_refund", True)),
                                 restock=to_bool(body.get("api_restock", True)))

    def _make_refund(self, order: Order, amount: Decimal, reason: str, lines: list[dict], *,
                     refund_payment: bool, restock: bool) -> Refund:
        """``wc_create_refund``."""
        remaining = order.total - self.refunded_total(order)
        if amount > remaining:
            raise refund_failure("Invalid refund amount.")
        items = self._refund_items(order, lines)
        refund = Refund(self.next_post_id(), order.id, self.now(), amount, reason, False, items)
        refund.tax_lines = self._refund_tax_lines(order, items)
        if refund_payment:
            self._gateway_refund(order)
            refund.refunded_payment = True
        self.refunds[refund.id] = refund
        order.refund_ids.append(refund.id)
        if restock:
            for item in items:
                if item.kind == "line_item" and item.quantity:
                    self.adjust_stock(item.source.variation_id or item.source.product_id, item.quantity)
        order.modified = self.now()
        if remaining - amount <= 0:
            self.set_status(order, "refunded")
        self.emit("order", "updated", order.id)
        return refund

    @staticmethod
    def _gateway_refund(order: Order) -> None:
        supports = GATEWAYS.get(order.payment_method)
        if supports is None:
            raise refund_failure("The payment gateway for this order does not exist.")
        if not supports:
            raise refund_failure("The payment gateway for this order does not support automatic refunds.")

    def _refund_items(self, order: Order, lines: list[dict]) -> list[RefundItem]:
        by_id = {i.id: ("line_item", i) for i in order.line_items}
        by_id |= {s.id: ("shipping", s) for s in order.shipping_lines}
        by_id |= {f.id: ("fee", f) for f in order.fee_lines}
        items = []
        for line in lines:
            found = by_id.get(to_int(line.get("id", 0), "id"))
            if found is None:
                continue
            quantity = to_int(line.get("quantity", line.get("qty", 0)) or 0, "quantity")
            total = round2(to_decimal(line.get("refund_total"), "refund_total"))
            taxes = {k: round2(v) for k, v in refund_taxes(line.get("refund_tax")).items()}
            if not quantity and not total and not taxes:
                continue
            items.append(RefundItem(self.next_item_id(), found[0], copy.deepcopy(found[1]),
                                    quantity, total, taxes))
        return items

    def _refund_tax_lines(self, order: Order, items: list[RefundItem]) -> list[TaxLine]:
        cart: dict[int, Decimal] = defaultdict(Decimal)
        shipping: dict[int, Decimal] = defaultdict(Decimal)
        for item in items:
            bucket = shipping if item.kind == "shipping" else cart
            for rate_id, tax in item.taxes.items():
                bucket[rate_id] += tax
        known = {t.rate.id: t.rate for t in order.tax_lines}
        rates = {r.id: r for r in self.tax_rates()}
        return [TaxLine(self.next_item_id(), known.get(rid) or rates.get(rid) or unknown_rate(rid),
                        -cart.get(rid, ZERO), -shipping.get(rid, ZERO))
                for rid in dict.fromkeys([*cart, *shipping])]

    def delete_refund(self, refund: Refund) -> None:
        self.refunds.pop(refund.id, None)
        order = self.orders.get(refund.order_id)
        if order is not None:
            order.refund_ids = [r for r in order.refund_ids if r != refund.id]
            order.modified = self.now()
            self.emit("order", "updated", order.id)


def is_removal(entry: dict, key: str) -> bool:
    """A line sent with quantity 0, or with every value null, is removed (§4.4)."""
    if key == "quantity" and entry.get("quantity") is not None:
        return str(entry["quantity"]).strip() in ("0", "0.0")
    values = [v for k, v in entry.items() if k != "id"]
    return bool(values) and all(v is None for v in values)


def refund_taxes(value: Any) -> dict[int, Decimal]:
    """``refund_tax`` as ``[{id, refund_total}]`` or the legacy ``{rate_id: amount}``."""
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [(t.get("id"), t.get("refund_total")) for t in value or [] if isinstance(t, dict)]
    taxes: dict[int, Decimal] = {}
    for rate_id, amount in pairs:
        if amount not in (None, ""):
            taxes[to_int(rate_id, "refund_tax")] = to_decimal(amount, "refund_tax")
    return {k: v for k, v in taxes.items() if v}


def line_refund_amount(line: dict) -> Decimal:
    total = ZERO
    if is_number(line.get("refund_total")):
        total += to_decimal(line["refund_total"])
    return total + sum(refund_taxes(line.get("refund_tax")).values(), ZERO)


def refund_failure(message: str) -> ApiError:
    return ApiError(500, "woocommerce_rest_cannot_create_order_refund", message)
