"""The divisions in memory: records, tokens and refresh chains, the minute and day quotas."""
from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from sandbox.configure import set_fields

from sandbox.exact_online.entities import (ACCOUNT, BANK_ENTRY, BANK_LINE, DELIVERY, DELIVERY_LINE, DIVISION,
                                           ENTITIES, G, INVOICE, JOURNAL, ORDER_LINE, SALES_ORDER)
from sandbox.exact_online.wire import DEFAULT_DIVISION

if TYPE_CHECKING:
    from sandbox.exact_online.entities import EntityDef


# --------------------------------------------------------------------------- state

@dataclass
class Settings:
    minutely_limit: int = 60
    daily_limit: int = 5000
    minute_seconds: float = 60.0
    token_lifetime: int = 600
    refresh_not_before: int = 570
    refresh_grace_seconds: int = 600  # a used refresh token's grace window; 0 = strict
    code_lifetime: int = 180
    page_size: int = 60
    your_ref_max: int = 30
    allow_http_callbacks: bool = False

    def configure(self, values: dict) -> None:
        set_fields(self, values)


@dataclass
class Chain:
    id: str
    last_issued: float
    division: int
    revoked: bool = False
    spent: list[str] = field(default_factory=list)  # used refresh tokens still in their grace


@dataclass
class Division:
    code: int
    description: str
    currency: str = "EUR"
    country: str = "NL"
    records: dict[str, dict[str, dict]] = field(default_factory=lambda: {e: {} for e in ENTITIES})
    next_invoice: int = 26000001
    next_entry: int = 1
    next_account: int = 1
    next_order: int = 1
    next_delivery: int = 1

    def table(self, entity: EntityDef) -> dict[str, dict]:
        return self.records[entity.path.lower()]

    def by_code(self, entity: EntityDef, code: str) -> dict | None:
        return next((r for r in self.table(entity).values()
                     if str(r.get("Code", "")).strip().lower() == str(code).strip().lower()), None)


class ExactState:
    def __init__(self, *, client_id: str, client_secret: str, webhook_secret: str,
                 redirect_uris: tuple[str, ...], settings: Settings) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.webhook_secret, self.redirect_uris = webhook_secret, redirect_uris
        self.settings = settings
        self.base_settings = asdict(settings)
        self.offset = 0.0
        self.user_id = str(uuid.uuid4())
        self.codes: dict[str, dict] = {}
        self.access: dict[str, tuple[str, float]] = {}  # token -> (chain, expires)
        self.refresh: dict[str, dict] = {}  # token -> {chain, used, issued}
        self.chains: dict[str, Chain] = {}
        self.reset()

    def now(self) -> float:
        return time.time() + self.offset

    def reset(self) -> None:
        self.settings.configure(self.base_settings)
        self.divisions: dict[int, Division] = {}
        self.current_division = DEFAULT_DIVISION
        self.add_division(DEFAULT_DIVISION, "Sandbox B.V.")
        self.quota: dict[int, dict[str, float]] = {}
        self.deliveries: list[dict] = []
        self.stats: dict[str, Any] = {"api_requests": 0, "by_status": {}, "token_requests": 0,
                                      "by_grant": {}, "refreshes": 0, "refresh_reused": 0, "refresh_grace_used": 0,
                                      "refresh_too_early": 0, "refresh_expired": 0, "rate_limited": 0,
                                      "unauthorized": 0, "authorizations": 0, "by_route": {}}
        self.request_log: list[dict] = []  # every /api/v1 request: method, path, query, status

    def add_division(self, code: int, description: str, currency: str = "EUR", country: str = "NL") -> Division:
        div = self.divisions.get(code) or Division(code, description, currency, country)
        self.divisions[code] = div
        listing = {str(c): {"Code": c, "Description": d.description, "Currency": d.currency,
                            "Country": d.country, "Current": c == self.current_division}
                   for c, d in self.divisions.items()}
        for d in self.divisions.values():  # system/Divisions lists every division the user can access
            d.records[DIVISION.path.lower()] = {k: dict(v) for k, v in listing.items()}
        if not div.by_code(JOURNAL, "70"):  # every administration has a sales journal
            self.add(div, JOURNAL, {"Code": "70", "Description": "Sales journal", "Type": 20})
        return div

    def add(self, div: Division, entity: EntityDef, values: dict) -> dict:
        now = self.now()
        record = {k: v for k, v in values.items() if k in entity.fields or k == entity.lines}
        if entity.key == "ID" or entity.fields.get(entity.key) == G:
            record.setdefault(entity.key, str(uuid.uuid4()))
        if "Created" in entity.fields:
            record.setdefault("Created", now)
        if "Modified" in entity.fields:
            record["Modified"] = now
        div.table(entity)[str(record[entity.key]).lower()] = record
        return record

    # ---- OAuth

    def issue(self, chain: Chain) -> dict:
        """A new access + refresh token of ``chain``; earlier access tokens of it stop working."""
        now = self.now()
        for token, (cid, _) in list(self.access.items()):
            if cid == chain.id:
                del self.access[token]
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.access[access] = (chain.id, now + self.settings.token_lifetime)
        self.refresh[refresh] = {"chain": chain.id, "used": None, "issued": now}
        chain.last_issued = now
        return {"access_token": access, "token_type": "bearer",
                "expires_in": str(self.settings.token_lifetime), "refresh_token": refresh}

    def new_code(self, redirect_uri: str, code: str | None = None) -> str:
        code = code or secrets.token_urlsafe(24)
        self.codes[code] = {"redirect_uri": redirect_uri, "expires": self.now() + self.settings.code_lifetime}
        self.stats["authorizations"] += 1
        return code

    def expire_tokens(self) -> None:
        """Every access token expires now; the chains may refresh at once."""
        now = self.now()
        for token, (cid, _) in list(self.access.items()):
            self.access[token] = (cid, now - 1)
        for chain in self.chains.values():
            chain.last_issued = now - self.settings.token_lifetime

    def authenticated(self, request: Request) -> Chain | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = self.access.get(token) if scheme.lower() == "bearer" else None
        if found is None or found[1] <= self.now():
            return None
        chain = self.chains.get(found[0])
        if chain is None or chain.revoked:
            return None
        self.settle(chain)
        return chain

    def settle(self, chain: Chain) -> None:
        """The newest token set of ``chain`` is in use: every used refresh token of the chain
        loses its grace window."""
        for token in chain.spent:
            if token in self.refresh:
                self.refresh[token]["dead"] = True
        chain.spent.clear()

    # ---- quota

    def admit(self, division: int) -> tuple[dict[str, str], bool]:
        """(headers, allowed) for one metered call against the app's quota in ``division``."""
        s, now = self.settings, self.now()
        q = self.quota.setdefault(division, {"day_start": now, "day_count": 0, "min_start": now, "min_count": 0})
        if now >= q["day_start"] + 86400:
            q.update(day_start=now, day_count=0)
        if now >= q["min_start"] + s.minute_seconds:
            q.update(min_start=now, min_count=0)
        minute_reset = str(int((q["min_start"] + s.minute_seconds) * 1000))
        day_reset = str(int((q["day_start"] + 86400) * 1000))
        if q["min_count"] >= s.minutely_limit:
            return ({"X-RateLimit-Minutely-Limit": str(s.minutely_limit), "X-RateLimit-Minutely-Remaining": "0",
                     "X-RateLimit-Minutely-Reset": minute_reset}, False)
        if q["day_count"] >= s.daily_limit:
            return ({"X-RateLimit-Limit": str(s.daily_limit), "X-RateLimit-Remaining": "0",
                     "X-RateLimit-Reset": day_reset}, False)
        q["min_count"] += 1
        q["day_count"] += 1
        return ({"X-RateLimit-Limit": str(s.daily_limit),
                 "X-RateLimit-Remaining": str(int(s.daily_limit - q["day_count"])),
                 "X-RateLimit-Reset": day_reset,
                 "X-RateLimit-Minutely-Limit": str(s.minutely_limit),
                 "X-RateLimit-Minutely-Remaining": str(int(s.minutely_limit - q["min_count"])),
                 "X-RateLimit-Minutely-Reset": minute_reset}, True)

    # ---- what an Exact user does

    def account_by_id(self, account_id: str) -> tuple[Division, dict] | None:
        for div in self.divisions.values():
            record = div.table(ACCOUNT).get(str(account_id).lower())
            if record is not None:
                return div, record
        return None

    def sales_order_for(self, div: Division, invoice: dict) -> dict:
        """The sales order of an invoice's ``YourRef`` (made from its lines when there is none)."""
        ref = invoice.get("YourRef") or ""
        found = next((o for o in div.table(SALES_ORDER).values() if ref and o.get("YourRef") == ref), None)
        if found is not None:
            return found
        order_id, number = str(uuid.uuid4()), div.next_order
        div.next_order += 1
        lines = [{"ID": str(uuid.uuid4()), "OrderID": order_id, "OrderNumber": number, "LineNumber": n,
                  "Item": ln["Item"], "ItemCode": ln.get("ItemCode"), "Description": ln.get("Description"),
                  "Quantity": ln["Quantity"], "QuantityDelivered": Decimal(0), "NetPrice": ln["NetPrice"],
                  "AmountFC": ln["AmountFC"], "Modified": self.now()}
                 for n, ln in enumerate(invoice["SalesInvoiceLines"], 1)]
        for ln in lines:
            div.table(ORDER_LINE)[ln["ID"]] = ln
        customer = div.table(ACCOUNT).get(str(invoice["OrderedBy"]).lower()) or {}
        return self.add(div, SALES_ORDER, {
            "OrderID": order_id, "OrderNumber": number, "YourRef": ref, "OrderedBy": invoice["OrderedBy"],
            "InvoiceTo": invoice["OrderedBy"], "DeliverTo": invoice["OrderedBy"],
            "OrderedByName": customer.get("Name"), "Currency": invoice["Currency"],
            "Description": invoice.get("Description"), "AmountFC": invoice["AmountFC"],
            "OrderDate": invoice.get("OrderDate") or self.now(), "Status": 12, "StatusDescription": "Open",
            "DeliveryStatus": 12, "SalesOrderLines": lines})

    def deliver(self, div: Division, order: dict, tracking_number: str, shipping_method: str = "") -> dict:
        """A goods delivery of every open quantity of ``order`` (the order becomes complete)."""
        entry_id, number, now = str(uuid.uuid4()), div.next_delivery, self.now()
        div.next_delivery += 1
        customer = div.table(ACCOUNT).get(str(order["OrderedBy"]).lower()) or {}
        lines = []
        for n, ol in enumerate(order["SalesOrderLines"], 1):
            open_qty = ol["Quantity"] - ol["QuantityDelivered"]
            ol["QuantityDelivered"] = ol["Quantity"]
            ol["Modified"] = now
            lines.append({"ID": str(uuid.uuid4()), "EntryID": entry_id, "LineNumber": n, "Item": ol["Item"],
                          "ItemCode": ol.get("ItemCode"), "Description": ol.get("Description"),
                          "QuantityOrdered": ol["Quantity"], "QuantityDelivered": open_qty,
                          "SalesOrderLineID": ol["ID"], "SalesOrderLineNumber": ol["LineNumber"],
                          "SalesOrderNumber": order["OrderNumber"], "TrackingNumber": None,
                          "DeliveryDate": now, "Created": now, "Modified": now})
        for ln in lines:
            div.table(DELIVERY_LINE)[ln["ID"]] = ln
        order.update(Status=21, StatusDescription="Complete", DeliveryStatus=21, Modified=now)
        return self.add(div, DELIVERY, {
            "EntryID": entry_id, "DeliveryNumber": number, "EntryNumber": number, "Division": div.code,
            "DeliveryAccount": order["OrderedBy"], "DeliveryAccountCode": customer.get("Code"),
            "DeliveryAccountName": customer.get("Name"), "Description": order.get("Description"),
            "TrackingNumber": tracking_number or None, "ShippingMethodCode": shipping_method or None,
            "DeliveryDate": now, "GoodsDeliveryLines": lines})

    # ---- read-outs

    def matched(self, div: Division, invoice: dict) -> Decimal:
        """What the account's bank entry lines matched with an invoice or credit note (by its
        number in ``OurRef``): a receipt matches an invoice, money paid out a credit note."""
        return sum((ln["AmountFC"] for ln in div.table(BANK_LINE).values()
                    if ln.get("OurRef") == invoice["InvoiceNumber"]
                    and str(ln.get("Account") or "").lower() == str(invoice["OrderedBy"]).lower()),
                   Decimal(0))

    def receivables(self, div: Division) -> list[dict]:
        """The outstanding items of read/financial/ReceivablesList: each sales invoice or credit
        note with something left after the bank entry lines matched with it."""
        accounts = div.table(ACCOUNT)
        out = []
        for inv in div.table(INVOICE).values():
            outstanding = inv["AmountFC"] - self.matched(div, inv)
            if outstanding == 0:
                continue
            account = accounts.get(str(inv["OrderedBy"]).lower(), {})
            out.append({"HID": inv["InvoiceNumber"], "AccountId": inv["OrderedBy"],
                        "AccountCode": account.get("Code"), "AccountName": account.get("Name"),
                        "Amount": outstanding, "AmountInTransit": Decimal(0),
                        "CurrencyCode": inv["Currency"], "Description": inv.get("Description"),
                        "DueDate": inv.get("DueDate"), "EntryNumber": inv["InvoiceNumber"],
                        "InvoiceDate": inv.get("InvoiceDate"), "InvoiceNumber": inv["InvoiceNumber"],
                        "JournalCode": inv.get("Journal"), "YourRef": inv.get("YourRef")})
        return out

    def balances(self) -> list[dict]:
        """Each account's outstanding balance (as the Receivables of cashflow/Receivables add
        up): its invoices and credit notes (negative) less its bank entry lines."""
        out = []
        for div in self.divisions.values():
            for account in div.table(ACCOUNT).values():
                aid = str(account["ID"]).lower()
                docs = sum((i["AmountFC"] for i in div.table(INVOICE).values()
                            if str(i["OrderedBy"]).lower() == aid), Decimal(0))
                paid = sum((ln["AmountFC"] for ln in div.table(BANK_LINE).values()
                            if str(ln.get("Account") or "").lower() == aid), Decimal(0))
                out.append({"division": div.code, "account": account["ID"],
                            "code": str(account.get("Code") or "").strip(), "balance": docs - paid})
        return out

    def documents(self) -> list[dict]:
        out = []
        for div in self.divisions.values():
            for inv in div.table(INVOICE).values():
                out.append({"division": div.code, "type": "credit_note" if inv["Type"] == 8021 else "invoice",
                            "type_code": inv["Type"], "your_ref": inv.get("YourRef") or "",
                            "open": inv["AmountFC"] - self.matched(div, inv),
                            "number": inv["InvoiceNumber"], "id": inv["InvoiceID"], "amount": inv["AmountFC"],
                            "amount_excl_vat": inv["AmountFCExclVat"], "vat": inv["VATAmountFC"],
                            "currency": inv["Currency"], "status": inv["Status"],
                            "ordered_by": inv["OrderedBy"], "lines": len(inv["SalesInvoiceLines"])})
            for entry in div.table(BANK_ENTRY).values():
                for line in entry["BankEntryLines"]:
                    paid_out = line.get("Account") and line["AmountFC"] < 0  # money back to the customer
                    out.append({"division": div.code, "type": "refund" if paid_out else "receipt",
                                "your_ref": line.get("Description") or "",
                                "number": entry["EntryNumber"], "id": entry["EntryID"],
                                "amount": line["AmountFC"], "currency": entry["Currency"],
                                "journal": entry["JournalCode"], "our_ref": line.get("OurRef"),
                                "account": line.get("Account")})
        return out
