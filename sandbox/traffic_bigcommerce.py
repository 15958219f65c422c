"""Realistic BigCommerce traffic: a catalog, a day of paid orders, then refunds.

The same catalog (SKUs, names, prices, the two tax classes) and people as
``sandbox/traffic.py``, so every ERP sandbox is seeded alike whichever store runs. Orders go
through the v2 Orders API (1-5 lines, tax by class and address, shipping, some coupons and
handling fees, guests and returning customers, a few in EUR); the payment a checkout would
take is recorded through the simulator's ``/_sandbox/orders/{id}/payments``. Refunds go the
documented way: a refund quote, then a refund paying back what the quote offered, one at a
time per order (full, by line, or an amount only). Reproducible: the same ``seed`` gives the
same orders.

    python -m sandbox.traffic_bigcommerce --url https://127.0.0.1:8443 --orders 200 --ca-file ca.pem
"""
from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from sandbox.traffic import (REFUND_REASONS, SIMPLE_PRODUCTS, VARIABLE_PRODUCTS, People,
                             Progress, TrafficSummary, report_progress)

STORE_HASH, TOKEN = "mlsandbox", "bc-sandbox-token"
TAX_CLASSES = {"": 0, "reduced-rate": 2}  # traffic.py's WooCommerce class names -> BC ids
COUPONS = [{"code": "welcome10", "type": "percentage_discount", "amount": "10"},
           {"code": "save5", "type": "per_total_discount", "amount": "5"},
           {"code": "freeship", "type": "free_shipping", "amount": "0"}]
SHIPPING = [("Flat Rate", "6.95"), ("Flat Rate", "4.95"), ("Free Shipping", "0.00"),
            ("Pickup In Store", "0.00")]
HANDLING = ("7.00", "4.50")
GATEWAYS = [("braintree", 0.6), ("paypalexpress", 0.25), ("bankdeposit", 0.15)]
COUNTRY_NAMES = {"US": "United States", "DE": "Germany", "FR": "France", "NL": "Netherlands"}


def api(client: httpx.AsyncClient) -> str:
    """The store's API root (``.../stores/{hash}/``) the admin client is based on."""
    return str(client.base_url)


def control(client: httpx.AsyncClient, path: str) -> str:
    """A control-surface URL of the simulator behind ``client``."""
    return api(client).split("/stores/", 1)[0] + path


def ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} -> "
                           f"{response.status_code}: {response.text[:300]}")
    return response.json() if response.content else None


def catalog_specs() -> list[dict]:
    specs = [{"sku": sku, "name": name, "price": price, "tax_class_id": TAX_CLASSES[tax_class],
              "inventory_level": 500} for sku, name, price, tax_class in SIMPLE_PRODUCTS]
    for sku, name, tax_class, variations in VARIABLE_PRODUCTS:
        specs.append({"sku": sku, "name": name, "price": variations[0][1],
                      "tax_class_id": TAX_CLASSES[tax_class],
                      "variants": [{"sku": v_sku, "price": price, "inventory_level": 200,
                                    "option_values": [{"option_display_name": k, "label": v}
                                                      for k, v in attrs.items()]}
                                   for v_sku, price, attrs in variations]})
    return specs


async def seed_catalog(client: httpx.AsyncClient) -> list[dict]:
    """≈30 products (3 with variants), two tax classes, three coupons. Returns the products
    as the catalog API shows them, variants included."""
    products = ok(await client.post(control(client, "/_sandbox/products"), json=catalog_specs()))
    ok(await client.post(control(client, "/_sandbox/coupons"), json=COUPONS))
    return products


def skus_of(products: list[dict]) -> list[str]:
    return sorted({p["sku"] for p in products if p.get("sku")}
                  | {v["sku"] for p in products for v in p.get("variants", []) if v.get("sku")})


@dataclass(frozen=True)
class Sellable:
    product_id: int
    variant_id: int
    sku: str
    price: Decimal


async def v3_all(client: httpx.AsyncClient, path: str, params: dict | None = None) -> list[dict]:
    out, page = [], 1
    while True:
        resp = await client.get(path, params={**(params or {}), "page": page, "limit": 250})
        if resp.status_code == 204:
            return out
        body = ok(resp)
        out += body["data"]
        if page >= body["meta"]["pagination"]["total_pages"]:
            return out
        page += 1


async def v2_all(client: httpx.AsyncClient, path: str, params: dict | None = None) -> list[dict]:
    out, page = [], 1
    while True:
        resp = await client.get(path, params={**(params or {}), "page": page, "limit": 250})
        if resp.status_code == 204:
            return out
        rows = ok(resp)
        out += rows
        if len(rows) < 250:
            return out
        page += 1


async def load_catalog(client: httpx.AsyncClient) -> list[Sellable]:
    """What a storefront can sell: every variant (a simple product's is its base variant)."""
    products = await v3_all(client, "v3/catalog/products", {"include": "variants"})
    return [Sellable(p["id"], v["id"], v["sku"], Decimal(str(v["calculated_price"])))
            for p in products for v in p.get("variants", [])
            if v.get("sku") and (v.get("option_values") or len(p["variants"]) == 1)]


async def customer_id(client: httpx.AsyncClient, person: dict, summary: TrafficSummary | None = None) -> int:
    """A registered shopper: found by e-mail, registered on first visit."""
    found = await v3_all(client, "v3/customers", {"email:in": person["email"]})
    if found:
        return found[0]["id"]
    created = ok(await client.post("v3/customers", json=[
        {"email": person["email"], "first_name": person["first_name"],
         "last_name": person["last_name"], "phone": person.get("phone", "")}]))
    if summary is not None:
        summary.customers_created += 1
    return created["data"][0]["id"]


def address(person: dict, street: str, city: str, state: str, zip_: str, country: str) -> dict:
    return {"first_name": person["first_name"], "last_name": person["last_name"], "company": "",
            "street_1": street, "street_2": "", "city": city, "state": state, "zip": zip_,
            "country": COUNTRY_NAMES.get(country, country), "country_iso2": country,
            "phone": person.get("phone", ""), "email": person["email"]}


class Shopper(People):
    """The carts and payments of one BigCommerce day."""

    def place(self, person: dict, foreign: bool) -> dict:
        return address(person, *self.residence(foreign))

    def gateway(self) -> str:
        roll, acc = self.rng.random(), 0.0
        for gateway, share in GATEWAYS:
            acc += share
            if roll < acc:
                return gateway
        return GATEWAYS[0][0]

    def order_body(self, person: dict, customer: int) -> dict:
        foreign = self.rng.random() < 0.06
        where = self.place(person, foreign)
        picks = self.rng.sample(self.catalog, k=min(len(self.catalog),
                                                    self.rng.choice([1, 1, 2, 2, 3, 4, 5])))
        method, cost = self.rng.choice(SHIPPING)
        body: dict[str, Any] = {
            "customer_id": customer, "status_id": 1, "billing_address": where,
            "shipping_addresses": [{**where, "shipping_method": method}],
            "products": [{"product_id": p.product_id, "variant_id": p.variant_id,
                          "quantity": self.rng.choice([1, 1, 1, 2, 2, 3])} for p in picks],
            "base_shipping_cost": cost, "external_source": "ml-connector traffic",
            "customer_message": self.rng.choice(["", "", "", "Please leave at the door."]),
        }
        if foreign:
            body["default_currency_code"] = "EUR"
        if self.rng.random() < 0.15:
            body["coupon_code"] = self.rng.choice(COUPONS)["code"]
        if self.rng.random() < 0.10:
            body["base_handling_cost"] = self.rng.choice(HANDLING)
        return body


# --- refunds ---------------------------------------------------------------------------

def full_refund_items(products: list[dict], addresses: list[dict]) -> list[dict]:
    """Every unit not yet refunded, and all shipping and handling."""
    items = [{"item_type": "PRODUCT", "item_id": p["id"],
              "quantity": p["quantity"] - int(p.get("quantity_refunded") or 0)}
             for p in products if p["quantity"] > int(p.get("quantity_refunded") or 0)]
    for a in addresses:
        for kind, key in (("SHIPPING", "base_cost"), ("HANDLING", "base_handling_cost")):
            if Decimal(str(a.get(key) or 0)) > 0:
                items.append({"item_type": kind, "item_id": a["id"], "amount": str(a[key])})
    return items


async def refund(client: httpx.AsyncClient, order_id: int | str, items: list[dict], reason: str = "") -> dict:
    """Quote, then refund exactly what the quote offered to its first refund method."""
    for item in items:
        item.setdefault("reason", reason)
    quote = ok(await client.post(f"v3/orders/{order_id}/payment_actions/refund_quotes",
                                 json={"items": items}))["data"]
    method = quote["refund_methods"][0]
    payments = [{"provider_id": p["provider_id"], "amount": p["amount"], "offline": p["offline"]}
                for p in method]
    return ok(await client.post(f"v3/orders/{order_id}/payment_actions/refunds",
                                json={"items": items, "payments": payments}))["data"]


async def _refund_one(client: httpx.AsyncClient, order: dict, rng: random.Random,
                      summary: TrafficSummary) -> None:
    kind = rng.choice(["full", "line", "line", "amount"])
    oid = order["id"]
    if kind == "full":
        items = full_refund_items(await v2_all(client, f"v2/orders/{oid}/products"),
                                  await v2_all(client, f"v2/orders/{oid}/shipping_addresses"))
    elif kind == "line":
        product = rng.choice(await v2_all(client, f"v2/orders/{oid}/products"))
        items = [{"item_type": "PRODUCT", "item_id": product["id"], "quantity": 1}]
    else:
        total = Decimal(order["total_inc_tax"])
        share = (total * Decimal(rng.choice([5, 10, 15, 20])) / 100).quantize(Decimal("0.01"))
        items = [{"item_type": "ORDER", "item_id": oid, "amount": str(max(share, Decimal("0.01")))}]
    made = await refund(client, oid, items, rng.choice(REFUND_REASONS))
    summary.refund_ids.append(made["id"])
    summary.refund_totals[order["default_currency_code"]] += Decimal(str(made["total_amount"]))


async def place(client: httpx.AsyncClient, body: dict, gateway: str, capture: bool = True) -> dict:
    """Create the order, then the payment its checkout takes; returns the order as read back."""
    order = ok(await client.post("v2/orders", json=body))
    ok(await client.post(control(client, f"/_sandbox/orders/{order['id']}/payments"),
                         json={"gateway": gateway, "capture": capture}))
    return ok(await client.get(f"v2/orders/{order['id']}"))


async def generate_day(client: httpx.AsyncClient, *, orders: int, refund_ratio: float = 0.10,
                       seed: int = 0, returning_ratio: float = 0.7,
                       on_progress: Progress | None = None) -> TrafficSummary:
    """Place ``orders`` paid orders, then refund ``refund_ratio`` of them (full, by line or
    amount only). ``on_progress(done, total)`` may be sync or async."""
    rng = random.Random(seed)
    catalog = await load_catalog(client)
    if not catalog:
        raise RuntimeError("the store has no purchasable products: run seed_catalog first")
    shopper, summary = Shopper(rng, catalog, orders), TrafficSummary()
    placed: list[dict] = []
    for done in range(1, orders + 1):
        registered = rng.random() < returning_ratio
        person = rng.choice(shopper.pool) if registered else shopper.guest()
        cid = await customer_id(client, person, summary) if registered else 0
        order = await place(client, shopper.order_body(person, cid), shopper.gateway())
        placed.append(order)
        summary.order_ids.append(order["id"])
        summary.order_totals[order["default_currency_code"]] += Decimal(order["total_inc_tax"])
        await report_progress(on_progress, done, orders)
    count = min(len(placed), max(1, round(orders * refund_ratio))) if refund_ratio > 0 and placed else 0
    for order in rng.sample(placed, k=count):
        await _refund_one(client, order, rng, summary)
    return summary


def admin_client(url: str, *, verify: Any = True, store_hash: str = STORE_HASH,
                 token: str = TOKEN) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{url.rstrip('/')}/stores/{store_hash}/", verify=verify,
                             timeout=60, headers={"X-Auth-Token": token, "Accept": "application/json"})


async def _main(args: argparse.Namespace) -> None:
    verify: Any = args.ca_file or not args.insecure
    async with admin_client(args.url, verify=verify, store_hash=args.store_hash, token=args.token) as client:
        if args.seed_catalog:
            print(f"seeded {len(await seed_catalog(client))} products")
        summary = await generate_day(client, orders=args.orders, refund_ratio=args.refund_ratio,
                                     seed=args.seed, returning_ratio=args.returning_ratio,
                                     on_progress=lambda d, t: print(f"\r{d}/{t} orders", end="", flush=True))
        print("\n" + summary.describe())


def main() -> None:
    parser = argparse.ArgumentParser(description="Drive a day of BigCommerce traffic into a store.")
    parser.add_argument("--url", required=True, help="the API host, e.g. https://127.0.0.1:8443")
    parser.add_argument("--store-hash", default=STORE_HASH)
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--refund-ratio", type=float, default=0.10)
    parser.add_argument("--returning-ratio", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ca-file", help="CA bundle trusted for the store's TLS certificate")
    parser.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    parser.add_argument("--seed-catalog", action="store_true", help="seed products and coupons first")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
