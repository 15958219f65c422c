"""The WooCommerce sandbox as the stack drives it (see sandbox/woocommerce.py, sandbox/traffic.py)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from sandbox import traffic
from sandbox import woocommerce as app
from starter.sandboxes import Placed, ok

API = "wp-json/wc/v3/"
KEY, SECRET = "ck_sandbox", "cs_sandbox"
CENT = Decimal("0.01")


class WooCommerceSandbox:
    system = "woocommerce"
    prefix = "WC-"
    tls = True
    plain_http = True  # OAuth 1.0a is for plain-HTTP stores, so the sandbox serves both
    tax_rates = {"US-CA-TAX-1": "CA", "US-CA-REDUCED-1": "CA-REDUCED", "EU-VAT-1": "VAT"}
    payment_methods = ("stripe", "ppcp-gateway", "bacs", "cod")

    def create_app(self, **options: Any) -> Any:
        return app.create_app(consumer_key=KEY, consumer_secret=SECRET, **options)

    def admin_client(self, url: str, ca_file: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url + "/", auth=(KEY, SECRET), verify=ca_file, timeout=60)

    def connection(self, url: str, ca_file: str, *, http_url: str = "", auth_mode: str = "auto",
                   **_: Any) -> tuple[dict, dict]:
        plain = auth_mode == "oauth1"  # the local sandbox's plain-HTTP twin, explicitly allowed
        base = (http_url if plain else url) + "/"
        return ({"base_url": base, "auth_mode": auth_mode, "ca_bundle": ca_file,
                 **({"allow_insecure_http": True} if plain else {})},
                {"consumer_key": KEY, "consumer_secret": SECRET})

    async def seed(self, admin: httpx.AsyncClient) -> list[str]:
        products = await traffic.seed_catalog(admin)
        return sorted({p["sku"] for p in products if p.get("sku")}
                      | {v["sku"] for p in products for v in p.get("variations", []) if v.get("sku")})

    async def _simple_products(self, admin: httpx.AsyncClient) -> list[dict]:
        resp = await admin.get(API + "products", params={"per_page": 100, "orderby": "id", "order": "asc"})
        return [p for p in ok(resp) if p.get("sku") and p.get("type") == "simple"]

    async def place_order(self, admin: httpx.AsyncClient, *, quantities: tuple[int, ...] = (2, 1),
                          paid: bool = True, email: str = "ann.buyer@example.com",
                          registered: bool = False, currency: str | None = None,
                          skus: tuple[str, ...] | None = None) -> Placed:
        catalog = await self._simple_products(admin)
        if skus:
            by_sku = {p["sku"]: p for p in catalog}
            chosen = [by_sku[s] for s in skus]
        else:
            chosen = catalog[:len(quantities)]
        customer_id = 0
        if registered:
            found = ok(await admin.get(API + "customers", params={"email": email}))
            customer_id = found[0]["id"] if found else ok(await admin.post(
                API + "customers", json={"email": email, "first_name": "Ann", "last_name": "Buyer",
                                         "billing": {"email": email}}))["id"]
        body = {"set_paid": paid, "customer_id": customer_id, "payment_method": "stripe",
                "transaction_id": f"ch_{email.split('@')[0]}",
                "line_items": [{"product_id": p["id"], "quantity": q} for p, q in zip(chosen, quantities)],
                "billing": {"first_name": "Ann", "last_name": "Buyer", "email": email,
                            "address_1": "1 Main St", "city": "Oakland", "state": "CA",
                            "postcode": "94607", "country": "US"},
                "shipping_lines": [{"method_id": "flat_rate", "method_title": "Flat rate",
                                    "total": "5.00"}]}
        if currency:
            body["currency"] = currency
        order = ok(await admin.post(API + "orders", json=body))
        return Placed(id=str(order["id"]), total=Decimal(order["total"]), currency=order["currency"],
                      raw=order)

    async def pay(self, admin: httpx.AsyncClient, order_id: str) -> None:
        ok(await admin.put(f"{API}orders/{order_id}", json={"set_paid": True}))

    async def refund(self, admin: httpx.AsyncClient, order_id: str, *, amount: Decimal | None = None,
                     line_qty: int = 0) -> str:
        order = ok(await admin.get(f"{API}orders/{order_id}"))
        body: dict[str, Any] = {"api_refund": False, "reason": "test"}
        if line_qty:
            item = order["line_items"][0]
            unit = Decimal(item["total"]) / item["quantity"]
            unit_tax = Decimal(item["total_tax"]) / item["quantity"]
            body["line_items"] = [{
                "id": item["id"], "quantity": line_qty,
                "refund_total": str((unit * line_qty).quantize(CENT)),
                "refund_tax": [{"id": t["id"], "refund_total": str((unit_tax * line_qty).quantize(CENT))}
                               for t in item["taxes"] if Decimal(str(t["total"]))]}]
        elif amount is not None:
            body["amount"] = str(amount)
        else:
            body |= traffic.full_refund_body(order)
        return str(ok(await admin.post(f"{API}orders/{order_id}/refunds", json=body))["id"])

    async def generate_day(self, admin: httpx.AsyncClient, *, orders: int, refund_ratio: float,
                           seed: int, on_progress: Any = None) -> None:
        await traffic.generate_day(admin, orders=orders, refund_ratio=refund_ratio, seed=seed,
                                   on_progress=on_progress)

    async def duplicate_next(self, control: httpx.AsyncClient, url: str, count: int) -> None:
        ok(await control.post(url + "/_sandbox/webhooks/duplicate", json={"next": count}))

    async def outage(self, control: httpx.AsyncClient, url: str, deliveries: int) -> None:
        ok(await control.post(url + "/_sandbox/webhooks/outage", json={"fail_next": deliveries}))

    async def wait_deliveries(self, control: httpx.AsyncClient, url: str) -> None:
        ok(await control.post(url + "/_sandbox/webhooks/wait-idle", json={}))


ADAPTER = WooCommerceSandbox()
