"""Realistic WooCommerce traffic: a catalog, a day of paid orders, then refunds.

Everything goes through the store's REST API over HTTP(S) (plus the simulator's ``/_sandbox/``
control routes for seeding), the way a storefront and a merchant's back office would, so the
connector sees the same webhooks and the same records it would see in production. Runs are
reproducible: the same ``seed`` gives the same orders.

    python -m sandbox.traffic --url https://127.0.0.1:8441/ --orders 200 --ca-file ca.pem \
        --consumer-key ck_sandbox --consumer-secret cs_sandbox

(the keys of the store ``ml-connector dev`` runs on :8441, whose banner prints this line with
its CA file; the defaults below are those of a bare ``sandbox.woocommerce`` app)
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

import httpx

API = "wp-json/wc/v3/"
CENT = Decimal("0.01")

SIMPLE_PRODUCTS = [
    ("MUG-CER-01", "Ceramic Mug", "12.00", ""),
    ("MUG-ENM-02", "Enamel Camp Mug", "16.50", ""),
    ("BTL-STL-750", "Steel Water Bottle 750 ml", "24.95", ""),
    ("TOTE-CAN-01", "Canvas Tote Bag", "18.00", ""),
    ("CAP-BSB-01", "Baseball Cap", "22.00", ""),
    ("SOCK-WOOL-M", "Merino Socks", "14.99", ""),
    ("SCARF-KNT-01", "Knitted Scarf", "39.00", ""),
    ("GLOVE-LTH-L", "Leather Gloves", "59.00", ""),
    ("NOTE-A5-DOT", "A5 Dotted Notebook", "9.50", ""),
    ("PEN-FTN-01", "Fountain Pen", "45.00", ""),
    ("INK-BLK-50", "Black Ink 50 ml", "11.25", ""),
    ("CANDLE-SOY-1", "Soy Candle", "19.00", ""),
    ("LAMP-DSK-01", "Desk Lamp", "89.00", ""),
    ("PLANT-POT-M", "Terracotta Pot", "13.40", ""),
    ("BLANKET-THR", "Throw Blanket", "74.00", ""),
    ("PUZZLE-1000", "1000-Piece Puzzle", "27.00", ""),
    ("UMBRELLA-CMP", "Compact Umbrella", "29.99", ""),
    ("KEYRING-BRS", "Brass Keyring", "8.75", ""),
    ("APRON-LIN-01", "Linen Apron", "34.00", ""),
    ("BOARD-OAK-S", "Oak Cutting Board", "42.00", ""),
    ("SOAP-OLV-3", "Olive Oil Soap, 3 bars", "10.90", ""),
    ("BOOK-COOK-01", "The Weeknight Cookbook", "32.00", "reduced-rate"),
    ("BOOK-TRVL-02", "Slow Travel Guide", "21.50", "reduced-rate"),
    ("BOOK-KIDS-03", "Bedtime Stories", "15.00", "reduced-rate"),
    ("COFFEE-BN-1K", "Coffee Beans 1 kg", "28.00", "reduced-rate"),
    ("TEA-LOOSE-250", "Loose Leaf Tea 250 g", "12.80", "reduced-rate"),
    ("CHOC-DRK-100", "Dark Chocolate Bar", "4.60", "reduced-rate"),
]
VARIABLE_PRODUCTS = [
    ("TSHIRT-ORG", "Organic Cotton T-Shirt", "",
     [("TSHIRT-BLU-M", "25.00", {"Color": "Blue", "Size": "M"}),
      ("TSHIRT-BLU-L", "25.00", {"Color": "Blue", "Size": "L"}),
      ("TSHIRT-GRN-M", "25.00", {"Color": "Green", "Size": "M"}),
      ("TSHIRT-GRN-L", "27.00", {"Color": "Green", "Size": "L"})]),
    ("HOODIE-ZIP", "Zip Hoodie", "",
     [("HOODIE-GRY-M", "64.00", {"Color": "Grey", "Size": "M"}),
      ("HOODIE-GRY-L", "64.00", {"Color": "Grey", "Size": "L"}),
      ("HOODIE-NVY-L", "68.00", {"Color": "Navy", "Size": "L"})]),
    ("POSTER-ART", "Art Print", "",
     [("POSTER-A3", "18.00", {"Size": "A3"}), ("POSTER-A2", "26.00", {"Size": "A2"}),
      ("POSTER-A1", "39.00", {"Size": "A1"})]),
]
COUPONS = [{"code": "welcome10", "discount_type": "percent", "amount": "10"},
           {"code": "save5", "discount_type": "fixed_cart", "amount": "5"}]
FEES = [("Gift wrapping", "4.50"), ("Rush handling", "7.00")]
SHIPPING = [("flat_rate", "Flat rate", "6.95"), ("flat_rate", "Flat rate", "4.95"),
            ("free_shipping", "Free shipping", "0.00"), ("local_pickup", "Local pickup", "0.00")]
GATEWAYS = [("stripe", "Credit Card (Stripe)", 0.65), ("ppcp-gateway", "PayPal", 0.25),
            ("bacs", "Direct bank transfer", 0.10)]
FIRST = ["Ann", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kara",
         "Luis", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tess"]
LAST = ["Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ivanova", "Jensen",
        "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Patel", "Rossi", "Silva", "Tanaka"]
US_ADDRESSES = [("1 Main St", "Oakland", "CA", "94607"), ("500 Castro St", "Mountain View", "CA", "94041"),
                ("221 Pine Ave", "Long Beach", "CA", "90802"), ("77 Market St", "San Diego", "CA", "92101"),
                ("350 W 42nd St", "New York", "NY", "10036"), ("1200 Congress Ave", "Austin", "TX", "78701"),
                ("88 Pearl St", "Portland", "OR", "97209")]
EU_ADDRESSES = [("Torstrasse 12", "Berlin", "", "10119", "DE"), ("12 Rue Oberkampf", "Paris", "", "75011", "FR"),
                ("Prinsengracht 200", "Amsterdam", "", "1016 HG", "NL")]
REFUND_REASONS = ["Damaged in transit", "Wrong size", "Changed mind", "Late delivery goodwill",
                  "Item missing from parcel"]

Progress = Callable[[int, int], Any]


@dataclass
class TrafficSummary:
    """What a day put into the store: ids and the store's own totals per currency."""

    order_ids: list[int] = field(default_factory=list)
    refund_ids: list[int] = field(default_factory=list)
    order_totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    refund_totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    customers_created: int = 0

    def describe(self) -> str:
        def fmt(totals: dict[str, Decimal]) -> str:
            return ", ".join(f"{v:.2f} {c}" for c, v in sorted(totals.items())) or "0"

        return (f"{len(self.order_ids)} orders ({fmt(self.order_totals)}), "
                f"{len(self.refund_ids)} refunds ({fmt(self.refund_totals)}), "
                f"{self.customers_created} new customers")


@dataclass(frozen=True)
class Sellable:
    product_id: int
    variation_id: int
    sku: str
    price: Decimal


def catalog_specs() -> list[dict]:
    specs = [{"sku": sku, "name": name, "regular_price": price, "tax_class": tax_class,
              "manage_stock": True, "stock_quantity": 500}
             for sku, name, price, tax_class in SIMPLE_PRODUCTS]
    for sku, name, tax_class, variations in VARIABLE_PRODUCTS:
        specs.append({"sku": sku, "name": name, "regular_price": "", "tax_class": tax_class,
                      "type": "variable",
                      "variations": [{"sku": v_sku, "regular_price": price, "attributes": attrs,
                                      "manage_stock": True, "stock_quantity": 200}
                                     for v_sku, price, attrs in variations]})
    return specs


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text[:300]}")
    return response.json() if response.content else None


async def seed_catalog(client: httpx.AsyncClient) -> list[dict]:
    """≈30 products (3 variable ones with variations), two tax classes, two coupons. Returns the
    products as the API shows them, except that ``variations`` holds the variation objects."""
    products = _ok(await client.post("_sandbox/products", json=catalog_specs()))
    _ok(await client.post("_sandbox/coupons", json=COUPONS))
    return products


async def load_catalog(client: httpx.AsyncClient) -> list[Sellable]:
    """What a storefront can sell, read through the REST API (simple products and variations)."""
    items: list[Sellable] = []
    page = 1
    while True:
        resp = await client.get(API + "products", params={"per_page": 100, "page": page, "status": "publish"})
        for product in _ok(resp):
            items += await _sellables(client, product)
        if page >= int(resp.headers.get("X-WP-TotalPages", "1")):
            return items
        page += 1


async def _sellables(client: httpx.AsyncClient, product: dict) -> list[Sellable]:
    if product["type"] == "simple" and product["price"]:
        return [Sellable(product["id"], 0, product["sku"], Decimal(product["price"]))]
    if product["type"] != "variable":
        return []
    resp = await client.get(f"{API}products/{product['id']}/variations", params={"per_page": 100})
    return [Sellable(product["id"], v["id"], v["sku"], Decimal(v["price"]))
            for v in _ok(resp) if v["price"]]


class People:
    """The buyers of one day, from a seeded random generator: a pool of returning customers,
    one-off guests, and where each lives (mostly the US, some in the EU). Shared by every
    store's traffic generator."""

    def __init__(self, rng: random.Random, catalog: list, orders: int) -> None:
        self.rng, self.catalog = rng, catalog
        self.pool = [self._person(n) for n in range(max(3, orders // 3))]

    def _person(self, n: int) -> dict:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        return {"first_name": first, "last_name": last,
                "email": f"{first.lower()}.{last.lower()}.{n}@example.com",
                "phone": f"+1 555 {self.rng.randint(100, 999)} {self.rng.randint(1000, 9999)}"}

    def guest(self) -> dict:
        person = self._person(self.rng.randint(10_000, 99_999))
        person["email"] = person["email"].replace("@example.com", "@guest.example.com")
        return person

    def residence(self, foreign: bool) -> tuple[str, str, str, str, str]:
        """(street, city, state, postcode, country)"""
        if foreign:
            return self.rng.choice(EU_ADDRESSES)
        return (*self.rng.choice(US_ADDRESSES), "US")


class Shopper(People):
    """The carts and payments of one WooCommerce day."""

    def address(self, person: dict, foreign: bool) -> dict:
        street, city, state, postcode, country = self.residence(foreign)
        return {"first_name": person["first_name"], "last_name": person["last_name"], "company": "",
                "address_1": street, "address_2": "", "city": city, "state": state,
                "postcode": postcode, "country": country}

    def lines(self) -> list[dict]:
        picks = self.rng.sample(self.catalog, k=min(len(self.catalog), self.rng.choice([1, 1, 2, 2, 3, 4, 5])))
        return [{"product_id": p.product_id, "variation_id": p.variation_id,
                 "quantity": self.rng.choice([1, 1, 1, 2, 2, 3])} for p in picks]

    def payment(self) -> tuple[str, str]:
        roll, acc = self.rng.random(), 0.0
        for method, title, share in GATEWAYS:
            acc += share
            if roll < acc:
                return method, title
        return GATEWAYS[0][0], GATEWAYS[0][1]

    def order_body(self, person: dict, customer_id: int) -> dict:
        foreign = self.rng.random() < 0.06
        billing = self.address(person, foreign) | {"email": person["email"], "phone": person["phone"]}
        method, title = self.payment()
        ship_id, ship_title, ship_total = self.rng.choice(SHIPPING)
        body: dict[str, Any] = {
            "set_paid": True, "customer_id": customer_id, "payment_method": method,
            "payment_method_title": title, "transaction_id": self._transaction(method),
            "billing": billing, "shipping": {k: v for k, v in billing.items() if k != "email"},
            "line_items": self.lines(),
            "shipping_lines": [{"method_id": ship_id, "method_title": ship_title, "total": ship_total}],
            "customer_note": self.rng.choice(["", "", "", "Please leave at the door."]),
        }
        if foreign:
            body["currency"] = "EUR"
        if self.rng.random() < 0.15:
            body["coupon_lines"] = [{"code": self.rng.choice(COUPONS)["code"]}]
        if self.rng.random() < 0.10:
            name, total = self.rng.choice(FEES)
            body["fee_lines"] = [{"name": name, "total": total, "tax_status": "taxable"}]
        return body

    def _transaction(self, method: str) -> str:
        token = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(17))
        return {"stripe": f"ch_{token}", "ppcp-gateway": token}.get(method, "")


async def _customer_id(client: httpx.AsyncClient, person: dict, summary: TrafficSummary) -> int:
    """A registered shopper: found by email, registered on first visit."""
    found = _ok(await client.get(API + "customers", params={"email": person["email"]}))
    if found:
        return found[0]["id"]
    body = {"email": person["email"], "first_name": person["first_name"],
            "last_name": person["last_name"], "billing": {"email": person["email"]}}
    created = _ok(await client.post(API + "customers", json=body))
    summary.customers_created += 1
    return created["id"]


def _q(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def full_refund_body(order: dict) -> dict:
    """Every line, shipping and fee line with its taxes: the amount equals the order total."""
    lines = [{"id": i["id"], "quantity": i["quantity"], "refund_total": i["total"],
              "refund_tax": [{"id": t["id"], "refund_total": t["total"]} for t in i["taxes"]]}
             for i in order["line_items"]]
    lines += [{"id": s["id"], "refund_total": s["total"],
               "refund_tax": [{"id": t["id"], "refund_total": t["total"]} for t in s["taxes"]]}
              for s in (*order["shipping_lines"], *order["fee_lines"])]
    return {"line_items": lines}


def line_refund_body(order: dict, rng: random.Random) -> dict:
    """One unit of one line, with its share of the line's taxes; the amount is computed."""
    item = rng.choice(order["line_items"])
    qty = item["quantity"]
    taxes = [{"id": t["id"], "refund_total": str(_q(Decimal(str(t["total"])) / qty))}
             for t in item["taxes"] if Decimal(str(t["total"]))]
    return {"line_items": [{"id": item["id"], "quantity": 1,
                            "refund_total": str(_q(Decimal(item["total"]) / qty)), "refund_tax": taxes}]}


def amount_refund_body(order: dict, rng: random.Random) -> dict:
    """A goodwill refund of a share of the order, no lines."""
    total = Decimal(order["total"])
    share = _q(total * Decimal(rng.choice([5, 10, 15, 20])) / 100)
    return {"amount": str(min(total, max(share, CENT)))}


async def _refund(client: httpx.AsyncClient, order: dict, rng: random.Random, summary: TrafficSummary) -> None:
    kind = rng.choice(["full", "line", "line", "amount"])
    body = {"full": full_refund_body, "line": line_refund_body, "amount": amount_refund_body}[kind](
        *((order,) if kind == "full" else (order, rng)))
    body |= {"reason": rng.choice(REFUND_REASONS),
             "api_refund": order["payment_method"] in ("stripe", "ppcp-gateway"), "api_restock": kind != "amount"}
    refund = _ok(await client.post(f"{API}orders/{order['id']}/refunds", json=body))
    summary.refund_ids.append(refund["id"])
    summary.refund_totals[order["currency"]] += Decimal(refund["amount"])


async def report_progress(on_progress: Progress | None, done: int, total: int) -> None:
    """``on_progress(done, total)``, sync or async."""
    if on_progress is not None:
        result = on_progress(done, total)
        if inspect.isawaitable(result):
            await result


async def generate_day(client: httpx.AsyncClient, *, orders: int, refund_ratio: float = 0.10,
                       seed: int = 0, returning_ratio: float = 0.7,
                       on_progress: Progress | None = None) -> TrafficSummary:
    """Place ``orders`` paid orders (1-5 lines, tax, shipping, some coupons and fees, guests and
    returning customers, a few in EUR), then refund ``refund_ratio`` of them (full, by line,
    or amount only). ``on_progress(done, total)`` may be sync or async."""
    rng = random.Random(seed)
    catalog = await load_catalog(client)
    if not catalog:
        raise RuntimeError("the store has no purchasable products: run seed_catalog first")
    shopper, summary = Shopper(rng, catalog, orders), TrafficSummary()
    placed: list[dict] = []
    for done in range(1, orders + 1):
        registered = rng.random() < returning_ratio
        person = rng.choice(shopper.pool) if registered else shopper.guest()
        customer_id = await _customer_id(client, person, summary) if registered else 0
        order = _ok(await client.post(API + "orders", json=shopper.order_body(person, customer_id)))
        placed.append(order)
        summary.order_ids.append(order["id"])
        summary.order_totals[order["currency"]] += Decimal(order["total"])
        await report_progress(on_progress, done, orders)
    count = min(len(placed), max(1, round(orders * refund_ratio))) if refund_ratio > 0 and placed else 0
    for order in rng.sample(placed, k=count):
        await _refund(client, order, rng, summary)
    return summary


async def _main(args: argparse.Namespace) -> None:
    verify: Any = args.ca_file or not args.insecure
    async with httpx.AsyncClient(base_url=args.url.rstrip("/") + "/", verify=verify, timeout=60,
                                 auth=(args.consumer_key, args.consumer_secret)) as client:
        if args.seed_catalog:
            print(f"seeded {len(await seed_catalog(client))} products")
        summary = await generate_day(client, orders=args.orders, refund_ratio=args.refund_ratio,
                                     seed=args.seed, returning_ratio=args.returning_ratio,
                                     on_progress=lambda d, t: print(f"\r{d}/{t} orders", end="", flush=True))
        print("\n" + summary.describe())


def main() -> None:
    parser = argparse.ArgumentParser(description="Drive a day of WooCommerce traffic into a store.")
    parser.add_argument("--url", required=True, help="the store's home URL, e.g. https://127.0.0.1:8441/")
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--refund-ratio", type=float, default=0.10)
    parser.add_argument("--returning-ratio", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--consumer-key", default="ck_test")
    parser.add_argument("--consumer-secret", default="cs_test")
    parser.add_argument("--ca-file", help="CA bundle trusted for the store's TLS certificate")
    parser.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    parser.add_argument("--seed-catalog", action="store_true", help="seed products and coupons first")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
