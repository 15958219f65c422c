"""The Exact Online sandbox as the stack drives it (see sandbox/exact_online.py).

Exact has no password grant: a connection starts from a user's consent. Here the consent is
given without a browser: :meth:`connection` has the sandbox issue an authorization code for
the connection's redirect URI and puts it in the credentials; the connector exchanges it on
its first call (the token set then lives encrypted under the connection's ``erp_tokens``).
The division is left out, so the connector discovers it from ``current/Me``.
"""
from __future__ import annotations

import secrets
import weakref
from decimal import Decimal
from typing import Any

import httpx

from sandbox import exact_online as app
from starter.sandboxes import SERVICE_ITEMS, ErpDoc, ok

CLIENT_ID = "6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
CLIENT_SECRET = "exact-sandbox-secret"
WEBHOOK_SECRET = "exact-sandbox-webhook-secret"
REDIRECT_URI = "http://127.0.0.1:8765/callback"
BANK_JOURNAL = "20"
GL = {"product": "8000", "shipping": "8100", "fee": "8200", "adjustment": "8300",
      "rounding": "8900"}
KINDS = {"invoice": "invoice", "credit_note": "credit_memo", "receipt": "receipt",
         "refund": "refund_payment"}


class ExactOnlineSandbox:
    system = "exact_online"
    tls = True
    tax_ids = {"CA": "11", "CA-REDUCED": "12", "VAT": "2"}
    rates = {"11": "0.0725", "12": "0.0300", "2": "0.21"}

    def __init__(self) -> None:
        self._apps: weakref.WeakSet = weakref.WeakSet()

    def create_app(self, **options: Any) -> Any:
        """The stack's quota is roomier than Exact's 60/min so a demo day fits in minutes; the
        contract tests exercise the real figures. Codes live a day: the connector redeems its
        code on its first call, which may come later than Exact's few minutes."""
        settings = {"minutely_limit": 1200, "daily_limit": 200_000, "code_lifetime": 86400,
                    **options}
        created = app.create_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                 webhook_secret=WEBHOOK_SECRET, redirect_uris=(REDIRECT_URI,),
                                 **settings)
        self._apps.add(created)
        return created

    def connection(self, url: str, ca_file: str, **options: Any) -> tuple[dict, dict]:
        code = secrets.token_urlsafe(24)
        for served in list(self._apps):  # the app behind ``url`` is one of them
            app.grant_code(served, REDIRECT_URI, code)
        return ({"base_url": url, "ca_bundle": ca_file, "redirect_uri": REDIRECT_URI,
                 "sales_journal": "70", **options},
                {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                 "webhook_secret": WEBHOOK_SECRET, "authorization_code": code,
                 "redirect_uri": REDIRECT_URI})

    def mappings(self) -> dict[str, Any]:
        return {"line_rules": [{"kind": kind, "gl_account": gl,
                                "cost_center": "WEB" if kind == "product" else ""}
                               for kind, gl in GL.items()],
                "default_payment_method": BANK_JOURNAL}

    async def seed(self, control: httpx.AsyncClient, url: str, skus: list[str]) -> None:
        items = [{"Code": s, "Description": s, "StandardSalesPrice": "10.00",
                  "CostPriceStandard": "4.00", "Stock": 100, "IsStockItem": True,
                  "GLRevenueCode": GL["product"]} for s in skus]
        items += [{"Code": s, "Description": s.title(), "IsStockItem": False}
                  for s in SERVICE_ITEMS]
        ok(await control.post(url + "/_sandbox/seed", json={
            "gl_accounts": [{"Code": code, "Description": f"Revenue {kind}", "Type": 110}
                            for kind, code in GL.items()],
            "cost_centers": [{"Code": "WEB", "Description": "Web shop", "Active": True}],
            "vat_codes": [{"Code": code, "Description": f"VAT {code}", "Percentage": pct}
                          for code, pct in self.rates.items()],
            "journals": [{"Code": BANK_JOURNAL, "Description": "Payment provider", "Type": 16}],
            "items": items}))

    async def documents(self, control: httpx.AsyncClient, url: str) -> list[ErpDoc]:
        return [ErpDoc(external_ref=d["your_ref"], kind=KINDS.get(d["type"], d["type"]),
                       amount=abs(Decimal(str(d["amount"]))), currency=d["currency"], raw=d)
                for d in ok(await control.get(url + "/_sandbox/documents"))]

    async def customers(self, control: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
        return ok(await control.get(url + "/_sandbox/accounts"))

    async def expire_tokens(self, control: httpx.AsyncClient, url: str) -> None:
        ok(await control.post(url + "/_sandbox/expire-tokens"))

    # what an Exact user does, for the customer-sync and shipment scenarios -------------------
    async def update_account(self, control: httpx.AsyncClient, url: str, account_id: str,
                             fields: dict[str, Any]) -> dict[str, Any]:
        """Edit an account as a user would (API field names); its ``Modified`` moves on."""
        return ok(await control.post(f"{url}/_sandbox/accounts/{account_id}", json=fields))

    async def record_delivery(self, control: httpx.AsyncClient, url: str, your_ref: str,
                              tracking_number: str, shipping_method: str = "") -> dict[str, Any]:
        """Ship the order whose invoice has ``your_ref``: a sales order and its goods delivery."""
        return ok(await control.post(url + "/_sandbox/deliveries", json={
            "your_ref": your_ref, "tracking_number": tracking_number,
            "shipping_method": shipping_method}))

    async def requests_by_route(self, control: httpx.AsyncClient, url: str) -> dict[str, int]:
        """API calls so far by ``"METHOD service/Entity"`` (e.g. ``"PUT crm/Accounts"``)."""
        return ok(await control.get(url + "/_sandbox/stats"))["by_route"]


ADAPTER = ExactOnlineSandbox()
