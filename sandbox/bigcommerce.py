"""BigCommerce REST Management API (v2 + v3) simulator: an in-memory store.

Written from shared/reference/bigcommerce.md and the OpenAPI files in
shared/specs/bigcommerce/ (section numbers below are the reference's), never from client code.

Simulated
---------
* ``/stores/{store_hash}/v2/...`` and ``/v3/...`` (§1) with ``X-Auth-Token`` (no Bearer; an
  ``Authorization`` header is ignored); 401 without a known token, 415 for a body that is not
  JSON, 404 for unknown routes and stores.
* v2 (§2, §3): bare arrays, ``page``/``limit`` (max 250, 413 above), **204 with no body for
  an empty list**, RFC-2822 dates, money as 4-decimal strings, errors as
  ``[{"status", "message"}]``. Orders: create (computing per-line tax from the product's tax
  class and the shipping address — billing when there is none —, shipping/handling/wrapping
  tax, coupons and manual discounts, the transactional currency), get, list with the
  documented filters and ``sort``, count, update (status, notes), archive; sub-resources
  ``products``, ``shipping_addresses``, ``coupons``, ``taxes`` (``details=true`` gives one
  row per line and rate with ``order_product_id`` and ``line_item_type``), ``shipments``
  (POST ships units; the order becomes Shipped / Partially Shipped).
* v3 (§2, §4-§8, §10): ``{data, meta}`` envelopes with ``meta.pagination``, v3 error
  objects. Transactions (204 when none), capture (async: ``capture pending`` first), refund
  quotes and refunds (422 when the payments differ from what the quote offered; refunds on
  one order strictly one at a time), refund listings; customers (``email:in``, batch create
  of at most 10); catalog products and variants (``sku``, ``sku:in``, batch updates of at
  most 10 products / 50 variants, 413 above, 207 / ``batch_errors`` for bad items);
  absolute inventory adjustments (at most 2000 items, applied asynchronously); hooks.
* Rate limits (§9): a fixed window per store shared by every client, the four
  ``X-Rate-Limit-*`` headers on every API response, 429 (plus ``X-Retry-After``) past the
  quota.
* Webhooks (§10): stub payloads (``scope``, ``store_id`` string, ``data``, SHA-1 ``hash``,
  ``created_at``, ``producer``) POSTed to each active hook's destination with the hook's
  custom headers, optionally Standard-Webhooks signed with the client secret; 2xx is
  success; failures retried on the documented schedule (scaled by ``retry_time_scale``),
  the hook deactivated (``is_active: false``) after the last retry fails (events still
  queued for it are then dropped, logged as ``kind: "dropped"``); the per-domain blocklist
  (2-minute window, >= 100 requests, < 90 % success, 3 minutes).
* Control: ``POST /_sandbox/webhooks/wait-idle`` (``{"timeout"?, "retries"?}``) waits until no
  delivery is queued or in flight, and with ``retries: true`` until no failed one waits for
  its next attempt either (``/_sandbox/state`` shows ``queued`` and ``retrying``).
* Faults: ``sandbox.faults`` on every API request; ``/_sandbox/`` control routes (no auth).

Unconfirmed -> conservative choices
-----------------------------------
* A concurrent refund on an order whose refund is still being processed is answered
  **409** with a v3 error body (the real error is undocumented, §5.2). Processing takes
  ``refund_processing_ms`` so overlaps are observable.
* Amount-bound refund items (SHIPPING, HANDLING) are in the store's price basis (excl. tax
  for tax-exclusive stores, tax added in proportion to the line's tax); ``total_refund_amount``
  and a refund's ``total_amount`` always include tax (``tax_inclusive: true``). A PRODUCT
  item refunds its share of the discounted line and of its tax, each rounded to cents.
  Refunds never change the order's totals; ``refunded_amount`` stays ``0`` as the spec says.
* v2 order create has no coupon field (coupons are applied at checkout): the sandbox accepts
  an extra ``coupon_code`` standing in for a checkout. Payments are not taken by v2 create
  either: ``POST /_sandbox/orders/{id}/payments`` records what a checkout's gateway would
  (a ``purchase``, an ``authorization``, or for offline methods a ``settled`` transaction).
* v2 ``limit`` max 250 (413 above); Incomplete (status 0) and archived orders are left out
  of lists unless asked for (``status_id=0``); ``min_/max_date_*`` are inclusive.
* The order's shipping, handling and wrapping go to its first shipping address; shipping
  and handling are taxed with ``shipping_tax_class_id``, wrapping with the default class.
  Tax-inclusive stores (``prices_include_tax``) derive net amounts per line.
  ``sales_tax_id`` of a manual tax rate is the rate's configured code.
* The webhook ``hash`` is SHA-1 of the compact JSON of ``data``; ``created_at`` is the event
  time; a new hook fires at once (not after "up to a minute"); the 443/HTTPS destination
  rule is only enforced with ``enforce_destination_rules`` (the test receiver listens on a
  loopback port); ``store/hook/deliveryException`` and the 90-day inactivity rule are not
  simulated; a blocked or failed delivery is one attempt of the schedule.
* The 401 body is the v3 error object on v3 routes and the v2 array on v2 routes, with the
  v3 spec's title. ``expire_tokens`` has no effect (API account tokens do not expire).
* Default quota: 5000 requests per 30 s window (sandbox stores are "by plan", §9), so demos
  do not crawl; tests set their own.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import email.utils
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import Faults, fault_routes, lost_response

ERROR_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"
UNAUTHORIZED = ("Unauthorized - the v3 Auth client ID or token in the request are not a valid "
                "combination for this store.")
CENT = Decimal("0.01")
ZERO = Decimal(0)
MAX_LIMIT = 250
STATUSES = {0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded",
            5: "Cancelled", 6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup",
            9: "Awaiting Shipment", 10: "Completed", 11: "Awaiting Fulfillment",
            12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded"}
RETRY_SCHEDULE = (60, 180, 300, 600, 900, 1800, 3600, 7200, 21600, 50400, 86400)
TAX_CLASSES = {0: "Default Tax Class", 1: "Non-Taxable Products", 2: "Reduced Rate", 3: "Shipping"}
EU = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
      "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")
US_STATES = {"California": "CA", "New York": "NY", "Texas": "TX", "Oregon": "OR",
             "Washington": "WA"}
DEFAULT_TAX_RATES = [
    {"id": 1, "name": "CA Sales Tax", "sales_tax_id": "CA-SALES-TAX", "rate": "8.25",
     "tax_class_ids": [0], "countries": ["US"], "states": ["CA"], "shipping": True},
    {"id": 2, "name": "CA Reduced Rate", "sales_tax_id": "CA-REDUCED-RATE", "rate": "2.5",
     "tax_class_ids": [2], "countries": ["US"], "states": ["CA"], "shipping": False},
    {"id": 3, "name": "VAT", "sales_tax_id": "EU-VAT", "rate": "20", "tax_class_ids": [0],
     "countries": list(EU), "states": [], "shipping": True},
]
GATEWAYS = {  # gateway -> (transaction method, order payment_method, offline)
    "braintree": ("credit_card", "Credit Card", False),
    "paypalexpress": ("electronic_wallet", "PayPal", False),
    "stripe": ("credit_card", "Credit Card", False),
    "testgateway": ("credit_card", "Test Payment Gateway", False),
    "bankdeposit": ("offline", "Bank Deposit", True),
    "cod": ("offline", "Cash on Delivery", True),
}


# --------------------------------------------------------------------------------------------
# Errors, money, dates, JSON
# --------------------------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, title: str, *, errors: dict | None = None,
                 wrap_data: bool = False, headers: dict | None = None,
                 media_type: str = "application/json") -> None:
        super().__init__(title)
        self.status, self.title, self.errors = status, title, errors
        self.wrap_data, self.headers, self.media_type = wrap_data, headers or {}, media_type

    def body(self, version: str) -> Any:
        if version == "v2":
            return [{"status": self.status, "message": self.title}]
        entry: dict[str, Any] = {"status": self.status, "title": self.title, "type": ERROR_TYPE}
        if self.errors is not None:
            entry["errors"] = self.errors
        return {"data": [entry]} if self.wrap_data else entry


def q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def dec(value: Any, name: str) -> Decimal:
    try:
        if isinstance(value, float):
            value = repr(value)
        result = Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        raise ApiError(400, f"The field '{name}' is invalid.") from None
    if not result.is_finite():
        raise ApiError(400, f"The field '{name}' is invalid.")
    return result


def money4(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.0001")), "f")


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc2822(moment: datetime | None) -> str:
    return "" if moment is None else email.utils.format_datetime(moment.astimezone(UTC))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def parse_date(value: str, name: str) -> datetime:
    text = value.strip()
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"The field '{name}' is invalid.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _encode(value: Any, v2: bool) -> str:
    if isinstance(value, Decimal):
        return json.dumps(money4(value)) if v2 else format(value, "f")
    if isinstance(value, datetime):
        return json.dumps(rfc2822(value) if v2 else iso(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v, v2)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v, v2) for v in value) + "]"
    return json.dumps(value)


def dumps(data: Any, version: str) -> bytes:
    """v2 money as 4-decimal strings and RFC-2822 dates; v3 money as exact numbers, ISO dates."""
    return _encode(data, version == "v2").encode()


def compact_json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=False, default=str).encode()


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

@dataclass
class Variant:
    id: int
    product_id: int
    sku: str
    price: Decimal | None = None  # None: inherit the product's
    cost_price: Decimal | None = None
    inventory_level: int = 0
    option_values: list = field(default_factory=list)
    is_base: bool = False


@dataclass
class Product:
    id: int
    name: str
    sku: str
    price: Decimal
    tax_class_id: int = 0
    cost_price: Decimal = ZERO
    inventory_level: int = 0
    inventory_tracking: str = "product"
    date_modified: datetime = field(default_factory=now_utc)
    variant_ids: list[int] = field(default_factory=list)
    base_variant_id: int = 0


@dataclass
class Hook:
    id: int
    client_id: str
    scope: str
    destination: str
    headers: dict | None
    is_active: bool
    created_at: int
    updated_at: int


@dataclass
class Settings:
    """Every field can be changed at run time through ``/_sandbox/settings``."""

    store_hash: str = "abc123"
    store_id: str = "1001234"
    access_token: str = "bc-sandbox-token"
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    sign_deliveries: bool = False  # Standard Webhooks headers, keyed by client_secret
    currency: str = "USD"
    currencies: list = field(default_factory=lambda: ["USD", "EUR", "GBP", "CAD"])
    prices_include_tax: bool = False
    shipping_tax_class_id: int = 0
    tax_rates: list = field(default_factory=lambda: copy.deepcopy(DEFAULT_TAX_RATES))
    rate_limit_quota: int = 5000
    rate_limit_window_ms: int = 30000
    delivery_timeout: float = 10.0
    retry_schedule: list = field(default_factory=lambda: list(RETRY_SCHEDULE))
    retry_time_scale: float = 1.0  # 0.001 turns the 48 h schedule into ~3 minutes
    blocklist_window_s: float = 120.0
    blocklist_min_requests: int = 100
    blocklist_success_ratio: float = 0.9
    blocklist_seconds: float = 180.0
    refund_processing_ms: int = 50
    async_delay_ms: int = 20  # captures and inventory adjustments land after this
    enforce_destination_rules: bool = False
    delivery_verify: Any = True  # CA file for HTTPS receivers
    deliver_async: bool = True

    def update(self, values: dict) -> None:
        known = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise KeyError(f"unknown setting {key!r}")
            setattr(self, key, value)


# --------------------------------------------------------------------------------------------
# Pricing
# --------------------------------------------------------------------------------------------

def rates_for(settings: Settings, tax_class_id: int, country: str, state: str, *,
              shipping: bool = False) -> list[dict]:
    state_code = US_STATES.get(state, state)
    out = []
    for rate in settings.tax_rates:
        if tax_class_id not in rate.get("tax_class_ids", [0]):
            continue
        if shipping and not rate.get("shipping", True):
            continue
        if rate.get("countries") and country not in rate["countries"]:
            continue
        if rate.get("states") and state_code not in rate["states"]:
            continue
        out.append(rate)
    return out


def split_tax(amount: Decimal, rates: list[dict], inclusive: bool) -> tuple[Decimal, dict[int, Decimal]]:
    """(net, tax per rate id) of an amount in the store's price basis, rounded per rate."""
    total_rate = sum((Decimal(str(r["rate"])) for r in rates), ZERO)
    if not rates or total_rate == 0:
        return amount, {}
    if not inclusive:
        return amount, {r["id"]: q2(amount * Decimal(str(r["rate"])) / 100) for r in rates}
    tax_total = q2(amount * total_rate / (100 + total_rate))
    taxes, given = {}, ZERO
    for i, r in enumerate(rates):
        share = (tax_total - given if i == len(rates) - 1
                 else q2(amount * Decimal(str(r["rate"])) / (100 + total_rate)))
        taxes[r["id"]] = share
        given += share
    return amount - tax_total, taxes


def allocate(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split ``total`` in cents proportionally to ``weights`` (largest remainder)."""
    cents = int((total / CENT).to_integral_value(ROUND_HALF_UP))
    whole = sum(weights, ZERO)
    if whole <= 0 or cents <= 0:
        return [ZERO] * len(weights)
    raw = [Decimal(cents) * w / whole for w in weights]
    base = [int(r) for r in raw]
    rest = cents - sum(base)
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - base[i], reverse=True)[:rest]:
        base[i] += 1
    return [Decimal(b) * CENT for b in base]


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

class Store:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery_transport: httpx.AsyncBaseTransport | None = None
        self._http: httpx.AsyncClient | None = None
        self._worker: asyncio.Task | None = None
        self.reset()

    def reset(self) -> None:
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.customers: dict[int, dict] = {}
        self.coupons: dict[str, dict] = {}
        self.orders: dict[int, dict] = {}
        self.refunds: dict[int, dict] = {}
        self.hooks: dict[int, Hook] = {}
        self.deliveries: list[dict] = []
        self.seq: dict[str, int] = {}
        self.window_start = time.monotonic()
        self.window_count = 0
        self.refund_locks: dict[int, asyncio.Lock] = {}
        self.queue: deque = deque()
        self.inflight = 0
        self.retrying = 0  # failed deliveries waiting for their next attempt
        self.outage_next = 0
        self.duplicate_next = 0
        self.domain_log: dict[str, deque] = {}
        self.blocked_until: dict[str, float] = {}
        self.timers: list[asyncio.TimerHandle] = []

    def next_id(self, kind: str, start: int = 1) -> int:
        self.seq[kind] = self.seq.get(kind, start - 1) + 1
        return self.seq[kind]

    # ---- rate limit (§9) ----------------------------------------------------------------
    def spend(self) -> tuple[bool, dict[str, str]]:
        s = self.settings
        now = time.monotonic()
        if (now - self.window_start) * 1000 >= s.rate_limit_window_ms:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        reset_ms = max(0, int(s.rate_limit_window_ms - (now - self.window_start) * 1000))
        left = max(0, s.rate_limit_quota - self.window_count)
        headers = {"X-Rate-Limit-Time-Window-Ms": str(s.rate_limit_window_ms),
                   "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
                   "X-Rate-Limit-Requests-Quota": str(s.rate_limit_quota),
                   "X-Rate-Limit-Requests-Left": str(left)}
        return self.window_count <= s.rate_limit_quota, headers

    # ---- catalog ------------------------------------------------------------------------
    def product_by_sku(self, sku: str) -> Product | None:
        return next((p for p in self.products.values() if p.sku == sku), None)

    def variant_by_sku(self, sku: str) -> Variant | None:
        return next((v for v in self.variants.values() if v.sku == sku), None)

    def sku_taken(self, sku: str) -> bool:
        return bool(sku) and any(v.sku == sku for v in self.variants.values())

    def add_product(self, spec: dict) -> Product:
        sku = str(spec.get("sku") or "")
        if self.sku_taken(sku):
            raise ApiError(409, f"The product SKU '{sku}' is already in use.")
        product = Product(id=self.next_id("product", 100), name=str(spec.get("name") or sku),
                          sku=sku, price=dec(spec.get("price", "0"), "price"),
                          tax_class_id=int(spec.get("tax_class_id", 0)),
                          cost_price=dec(spec.get("cost_price", "0"), "cost_price"),
                          inventory_level=int(spec.get("inventory_level", 0)))
        self.products[product.id] = product
        specs = spec.get("variants") or []
        product.inventory_tracking = "variant" if specs else "product"
        base = Variant(self.next_id("variant", 500), product.id, sku, None,
                       inventory_level=product.inventory_level, is_base=True)
        if not specs:
            self.variants[base.id] = base
            product.variant_ids.append(base.id)
            product.base_variant_id = base.id
        for v in specs:
            v_sku = str(v.get("sku") or "")
            if self.sku_taken(v_sku) or v_sku == sku:
                raise ApiError(409, f"The variant SKU '{v_sku}' is already in use.")
            variant = Variant(self.next_id("variant", 500), product.id, v_sku,
                              dec(v["price"], "price") if v.get("price") not in (None, "") else None,
                              inventory_level=int(v.get("inventory_level", 0)),
                              option_values=list(v.get("option_values") or []))
            self.variants[variant.id] = variant
            product.variant_ids.append(variant.id)
        return product

    def variant_price(self, variant: Variant) -> Decimal:
        return variant.price if variant.price is not None else self.products[variant.product_id].price

    # ---- orders -------------------------------------------------------------------------
    def _customer_or_guest(self, body: dict) -> int:
        customer_id = int(dec(body.get("customer_id") or 0, "customer_id"))
        if customer_id and customer_id not in self.customers:
            raise ApiError(400, f"The customer with ID {customer_id} does not exist.")
        return customer_id

    def _order_line(self, order_id: int, entry: dict, index: int, inclusive: bool,
                    location: tuple[str, str]) -> dict:
        if not isinstance(entry, dict):
            raise ApiError(400, "The field 'products' is invalid.")
        quantity = int(dec(entry.get("quantity", 1), "quantity"))
        if quantity < 1:
            raise ApiError(400, "The field 'quantity' is invalid.")
        variant: Variant | None = None
        if entry.get("product_id") is not None:
            product = self.products.get(int(dec(entry["product_id"], "product_id")))
            if product is None:
                raise ApiError(400, f"Product ID {entry['product_id']} does not exist.")
            if entry.get("variant_id") is not None:
                variant = self.variants.get(int(dec(entry["variant_id"], "variant_id")))
                if variant is None or variant.product_id != product.id:
                    raise ApiError(400, f"Variant ID {entry['variant_id']} does not exist.")
            elif product.inventory_tracking == "variant":
                raise ApiError(400, f"Product ID {product.id} has options: product_options or "
                                    "variant_id is required.")
            else:
                variant = self.variants[product.base_variant_id]
            unit = dec(entry["price_inc_tax" if inclusive else "price_ex_tax"], "price") \
                if entry.get("price_ex_tax") is not None and entry.get("price_inc_tax") is not None \
                else self.variant_price(variant)
            name, sku, tax_class = product.name, variant.sku, product.tax_class_id
            product_id, variant_id = product.id, variant.id
        else:
            if not entry.get("name"):
                raise ApiError(400, "The field 'name' is invalid.")
            unit = dec(entry.get("price_inc_tax" if inclusive else "price_ex_tax"), "price_ex_tax")
            name, sku, tax_class = str(entry["name"]), str(entry.get("sku") or ""), 0
            product_id, variant_id = 0, None
        return {"id": self.next_id("order_product", 1), "order_id": order_id,
                "product_id": product_id, "variant_id": variant_id, "name": name,
                "name_customer": name, "name_merchant": name, "sku": sku, "type": "physical",
                "quantity": quantity, "unit": unit, "gross": unit * quantity,
                "rates": rates_for(self.settings, tax_class, *location), "tax_class_id": tax_class,
                "discounts": [], "quantity_refunded": 0}

    def create_order(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "The request body is invalid.")
        billing = body.get("billing_address")
        if not isinstance(billing, dict) or len(str(billing.get("zip") or "")) < 2:
            raise ApiError(400, "The field 'billing_address.zip' is invalid.")
        items = body.get("products")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "The field 'products' is invalid.")
        currency = str(body.get("default_currency_code") or self.settings.currency).upper()
        if currency not in self.settings.currencies:
            raise ApiError(400, f"The currency '{currency}' is not enabled for this store.")
        status_id = int(dec(body.get("status_id", 1), "status_id"))
        if status_id not in STATUSES:
            raise ApiError(400, "The field 'status_id' is invalid.")
        customer_id = self._customer_or_guest(body)
        coupon = None
        if body.get("coupon_code"):
            coupon = self.coupons.get(str(body["coupon_code"]).lower())
            if coupon is None:
                raise ApiError(400, f"The coupon code '{body['coupon_code']}' is invalid.")
        addresses = body.get("shipping_addresses") or []
        if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
            raise ApiError(400, "The field 'shipping_addresses' is invalid.")
        tax_address = addresses[0] if addresses else billing
        location = (str(tax_address.get("country_iso2") or ""), str(tax_address.get("state") or ""))
        inclusive = self.settings.prices_include_tax
        order_id = self.next_id("order", 100)
        lines = [self._order_line(order_id, e, i, inclusive, location) for i, e in enumerate(items)]
        now = now_utc()
        order = {
            "id": order_id, "customer_id": customer_id, "date_created": now, "date_modified": now,
            "status_id": status_id, "currency": currency, "inclusive": inclusive,
            "billing_address": {k: str(billing.get(k) or "") for k in (
                "first_name", "last_name", "company", "street_1", "street_2", "city", "state",
                "zip", "country", "country_iso2", "phone", "email")},
            "lines": lines, "coupon": coupon, "payment_method": str(body.get("payment_method") or ""),
            "payment_provider_id": str(body.get("payment_provider_id") or ""), "payment_status": "",
            "customer_message": str(body.get("customer_message") or ""),
            "staff_notes": str(body.get("staff_notes") or ""), "is_deleted": False,
            "transactions": [], "refund_ids": [], "external_source": body.get("external_source"),
        }
        self._apply_discounts(order, coupon, dec(body.get("discount_amount") or 0, "discount_amount"))
        order["addresses"] = self._addresses(order, addresses, body, coupon, location)
        self._totals(order)
        self.orders[order_id] = order
        self.emit("store/order/created", {"type": "order", "id": order_id})
        return order

    def _apply_discounts(self, order: dict, coupon: dict | None, manual: Decimal) -> None:
        lines = order["lines"]
        gross = [ln["gross"] for ln in lines]
        order["coupon_discount"] = ZERO
        if coupon and coupon["type"] in ("percentage_discount", "per_total_discount"):
            if coupon["type"] == "percentage_discount":
                shares = [q2(g * coupon["amount"] / 100) for g in gross]
            else:
                shares = allocate(min(coupon["amount"], sum(gross, ZERO)), gross)
            for ln, share in zip(lines, shares):
                if share:
                    ln["discounts"].append({"id": coupon["id"], "amount": share, "name": coupon["name"],
                                            "code": coupon["code"], "target": "order"})
            order["coupon_discount"] = sum(shares, ZERO)
        order["discount_amount"] = min(manual, sum(gross, ZERO) - order["coupon_discount"])
        left = [g - sum((d["amount"] for d in ln["discounts"]), ZERO) for g, ln in zip(gross, lines)]
        for ln, share in zip(lines, allocate(order["discount_amount"], left)):
            if share:
                ln["discounts"].append({"id": "manual-discount", "amount": share,
                                        "name": "Manual Discount", "code": None, "target": "order"})
        for ln in lines:
            paid = ln["gross"] - sum((d["amount"] for d in ln["discounts"]), ZERO)
            ln["net"], ln["taxes"] = split_tax(paid, ln["rates"], order["inclusive"])
            ln["undiscounted_net"], ln["undiscounted_taxes"] = split_tax(ln["gross"], ln["rates"], order["inclusive"])

    def _addresses(self, order: dict, addresses: list[dict], body: dict, coupon: dict | None,
                   location: tuple[str, str]) -> list[dict]:
        s, inclusive = self.settings, order["inclusive"]
        shipping = dec(body.get("base_shipping_cost") or 0, "base_shipping_cost")
        if body.get("shipping_cost_ex_tax") is not None and body.get("shipping_cost_inc_tax") is not None:
            shipping = dec(body["shipping_cost_inc_tax" if inclusive else "shipping_cost_ex_tax"],
                           "shipping_cost_ex_tax")
        if coupon and coupon["type"] == "free_shipping":
            shipping = ZERO
        handling = dec(body.get("base_handling_cost") or 0, "base_handling_cost")
        wrapping = dec(body.get("base_wrapping_cost") or 0, "base_wrapping_cost")
        ship_rates = rates_for(s, s.shipping_tax_class_id, *location, shipping=True)
        order["wrapping"] = {"base": wrapping, "rates": rates_for(s, 0, *location),
                             **dict(zip(("net", "taxes"), split_tax(wrapping, rates_for(s, 0, *location), inclusive)))}
        out = []
        for i, raw in enumerate(addresses):
            base_ship = shipping if i == 0 else ZERO
            base_handling = handling if i == 0 else ZERO
            net, taxes = split_tax(base_ship, ship_rates, inclusive)
            h_net, h_taxes = split_tax(base_handling, ship_rates, inclusive)
            out.append({"id": self.next_id("order_address", 1), "order_id": order["id"],
                        "fields": {k: str(raw.get(k) or "") for k in (
                            "first_name", "last_name", "company", "street_1", "street_2", "city",
                            "state", "zip", "country", "country_iso2", "phone", "email")},
                        "shipping_method": str(raw.get("shipping_method") or ""),
                        "base": base_ship, "net": net, "taxes": taxes, "rates": ship_rates,
                        "handling_base": base_handling, "handling_net": h_net, "handling_taxes": h_taxes})
        if not addresses and (shipping or handling):
            raise ApiError(400, "Shipping or handling needs a shipping address.")
        return out

    def _totals(self, order: dict) -> None:
        lines, addresses, wrap = order["lines"], order["addresses"], order["wrapping"]
        tax = sum((sum(ln["taxes"].values(), ZERO) for ln in lines), ZERO)
        net = sum((ln["net"] for ln in lines), ZERO)
        for a in addresses:
            tax += sum(a["taxes"].values(), ZERO) + sum(a["handling_taxes"].values(), ZERO)
            net += a["net"] + a["handling_net"]
        tax += sum(wrap["taxes"].values(), ZERO)
        net += wrap["net"]
        order["total_ex_tax"], order["total_tax"], order["total_inc_tax"] = net, tax, net + tax

    def order_status(self, order: dict, status_id: int) -> None:
        previous = order["status_id"]
        if status_id == previous:
            return
        order["status_id"] = status_id
        order["date_modified"] = now_utc()
        self.emit("store/order/statusUpdated", {"type": "order", "id": order["id"], "status": {
            "previous_status_id": previous, "new_status_id": status_id}})

    def touch(self, order: dict) -> None:
        order["date_modified"] = now_utc()
        self.emit("store/order/updated", {"type": "order", "id": order["id"]})

    def update_order(self, order: dict, body: dict) -> None:
        if not isinstance(body, dict) or not body:
            raise ApiError(400, "The request body is invalid.")
        for key in ("staff_notes", "customer_message"):
            if key in body:
                order[key] = str(body[key] or "")
        if "status_id" in body:
            status_id = int(dec(body["status_id"], "status_id"))
            if status_id not in STATUSES:
                raise ApiError(400, "The field 'status_id' is invalid.")
            self.order_status(order, status_id)
        self.touch(order)

    # ---- payments -----------------------------------------------------------------------
    def add_transaction(self, order: dict, event: str, amount: Decimal, gateway: str,
                        reference: str = "") -> dict:
        method, _, _ = GATEWAYS.get(gateway, ("custom", gateway, True))
        txn = {"id": self.next_id("transaction", 9000), "order_id": str(order["id"]),
               "event": event, "method": method, "amount": amount, "currency": order["currency"],
               "gateway": gateway, "gateway_transaction_id": reference or secrets.token_hex(8),
               "date_created": now_utc(), "test": False, "status": "ok", "fraud_review": False,
               "reference_transaction_id": None, "offline": None, "custom": None,
               "payment_method_id": f"{gateway}.card" if method == "credit_card" else None}
        order["transactions"].append(txn)
        self.emit("store/order/transaction/created", {
            "type": "transaction", "order_id": str(order["id"]), "transaction_id": txn["id"],
            "transaction_status": "ok", "transaction_type": event})
        return txn

    def take_payment(self, order: dict, gateway: str, capture: bool, reference: str = "") -> dict:
        """What a checkout's gateway records (control surface; v2 create takes no payment)."""
        if gateway not in GATEWAYS:
            raise ApiError(422, f"Unknown payment gateway '{gateway}'.")
        method, display, offline = GATEWAYS[gateway]
        event = "settled" if offline else ("purchase" if capture else "authorization")
        txn = self.add_transaction(order, event, order["total_inc_tax"], gateway, reference)
        order["payment_method"], order["payment_provider_id"] = display, txn["gateway_transaction_id"]
        order["payment_status"] = "captured" if event != "authorization" else "authorized"
        order["gateway"] = gateway
        target = 11 if event != "authorization" else 7
        if order["status_id"] in (0, 1, 7):
            self.order_status(order, target)
        self.touch(order)
        return txn

    def capture(self, order: dict) -> None:
        if order.get("payment_status") != "authorized":
            raise ApiError(422, "The order has no authorized payment to capture.")
        order["payment_status"] = "capture pending"
        self.touch(order)

        def settle() -> None:
            auth = next(t for t in order["transactions"] if t["event"] == "authorization")
            txn = self.add_transaction(order, "capture", auth["amount"], auth["gateway"])
            txn["reference_transaction_id"] = auth["id"]
            order["payment_status"] = "captured"
            if order["status_id"] in (0, 1, 7):
                self.order_status(order, 11)
            self.touch(order)

        self.later(settle)

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
        offline = GATEWAYS.get(gateway, ("", "", True))[2]
        methods = [[{"provider_id": gateway, "provider_description": GATEWAYS.get(gateway, ("", gateway))[1],
                     "amount": total, "offline": offline, "offline_provider": offline,
                     "offline_reason": "This is an offline payment provider." if offline else ""}]]
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
        offered = {o["provider_id"]: o["amount"] for method in quote["refund_methods"] for o in method}
        checked, paid = [], ZERO
        for p in payments:
            if not isinstance(p, dict):
                raise ApiError(422, "JSON data is missing or invalid", errors={"payments": "error.type.object"})
            provider = str(p.get("provider_id") or "")
            amount = q2(dec(p.get("amount", 0), "amount"))
            if provider == "storecredit" and not order["customer_id"]:
                raise ApiError(422, "Unable to provide store credit for a guest customer.", wrap_data=True)
            if provider not in offered or (not overridden and amount != offered[provider]):
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

    # ---- webhooks (§10) -----------------------------------------------------------------
    def emit(self, scope: str, data: dict) -> None:
        for hook in list(self.hooks.values()):
            if hook.is_active and scope_matches(hook.scope, scope):
                payload = {"scope": scope, "store_id": self.settings.store_id, "data": data,
                           "hash": hashlib.sha1(compact_json(data)).hexdigest(),
                           "created_at": int(time.time()),
                           "producer": f"stores/{self.settings.store_hash}"}
                self.queue.append({"hook_id": hook.id, "payload": payload,
                                   "event_id": f"msg_{uuid.uuid4().hex}", "attempt": 0})
        self._kick()

    def _kick(self) -> None:
        if not self.settings.deliver_async or (self._worker is not None and not self._worker.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._worker = loop.create_task(self._run_queue(), name="bigcommerce-webhooks")

    async def _run_queue(self) -> None:
        while self.queue:
            job = self.queue.popleft()
            self.inflight += 1
            try:
                await self._deliver(job)
            finally:
                self.inflight -= 1

    async def wait_idle(self, timeout: float = 10.0, *, retries: bool = False) -> bool:
        """Until nothing is queued or in flight (and, with ``retries``, no failed delivery
        waits for another attempt)."""
        deadline = time.monotonic() + timeout
        self._kick()
        while self.queue or self.inflight or (retries and self.retrying):
            if time.monotonic() > deadline:
                return False
            self._kick()
            await asyncio.sleep(0.005)
        return True

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            verify = self.settings.delivery_verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            self._http = httpx.AsyncClient(transport=self.delivery_transport, verify=verify,
                                           follow_redirects=False)
        return self._http

    def _headers(self, hook: Hook, job: dict, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "BigCommerce-Webhooks"}
        headers.update({str(k): str(v) for k, v in (hook.headers or {}).items()})
        if self.settings.sign_deliveries:
            stamp = str(int(time.time()))
            signed = f"{job['event_id']}.{stamp}.".encode() + body
            sig = base64.b64encode(hmac.new(self.settings.client_secret.encode(), signed,
                                            hashlib.sha256).digest()).decode()
            headers.update({"webhook-id": job["event_id"], "webhook-timestamp": stamp,
                            "webhook-signature": f"v1,{sig}"})
        return headers

    async def _post(self, url: str, body: bytes, headers: dict) -> tuple[int | None, str | None]:
        try:
            resp = await self._client().post(url, content=body, headers=headers,
                                             timeout=float(self.settings.delivery_timeout))
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as exc:
            return None, f"connection failed: {type(exc).__name__}"
        return resp.status_code, None

    async def _deliver(self, job: dict) -> None:
        hook = self.hooks.get(job["hook_id"])
        if hook is None:
            return
        if not hook.is_active:  # deactivated meanwhile: the event is not delivered
            self._log(hook, job, None, "hook inactive: not delivered", kind="dropped")
            return
        domain = urlsplit(hook.destination).hostname or ""
        body = compact_json(job["payload"])
        headers = self._headers(hook, job, body)
        if self.blocked_until.get(domain, 0) > time.monotonic():
            status, error = None, "destination domain blocklisted"
        elif self.outage_next > 0:
            self.outage_next -= 1
            status, error = None, "connection failed: ConnectError"
        else:
            status, error = await self._post(hook.destination, body, headers)
            self._track(domain, status is not None and 200 <= status < 300)
        ok = status is not None and 200 <= status < 300
        self._log(hook, job, status, error)
        if self.duplicate_next > 0 and ok:
            self.duplicate_next -= 1
            again = await self._post(hook.destination, body, headers)
            self._log(hook, job, *again, duplicate=True)
        if not ok:
            self._retry_or_deactivate(hook, job)

    def _track(self, domain: str, ok: bool) -> None:
        s, now = self.settings, time.monotonic()
        log = self.domain_log.setdefault(domain, deque())
        log.append((now, ok))
        while log and now - log[0][0] > s.blocklist_window_s:
            log.popleft()
        if len(log) >= s.blocklist_min_requests and sum(o for _, o in log) / len(log) < s.blocklist_success_ratio:
            self.blocked_until[domain] = now + s.blocklist_seconds
            log.clear()

    def _retry_or_deactivate(self, hook: Hook, job: dict) -> None:
        schedule = self.settings.retry_schedule
        if job["attempt"] >= len(schedule):
            hook.is_active = False
            hook.updated_at = int(time.time())
            self._log(hook, job, None, "retries exhausted: hook deactivated", kind="deactivated")
            return
        delay = float(schedule[job["attempt"]]) * float(self.settings.retry_time_scale)
        retry = {**job, "attempt": job["attempt"] + 1}
        self.retrying += 1

        def requeue() -> None:
            self.retrying -= 1
            self.queue.append(retry)
            self._kick()

        self.later(requeue, delay)

    def _log(self, hook: Hook, job: dict, status: int | None, error: str | None, *,
             duplicate: bool = False, kind: str = "delivery") -> None:
        payload = job["payload"]
        self.deliveries.append({
            "kind": kind, "webhook_id": hook.id, "scope": payload["scope"],
            "resource_id": payload["data"].get("id", payload["data"].get("order_id")),
            "hash": payload["hash"], "attempt": job["attempt"], "status": status, "error": error,
            "duplicate": duplicate, "url": hook.destination,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds")})

    async def aclose(self) -> None:
        for timer in self.timers:
            timer.cancel()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        if self._http is not None:
            await self._http.aclose()

    def counts(self) -> dict:
        return {"orders": len(self.orders), "refunds": len(self.refunds),
                "products": len(self.products), "variants": len(self.variants),
                "customers": len(self.customers), "hooks": len(self.hooks),
                "active_hooks": sum(h.is_active for h in self.hooks.values()),
                "deliveries": len(self.deliveries), "queued": len(self.queue),
                "retrying": self.retrying,
                "rate_limit_window_count": self.window_count}

    # ---- JSON views ---------------------------------------------------------------------
    def link(self, order_id: int, what: str) -> dict:
        return {"url": f"https://api.bigcommerce.com/stores/{self.settings.store_hash}/v2/orders/{order_id}/{what}",
                "resource": f"/orders/{order_id}/{what}"}

    def order_json(self, o: dict) -> dict:
        lines, addresses, wrap = o["lines"], o["addresses"], o["wrapping"]
        ship_net = sum((a["net"] for a in addresses), ZERO)
        ship_tax = sum((sum(a["taxes"].values(), ZERO) for a in addresses), ZERO)
        hand_net = sum((a["handling_net"] for a in addresses), ZERO)
        hand_tax = sum((sum(a["handling_taxes"].values(), ZERO) for a in addresses), ZERO)
        wrap_tax = sum(wrap["taxes"].values(), ZERO)
        sub_ex = sum((ln["undiscounted_net"] for ln in lines), ZERO)
        sub_tax = sum((sum(ln["taxes"].values(), ZERO) for ln in lines), ZERO)
        sub_inc = sum((ln["undiscounted_net"] + sum(ln["undiscounted_taxes"].values(), ZERO) for ln in lines), ZERO)
        return {
            "id": o["id"], "customer_id": o["customer_id"], "date_created": o["date_created"],
            "date_modified": o["date_modified"], "date_shipped": "", "status_id": o["status_id"],
            "status": STATUSES[o["status_id"]], "custom_status": STATUSES[o["status_id"]],
            "subtotal_ex_tax": sub_ex, "subtotal_inc_tax": sub_inc, "subtotal_tax": sub_tax,
            "base_shipping_cost": sum((a["base"] for a in addresses), ZERO),
            "shipping_cost_ex_tax": ship_net, "shipping_cost_inc_tax": ship_net + ship_tax,
            "shipping_cost_tax": ship_tax, "shipping_cost_tax_class_id": self.settings.shipping_tax_class_id,
            "base_handling_cost": sum((a["handling_base"] for a in addresses), ZERO),
            "handling_cost_ex_tax": hand_net, "handling_cost_inc_tax": hand_net + hand_tax,
            "handling_cost_tax": hand_tax, "handling_cost_tax_class_id": self.settings.shipping_tax_class_id,
            "base_wrapping_cost": wrap["base"], "wrapping_cost_ex_tax": wrap["net"],
            "wrapping_cost_inc_tax": wrap["net"] + wrap_tax, "wrapping_cost_tax": wrap_tax,
            "wrapping_cost_tax_class_id": 0,
            "total_ex_tax": o["total_ex_tax"], "total_inc_tax": o["total_inc_tax"],
            "total_tax": o["total_tax"], "items_total": sum(ln["quantity"] for ln in lines),
            "items_shipped": 0, "payment_method": o["payment_method"],
            "payment_provider_id": o["payment_provider_id"], "payment_status": o["payment_status"],
            "refunded_amount": ZERO, "order_is_digital": not addresses, "store_credit_amount": ZERO,
            "gift_certificate_amount": ZERO, "ip_address": "", "ip_address_v6": "",
            "geoip_country": "", "geoip_country_iso2": "", "currency_id": 1,
            "currency_code": o["currency"], "currency_exchange_rate": "1.0000000000",
            "default_currency_id": 1, "default_currency_code": o["currency"],
            "store_default_currency_code": self.settings.currency,
            "store_default_to_transactional_exchange_rate": "1.0000000000",
            "staff_notes": o["staff_notes"], "customer_message": o["customer_message"],
            "discount_amount": o["discount_amount"], "coupon_discount": o["coupon_discount"],
            "shipping_address_count": len(addresses), "is_deleted": o["is_deleted"],
            "ebay_order_id": "0", "cart_id": "", "billing_address": {**o["billing_address"], "form_fields": []},
            "is_email_opt_in": False, "credit_card_type": None, "order_source": "external",
            "channel_id": 1, "external_source": o["external_source"],
            "products": self.link(o["id"], "products"),
            "shipping_addresses": self.link(o["id"], "shipping_addresses"),
            "coupons": self.link(o["id"], "coupons"), "external_id": None,
            "external_merchant_id": None, "tax_provider_id": "BasicTaxProvider",
            "customer_locale": "en", "external_order_id": "",
            "is_tax_inclusive_pricing": o["inclusive"],
        }

    def product_line_json(self, o: dict, ln: dict) -> dict:
        address_id = o["addresses"][0]["id"] if o["addresses"] else 0
        tax = sum(ln["taxes"].values(), ZERO)
        undiscounted_tax = sum(ln["undiscounted_taxes"].values(), ZERO)
        qty = Decimal(ln["quantity"])
        price_ex = (ln["undiscounted_net"] / qty).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        price_inc = ((ln["undiscounted_net"] + undiscounted_tax) / qty).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        return {
            "id": ln["id"], "order_id": o["id"], "product_id": ln["product_id"],
            "variant_id": ln["variant_id"], "order_address_id": address_id, "name": ln["name"],
            "name_customer": ln["name_customer"], "name_merchant": ln["name_merchant"],
            "sku": ln["sku"], "upc": "", "type": ln["type"], "base_price": ln["unit"],
            "price_ex_tax": price_ex, "price_inc_tax": price_inc, "price_tax": price_inc - price_ex,
            "base_total": ln["gross"], "total_ex_tax": ln["undiscounted_net"],
            "total_inc_tax": ln["undiscounted_net"] + undiscounted_tax, "total_tax": tax,
            "quantity": ln["quantity"], "base_cost_price": ZERO, "cost_price_inc_tax": ZERO,
            "cost_price_ex_tax": ZERO, "cost_price_tax": ZERO, "weight": "1.0000",
            "is_refunded": ln["quantity_refunded"] >= ln["quantity"],
            "quantity_refunded": ln["quantity_refunded"], "refund_amount": ZERO, "return_id": 0,
            "wrapping_id": 0, "wrapping_name": None, "base_wrapping_cost": ZERO,
            "wrapping_cost_ex_tax": ZERO, "wrapping_cost_inc_tax": ZERO, "wrapping_cost_tax": ZERO,
            "wrapping_message": "", "quantity_shipped": ln.get("quantity_shipped", 0), "fixed_shipping_cost": ZERO,
            "option_set_id": None, "parent_order_product_id": None, "is_bundled_product": False,
            "bin_picking_number": "", "external_id": None, "brand": "",
            "applied_discounts": [dict(d) for d in ln["discounts"]], "product_options": [],
            "configurable_fields": [], "gift_certificate_id": None,
            "discounted_total_inc_tax": ln["net"] + tax,
        }

    def address_json(self, o: dict, a: dict) -> dict:
        tax = sum(a["taxes"].values(), ZERO)
        h_tax = sum(a["handling_taxes"].values(), ZERO)
        return {"id": a["id"], "order_id": o["id"], **a["fields"], "form_fields": [],
                "items_total": sum(ln["quantity"] for ln in o["lines"]), "items_shipped": 0,
                "shipping_method": a["shipping_method"], "base_cost": a["base"],
                "cost_ex_tax": a["net"], "cost_inc_tax": a["net"] + tax, "cost_tax": tax,
                "cost_tax_class_id": self.settings.shipping_tax_class_id,
                "base_handling_cost": a["handling_base"], "handling_cost_ex_tax": a["handling_net"],
                "handling_cost_inc_tax": a["handling_net"] + h_tax, "handling_cost_tax": h_tax,
                "handling_cost_tax_class_id": self.settings.shipping_tax_class_id,
                "shipping_zone_id": 1, "shipping_zone_name": a["fields"]["country"] or "Default",
                "shipping_quotes": {"url": "", "resource": f"/orders/{o['id']}/shipping_addresses/{a['id']}/shipping_quotes"}}

    def coupon_rows(self, o: dict) -> list[dict]:
        c = o["coupon"]
        if not c:
            return []
        return [{"id": o["id"] * 10 + 1, "coupon_id": c["id"], "order_id": o["id"], "code": c["code"],
                 "amount": c["amount"], "type": c["type_id"], "discount": o["coupon_discount"]}]

    def tax_rows(self, o: dict, details: bool) -> list[dict]:
        address_id = o["addresses"][0]["id"] if o["addresses"] else 0
        rows: list[tuple[int, str, Any, dict, Decimal]] = []  # (address, type, product id, rate, amount)
        by_id = {r["id"]: r for r in self.settings.tax_rates}
        for ln in o["lines"]:
            rows += [(address_id, "item", str(ln["id"]), by_id[r], amt) for r, amt in ln["taxes"].items()]
        for a in o["addresses"]:
            rows += [(a["id"], "shipping", None, by_id[r], amt) for r, amt in a["taxes"].items()]
            rows += [(a["id"], "handling", None, by_id[r], amt) for r, amt in a["handling_taxes"].items()]
        rows += [(address_id, "gift-wrapping", None, by_id[r], amt) for r, amt in o["wrapping"]["taxes"].items()]
        rows = [r for r in rows if r[4]]
        if not details:
            grouped: dict[tuple[int, int], list] = {}
            for address, _, _, rate, amount in rows:
                grouped.setdefault((address, rate["id"]), [address, None, None, rate, ZERO])[4] += amount
            rows = [tuple(v) for v in grouped.values()]
        out = []
        for n, (address, kind, product_id, rate, amount) in enumerate(rows, start=1):
            row = {"id": o["id"] * 100 + n, "order_id": o["id"], "order_address_id": address,
                   "tax_rate_id": rate["id"], "sales_tax_id": rate.get("sales_tax_id", ""),
                   "tax_class_id": rate.get("tax_class_ids", [0])[0], "name": rate["name"],
                   "class": TAX_CLASSES.get(rate.get("tax_class_ids", [0])[0], "Default Tax Class"),
                   "rate": Decimal(str(rate["rate"])), "priority": 0, "priority_amount": amount,
                   "line_amount": amount, "order_pickup_method_id": 0}
            if details:
                row.update({"order_product_id": product_id, "line_item_type": kind})
            out.append(row)
        return out

    def refund_json(self, r: dict) -> dict:
        return {**{k: v for k, v in r.items() if k != "items"},
                "items": [{k: v for k, v in i.items()} for i in r["items"]]}

    def product_json(self, p: Product, include_variants: bool = False) -> dict:
        out = {"id": p.id, "name": p.name, "type": "physical", "sku": p.sku, "price": p.price,
               "cost_price": p.cost_price, "retail_price": ZERO, "sale_price": ZERO,
               "map_price": ZERO, "calculated_price": p.price, "tax_class_id": p.tax_class_id,
               "inventory_level": (p.inventory_level if p.inventory_tracking == "product"
                                   else sum(self.variants[v].inventory_level for v in p.variant_ids)),
               "inventory_warning_level": 0, "inventory_tracking": p.inventory_tracking,
               "date_modified": p.date_modified, "base_variant_id": p.base_variant_id or None,
               "is_visible": True}
        if include_variants:
            out["variants"] = [self.variant_json(self.variants[v]) for v in p.variant_ids]
        return out

    def variant_json(self, v: Variant) -> dict:
        product = self.products[v.product_id]
        price = self.variant_price(v)
        return {"id": v.id, "product_id": v.product_id, "sku": v.sku,
                "sku_id": None if v.is_base else v.id + 10000, "price": v.price,
                "cost_price": v.cost_price, "sale_price": None, "retail_price": None,
                "map_price": None, "calculated_price": price,
                "inventory_level": product.inventory_level if v.is_base else v.inventory_level,
                "inventory_warning_level": 0, "purchasing_disabled": False, "upc": "",
                "option_values": list(v.option_values)}

    def hook_json(self, h: Hook) -> dict:
        return {"id": h.id, "client_id": h.client_id, "store_hash": self.settings.store_hash,
                "scope": h.scope, "destination": h.destination, "headers": h.headers,
                "is_active": h.is_active, "created_at": h.created_at, "updated_at": h.updated_at}


def scope_matches(pattern: str, scope: str) -> bool:
    if pattern.endswith("/*"):
        return scope.startswith(pattern[:-1])
    return pattern == scope


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

@dataclass
class Call:
    request: Request
    store: Store
    version: str
    params: dict[str, str]
    body: Any
    ids: list[int]


def respond(data: Any, version: str, status: int = 200) -> Response:
    if status == 204:
        return Response(status_code=204)
    return Response(dumps(data, version), status_code=status, media_type="application/json")


def page_args(p: dict[str, str], version: str) -> tuple[int, int]:
    try:
        page = int(p.get("page", 1))
        limit = int(p.get("limit", 50))
    except ValueError:
        raise ApiError(400, "The field 'page' or 'limit' is invalid.") from None
    if page < 1 or limit < 1:
        raise ApiError(400, "The field 'page' or 'limit' is invalid.")
    if limit > MAX_LIMIT:
        raise ApiError(413, f"The maximum limit is {MAX_LIMIT}.")
    return page, limit


def v2_list(call: Call, items: list) -> Response:
    page, limit = page_args(call.params, "v2")
    chunk = items[(page - 1) * limit: page * limit]
    return respond(chunk, "v2", 204 if not chunk else 200)


def v3_list(call: Call, items: list, *, empty_204: bool = False) -> Response:
    page, limit = page_args(call.params, "v3")
    chunk = items[(page - 1) * limit: page * limit]
    if empty_204 and not items:
        return Response(status_code=204)
    pages = max(1, math.ceil(len(items) / limit))
    links = {"current": f"?page={page}&limit={limit}"}
    if page > 1:
        links["previous"] = f"?page={page - 1}&limit={limit}"
    if page < pages:
        links["next"] = f"?page={page + 1}&limit={limit}"
    meta = {"pagination": {"total": len(items), "count": len(chunk), "per_page": limit,
                           "current_page": page, "total_pages": pages, "links": links}}
    return respond({"data": chunk, "meta": meta}, "v3")


def fields_filtered(call: Call, rows: list[dict]) -> list[dict]:
    include = [f for f in call.params.get("include_fields", "").split(",") if f]
    exclude = {f for f in call.params.get("exclude_fields", "").split(",") if f}
    if include:
        rows = [{k: v for k, v in r.items() if k in include or k == "id"} for r in rows]
    if exclude:
        rows = [{k: v for k, v in r.items() if k not in exclude} for r in rows]
    return rows


def csv(call: Call, name: str) -> list[str]:
    return [v for v in call.params.get(name, "").split(",") if v]


def the_order(call: Call) -> dict:
    order = call.store.orders.get(call.ids[0])
    if order is None or order["is_deleted"]:
        raise ApiError(404, "The requested resource was not found.")
    return order


# ---- v2 handlers ---------------------------------------------------------------------------

ORDER_SORTS = {"id", "customer_id", "date_created", "date_modified", "status_id", "channel_id",
               "external_id"}


def filter_orders(call: Call) -> list[dict]:
    p, store = call.params, call.store
    orders = [o for o in store.orders.values() if not o["is_deleted"]]

    def num(name: str) -> int | None:
        return int(dec(p[name], name)) if p.get(name) not in (None, "") else None

    if (status := num("status_id")) is not None:
        orders = [o for o in orders if o["status_id"] == status]
    else:
        orders = [o for o in orders if o["status_id"] != 0]
    for name, key, cmp in (("min_id", "id", 1), ("max_id", "id", -1)):
        if (value := num(name)) is not None:
            orders = [o for o in orders if (o[key] - value) * cmp >= 0]
    if (cid := num("customer_id")) is not None:
        orders = [o for o in orders if o["customer_id"] == cid]
    if p.get("email"):
        orders = [o for o in orders if o["billing_address"]["email"].lower() == p["email"].lower()]
    for name in ("min_date_created", "max_date_created", "min_date_modified", "max_date_modified"):
        if p.get(name):
            bound, key = parse_date(p[name], name), name.split("_", 1)[1]
            orders = [o for o in orders if (o[key] >= bound if name.startswith("min") else o[key] <= bound)]
    for name, cmp in (("min_total", 1), ("max_total", -1)):
        if p.get(name):
            bound = dec(p[name], name)
            orders = [o for o in orders if (o["total_inc_tax"] - bound) * cmp >= 0]
    sort = p.get("sort", "id")
    key, _, direction = sort.partition(":")
    if key not in ORDER_SORTS or direction not in ("", "asc", "desc"):
        raise ApiError(400, "The field 'sort' is invalid.")
    key = {"channel_id": "id", "external_id": "id"}.get(key, key)
    return sorted(orders, key=lambda o: (o[key], o["id"]), reverse=direction == "desc")


async def v2_orders(call: Call) -> Response:
    if call.request.method == "POST":
        return respond(call.store.order_json(call.store.create_order(call.body)), "v2")
    store = call.store
    return v2_list(call, [store.order_json(o) for o in filter_orders(call)])


async def v2_orders_count(call: Call) -> Response:
    return respond({"count": len(filter_orders(call))}, "v2")


async def v2_order(call: Call) -> Response:
    order, store = the_order(call), call.store
    if call.request.method == "PUT":
        store.update_order(order, call.body)
    elif call.request.method == "DELETE":
        order["is_deleted"] = True
        store.emit("store/order/archived", {"type": "order", "id": order["id"]})
        return Response(status_code=204)
    return respond(store.order_json(order), "v2")


async def v2_products(call: Call) -> Response:
    order = the_order(call)
    return v2_list(call, [call.store.product_line_json(order, ln) for ln in order["lines"]])


async def v2_addresses(call: Call) -> Response:
    order = the_order(call)
    return v2_list(call, [call.store.address_json(order, a) for a in order["addresses"]])


async def v2_coupons(call: Call) -> Response:
    return v2_list(call, call.store.coupon_rows(the_order(call)))


async def v2_taxes(call: Call) -> Response:
    details = call.params.get("details", "false").lower() == "true"
    return v2_list(call, call.store.tax_rows(the_order(call), details))


async def v2_shipments(call: Call) -> Response:
    """Shipments: POST ships units of order products to an address; the order becomes
    Shipped (2) when every unit is, else Partially Shipped (3)."""
    order, store = the_order(call), call.store
    if call.request.method == "GET":
        return v2_list(call, list(order.setdefault("shipments", [])))
    body = call.body if isinstance(call.body, dict) else {}
    address = next((a for a in order["addresses"] if a["id"] == body.get("order_address_id")), None)
    items = body.get("items")
    if address is None:
        raise ApiError(400, "The field 'order_address_id' is invalid.")
    if not isinstance(items, list) or not items:
        raise ApiError(400, "The field 'items' is invalid.")
    for item in items:
        line = next((ln for ln in order["lines"] if ln["id"] == item.get("order_product_id")), None)
        qty = int(dec(item.get("quantity", 0), "quantity"))
        if line is None or qty < 1 or qty > line["quantity"] - line.get("quantity_shipped", 0):
            raise ApiError(400, "The field 'items' is invalid.")
    for item in items:
        line = next(ln for ln in order["lines"] if ln["id"] == item["order_product_id"])
        line["quantity_shipped"] = line.get("quantity_shipped", 0) + int(item["quantity"])
    shipment = {"id": store.next_id("shipment", 1), "order_id": order["id"], "customer_id": order["customer_id"],
                "order_address_id": address["id"], "date_created": now_utc(),
                "tracking_number": str(body.get("tracking_number") or "")[:50],
                "shipping_method": str(body.get("shipping_method") or ""),
                "shipping_provider": str(body.get("shipping_provider") or ""),
                "tracking_carrier": str(body.get("tracking_carrier") or ""),
                "comments": str(body.get("comments") or ""), "items": [
                    {"order_product_id": i["order_product_id"], "product_id": 0, "quantity": int(i["quantity"])}
                    for i in items]}
    order.setdefault("shipments", []).append(shipment)
    done = all(ln.get("quantity_shipped", 0) >= ln["quantity"] for ln in order["lines"])
    store.emit("store/shipment/created", {"type": "shipment", "id": shipment["id"], "orderId": order["id"]})
    store.order_status(order, 2 if done else 3)
    store.touch(order)
    return respond(shipment, "v2", 201)


async def v2_statuses(call: Call) -> Response:
    return respond([{"id": i, "name": n, "system_label": n, "custom_label": n,
                     "system_description": ""} for i, n in STATUSES.items()], "v2")


# ---- v3 handlers ---------------------------------------------------------------------------

async def v3_transactions(call: Call) -> Response:
    order = the_order(call)
    return v3_list(call, list(order["transactions"]), empty_204=True)


async def v3_capture(call: Call) -> Response:
    call.store.capture(the_order(call))
    return respond({"data": {}, "meta": {}}, "v3", 201)


async def v3_refund_quotes(call: Call) -> Response:
    quote = call.store.quote(the_order(call), call.body)
    quote = {k: v for k, v in quote.items() if k != "items"}
    return respond({"data": quote, "meta": {}}, "v3", 201)


async def v3_order_refunds(call: Call) -> Response:
    order, store = the_order(call), call.store
    if call.request.method == "POST":
        refund = await store.create_refund(order, call.body)
        return respond({"data": store.refund_json(refund), "meta": {}}, "v3", 201)
    return v3_list(call, [store.refund_json(store.refunds[r]) for r in sorted(order["refund_ids"])])


async def v3_all_refunds(call: Call) -> Response:
    store = call.store
    refunds = sorted(store.refunds.values(), key=lambda r: r["id"])
    if order_ids := csv(call, "order_id:in"):
        refunds = [r for r in refunds if str(r["order_id"]) in order_ids]
    if ids := csv(call, "id:in"):
        refunds = [r for r in refunds if str(r["id"]) in ids]
    for name, cmp in (("created:min", 1), ("created:max", -1)):
        if call.params.get(name):
            bound = parse_date(call.params[name], name)
            refunds = [r for r in refunds if (r["created"] >= bound if cmp > 0 else r["created"] <= bound)]
    return v3_list(call, [store.refund_json(r) for r in refunds])


async def v3_refund(call: Call) -> Response:
    refund = call.store.refunds.get(call.ids[0])
    if refund is None:
        raise ApiError(404, f"Refund with id [{call.ids[0]}] not found")
    return respond({"data": call.store.refund_json(refund), "meta": {}}, "v3")


async def v3_customers(call: Call) -> Response:
    store = call.store
    if call.request.method == "POST":
        body = call.body
        if not isinstance(body, list) or not body:
            raise ApiError(422, "JSON data is missing or invalid", errors={"": "error.type.array"})
        if len(body) > 10:
            raise ApiError(413, "The request payload is too large. The maximum items allowed in the array is 10")
        created = []
        for n, entry in enumerate(body):
            missing = [k for k in ("email", "first_name", "last_name")
                       if not isinstance(entry, dict) or not entry.get(k)]
            if missing:
                raise ApiError(422, "JSON data is missing or invalid",
                               errors={f"[{n}].{k}": "error.path.missing" for k in missing})
            email_ = str(entry["email"]).strip().lower()
            if any(c["email"] == email_ for c in store.customers.values()):
                raise ApiError(422, f"The email address {email_} is already in use.",
                               errors={f"[{n}].email": "error.email.duplicate"})
            customer = {"id": store.next_id("customer", 1), "email": email_,
                        "first_name": str(entry["first_name"]), "last_name": str(entry["last_name"]),
                        "company": str(entry.get("company") or ""), "phone": str(entry.get("phone") or ""),
                        "notes": "", "tax_exempt_category": "", "customer_group_id": 0,
                        "date_created": now_utc(), "date_modified": now_utc(), "address_count": 0,
                        "attribute_count": 0, "registration_ip_address": "",
                        "accepts_product_review_abandoned_cart_emails": False,
                        "origin_channel_id": 1, "channel_ids": None, "addresses": []}
            store.customers[customer["id"]] = customer
            created.append(customer)
            store.emit("store/customer/created", {"type": "customer", "id": customer["id"]})
        return respond({"data": created, "meta": {}}, "v3")
    if call.request.method == "PUT":
        return update_customers(call)
    customers = sorted(store.customers.values(), key=lambda c: c["id"])
    if emails := [e.lower() for e in csv(call, "email:in")]:
        customers = [c for c in customers if c["email"] in emails]
    if ids := csv(call, "id:in"):
        customers = [c for c in customers if str(c["id"]) in ids]
    return v3_list(call, customers)


def update_customers(call: Call) -> Response:
    """``PUT /v3/customers``: at most 10, each with ``id``; read-only fields are refused."""
    store, body = call.store, call.body
    if not isinstance(body, list) or not body:
        raise ApiError(422, "JSON data is missing or invalid", errors={"": "error.type.array"})
    if len(body) > 10:
        raise ApiError(413, "The request payload is too large. The maximum items allowed in the array is 10")
    saved = []
    for n, entry in enumerate(body):
        customer = store.customers.get(int(dec(entry.get("id", 0), "id"))) if isinstance(entry, dict) else None
        if customer is None:
            raise ApiError(422, "JSON data is missing or invalid", errors={f"[{n}].id": "error.not_found"})
        for key in ("email", "first_name", "last_name", "company", "phone", "notes"):
            if key in entry:
                customer[key] = str(entry[key] or "").strip().lower() if key == "email" else str(entry[key] or "")
        customer["date_modified"] = now_utc()
        saved.append(customer)
        store.emit("store/customer/updated", {"type": "customer", "id": customer["id"]})
    return respond({"data": saved, "meta": {}}, "v3")


async def v3_products(call: Call) -> Response:
    store = call.store
    if call.request.method == "PUT":
        return batch_update(call, "product", 10)
    products = sorted(store.products.values(), key=lambda p: p.id)
    if call.params.get("sku"):
        products = [p for p in products if p.sku == call.params["sku"]]
    if skus := csv(call, "sku:in"):
        products = [p for p in products if p.sku in skus]
    if ids := csv(call, "id:in"):
        products = [p for p in products if str(p.id) in ids]
    with_variants = "variants" in csv(call, "include")
    return v3_list(call, fields_filtered(call, [store.product_json(p, with_variants) for p in products]))


async def v3_product(call: Call) -> Response:
    store = call.store
    product = store.products.get(call.ids[0])
    if product is None:
        raise ApiError(404, "The requested product was not found.")
    if call.request.method == "PUT":
        apply_product(store, product, call.body if isinstance(call.body, dict) else {})
    return respond({"data": store.product_json(product, "variants" in csv(call, "include")), "meta": {}}, "v3")


async def v3_product_variants(call: Call) -> Response:
    store = call.store
    product = store.products.get(call.ids[0])
    if product is None:
        raise ApiError(404, "The requested product was not found.")
    return v3_list(call, [store.variant_json(store.variants[v]) for v in product.variant_ids])


async def v3_variants(call: Call) -> Response:
    store = call.store
    if call.request.method == "PUT":
        return batch_update(call, "variant", 50)
    variants = sorted(store.variants.values(), key=lambda v: v.id)
    if call.params.get("sku"):
        variants = [v for v in variants if v.sku == call.params["sku"]]
    if call.params.get("id"):
        variants = [v for v in variants if str(v.id) == call.params["id"]]
    if pids := csv(call, "product_id:in"):
        variants = [v for v in variants if str(v.product_id) in pids]
    return v3_list(call, fields_filtered(call, [store.variant_json(v) for v in variants]))


def apply_product(store: Store, product: Product, body: dict) -> None:
    if "price" in body:
        product.price = dec(body["price"], "price")
    if "cost_price" in body:
        product.cost_price = dec(body["cost_price"], "cost_price")
    if "name" in body:
        product.name = str(body["name"])
    if "inventory_level" in body and product.inventory_tracking == "product":
        product.inventory_level = int(dec(body["inventory_level"], "inventory_level"))
    product.date_modified = now_utc()
    store.emit("store/product/updated", {"type": "product", "id": product.id})


def apply_variant(store: Store, variant: Variant, body: dict) -> None:
    for key in ("price", "cost_price"):
        if key in body:
            setattr(variant, key, None if body[key] is None else dec(body[key], key))
    store.emit("store/sku/updated", {"type": "sku", "id": variant.id,
                                     "sku": {"product_id": variant.product_id, "variant_id": variant.id}})


def batch_update(call: Call, kind: str, limit: int) -> Response:
    store, body = call.store, call.body
    if not isinstance(body, list) or not body:
        raise ApiError(422, "JSON data is missing or invalid", errors={"": "error.type.array"})
    if len(body) > limit:
        raise ApiError(413, f"The request payload is too large. The maximum items allowed in the array is {limit}",
                       errors={})
    table = store.products if kind == "product" else store.variants
    bad = [n for n, e in enumerate(body) if not isinstance(e, dict) or int(dec(e.get("id", 0), "id")) not in table]
    if kind == "variant" and bad:
        return respond({"batch_errors": [{"status": 422, "title": f"Variant with id {body[n].get('id') if isinstance(body[n], dict) else '?'} not found",
                                          "type": ERROR_TYPE, "errors": {f"[{n}].id": "error.not_found"}} for n in bad]}, "v3", 422)
    if kind == "product" and len(bad) == len(body):
        raise ApiError(409, "The product ids are invalid.", errors={f"[{n}].id": "not found" for n in bad})
    saved = []
    for n, entry in enumerate(body):
        if n in bad:
            continue
        record = table[int(dec(entry["id"], "id"))]
        (apply_product if kind == "product" else apply_variant)(store, record, entry)
        saved.append(store.product_json(record) if kind == "product" else store.variant_json(record))
    if bad:
        return respond({"data": saved, "errors": [{"status": 404, "title": f"Product with id {body[n].get('id')} not found",
                                                   "type": ERROR_TYPE} for n in bad],
                        "meta": {"total": len(body), "success": len(saved), "failed": len(bad)}}, "v3", 207)
    return respond({"data": saved, "meta": {}}, "v3")


async def v3_inventory_absolute(call: Call) -> Response:
    store, body = call.store, call.body
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(422, "JSON data is missing or invalid", errors={"items": "error.path.missing"},
                       media_type="application/problem+json")
    if len(items) > 2000:
        raise ApiError(413, "The request payload is too large. The maximum items allowed in the array is 2000")
    changes = []
    for n, item in enumerate(items):
        keys = [k for k in ("sku", "variant_id", "product_id") if isinstance(item, dict) and item.get(k) not in (None, "")]
        if len(keys) != 1 or "location_id" not in item or "quantity" not in item:
            raise ApiError(422, "JSON data is missing or invalid",
                           errors={f"items[{n}]": "needs location_id, quantity and one of sku/variant_id/product_id"},
                           media_type="application/problem+json")
        if int(dec(item["location_id"], "location_id")) != 1:
            raise ApiError(422, f"[Location {item['location_id']} does not exist]", errors={},
                           media_type="application/problem+json")
        quantity = int(dec(item["quantity"], "quantity"))
        if not 0 <= quantity <= 2_147_483_647:
            raise ApiError(422, f"[Quantity {quantity} is out of range]", errors={},
                           media_type="application/problem+json")
        target = stock_target(store, keys[0], item[keys[0]])
        if target is None:
            raise ApiError(422, f"[Item with {keys[0]} {item[keys[0]]} does not exist]", errors={},
                           media_type="application/problem+json")
        changes.append((target, quantity))

    def apply() -> None:
        for target, quantity in changes:
            target.inventory_level = quantity
            if isinstance(target, Product):
                store.emit("store/product/inventory/updated", {"type": "product", "id": target.id, "inventory": {
                    "product_id": target.id, "method": "absolute", "value": quantity}})
            else:
                store.emit("store/sku/inventory/updated", {"type": "sku", "id": target.id, "inventory": {
                    "product_id": target.product_id, "variant_id": target.id, "method": "absolute",
                    "value": quantity}})

    store.later(apply)
    return respond({"transaction_id": str(uuid.uuid4())}, "v3")


def stock_target(store: Store, key: str, value: Any) -> Product | Variant | None:
    """The record that holds the stock: the product when tracked by product (its base
    variant's SKU names the product), the variant when tracked by variant."""
    if key == "product_id":
        product = store.products.get(int(dec(value, key)))
        if product is not None and product.inventory_tracking == "variant":
            raise ApiError(422, f"[Item with product_id {value} is tracked by variant, please update stock by variant id]",
                           errors={}, media_type="application/problem+json")
        return product
    variant = store.variants.get(int(dec(value, key))) if key == "variant_id" else store.variant_by_sku(str(value))
    if variant is None:
        return None
    if variant.is_base:
        return store.products[variant.product_id]
    return variant


async def v3_inventory_items(call: Call) -> Response:
    store = call.store
    rows = []
    for v in sorted(store.variants.values(), key=lambda v: v.id):
        target = store.products[v.product_id] if v.is_base else v
        rows.append({"identity": {"sku": v.sku, "variant_id": v.id, "product_id": v.product_id},
                     "locations": [{"location_id": 1, "available_to_sell": target.inventory_level,
                                    "total_inventory_onhand": target.inventory_level}]})
    if skus := csv(call, "sku:in"):
        rows = [r for r in rows if r["identity"]["sku"] in skus]
    return v3_list(call, rows)


async def v3_hooks(call: Call) -> Response:
    store = call.store
    if call.request.method == "POST":
        hook = create_hook(call, call.body)
        return respond({"data": store.hook_json(hook), "meta": {}}, "v3")
    client = store.settings.client_id
    hooks = [h for h in sorted(store.hooks.values(), key=lambda h: h.id) if h.client_id == client]
    if "is_active" in call.params:
        active = call.params["is_active"].lower() == "true"
        hooks = [h for h in hooks if h.is_active == active]
    for name in ("scope", "destination"):
        if call.params.get(name):
            hooks = [h for h in hooks if getattr(h, name) == call.params[name]]
    return v3_list(call, [store.hook_json(h) for h in hooks])


def check_destination(store: Store, destination: Any) -> str:
    if not isinstance(destination, str) or not destination:
        raise ApiError(422, "JSON data is missing or invalid", errors={"destination": "error.path.missing."})
    parts = urlsplit(destination)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, "JSON data is missing or invalid", errors={"destination": "error.format.url"})
    if store.settings.enforce_destination_rules and (parts.scheme != "https" or (parts.port or 443) != 443):
        raise ApiError(422, "JSON data is missing or invalid",
                       errors={"destination": "must be HTTPS on port 443"})
    return destination


def check_headers(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(422, "JSON data is missing or invalid", errors={"headers": "error.type.object"})
    if len(value) > 64 or any(len(k) > 64 or len(v) > 8192 for k, v in value.items()):
        raise ApiError(422, "JSON data is missing or invalid", errors={"headers": "error.size"})
    return dict(value)


def create_hook(call: Call, body: Any) -> Hook:
    store = call.store
    if not isinstance(body, dict):
        raise ApiError(400, "Input is invalid.")
    if not isinstance(body.get("scope"), str) or not body["scope"].startswith("store/"):
        raise ApiError(422, "JSON data is missing or invalid", errors={"scope": "error.path.missing."})
    destination = check_destination(store, body.get("destination"))
    client = store.settings.client_id
    same = [h for h in store.hooks.values() if h.client_id == client and h.scope == body["scope"]]
    if any(h.destination == destination for h in same):
        raise ApiError(422, "JSON data is missing or invalid",
                       errors={"destination": "a webhook with this scope and destination already exists"})
    if len(same) >= 10:
        raise ApiError(422, "JSON data is missing or invalid", errors={"scope": "at most 10 webhooks per scope"})
    now = int(time.time())
    hook = Hook(store.next_id("hook", 18048287), client, body["scope"], destination,
                check_headers(body.get("headers")), bool(body.get("is_active", True)), now, now)
    store.hooks[hook.id] = hook
    return hook


async def v3_hook(call: Call) -> Response:
    store = call.store
    hook = store.hooks.get(call.ids[0])
    if hook is None or hook.client_id != store.settings.client_id:
        raise ApiError(404, f"Webhook with id [{call.ids[0]}] not found")
    if call.request.method == "PUT":
        body = call.body
        if not isinstance(body, dict) or not body:
            raise ApiError(400, "Input is invalid.")
        if "scope" in body:
            hook.scope = str(body["scope"])
        if "destination" in body:
            hook.destination = check_destination(store, body["destination"])
        if "headers" in body:
            hook.headers = check_headers(body["headers"])
        if "is_active" in body:
            hook.is_active = bool(body["is_active"])
        hook.updated_at = int(time.time())
    elif call.request.method == "DELETE":
        store.hooks.pop(hook.id)
    return respond({"data": store.hook_json(hook), "meta": {}}, "v3")


ROUTES: list[tuple[str, str, tuple[str, ...], Callable]] = [
    ("v2", r"orders", ("GET", "POST"), v2_orders),
    ("v2", r"orders/count", ("GET",), v2_orders_count),
    ("v2", r"orders/(\d+)", ("GET", "PUT", "DELETE"), v2_order),
    ("v2", r"orders/(\d+)/products", ("GET",), v2_products),
    ("v2", r"orders/(\d+)/shipping_addresses", ("GET",), v2_addresses),
    ("v2", r"orders/(\d+)/coupons", ("GET",), v2_coupons),
    ("v2", r"orders/(\d+)/taxes", ("GET",), v2_taxes),
    ("v2", r"orders/(\d+)/shipments", ("GET", "POST"), v2_shipments),
    ("v2", r"order_statuses", ("GET",), v2_statuses),
    ("v3", r"orders/(\d+)/transactions", ("GET",), v3_transactions),
    ("v3", r"orders/(\d+)/payment_actions/capture", ("POST",), v3_capture),
    ("v3", r"orders/(\d+)/payment_actions/refund_quotes", ("POST",), v3_refund_quotes),
    ("v3", r"orders/(\d+)/payment_actions/refunds", ("GET", "POST"), v3_order_refunds),
    ("v3", r"orders/payment_actions/refunds", ("GET",), v3_all_refunds),
    ("v3", r"orders/payment_actions/refunds/(\d+)", ("GET",), v3_refund),
    ("v3", r"customers", ("GET", "POST", "PUT"), v3_customers),
    ("v3", r"catalog/products", ("GET", "PUT"), v3_products),
    ("v3", r"catalog/products/(\d+)", ("GET", "PUT"), v3_product),
    ("v3", r"catalog/products/(\d+)/variants", ("GET",), v3_product_variants),
    ("v3", r"catalog/variants", ("GET", "PUT"), v3_variants),
    ("v3", r"inventory/adjustments/absolute", ("PUT",), v3_inventory_absolute),
    ("v3", r"inventory/items", ("GET",), v3_inventory_items),
    ("v3", r"hooks", ("GET", "POST"), v3_hooks),
    ("v3", r"hooks/(\d+)", ("GET", "PUT", "DELETE"), v3_hook),
]
_COMPILED = [(v, re.compile(p + r"/?"), m, h) for v, p, m, h in ROUTES]
WRITES = ("POST", "PUT", "DELETE")


class Api:
    """``/stores/{hash}/v2|v3/...``: faults, quota, auth, routing, handler."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self.store, self.faults = store, faults

    async def handle(self, request: Request) -> Response:
        version = request.path_params["version"]
        await self.faults.delay()
        allowed, rate_headers = self.store.spend()
        try:
            response = await self._guarded(request, version, allowed, rate_headers)
        except ApiError as err:
            response = Response(dumps(err.body(version), version), status_code=err.status,
                                media_type=err.media_type, headers=err.headers)
        for key, value in rate_headers.items():
            response.headers.setdefault(key, value)
        return response

    async def _guarded(self, request: Request, version: str, allowed: bool,
                       rate_headers: dict[str, str]) -> Response:
        if (retry := self.faults.take_429()) is not None:
            rate_headers.update({"X-Rate-Limit-Time-Reset-Ms": str(int(retry * 1000)),
                                 "X-Rate-Limit-Requests-Left": "0"})
            raise ApiError(429, "Too many requests", headers={"X-Retry-After": str(math.ceil(retry))})
        if not allowed:
            raise ApiError(429, "Too many requests", headers={
                "X-Retry-After": str(math.ceil(int(rate_headers["X-Rate-Limit-Time-Reset-Ms"]) / 1000))})
        if (status := self.faults.take_failure()) is not None:
            title = ("Service Unavailable - the store is down for maintenance" if status == 503
                     else "Internal Server Error")
            raise ApiError(status, title)
        self.faults.expire_tokens = False  # API account tokens do not expire
        if request.path_params["store_hash"] != self.store.settings.store_hash:
            raise ApiError(404, "Store not found.")
        if request.headers.get("x-auth-token") != self.store.settings.access_token:
            raise ApiError(401, UNAUTHORIZED)
        route = request.path_params["rest"]
        match = None
        for v, pattern, methods, handler in _COMPILED:
            if v == version and (m := pattern.fullmatch(route)):
                if request.method not in methods:
                    raise ApiError(405, "The requested method is not allowed for this resource.")
                match = (handler, [int(g) for g in m.groups()])
                break
        if match is None:
            raise ApiError(404, "The requested resource was not found.")
        body = await self._body(request)
        call = Call(request, self.store, version, dict(parse_qsl(request.url.query, keep_blank_values=True)),
                    body, match[1])
        response = await match[0](call)
        if request.method in WRITES and response.status_code < 400 and self.faults.take_lost_commit():
            return lost_response()
        return response

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        if not request.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
            raise ApiError(415, "The request content type is not supported; use application/json.")
        try:
            return json.loads(raw, parse_float=Decimal)
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON.") from None


# --------------------------------------------------------------------------------------------
# Control surface and the app
# --------------------------------------------------------------------------------------------

def control_routes(store: Store, faults: Faults) -> list[Route]:
    """``/_sandbox/``: seeding, settings, payments, webhook faults and observation (no auth)."""

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw, parse_float=Decimal) if raw.strip() else {}

    def error(exc: Exception, status: int = 400) -> Response:
        message = exc.title if isinstance(exc, ApiError) else str(exc)
        return JSONResponse({"error": message}, status_code=getattr(exc, "status", status))

    async def reset(request: Request) -> Response:
        for timer in store.timers:
            timer.cancel()
        store.reset()
        for f in fields(faults):
            setattr(faults, f.name, getattr(Faults(), f.name))
        return JSONResponse({"ok": True})

    async def products(request: Request) -> Response:
        data = await body_of(request)
        try:
            made = [store.add_product(spec) for spec in (data if isinstance(data, list) else [data])]
        except (ApiError, KeyError, TypeError, ValueError) as exc:
            return error(exc)
        return Response(dumps([store.product_json(p, True) for p in made], "v3"), media_type="application/json")

    async def coupons(request: Request) -> Response:
        data = await body_of(request)
        types = {"per_item_discount": 0, "percentage_discount": 1, "per_total_discount": 2,
                 "shipping_discount": 3, "free_shipping": 4}
        made = []
        for spec in data if isinstance(data, list) else [data]:
            if spec.get("type") not in ("percentage_discount", "per_total_discount", "free_shipping"):
                return JSONResponse({"error": f"unsupported coupon type {spec.get('type')!r}"}, status_code=400)
            coupon = {"id": store.next_id("coupon", 1), "code": str(spec["code"]),
                      "name": str(spec.get("name") or spec["code"]), "type": spec["type"],
                      "type_id": types[spec["type"]], "amount": Decimal(str(spec.get("amount", 0)))}
            store.coupons[coupon["code"].lower()] = coupon
            made.append({**coupon, "amount": str(coupon["amount"])})
        return JSONResponse(made)

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            try:
                store.settings.update(await body_of(request))
            except (KeyError, TypeError, ValueError) as exc:
                return error(exc)
        return Response(dumps(asdict(store.settings), "v3"), media_type="application/json")

    async def payments(request: Request) -> Response:
        order = store.orders.get(int(request.path_params["order_id"]))
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        data = await body_of(request)
        try:
            txn = store.take_payment(order, str(data.get("gateway", "braintree")),
                                     bool(data.get("capture", True)), str(data.get("reference") or ""))
        except ApiError as exc:
            return error(exc)
        return Response(dumps(txn, "v3"), media_type="application/json")

    async def outage(request: Request) -> Response:
        store.outage_next = int((await body_of(request)).get("fail_next", 0))
        return JSONResponse({"fail_next": store.outage_next})

    async def duplicate(request: Request) -> Response:
        store.duplicate_next = int((await body_of(request)).get("next", 0))
        return JSONResponse({"next": store.duplicate_next})

    async def deliveries(request: Request) -> Response:
        return JSONResponse([dict(d) for d in store.deliveries])

    async def wait_idle(request: Request) -> Response:
        body = await body_of(request)
        idle = await store.wait_idle(float(body.get("timeout", 120)), retries=bool(body.get("retries")))
        return JSONResponse({"idle": idle}, status_code=200 if idle else 504)

    async def state(request: Request) -> Response:
        return JSONResponse(store.counts())

    return [
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/products", products, methods=["POST"]),
        Route("/_sandbox/coupons", coupons, methods=["POST"]),
        Route("/_sandbox/settings", settings, methods=["GET", "POST"]),
        Route("/_sandbox/orders/{order_id:int}/payments", payments, methods=["POST"]),
        Route("/_sandbox/webhooks/outage", outage, methods=["POST"]),
        Route("/_sandbox/webhooks/duplicate", duplicate, methods=["POST"]),
        Route("/_sandbox/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/_sandbox/webhooks/wait-idle", wait_idle, methods=["POST"]),
        Route("/_sandbox/state", state, methods=["GET"]),
        *fault_routes(faults),
    ]


def create_app(**settings: Any) -> Starlette:
    """The simulator; keyword arguments are :class:`Settings` fields. ``app.state.store`` is
    the :class:`Store`, ``app.state.faults`` the faults."""
    config = Settings()
    config.update(settings)
    store = Store(config)
    faults = Faults()
    api = Api(store, faults)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [*control_routes(store, faults),
              Route("/stores/{store_hash}/{version:str}/{rest:path}", api.handle, methods=methods)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"status": 404, "title": "The requested resource was not found.",
                             "type": ERROR_TYPE}, status_code=404)

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.store = store
    app.state.faults = faults
    return app
