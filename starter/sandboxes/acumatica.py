"""The Acumatica sandbox as the stack drives it (see sandbox/acumatica.py)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from sandbox import acumatica as app
from starter.sandboxes import SERVICE_ITEMS, ErpDoc, ok

CLIENT_ID = "3A5D2C61-0000-4C1F-9E11-7D0F00000001@Company"
KINDS = {"Invoice": "invoice", "Credit Memo": "credit_memo", "Sales Order": "invoice",
         "Payment": "receipt", "Refund": "refund_payment"}


class AcumaticaSandbox:
    system = "acumatica"
    tls = True
    tax_ids = {"CA": "CATAX", "CA-REDUCED": "CAREDUCED", "VAT": "VAT"}
    payment_methods = ("CARD", "EFT")
    cash_accounts = {"USD": "10200", "EUR": "10250", "GBP": "10260", "CAD": "10270"}

    # A release runs for a while, as a real one does (about a second), and its status is
    # polled once, after the connector's first wait.
    release_ms = 500

    def create_app(self, **options: Any) -> Any:
        tenant = app.create_app(client_id=CLIENT_ID, **options)
        settings = tenant.state.acumatica.settings
        settings.action_polls, settings.action_ms = 0, self.release_ms
        return tenant

    def connection(self, url: str, ca_file: str, *, endpoint_version: str = "24.200.001",
                   **options: Any) -> tuple[dict, dict]:
        return ({"instance_url": url, "endpoint_version": endpoint_version, "ca_bundle": ca_file,
                 "cash_accounts": dict(self.cash_accounts), **options},
                {"client_id": CLIENT_ID, "client_secret": "secret", "username": "admin",
                 "password": "admin"})

    def mappings(self) -> dict[str, Any]:
        return {"default_payment_method": "CARD"}

    async def seed(self, control: httpx.AsyncClient, url: str, skus: list[str]) -> None:
        ok(await control.post(url + "/_sandbox/stock-items", json=[
            {"InventoryID": s, "DefaultPrice": "10.00", "LastCost": "4.00", "QtyOnHand": 100,
             "WarehouseID": "MAIN"} for s in skus]))
        ok(await control.post(url + "/_sandbox/non-stock-items",
                               json=[{"InventoryID": s} for s in SERVICE_ITEMS]))
        ok(await control.post(url + "/_sandbox/taxes", json=sorted(set(self.tax_ids.values()))))
        ok(await control.post(url + "/_sandbox/cash-accounts", json=[
            {"CashAccountCD": a, "CurrencyID": c} for c, a in self.cash_accounts.items()]))
        ok(await control.post(url + "/_sandbox/payment-methods", json=[
            {"PaymentMethodID": m, "CashAccount": self.cash_accounts["USD"],
             "CashAccounts": list(self.cash_accounts.values())} for m in self.payment_methods]))

    async def documents(self, control: httpx.AsyncClient, url: str) -> list[ErpDoc]:
        return [ErpDoc(external_ref=d["external_ref"], kind=KINDS.get(d["type"], d["type"]),
                       amount=Decimal(str(d["amount"])), currency=d["currency"], raw=d)
                for d in ok(await control.get(url + "/_sandbox/documents"))]

    async def customers(self, control: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
        return ok(await control.get(url + "/_sandbox/customers"))

    async def record_shipment(self, control: httpx.AsyncClient, url: str, external_ref: str,
                              *tracking_numbers: str, ship_via: str = "") -> dict[str, Any]:
        """Ship and confirm everything still open on the sales order posted under
        ``external_ref`` (a connection with ``document_type: "sales_order"``), one package
        per tracking number."""
        [shipment] = ok(await control.post(url + "/_sandbox/shipments", json=[{
            "ExternalRef": external_ref, "TrackingNumbers": list(tracking_numbers),
            "ShipVia": ship_via or None}]))
        return shipment

    async def expire_tokens(self, control: httpx.AsyncClient, url: str) -> None:
        ok(await control.post(url + "/_sandbox/faults", json={"expire_tokens": True}))


ADAPTER = AcumaticaSandbox()
