"""The Oracle Fusion sandbox as the stack drives it (see sandbox/oracle_fusion.py).

The connection books every line to ``01-{cost_center}-{account}-000-000`` of the sandbox's
five-segment chart: products to revenue account 4000, shipping 4100, fees 4200, refund and edit
adjustments 4300, rounding 4900; store payments become receipts by the "Credit Card" method.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from sandbox import oracle_fusion as app
from starter.sandboxes import SERVICE_ITEMS, ErpDoc, ok

USERNAME, PASSWORD = "integration.user", "Welcome1"
CLIENT_ID, CLIENT_SECRET = "ml-connector-client", "client-secret"
BUSINESS_UNIT = "Vision Operations"
BANK_ACCOUNT = "10271-17621-619"
GL_RULES = (("product", "4000", "100"), ("shipping", "4100", "100"), ("fee", "4200", "100"),
            ("adjustment", "4300", "100"), ("rounding", "4900", "000"))


class OracleFusionSandbox:
    system = "oracle_fusion"
    tls = True
    tax_ids = {"CA": "CA-STD", "CA-REDUCED": "CA-RED", "VAT": "VAT-STD"}
    receipt_methods = ("Credit Card", "Bank Transfer")

    def create_app(self, **options: Any) -> Any:
        return app.create_app(username=USERNAME, password=PASSWORD, client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET, **options)

    def connection(self, url: str, ca_file: str, *, auth: str = "oauth2",
                   **options: Any) -> tuple[dict, dict]:
        settings = {"instance_url": url, "ca_bundle": ca_file, "auth": auth,
                    "token_url": f"{url}/oauth2/v1/token", "business_unit": BUSINESS_UNIT,
                    "account_template": "01-{cost_center}-{account}-000-000",
                    "default_cost_center": "000", "remittance_bank_account_number": BANK_ACCOUNT,
                    "refund_payment_method": "CLEARING",  # refunds the processor already paid
                    **options}
        credentials = ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET} if auth == "oauth2"
                       else {"username": USERNAME, "password": PASSWORD})
        return settings, credentials

    def mappings(self) -> dict[str, Any]:
        return {"line_rules": [{"kind": kind, "gl_account": account, "cost_center": cc}
                               for kind, account, cc in GL_RULES],
                "default_payment_method": self.receipt_methods[0]}

    async def seed(self, control: httpx.AsyncClient, url: str, skus: list[str]) -> None:
        accounts = sorted({account for _, account, _ in GL_RULES})
        cost_centers = sorted({cc for _, _, cc in GL_RULES})
        for path, body in (
                ("/_sandbox/items", [*skus, *SERVICE_ITEMS]),
                ("/_sandbox/accounts", accounts),
                ("/_sandbox/cost-centers", cost_centers),
                ("/_sandbox/tax-codes", [{"code": c} for c in sorted(set(self.tax_ids.values()))]),
                ("/_sandbox/receipt-methods", [{"name": m, "bank_account": BANK_ACCOUNT}
                                               for m in self.receipt_methods])):
            ok(await control.post(url + path, json=body))

    async def documents(self, control: httpx.AsyncClient, url: str) -> list[ErpDoc]:
        return [ErpDoc(external_ref=d["external_ref"], kind=d["kind"],
                       amount=abs(Decimal(d["amount"])), currency=d["currency"], raw=d)
                for d in ok(await control.get(url + "/_sandbox/documents"))]

    async def customers(self, control: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
        return ok(await control.get(url + "/_sandbox/customers"))

    async def expire_tokens(self, control: httpx.AsyncClient, url: str) -> None:
        ok(await control.post(url + "/_sandbox/expire-tokens"))

    async def parties(self, control: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
        """The CRM parties (name, e-mail, source reference) with their primary addresses."""
        return ok(await control.get(url + "/_sandbox/parties"))

    async def requests_by_route(self, control: httpx.AsyncClient, url: str) -> dict[str, int]:
        """API calls so far by ``"METHOD resource"`` (e.g. ``"PATCH accounts"``)."""
        return ok(await control.get(url + "/_sandbox/stats"))["by_route"]


ADAPTER = OracleFusionSandbox()
