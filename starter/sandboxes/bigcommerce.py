"""The BigCommerce sandbox as the stack drives it (see sandbox/bigcommerce.py,
sandbox/traffic_bigcommerce.py). Store actions go through the store's own API (v2 orders,
v3 refund quotes and refunds), the payment a checkout takes through the control surface."""
from __future__ import annotations

import asyncio
from dataclasses import fields
from decimal import Decimal
from typing import Any

import httpx

from sandbox import bigcommerce as app
from sandbox import traffic_bigcommerce as traffic
from starter.sandboxes import Placed

HASH, TOKEN = traffic.STORE_HASH, traffic.TOKEN
ORDER_TOPICS = ("store/order/created", "store/order/updated", "store/order/refund/created")
ok = traffic.ok


class BigCommerceSandbox:
    system = "bigcommerce"
    prefix = "BC-"
    tls = True
    tax_rates = {"CA-SALES-TAX": "CA", "CA-REDUCED-RATE": "CA-REDUCED", "EU-VAT": "VAT"}
    payment_methods = ("braintree", "paypalexpress", "bankdeposit")

    def create_app(self, **options: Any) -> Any:
        """Options other stores take (and this one has no use for) are left out."""
        known = {f.name for f in fields(app.Settings)}
        return app.create_app(store_hash=HASH, access_token=TOKEN,
                              **{k: v for k, v in options.items() if k in known})

    def admin_client(self, url: str, ca_file: str) -> httpx.AsyncClient:
        return traffic.admin_client(url, verify=ca_file)

    def connection(self, url: str, ca_file: str, **_: Any) -> tuple[dict, dict]:
        return ({"store_hash": HASH, "base_url": url, "ca_bundle": ca_file},
                {"access_token": TOKEN})

    async def seed(self, admin: httpx.AsyncClient) -> list[str]:
        return traffic.skus_of(await traffic.seed_catalog(admin))

    async def _simple_products(self, admin: httpx.AsyncClient) -> list[dict]:
        products = await traffic.v3_all(admin, "v3/catalog/products", {"include": "variants"})
        return [p for p in sorted(products, key=lambda p: p["id"])
                if p.get("sku") and p.get("inventory_tracking") != "variant"]

    async def place_order(self, admin: httpx.AsyncClient, *, quantities: tuple[int, ...] = (2, 1),
                          paid: bool = True, email: str = "ann.buyer@example.com",
                          registered: bool = False, currency: str | None = None,
                          skus: tuple[str, ...] | None = None) -> Placed:
        catalog = await self._simple_products(admin)
        chosen = ([next(p for p in catalog if p["sku"] == s) for s in skus] if skus
                  else catalog[:len(quantities)])
        person = {"first_name": "Ann", "last_name": "Buyer", "email": email}
        customer = await traffic.customer_id(admin, person) if registered else 0
        where = traffic.address(person, "1 Main St", "Oakland", "CA", "94607", "US")
        body: dict[str, Any] = {
            "customer_id": customer, "status_id": 1, "billing_address": where,
            "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
            "products": [{"product_id": p["id"], "quantity": q} for p, q in zip(chosen, quantities)],
            "base_shipping_cost": "5.00"}
        if currency:
            body["default_currency_code"] = currency
        order = await traffic.place(admin, body, "braintree", capture=paid)
        return Placed(id=str(order["id"]), total=Decimal(order["total_inc_tax"]),
                      currency=order["default_currency_code"], raw=order)

    async def pay(self, admin: httpx.AsyncClient, order_id: str) -> None:
        """Capture the authorized payment; the capture lands asynchronously (§4)."""
        ok(await admin.post(f"v3/orders/{order_id}/payment_actions/capture", json={}))
        for _ in range(200):
            if ok(await admin.get(f"v2/orders/{order_id}"))["payment_status"] == "captured":
                return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"order {order_id}: the capture did not land")

    async def refund(self, admin: httpx.AsyncClient, order_id: str, *, amount: Decimal | None = None,
                     line_qty: int = 0) -> str:
        products = await traffic.v2_all(admin, f"v2/orders/{order_id}/products")
        if line_qty:
            items = [{"item_type": "PRODUCT", "item_id": products[0]["id"], "quantity": line_qty}]
        elif amount is not None:
            items = [{"item_type": "ORDER", "item_id": int(order_id), "amount": str(amount)}]
        else:
            items = traffic.full_refund_items(
                products, await traffic.v2_all(admin, f"v2/orders/{order_id}/shipping_addresses"))
        return str((await traffic.refund(admin, order_id, items, "test"))["id"])

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

    async def register_webhooks(self, shop: Any, delivery_url: str, secret: str) -> None:
        existing = {(w.topic, w.delivery_url) for w in await shop.list_webhooks()}
        for topic in ORDER_TOPICS:
            if (topic, delivery_url) not in existing:
                await shop.create_webhook(topic, delivery_url, secret)


ADAPTER = BigCommerceSandbox()
