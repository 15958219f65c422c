"""WooCommerce REST API (wc/v3) simulator: an in-memory store that behaves like the real API.

Written from shared/reference/woocommerce.md (section numbers below are that document's), never
from client code, so the connector is tested against the documented behaviour and not against
its own assumptions.

Simulated
---------
* Routes under ``/wp-json/wc/v3/``: orders (+batch), ``orders/{id}/refunds``, ``refunds``
  (WC 9.0+), customers (+batch), products (+batch), ``products/{id}/variations`` (+batch),
  webhooks (+batch). Editable routes take POST, PUT and PATCH like WordPress; an unknown route
  or method answers 404 ``rest_no_route``.
* Auth (§2): over HTTPS the query-string pair (checked first) then Basic; OAuth 1.0a
  (HMAC-SHA1/-SHA256, ±15 min, one use per nonce, parameters from the query string, form
  body or ``Authorization: OAuth``) whenever those did not authenticate; key read/write
  permissions; the errors of §2.4 including ``WWW-Authenticate``. A host that strips the
  Authorization header is a setting.
* Lists (§3.1): page/per_page/offset validation, ``X-WP-Total(Pages)``, ``Link`` prev/next,
  after/before/modified_after/modified_before honouring ``dates_are_gmt`` (exclusive bounds,
  like WordPress date queries), orderby/order, status/sku/email filters, ``_fields``.
* Orders (§4): totals computed like WooCommerce core: per-line tax rounding (rounding at
  subtotal off), percent/fixed_cart/fixed_product coupons split in cents with the core
  remainder rule, shipping and fee taxes, ``tax_lines``, ``prices_include_tax`` (catalog
  prices include tax, line amounts are derived excluding tax and rounded per line),
  ``set_paid`` (payment complete), status side effects (date_paid, date_completed, stock,
  paying customer), quantity-0 line removal, and a status set to ``refunded`` creating the
  automatic refund of the remainder (core ``wc_order_fully_refunded``).
* Refunds (§5): amount computed from lines when omitted, negative refund lines, gateway
  refund (``api_refund``) by payment method, 500 on over-refund or gateway failure, a full
  refund moves the order to ``refunded``, restock, ``order.updated``.
* Webhooks (§8): 201 + Location, random 50-character secret, ping (unsigned ``webhook_id=N``,
  exactly 200), signed compact PHP-style JSON deliveries with the §8.3 headers from one
  Action-Scheduler-like queue with coalescing and send-time payloads, no retries, 200-302
  success, auto-disable per §8.6 (threshold configurable).
* Faults: ``sandbox.faults`` on every ``/wp-json/`` request; ``/_sandbox/`` control routes
  (see :func:`control_routes`).

Choices where the reference is unconfirmed or silent
----------------------------------------------------
* Creating an order fires ``order.created`` and ``order.updated`` (the REST create saves the
  order again after computing totals); an order in ``checkout-draft`` fires nothing.
* ``set_paid`` moves a pending/on-hold/failed/cancelled order to ``processing`` and sets
  ``date_paid``; reaching ``processing``/``completed`` sets ``date_paid`` when unset and
  ``completed`` sets ``date_completed``. Stock is reduced once on processing/completed/on-hold
  and restored on cancelled/pending. Quantity edits reprice from the current catalog price.
* A refund covering the remaining total moves the order to ``refunded``. Refund items copy the
  order item with negative quantity, totals and taxes (``price`` = total / |quantity|, so
  negative) and carry ``_refunded_item_id`` in ``meta_data``. A zero amount is accepted; a
  refund asking the gateway (``api_refund``, default true) needs a payment method that
  supports refunds (stripe, ppcp-gateway, woocommerce_payments, paypal); bacs/cheque/cod do
  not, anything else "does not exist". Concurrent refunds are only bounded by the remainder.
* Orders, refunds, products and variations share one id sequence (WordPress posts), order
  items another, customers (users) and webhooks their own.
* The OAuth base URL is the request's scheme and Host header plus the path (the site's home
  URL as the client reached it). ``_links`` and ``Link`` use the request's scheme and host;
  webhook payloads use ``home_url``. Date filter values carrying an offset are converted to
  the compared column's zone.
* Duplicate customer email -> 400 ``registration-error-email-exists``. ``/products?sku=``
  does not match variation SKUs. ``order.deleted`` also fires on a forced delete.
  ``action.*`` topics are accepted and never delivered. Queued deliveries still go out after a
  webhook is paused or disabled (core does not re-check). The ping is sent form-encoded over
  HTTP/1.1; loopback and private receivers are allowed.
* Tax rates match on optional ``country`` (code or list) and ``state``; one rate per priority
  (the rate code's numeric suffix); shipping is taxed with the standard class when any item
  uses it, else the first item's class. Coupon restrictions (expiry, minimums, usage limits,
  product lists), ``dp``, ``?rest_route=``, OPTIONS schemas and ``context=edit`` (other than
  the webhook secret) are not simulated. ``Retry-After`` during a 429 storm carries the fault's
  seconds, possibly fractional; ``fail_next`` answers 500 with WordPress's critical-error body
  and other statuses with a plain proxy page; ``lose_next_commits`` applies to writes that
  succeeded.
* The default tax rates are those of :data:`DEFAULT_TAX_RATES` (California standard and
  reduced, EU VAT); the site timezone is UTC+2 (``gmt_offset``) so local and GMT dates differ.
"""
from __future__ import annotations

import asyncio
import base64
import contextvars
import copy
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
import string
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.faults import Faults, fault_routes, lost_response

WC_VERSION = "9.8.5"
WP_VERSION = "6.8.1"
USER_AGENT = f"WooCommerce/{WC_VERSION} Hookshot (WordPress/{WP_VERSION})"
API_ROOT = "/wp-json/wc/v3/"
CENT = Decimal("0.01")
ZERO = Decimal(0)
MAX_PER_PAGE = 100
BATCH_LIMIT = 100
OAUTH_WINDOW = 15 * 60
PING_TIMEOUT = 5.0

ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded",
                  "failed", "checkout-draft")
PAYMENT_COMPLETE_FROM = {"on-hold", "pending", "failed", "cancelled"}
PAID_STATUSES = {"processing", "completed"}
STOCK_REDUCING = {"processing", "completed", "on-hold"}
STOCK_RESTORING = {"cancelled", "pending"}
SILENT_ORDER_STATUSES = {"draft", "auto-draft", "new", "checkout-draft"}
GATEWAYS = {"stripe": True, "ppcp-gateway": True, "woocommerce_payments": True, "paypal": True,
            "bacs": False, "cheque": False, "cod": False}
WEBHOOK_RESOURCES = ("coupon", "customer", "order", "product")
WEBHOOK_EVENTS = ("created", "updated", "deleted", "restored")
WEBHOOK_STATUSES = ("active", "paused", "disabled")
WEBHOOK_HOOKS = {
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded"],
    "order.deleted": ["wp_trash_post"],
    "order.restored": ["untrashed_post"],
    "product.created": ["woocommerce_process_product_meta", "woocommerce_new_product",
                        "woocommerce_new_product_variation"],
    "product.updated": ["woocommerce_process_product_meta", "woocommerce_update_product",
                        "woocommerce_update_product_variation"],
    "product.deleted": ["wp_trash_post"],
    "product.restored": ["untrashed_post"],
    "customer.created": ["user_register", "woocommerce_created_customer", "woocommerce_new_customer"],
    "customer.updated": ["profile_update", "woocommerce_update_customer"],
    "customer.deleted": ["delete_user"],
    "coupon.created": ["woocommerce_process_shop_coupon_meta", "woocommerce_new_coupon"],
    "coupon.updated": ["woocommerce_process_shop_coupon_meta", "woocommerce_update_coupon"],
    "coupon.deleted": ["wp_trash_post"],
    "coupon.restored": ["untrashed_post"],
}
CURRENCIES = frozenset(
    "AED ARS AUD BDT BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY "
    "KES KRW MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN RON SAR SEK SGD THB TRY TWD UAH USD VND ZAR".split())
CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "EUR": "\u20ac", "GBP": "\u00a3",
                    "JPY": "\u00a5", "CHF": "CHF", "SEK": "kr", "DKK": "kr", "NOK": "kr"}
EU_COUNTRIES = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
                "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")
DEFAULT_TAX_RATES = {
    "US-CA-TAX-1": {"id": 1, "rate": "8.2500", "label": "Tax", "shipping": True,
                    "country": "US", "state": "CA"},
    "US-CA-REDUCED-1": {"id": 2, "rate": "2.5000", "label": "Reduced rate", "shipping": False,
                        "class": "reduced-rate", "country": "US", "state": "CA"},
    "EU-VAT-1": {"id": 3, "rate": "20.0000", "label": "VAT", "shipping": True,
                 "country": list(EU_COUNTRIES)},
}
ADDRESS_FIELDS = ("first_name", "last_name", "company", "address_1", "address_2", "city", "state",
                  "postcode", "country")
SECRET_ALPHABET = string.ascii_letters + string.digits + "!@#$%^&*()-_ []{}<>~`+=,.;:/?|"
ORDER_REFUNDED_REASON = ("Order status set to refunded. To return funds to the customer you will "
                         "need to issue a refund through your payment gateway.")


# --------------------------------------------------------------------------------------------
# Errors, JSON, money, dates
# --------------------------------------------------------------------------------------------

class ApiError(Exception):
    """A WP_Error: ``{code, message, data: {status, ...}}``."""

    def __init__(self, status: int, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data
        self.headers: dict[str, str] = {}

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}


def invalid_param(errors: dict[str, str]) -> ApiError:
    return ApiError(400, "rest_invalid_param", "Invalid parameter(s): " + ", ".join(errors),
                    params=errors)


def php_json(data: Any) -> bytes:
    """``wp_json_encode``: compact, ``\\/`` for slashes, ``\\uXXXX`` for non-ASCII."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode()


def wp_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(php_json(data), status_code=status, headers=headers,
                    media_type="application/json; charset=UTF-8")


def error_response(err: ApiError) -> Response:
    return wp_response(err.body(), err.status, err.headers)


def to_decimal(value: Any, name: str = "amount") -> Decimal:
    if value is None or value == "":
        return ZERO
    if isinstance(value, bool):
        raise invalid_param({name: f"{name} is not of type number."})
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid_param({name: f"{name} is not of type number."}) from None
    if not result.is_finite():
        raise invalid_param({name: f"{name} is not of type number."})
    return result


def round2(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def money(value: Decimal) -> str:
    """Store money: a string with two decimals."""
    q = round2(value)
    return "0.00" if q == 0 else f"{q:.2f}"


def trimmed(value: Decimal) -> str:
    """Stored tax amounts come back like PHP prints floats: ``"1.8"``, ``"2"``."""
    q = round2(value)
    if q == 0:
        return "0"
    return format(q.normalize(), "f")


def number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def to_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise invalid_param({name: f"{name} is not of type integer."})
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise invalid_param({name: f"{name} is not of type integer."}) from None


def wp_list(items: Iterable[str]) -> str:
    """``wp_sprintf_l``: "a, b, and c"."""
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def fmt_date(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S") if value else None


def parse_iso(value: str) -> datetime:
    text = value.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------------------------
# Taxes
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaxRate:
    id: int
    code: str
    rate: Decimal
    label: str
    shipping: bool
    compound: bool
    tax_class: str
    priority: int
    countries: tuple[str, ...]
    state: str

    def matches(self, tax_class: str, country: str, state: str) -> bool:
        return (self.tax_class == tax_class
                and (not self.countries or country in self.countries)
                and (not self.state or self.state == state))


def parse_tax_rates(config: dict) -> list[TaxRate]:
    rates = []
    for code, spec in config.items():
        suffix = code.rsplit("-", 1)[-1]
        country = spec.get("country") or ()
        rates.append(TaxRate(
            id=int(spec["id"]), code=code, rate=Decimal(str(spec["rate"])),
            label=spec.get("label", "Tax"), shipping=bool(spec.get("shipping", True)),
            compound=bool(spec.get("compound", False)),
            tax_class=spec.get("class", spec.get("tax_class", "")),
            priority=int(spec.get("priority", suffix if suffix.isdigit() else 1)),
            countries=(country,) if isinstance(country, str) else tuple(country),
            state=spec.get("state", "")))
    return rates


def select_rates(rates: list[TaxRate], tax_class: str, location: tuple[str, str]) -> list[TaxRate]:
    """The most specific matching rate of each priority, in priority order."""
    matching = [r for r in rates if r.matches(tax_class, *location)]
    matching.sort(key=lambda r: (r.priority, -(bool(r.countries) + bool(r.state)), r.id))
    chosen: dict[int, TaxRate] = {}
    for rate in matching:
        chosen.setdefault(rate.priority, rate)
    return list(chosen.values())


def calc_exclusive(amount: Decimal, rates: list[TaxRate]) -> dict[int, Decimal]:
    taxes = {r.id: amount * r.rate / 100 for r in rates if not r.compound}
    for rate in rates:
        if rate.compound:
            taxes[rate.id] = (amount + sum(taxes.values(), ZERO)) * rate.rate / 100
    return taxes


def calc_inclusive(amount: Decimal, rates: list[TaxRate]) -> dict[int, Decimal]:
    taxes: dict[int, Decimal] = {}
    net = amount
    for rate in reversed([r for r in rates if r.compound]):
        taxes[rate.id] = net - net / (1 + rate.rate / 100)
        net -= taxes[rate.id]
    regular = [r for r in rates if not r.compound]
    divisor = 1 + sum((r.rate for r in regular), ZERO) / 100
    for rate in regular:
        taxes[rate.id] = rate.rate / 100 / divisor * net
    return taxes


def calc_tax(amount: Decimal, rates: list[TaxRate], inclusive: bool) -> dict[int, Decimal]:
    return calc_inclusive(amount, rates) if inclusive else calc_exclusive(amount, rates)


def rounded(taxes: dict[int, Decimal]) -> dict[int, Decimal]:
    return {k: round2(v) for k, v in taxes.items()}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

@dataclass
class ApiKey:
    consumer_key: str
    consumer_secret: str
    permissions: str = "read_write"
    user_id: int = 1
    nonces: dict[int, str] = field(default_factory=dict)  # timestamp -> nonce, as core stores them


@dataclass
class Product:
    id: int
    name: str
    created: datetime
    modified: datetime
    type: str = "simple"
    status: str = "publish"
    sku: str = ""
    regular_price: str = ""
    sale_price: str = ""
    tax_status: str = "taxable"
    tax_class: str = ""
    manage_stock: bool = False
    stock_quantity: int | None = None
    stock_status: str = "instock"
    backorders: str = "no"
    virtual: bool = False
    parent_id: int = 0
    attributes: list[dict] = field(default_factory=list)
    variations: list[int] = field(default_factory=list)
    description: str = ""
    meta_data: list = field(default_factory=list)
    total_sales: int = 0


@dataclass
class Coupon:
    id: int
    code: str
    discount_type: str = "percent"
    amount: Decimal = ZERO
    free_shipping: bool = False


@dataclass
class Customer:
    id: int
    email: str
    username: str
    created: datetime
    modified: datetime
    first_name: str = ""
    last_name: str = ""
    role: str = "customer"
    billing: dict = field(default_factory=dict)
    shipping: dict = field(default_factory=dict)
    is_paying_customer: bool = False
    meta_data: list = field(default_factory=list)


@dataclass
class LineItem:
    id: int
    name: str
    product_id: int
    variation_id: int
    quantity: int
    tax_class: str
    taxable: bool
    sku: str
    subtotal: Decimal
    total: Decimal
    custom_total: Decimal | None = None
    subtotal_taxes: dict[int, Decimal] = field(default_factory=dict)
    taxes: dict[int, Decimal] = field(default_factory=dict)
    meta_data: list = field(default_factory=list)
    parent_name: str | None = None


@dataclass
class ShippingLine:
    id: int
    method_id: str
    method_title: str
    total: Decimal
    instance_id: str = ""
    taxes: dict[int, Decimal] = field(default_factory=dict)
    meta_data: list = field(default_factory=list)


@dataclass
class FeeLine:
    id: int
    name: str
    total: Decimal
    tax_class: str = ""
    tax_status: str = "taxable"
    taxes: dict[int, Decimal] = field(default_factory=dict)
    meta_data: list = field(default_factory=list)


@dataclass
class CouponLine:
    id: int
    code: str
    discount_type: str
    nominal: Decimal
    free_shipping: bool = False
    discount: Decimal = ZERO
    discount_tax: Decimal = ZERO


@dataclass
class TaxLine:
    id: int
    rate: TaxRate
    tax_total: Decimal
    shipping_tax_total: Decimal


@dataclass
class Order:
    id: int
    status: str
    currency: str
    prices_include_tax: bool
    created: datetime
    modified: datetime
    order_key: str
    customer_id: int = 0
    parent_id: int = 0
    billing: dict = field(default_factory=dict)
    shipping: dict = field(default_factory=dict)
    payment_method: str = ""
    payment_method_title: str = ""
    transaction_id: str = ""
    customer_note: str = ""
    customer_ip_address: str = ""
    customer_user_agent: str = ""
    created_via: str = "rest-api"
    meta_data: list = field(default_factory=list)
    line_items: list[LineItem] = field(default_factory=list)
    shipping_lines: list[ShippingLine] = field(default_factory=list)
    fee_lines: list[FeeLine] = field(default_factory=list)
    coupon_lines: list[CouponLine] = field(default_factory=list)
    tax_lines: list[TaxLine] = field(default_factory=list)
    refund_ids: list[int] = field(default_factory=list)
    date_paid: datetime | None = None
    date_completed: datetime | None = None
    discount_total: Decimal = ZERO
    discount_tax: Decimal = ZERO
    shipping_total: Decimal = ZERO
    shipping_tax: Decimal = ZERO
    cart_tax: Decimal = ZERO
    total: Decimal = ZERO
    total_tax: Decimal = ZERO
    stock_reduced: bool = False
    previous_status: str = ""


@dataclass
class RefundItem:
    id: int
    kind: str  # line_item | shipping | fee
    source: Any  # a copy of the refunded order item
    quantity: int
    total: Decimal
    taxes: dict[int, Decimal]


@dataclass
class Refund:
    id: int
    order_id: int
    created: datetime
    amount: Decimal
    reason: str
    refunded_payment: bool
    items: list[RefundItem] = field(default_factory=list)
    tax_lines: list[TaxLine] = field(default_factory=list)
    refunded_by: int = 1
    meta_data: list = field(default_factory=list)


@dataclass
class Webhook:
    id: int
    name: str
    topic: str
    delivery_url: str
    secret: str
    created: datetime
    modified: datetime
    status: str = "active"
    failure_count: int = 0
    pending_delivery: bool = True
    user_id: int = 1

    @property
    def resource(self) -> str:
        return self.topic.split(".", 1)[0]

    @property
    def event(self) -> str:
        return self.topic.split(".", 1)[1] if "." in self.topic else ""


@dataclass
class Settings:
    """Store configuration; every field can be changed at run time via ``/_sandbox/settings``."""

    home_url: str = "https://shop.test/"
    currency: str = "USD"
    prices_include_tax: bool = False
    tax_rates: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_TAX_RATES))
    strip_authorization: bool = False
    max_webhook_failures: int = 5
    delivery_timeout: float = 60.0
    deliver_async: bool = True
    delivery_verify: bool | str = True
    gmt_offset: float = 2.0  # WordPress option: site timezone as hours from UTC
    base_country: str = "US"
    base_state: str = "CA"

    def update(self, values: dict) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
        for key, value in values.items():
            if key == "tax_rates":
                parse_tax_rates(value)
            setattr(self, key, value)


# --------------------------------------------------------------------------------------------
# Order pricing (pure functions over an Order)
# --------------------------------------------------------------------------------------------

RatesFor = Callable[[str], list[TaxRate]]


def _cents(value: Decimal) -> int:
    return int((value * 100).quantize(Decimal(1), ROUND_HALF_UP))


class DiscountAllocator:
    """``WC_Discounts``: coupons split over items in cents, remainders a cent per unit."""

    def __init__(self, items: list[LineItem], prices: dict[int, int]) -> None:
        self.prices = prices
        self.remaining = dict(prices)
        self.items = sorted((i for i in items if prices[i.id] > 0 and i.quantity > 0),
                            key=lambda i: prices[i.id] * i.quantity, reverse=True)

    def apply(self, coupon: CouponLine) -> dict[int, int]:
        alloc: dict[int, int] = defaultdict(int)
        if coupon.discount_type == "percent":
            self._percent(alloc, coupon.nominal)
        elif coupon.discount_type == "fixed_product":
            self._fixed_product(alloc, self.items, _cents(coupon.nominal))
        else:
            self._fixed_cart(alloc, _cents(coupon.nominal))
        for item_id, cents in alloc.items():
            self.remaining[item_id] -= cents
        return dict(alloc)

    def _available(self, alloc: dict[int, int], item: LineItem) -> int:
        return self.remaining[item.id] - alloc[item.id]

    def _percent(self, alloc: dict[int, int], percent: Decimal) -> None:
        total = cart = 0
        for item in self.items:
            price = self.prices[item.id]
            share = int((price * percent / 100).to_integral_value(ROUND_FLOOR))
            share = min(self._available(alloc, item), share)
            alloc[item.id] += share
            total += share
            cart += price
        whole = int((cart * percent / 100).quantize(Decimal(1), ROUND_HALF_UP))
        if total < whole:
            self._remainder(alloc, whole - total)

    def _fixed_product(self, alloc: dict[int, int], items: list[LineItem], per_unit: int) -> int:
        total = 0
        for item in items:
            share = min(self._available(alloc, item), per_unit * item.quantity)
            alloc[item.id] += share
            total += share
        return total

    def _fixed_cart(self, alloc: dict[int, int], amount: int) -> int:
        count = sum(i.quantity for i in self.items)
        if not count or amount <= 0:
            return 0
        per_unit = amount // count
        if per_unit > 0:
            total = self._fixed_product(alloc, self.items, per_unit)
            if 0 < total < amount:
                total += self._fixed_cart(alloc, amount - total)
            return total
        return self._remainder(alloc, amount)

    def _remainder(self, alloc: dict[int, int], amount: int) -> int:
        total = 0
        for item in self.items:
            for _ in range(item.quantity):
                share = min(self._available(alloc, item), 1)
                alloc[item.id] += share
                total += share
                if total >= amount:
                    return total
        return total


def apply_coupons(order: Order, item_rates: dict[int, list[TaxRate]]) -> None:
    """``recalculate_coupons``: reset line totals to subtotals, then take each coupon off."""
    inclusive = order.prices_include_tax
    prices = {i.id: _cents(i.subtotal + (sum(i.subtotal_taxes.values(), ZERO) if inclusive else ZERO))
              for i in order.line_items}
    allocator = DiscountAllocator(order.line_items, prices)
    taken: dict[int, Decimal] = defaultdict(Decimal)
    for coupon in order.coupon_lines:
        alloc = allocator.apply(coupon)
        discount, discount_tax = Decimal(sum(alloc.values())) / 100, ZERO
        for item in order.line_items:
            amount = Decimal(alloc.get(item.id, 0)) / 100
            if not amount:
                continue
            tax = ZERO
            if item.taxable:
                tax = round2(sum(calc_tax(amount, item_rates[item.id], inclusive).values(), ZERO))
            discount_tax += tax
            if inclusive:
                discount -= tax
            taken[item.id] += amount - tax if inclusive else amount
        coupon.discount, coupon.discount_tax = round2(discount), discount_tax
    for item in order.line_items:
        item.total = max(ZERO, round2(item.subtotal - taken[item.id]))


def price_order(order: Order, rates: list[TaxRate], location: tuple[str, str],
                next_id: Callable[[], int]) -> None:
    """``WC_Order::calculate_totals`` with taxes rounded per line (core default)."""
    def rates_for(tax_class: str) -> list[TaxRate]:
        return select_rates(rates, tax_class, location)

    item_rates = {i.id: rates_for(i.tax_class) if i.taxable else [] for i in order.line_items}
    for item in order.line_items:
        item.subtotal_taxes = rounded(calc_exclusive(item.subtotal, item_rates[item.id]))
    if order.coupon_lines:
        apply_coupons(order, item_rates)
    else:
        for item in order.line_items:
            item.total = item.subtotal if item.custom_total is None else item.custom_total
    for item in order.line_items:
        item.taxes = rounded(calc_exclusive(item.total, item_rates[item.id]))
    for fee in order.fee_lines:
        fee_rates = rates_for(fee.tax_class) if fee.tax_status == "taxable" else []
        fee.taxes = rounded(calc_exclusive(fee.total, fee_rates))
    shipping_rates = [r for r in rates_for(shipping_tax_class(order)) if r.shipping]
    for line in order.shipping_lines:
        line.taxes = rounded(calc_exclusive(line.total, shipping_rates))
    _sum_taxes(order, {r.id: r for r in rates}, next_id)
    _sum_totals(order)


def shipping_tax_class(order: Order) -> str:
    classes = [i.tax_class for i in order.line_items if i.taxable]
    return "" if not classes or "" in classes else classes[0]


def _sum_taxes(order: Order, rates: dict[int, TaxRate], next_id: Callable[[], int]) -> None:
    cart: dict[int, Decimal] = defaultdict(Decimal)
    shipping: dict[int, Decimal] = defaultdict(Decimal)
    for line in [*order.line_items, *order.fee_lines]:
        for rate_id, tax in line.taxes.items():
            cart[rate_id] += tax
    for line in order.shipping_lines:
        for rate_id, tax in line.taxes.items():
            shipping[rate_id] += tax
    known = {t.rate.id: t.rate for t in order.tax_lines} | rates
    order.tax_lines = [TaxLine(next_id(), known.get(rid) or unknown_rate(rid), cart.get(rid, ZERO),
                               shipping.get(rid, ZERO))
                       for rid in dict.fromkeys([*cart, *shipping])]
    order.cart_tax = round2(sum(cart.values(), ZERO))
    order.shipping_tax = round2(sum(shipping.values(), ZERO))
    order.total_tax = order.cart_tax + order.shipping_tax


def unknown_rate(rate_id: int) -> TaxRate:
    """A rate id no longer configured (a refund may name one): shown with a neutral code."""
    return TaxRate(rate_id, f"TAX-{rate_id}", ZERO, "Tax", True, False, "", 1, (), "")


def _sum_totals(order: Order) -> None:
    subtotal = sum((i.subtotal for i in order.line_items), ZERO)
    total = sum((i.total for i in order.line_items), ZERO)
    subtotal_tax = sum((sum(i.subtotal_taxes.values(), ZERO) for i in order.line_items), ZERO)
    line_tax = sum((sum(i.taxes.values(), ZERO) for i in order.line_items), ZERO)
    fees = sum((f.total for f in order.fee_lines), ZERO)
    order.shipping_total = round2(sum((s.total for s in order.shipping_lines), ZERO))
    order.discount_total = round2(subtotal - total)
    order.discount_tax = round2(subtotal_tax - line_tax)
    order.total = round2(total + fees + order.shipping_total + order.cart_tax + order.shipping_tax)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

class WooState:
    """All store data plus the webhook delivery queue. Public methods take and return the same
    JSON the REST API does, so tests can drive the store directly."""

    def __init__(self, settings: Settings, keys: list[ApiKey]) -> None:
        self._initial = (copy.deepcopy(settings), copy.deepcopy(keys))
        self.delivery_transport: httpx.AsyncBaseTransport | None = None
        self._scope_var: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
            f"woo-events-{id(self)}", default=None)
        self._worker: asyncio.Task | None = None
        self._http: httpx.AsyncClient | None = None
        self._http_key: tuple | None = None
        self.reset()

    # ---- lifecycle, clock, ids ---------------------------------------------------------------
    def reset(self) -> None:
        """A fresh store with the configuration it was created with."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self.settings, keys = copy.deepcopy(self._initial[0]), copy.deepcopy(self._initial[1])
        self.keys = {k.consumer_key: k for k in keys}
        self.products: dict[int, Product] = {}
        self.coupons: dict[str, Coupon] = {}
        self.customers: dict[int, Customer] = {}
        self.orders: dict[int, Order] = {}
        self.refunds: dict[int, Refund] = {}
        self.webhooks: dict[int, Webhook] = {}
        self.clock_offset = 0.0
        self._seq = {"post": 100, "item": 1, "user": 1, "webhook": 0, "coupon": 0}
        self._queue: list[tuple[int, int]] = []
        self._pending: set[tuple[int, int]] = set()
        self._inflight = 0
        self.deliveries: list[dict] = []
        self.outage_next = 0
        self.duplicate_next = 0

    def now(self) -> datetime:
        """UTC, whole seconds (WordPress stores dates to the second), naive like the DB columns."""
        return datetime.fromtimestamp(int(time.time() + self.clock_offset), timezone.utc).replace(tzinfo=None)

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    @property
    def utc_offset(self) -> timedelta:
        return timedelta(hours=float(self.settings.gmt_offset))

    def local(self, value: datetime | None) -> datetime | None:
        return value + self.utc_offset if value else None

    def dates(self, name: str, value: datetime | None) -> dict:
        return {name: fmt_date(self.local(value)), f"{name}_gmt": fmt_date(value)}

    def _next(self, kind: str) -> int:
        self._seq[kind] += 1
        return self._seq[kind]

    def next_post_id(self) -> int:
        return self._next("post")

    def next_item_id(self) -> int:
        return self._next("item")

    @property
    def home(self) -> str:
        return self.settings.home_url.rstrip("/")

    def add_key(self, consumer_key: str, consumer_secret: str, permissions: str = "read_write") -> None:
        self.keys[consumer_key] = ApiKey(consumer_key, consumer_secret, permissions)

    def counts(self) -> dict:
        return {"orders": len(self.orders), "refunds": len(self.refunds),
                "customers": len(self.customers),
                "products": sum(1 for p in self.products.values() if p.type != "variation"),
                "variations": sum(1 for p in self.products.values() if p.type == "variation"),
                "coupons": len(self.coupons), "webhooks": len(self.webhooks),
                "deliveries": len(self.deliveries), "pending_deliveries": len(self._queue)}

    # ---- taxes -----------------------------------------------------------------------------
    def tax_rates(self) -> list[TaxRate]:
        return parse_tax_rates(self.settings.tax_rates)

    def tax_location(self, order: Order | None) -> tuple[str, str]:
        """Tax based on the shipping address, else billing, else the shop base."""
        for address in ((order.shipping, order.billing) if order else ()):
            if address.get("country"):
                return address["country"], address.get("state", "")
        return self.settings.base_country, self.settings.base_state

    def price(self, order: Order) -> None:
        price_order(order, self.tax_rates(), self.tax_location(order), self.next_item_id)

    # ---- events ----------------------------------------------------------------------------
    def emit(self, resource: str, event: str, resource_id: int) -> None:
        """A core action fired: queue each active webhook on the topic once per request."""
        if resource == "order":
            order = self.orders.get(resource_id)
            if order is not None and order.status in SILENT_ORDER_STATUSES:
                return
        topic = f"{resource}.{event}"
        scope = self._scope_var.get()
        for hook in self.webhooks.values():
            if hook.status == "active" and hook.topic == topic:
                if scope is None:
                    self._enqueue((hook.id, resource_id))
                else:
                    scope.setdefault((hook.id, resource_id), None)

    def open_scope(self) -> contextvars.Token:
        return self._scope_var.set({})

    async def close_scope(self, token: contextvars.Token) -> None:
        keys = list(self._scope_var.get() or ())
        self._scope_var.reset(token)
        if self.settings.deliver_async:
            for key in keys:
                self._enqueue(key)
        else:
            for key in keys:
                await self._deliver(key)

    # ---- catalog ---------------------------------------------------------------------------
    def product_by_sku(self, sku: str) -> Product | None:
        return next((p for p in self.products.values() if sku and p.sku == sku), None)

    def _check_sku(self, sku: str, own_id: int = 0) -> None:
        other = self.product_by_sku(sku)
        if other is not None and other.id != own_id:
            raise ApiError(400, "product_invalid_sku", "Invalid or duplicated SKU.",
                           resource_id=other.id, unique_sku=sku)

    def new_product(self, body: dict, parent: Product | None = None) -> Product:
        if body.get("id"):
            kind = "product_variation" if parent else "product"
            raise ApiError(400, f"woocommerce_rest_{kind}_exists", f"Cannot create existing {kind}.")
        now = self.now()
        product = Product(id=self.next_post_id(), name=str(body.get("name") or ("" if parent else "Product")),
                          created=now, modified=now)
        if parent is not None:
            product.type, product.parent_id, product.tax_class = "variation", parent.id, "parent"
        self.apply_product(product, body)
        self.products[product.id] = product
        if parent is not None:
            parent.variations.append(product.id)
            parent.modified = now
        return product

    def apply_product(self, product: Product, body: dict) -> None:
        if "sku" in body:
            self._check_sku(str(body["sku"] or ""), product.id)
            product.sku = str(body["sku"] or "")
        for key in ("name", "type", "status", "tax_status", "tax_class", "backorders",
                    "description", "stock_status"):
            if key in body and body[key] is not None:
                setattr(product, key, str(body[key]))
        for key in ("regular_price", "sale_price"):
            if key in body:
                setattr(product, key, "" if body[key] in (None, "") else str(to_decimal(body[key], key)))
        if "manage_stock" in body:
            product.manage_stock = to_bool(body["manage_stock"])
        if "stock_quantity" in body:
            value = body["stock_quantity"]
            product.stock_quantity = None if value is None else to_int(value, "stock_quantity")
        if "virtual" in body:
            product.virtual = to_bool(body["virtual"])
        if "attributes" in body:
            product.attributes = normalise_attributes(body["attributes"], product.type == "variation")
        if "meta_data" in body:
            product.meta_data = list(body["meta_data"] or [])
        self._refresh_stock_status(product)

    def _refresh_stock_status(self, product: Product) -> None:
        if product.manage_stock and product.stock_quantity is not None:
            if product.stock_quantity > 0:
                product.stock_status = "instock"
            else:
                product.stock_status = "outofstock" if product.backorders == "no" else "onbackorder"

    def create_product(self, body: dict, parent: Product | None = None, *, notify: bool = True) -> Product:
        product = self.new_product(body, parent)
        specs = [] if parent is not None else [v for v in body.get("variations") or [] if isinstance(v, dict)]
        for spec in specs:
            product.type = "variable"
            self.new_product(spec, product)
        if notify:
            self.emit("product", "created", product.id)
        return product

    def update_product(self, product: Product, body: dict) -> Product:
        self.apply_product(product, body)
        product.modified = self.now()
        self.emit("product", "updated", product.id)
        return product

    def delete_product(self, product: Product, force: bool) -> None:
        if not force and product.type != "variation":
            if product.status == "trash":
                raise ApiError(410, "woocommerce_rest_already_trashed", "The product has already been deleted.")
            product.status = "trash"
            product.modified = self.now()
        else:
            for child in list(product.variations):
                self.products.pop(child, None)
            self.products.pop(product.id, None)
            parent = self.products.get(product.parent_id)
            if parent is not None and product.id in parent.variations:
                parent.variations.remove(product.id)
        self.emit("product", "deleted", product.id)

    def price_of(self, product: Product) -> str:
        if product.type == "variable":
            prices = [Decimal(v.sale_price or v.regular_price) for v in self.variations_of(product)
                      if (v.sale_price or v.regular_price)]
            return str(min(prices)) if prices else ""
        return product.sale_price or product.regular_price

    def variations_of(self, product: Product) -> list[Product]:
        return [self.products[v] for v in product.variations if v in self.products]

    def tax_class_of(self, product: Product) -> str:
        if product.type == "variation" and product.tax_class == "parent":
            parent = self.products.get(product.parent_id)
            return parent.tax_class if parent else ""
        return product.tax_class

    def add_product(self, sku: str, name: str, regular_price: str, *, tax_class: str = "",
                    variations: list[dict] | None = None, **extra: Any) -> dict:
        """Seed one catalog product (no webhooks); returns it as the API shows it."""
        body = {"sku": sku, "name": name, "regular_price": regular_price, "tax_class": tax_class,
                "variations": variations or [], **extra}
        if variations:
            body.setdefault("type", "variable")
        product = self.create_product(body, notify=False)
        return self.product_json(product, self.home)

    def add_coupon(self, code: str, discount_type: str = "percent", amount: Any = "10",
                   free_shipping: bool = False) -> dict:
        if discount_type not in ("percent", "fixed_cart", "fixed_product"):
            raise ValueError(f"unknown discount_type {discount_type!r}")
        coupon = Coupon(self._next("coupon"), code.strip().lower(), discount_type,
                        to_decimal(amount), bool(free_shipping))
        self.coupons[coupon.code] = coupon
        return {"id": coupon.id, "code": coupon.code, "discount_type": coupon.discount_type,
                "amount": money(coupon.amount), "free_shipping": coupon.free_shipping}

    def adjust_stock(self, product_id: int, delta: int) -> None:
        product = self.products.get(product_id)
        if product is not None and product.manage_stock and product.stock_quantity is not None:
            product.stock_quantity += delta
            self._refresh_stock_status(product)

    # ---- customers -------------------------------------------------------------------------
    def create_customer(self, body: dict) -> Customer:
        if body.get("id"):
            raise ApiError(400, "woocommerce_rest_customer_exists", "Cannot create existing resource.")
        email = str(body.get("email") or "").strip()
        if not email:
            raise ApiError(400, "rest_missing_callback_param", "Missing parameter(s): email", params=["email"])
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise ApiError(400, "registration-error-invalid-email", "Please provide a valid email address.")
        if any(c.email.lower() == email.lower() for c in self.customers.values()):
            raise ApiError(400, "registration-error-email-exists",
                           "An account is already registered with your email address. Please log in.")
        username = str(body.get("username") or "") or self._username_for(email)
        if any(c.username == username for c in self.customers.values()):
            raise ApiError(400, "registration-error-username-exists",
                           "An account is already registered with that username. Please choose another.")
        now = self.now()
        customer = Customer(self._next("user"), email, username, now, now)
        self.apply_customer(customer, body)
        self.customers[customer.id] = customer
        self.emit("customer", "created", customer.id)
        return customer

    def _username_for(self, email: str) -> str:
        base = re.sub(r"[^a-z0-9._-]", "", email.split("@")[0].lower()) or "customer"
        name, n = base, 1
        while any(c.username == name for c in self.customers.values()):
            n += 1
            name = f"{base}{n}"
        return name

    def apply_customer(self, customer: Customer, body: dict) -> None:
        for key in ("first_name", "last_name"):
            if key in body and body[key] is not None:
                setattr(customer, key, str(body[key]))
        if body.get("email"):
            customer.email = str(body["email"]).strip()
        customer.billing = merge_address(customer.billing, body.get("billing"), billing=True)
        customer.shipping = merge_address(customer.shipping, body.get("shipping"), billing=False)
        if "meta_data" in body:
            customer.meta_data = list(body["meta_data"] or [])

    def update_customer(self, customer: Customer, body: dict) -> Customer:
        self.apply_customer(customer, body)
        customer.modified = self.now()
        self.emit("customer", "updated", customer.id)
        return customer

    def add_customer(self, email: str, **fields_: Any) -> dict:
        return self.customer_json(self.create_customer({"email": email, **fields_}), self.home)

    def _mark_paying(self, order: Order) -> None:
        customer = self.customers.get(order.customer_id)
        if customer is not None and not customer.is_paying_customer:
            customer.is_paying_customer = True
            customer.modified = self.now()
            self.emit("customer", "updated", customer.id)

    # ---- orders ----------------------------------------------------------------------------
    def new_order(self, body: dict) -> Order:
        if body.get("id"):
            raise ApiError(400, "woocommerce_rest_shop_order_exists", "Cannot create existing shop_order.")
        currency = str(body.get("currency") or self.settings.currency).upper()
        self._check_currency(currency)
        now = self.now()
        order = Order(id=self.next_post_id(), status="pending", currency=currency,
                      prices_include_tax=bool(self.settings.prices_include_tax), created=now,
                      modified=now, order_key="wc_order_" + random_token(13),
                      billing=merge_address({}, None, billing=True),
                      shipping=merge_address({}, None, billing=False))
        self._apply_order_fields(order, body)
        self._apply_items(order, body, creating=True)
        self.price(order)
        if "status" in body:
            order.status = self._valid_status(body["status"])
        return order

    def create_order(self, body: dict) -> dict:
        """``POST /orders`` without HTTP; returns the order JSON."""
        return self.order_json(self._create_order(body), self.home)

    def _create_order(self, body: dict) -> Order:
        order = self.new_order(body)
        self.orders[order.id] = order
        self._after_status(order, "pending" if order.status != "pending" else "")
        self.emit("order", "created", order.id)
        if to_bool(body.get("set_paid", False)):
            self.payment_complete(order, str(body.get("transaction_id") or ""))
        self.emit("order", "updated", order.id)
        return order

    def edit_order(self, order_id: int, body: dict) -> dict:
        """``PUT /orders/{id}`` without HTTP; returns the order JSON."""
        order = self.orders.get(order_id)
        if order is None:
            raise ApiError(400, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
        return self.order_json(self._edit_order(order, body), self.home)

    def _edit_order(self, order: Order, body: dict) -> Order:
        draft = copy.deepcopy(order)
        if "currency" in body and body["currency"]:
            draft.currency = str(body["currency"]).upper()
            self._check_currency(draft.currency)
        self._apply_order_fields(draft, body)
        if self._apply_items(draft, body, creating=False) or "billing" in body or "shipping" in body:
            self.price(draft)
        status = self._valid_status(body["status"]) if body.get("status") else None
        draft.modified = self.now()
        self.orders[order.id] = draft
        if status and status != draft.status:
            self.set_status(draft, status)
        if to_bool(body.get("set_paid", False)) and self.needs_payment(draft):
            self.payment_complete(draft, str(body.get("transaction_id") or ""))
        self.emit("order", "updated", draft.id)
        return draft

    def delete_order(self, order: Order, force: bool) -> None:
        if force:
            del self.orders[order.id]
            for refund_id in order.refund_ids:
                self.refunds.pop(refund_id, None)
        elif order.status == "trash":
            raise ApiError(410, "woocommerce_rest_already_trashed", "The shop_order has already been deleted.")
        else:
            order.previous_status, order.status, order.modified = order.status, "trash", self.now()
        self.emit("order", "deleted", order.id)

    def get_order(self, order_id: int) -> dict:
        return self.order_json(self.orders[order_id], self.home)

    def _check_currency(self, currency: str) -> None:
        if currency not in CURRENCIES:
            raise invalid_param({"currency": f"currency is not one of {wp_list(sorted(CURRENCIES))}."})

    def _valid_status(self, value: Any) -> str:
        status = str(value).removeprefix("wc-")
        if status not in ORDER_STATUSES:
            raise invalid_param({"status": f"status is not one of {wp_list(ORDER_STATUSES)}."})
        return status

    def _apply_order_fields(self, order: Order, body: dict) -> None:
        if "customer_id" in body:
            customer_id = to_int(body["customer_id"] or 0, "customer_id")
            if customer_id and customer_id not in self.customers:
                raise ApiError(400, "woocommerce_rest_invalid_customer_id", "Customer ID is invalid.")
            order.customer_id = customer_id
        order.billing = merge_address(order.billing, body.get("billing"), billing=True)
        order.shipping = merge_address(order.shipping, body.get("shipping"), billing=False)
        for key in ("payment_method", "payment_method_title", "transaction_id", "customer_note",
                    "customer_ip_address", "customer_user_agent", "created_via"):
            if key in body and body[key] is not None:
                setattr(order, key, str(body[key]))
        if "parent_id" in body:
            order.parent_id = to_int(body["parent_id"] or 0, "parent_id")
        if "meta_data" in body:  # merged as WC_Data does: by id, else by key, else added
            for m in body["meta_data"] or []:
                found = next((x for x in order.meta_data if (m.get("id") and x["id"] == m["id"])
                              or (not m.get("id") and x["key"] == m.get("key"))), None)
                if found is not None:
                    found["value"] = m.get("value")
                else:
                    order.meta_data.append({"id": self.next_item_id(), "key": m.get("key"),
                                            "value": m.get("value")})

    def _apply_items(self, order: Order, body: dict, *, creating: bool) -> bool:
        changed = False
        for entry in body.get("line_items") or []:
            changed |= self._apply_line_item(order, entry, creating)
        for entry in body.get("shipping_lines") or []:
            changed |= self._apply_shipping(order, entry)
        for entry in body.get("fee_lines") or []:
            changed |= self._apply_fee(order, entry)
        for entry in body.get("coupon_lines") or []:
            changed |= self._apply_coupon(order, entry)
        return changed

    def _find_item(self, items: list, item_id: Any) -> Any:
        wanted = to_int(item_id, "id")
        for item in items:
            if item.id == wanted:
                return item
        raise ApiError(400, "woocommerce_rest_invalid_item_id",
                       "Order item ID provided is not associated with order.")

    def _apply_line_item(self, order: Order, entry: dict, creating: bool) -> bool:
        if entry.get("id") and not creating:
            item = self._find_item(order.line_items, entry["id"])
            if is_removal(entry, "quantity"):
                order.line_items.remove(item)
                return True
            self._update_line_item(order, item, entry)
            return True
        order.line_items.append(self._new_line_item(order, entry))
        return True

    def _resolve_product(self, entry: dict) -> Product:
        if entry.get("sku") and not entry.get("product_id") and not entry.get("variation_id"):
            product = self.product_by_sku(str(entry["sku"]))
        elif entry.get("variation_id"):
            product = self.products.get(to_int(entry["variation_id"], "variation_id"))
            if product is not None and product.type != "variation":
                product = None
        elif entry.get("product_id"):
            product = self.products.get(to_int(entry["product_id"], "product_id"))
        else:
            raise ApiError(400, "woocommerce_rest_required_product_reference", "Product ID or SKU is required.")
        if product is None or product.status == "trash":
            raise ApiError(400, "woocommerce_rest_invalid_product_id", "Product ID provided is invalid.")
        return product

    def _line_subtotal(self, order: Order, product: Product, quantity: int) -> Decimal:
        """``wc_get_price_excluding_tax``: catalog prices may include the base-location tax."""
        line = to_decimal(self.price_of(product)) * quantity
        if order.prices_include_tax and product.tax_status == "taxable":
            base = select_rates(self.tax_rates(), self.tax_class_of(product),
                                (self.settings.base_country, self.settings.base_state))
            line = round2(line - sum(calc_inclusive(line, base).values(), ZERO))
        return line

    def _new_line_item(self, order: Order, entry: dict) -> LineItem:
        product = self._resolve_product(entry)
        quantity = to_int(entry.get("quantity", 1), "quantity")
        if quantity <= 0:
            raise ApiError(400, "woocommerce_rest_invalid_product_quantity",
                           "Product quantity must be a positive float.")
        parent = self.products.get(product.parent_id) if product.type == "variation" else None
        subtotal = self._line_subtotal(order, product, quantity)
        item = LineItem(
            id=self.next_item_id(), name=variation_name(product, parent), quantity=quantity,
            product_id=parent.id if parent else product.id,
            variation_id=product.id if parent else 0,
            tax_class=self.tax_class_of(product), taxable=product.tax_status == "taxable",
            sku=product.sku, subtotal=subtotal, total=subtotal,
            meta_data=[self._attribute_meta(a) for a in product.attributes] if parent else [],
            parent_name=parent.name if parent else None)
        self._override_totals(item, entry)
        if entry.get("name"):
            item.name = str(entry["name"])
        return item

    def _attribute_meta(self, attribute: dict) -> dict:
        key, value = "pa_" + slugify(attribute["name"]), slugify(attribute["option"])
        return {"id": self.next_item_id(), "key": key, "value": value,
                "display_key": attribute["name"], "display_value": attribute["option"]}

    def _update_line_item(self, order: Order, item: LineItem, entry: dict) -> None:
        if "quantity" in entry and entry["quantity"] is not None:
            quantity = to_int(entry["quantity"], "quantity")
            if quantity < 0:
                raise ApiError(400, "woocommerce_rest_invalid_product_quantity",
                               "Product quantity must be a positive float.")
            if quantity != item.quantity:
                product = self.products.get(item.variation_id or item.product_id)
                unit = item.subtotal / item.quantity if item.quantity else ZERO
                item.quantity = quantity
                item.subtotal = (self._line_subtotal(order, product, quantity) if product
                                 else round2(unit * quantity))
                item.custom_total = None
        self._override_totals(item, entry)
        if entry.get("name"):
            item.name = str(entry["name"])

    @staticmethod
    def _override_totals(item: LineItem, entry: dict) -> None:
        if entry.get("subtotal") not in (None, ""):
            item.subtotal = round2(to_decimal(entry["subtotal"], "subtotal"))
        if entry.get("total") not in (None, ""):
            item.custom_total = round2(to_decimal(entry["total"], "total"))
        elif entry.get("subtotal") not in (None, ""):
            item.custom_total = item.subtotal

    def _apply_shipping(self, order: Order, entry: dict) -> bool:
        if entry.get("id"):
            line = self._find_item(order.shipping_lines, entry["id"])
            if is_removal(entry, "method_id"):
                order.shipping_lines.remove(line)
                return True
        else:
            if not entry.get("method_id"):
                raise ApiError(400, "woocommerce_rest_invalid_shipping_item", "Shipping method ID is required.")
            line = ShippingLine(self.next_item_id(), "", "", ZERO)
            order.shipping_lines.append(line)
        for key in ("method_id", "method_title", "instance_id"):
            if entry.get(key) is not None:
                setattr(line, key, str(entry[key]))
        if "total" in entry:
            line.total = round2(to_decimal(entry["total"], "total"))
        return True

    def _apply_fee(self, order: Order, entry: dict) -> bool:
        if entry.get("id"):
            line = self._find_item(order.fee_lines, entry["id"])
            if is_removal(entry, "name"):
                order.fee_lines.remove(line)
                return True
        else:
            if not entry.get("name"):
                raise ApiError(400, "woocommerce_rest_invalid_fee_item", "Fee name is required.")
            line = FeeLine(self.next_item_id(), "", ZERO)
            order.fee_lines.append(line)
        for key in ("name", "tax_class", "tax_status"):
            if entry.get(key) is not None:
                setattr(line, key, str(entry[key]))
        if "total" in entry:
            line.total = round2(to_decimal(entry["total"], "total"))
        return True

    def _apply_coupon(self, order: Order, entry: dict) -> bool:
        if entry.get("id"):
            line = self._find_item(order.coupon_lines, entry["id"])
            if entry.get("code") is None:
                order.coupon_lines.remove(line)
                return True
        code = str(entry.get("code") or "").strip().lower()
        if not code:
            raise ApiError(400, "woocommerce_rest_invalid_coupon", "Coupon code is required.")
        coupon = self.coupons.get(code)
        if coupon is None:
            raise ApiError(400, "woocommerce_rest_invalid_coupon", f'Coupon "{code}" does not exist!')
        if any(c.code == code for c in order.coupon_lines):
            raise ApiError(400, "woocommerce_rest_invalid_coupon", "Coupon code already applied!")
        order.coupon_lines.append(CouponLine(self.next_item_id(), code, coupon.discount_type,
                                             coupon.amount, coupon.free_shipping))
        return True

    def needs_payment(self, order: Order) -> bool:
        return order.status in ("pending", "failed") and order.total > 0

    def payment_complete(self, order: Order, transaction_id: str = "") -> None:
        """``WC_Order::payment_complete``."""
        if order.status not in PAYMENT_COMPLETE_FROM:
            return
        if transaction_id:
            order.transaction_id = transaction_id
        order.date_paid = order.date_paid or self.now()
        self.set_status(order, "processing")
        self._mark_paying(order)

    def set_status(self, order: Order, status: str) -> None:
        previous = order.status
        if status == previous:
            return
        order.status = status
        order.modified = self.now()
        self._after_status(order, previous)

    def _after_status(self, order: Order, previous: str) -> None:
        """Core hooks on order status transitions."""
        status = order.status
        if status in PAID_STATUSES and order.date_paid is None:
            order.date_paid = self.now()
        if status == "completed" and order.date_completed is None:
            order.date_completed = self.now()
            self._mark_paying(order)
        if status in STOCK_REDUCING and not order.stock_reduced:
            self._move_stock(order, -1)
        elif status in STOCK_RESTORING and order.stock_reduced:
            self._move_stock(order, +1)
        if status == "refunded" and previous:
            remaining = order.total - self.refunded_total(order)
            if remaining > 0:
                self._make_refund(order, remaining, ORDER_REFUNDED_REASON, [], refund_payment=False, restock=False)

    def _move_stock(self, order: Order, sign: int) -> None:
        for item in order.line_items:
            self.adjust_stock(item.variation_id or item.product_id, sign * item.quantity)
        order.stock_reduced = sign < 0

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

    # ---- webhooks --------------------------------------------------------------------------
    async def create_webhook(self, body: dict) -> Webhook:
        missing = [k for k in ("topic", "delivery_url") if not body.get(k)]
        if missing:
            raise ApiError(400, "rest_missing_callback_param",
                           f"Missing parameter(s): {', '.join(missing)}", params=missing)
        if body.get("id"):
            raise ApiError(400, "woocommerce_rest_shop_webhook_exists", "Cannot create existing shop_webhook.")
        topic = valid_topic(body["topic"])
        url = valid_delivery_url(body["delivery_url"])
        now = self.now()
        secret = str(body.get("secret") or "") or "".join(secrets.choice(SECRET_ALPHABET) for _ in range(50))
        name = str(body.get("name") or "") or f"Webhook created on {self.local(now):%b %d, %Y @ %I:%M %p}"
        hook = Webhook(self._next("webhook"), name, topic, url, secret, now, now)
        self.webhooks[hook.id] = hook
        await self.ping(hook)
        return hook

    async def update_webhook(self, hook: Webhook, body: dict) -> Webhook:
        if body.get("status") is not None and body["status"] not in WEBHOOK_STATUSES:
            raise ApiError(400, "woocommerce_rest_shop_webhook_invalid_status", "Webhook status must be valid.")
        topic = valid_topic(body["topic"]) if body.get("topic") else hook.topic
        url = valid_delivery_url(body["delivery_url"]) if body.get("delivery_url") else hook.delivery_url
        if url != hook.delivery_url:
            hook.pending_delivery = True
        hook.topic, hook.delivery_url = topic, url
        if body.get("name"):
            hook.name = str(body["name"])
        if body.get("secret"):
            hook.secret = str(body["secret"])
        if body.get("status"):
            hook.status = body["status"]
        hook.modified = self.now()
        if hook.status == "active" and hook.pending_delivery:
            await self.ping(hook)
        return hook

    def delete_webhook(self, hook: Webhook) -> None:
        self.webhooks.pop(hook.id, None)

    def webhook_deliveries(self) -> list[dict]:
        return [dict(entry) for entry in self.deliveries]

    def _client(self) -> httpx.AsyncClient:
        key = (id(self.delivery_transport), str(self.settings.delivery_verify))
        if self._http is None or self._http.is_closed or self._http_key != key:
            verify = self.settings.delivery_verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            self._http = httpx.AsyncClient(transport=self.delivery_transport, verify=verify,
                                           follow_redirects=False)
            self._http_key = key
        return self._http

    async def _post(self, url: str, content: bytes, headers: dict, timeout: float) -> tuple[int | None, str | None]:
        try:
            resp = await self._client().post(url, content=content, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return None, f"cURL error 28: Operation timed out after {int(timeout * 1000)} milliseconds"
        except httpx.HTTPError as exc:
            return None, f"cURL error 7: {exc or type(exc).__name__}"
        return resp.status_code, None

    async def ping(self, hook: Webhook) -> None:
        """§8.5: unsigned form body, success only on exactly 200."""
        status, error = await self._post(
            hook.delivery_url, f"webhook_id={hook.id}".encode(),
            {"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}, PING_TIMEOUT)
        if status == 200:
            hook.pending_delivery = False
        self._log("ping", hook, hook.id, None, status, error)

    def _enqueue(self, key: tuple[int, int]) -> None:
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.append(key)
        self._kick()

    def _kick(self) -> None:
        if self._worker is not None and not self._worker.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._worker = loop.create_task(self._run_queue(), name="woocommerce-webhooks")

    async def _run_queue(self) -> None:
        while self._queue:
            key = self._queue.pop(0)
            self._pending.discard(key)
            self._inflight += 1
            try:
                await self._deliver(key)
            finally:
                self._inflight -= 1

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the delivery queue is empty and nothing is in flight."""
        deadline = time.monotonic() + timeout
        self._kick()
        while self._queue or self._inflight:
            if time.monotonic() > deadline:
                return False
            self._kick()
            await asyncio.sleep(0.005)
        return True

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        if self._http is not None:
            await self._http.aclose()

    def payload(self, hook: Webhook, resource_id: int) -> dict:
        """Built at send time: exactly what GET of the resource returns."""
        if hook.event == "deleted":
            return {"id": resource_id}
        if hook.resource == "order" and resource_id in self.orders:
            return self.order_json(self.orders[resource_id], self.home)
        if hook.resource == "product" and resource_id in self.products:
            return self.product_json(self.products[resource_id], self.home)
        if hook.resource == "customer" and resource_id in self.customers:
            return self.customer_json(self.customers[resource_id], self.home)
        return {"id": resource_id}

    async def _deliver(self, key: tuple[int, int]) -> None:
        hook = self.webhooks.get(key[0])
        if hook is None:
            return
        body = php_json(self.payload(hook, key[1]))
        delivery_id = hashlib.md5(f"{hook.id}{time.time()}{secrets.token_hex(4)}".encode()).hexdigest()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-WC-Webhook-Source": self.settings.home_url, "X-WC-Webhook-Topic": hook.topic,
                   "X-WC-Webhook-Resource": hook.resource, "X-WC-Webhook-Event": hook.event,
                   "X-WC-Webhook-Signature": sign_payload(body, hook.secret),
                   "X-WC-Webhook-ID": str(hook.id), "X-WC-Webhook-Delivery-ID": delivery_id}
        status, error = await self._send_delivery(hook, body, headers)
        self._log("delivery", hook, key[1], delivery_id, status, error)
        if self.duplicate_next > 0:
            self.duplicate_next -= 1
            again = await self._post(hook.delivery_url, body, headers, float(self.settings.delivery_timeout))
            self._log("delivery", hook, key[1], delivery_id, *again, duplicate=True)
        self._count_outcome(hook, status is not None and 200 <= status <= 302)

    async def _send_delivery(self, hook: Webhook, body: bytes, headers: dict) -> tuple[int | None, str | None]:
        if self.outage_next > 0:
            self.outage_next -= 1
            return None, "cURL error 7: Failed to connect: Connection refused"
        return await self._post(hook.delivery_url, body, headers, float(self.settings.delivery_timeout))

    def _count_outcome(self, hook: Webhook, ok: bool) -> None:
        """§8.6: success resets; a failure past the threshold disables, else counts."""
        if ok:
            hook.failure_count = 0
        elif hook.failure_count > int(self.settings.max_webhook_failures):
            hook.status = "disabled"
            hook.modified = self.now()
        else:
            hook.failure_count += 1

    def _log(self, kind: str, hook: Webhook, resource_id: int, delivery_id: str | None,
             status: int | None, error: str | None, *, duplicate: bool = False) -> None:
        self.deliveries.append({
            "kind": kind, "webhook_id": hook.id, "topic": hook.topic if kind == "delivery" else "ping",
            "resource_id": resource_id, "delivery_id": delivery_id, "status": status, "error": error,
            "duplicate": duplicate, "url": hook.delivery_url,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")})

    # ---- JSON views ------------------------------------------------------------------------
    def links(self, base: str, path: str, collection: str, **extra: str) -> dict:
        links = {"self": [{"href": f"{base}{API_ROOT}{path}"}],
                 "collection": [{"href": f"{base}{API_ROOT}{collection}"}]}
        for rel, href in extra.items():
            links[rel] = [{"href": f"{base}{API_ROOT}{href}"}]
        return links

    def order_json(self, order: Order, base: str) -> dict:
        o = order
        data = {
            "id": o.id, "parent_id": o.parent_id, "status": o.status, "currency": o.currency,
            "version": WC_VERSION, "prices_include_tax": o.prices_include_tax,
            "date_created": fmt_date(self.local(o.created)), "date_modified": fmt_date(self.local(o.modified)),
            "discount_total": money(o.discount_total), "discount_tax": money(o.discount_tax),
            "shipping_total": money(o.shipping_total), "shipping_tax": money(o.shipping_tax),
            "cart_tax": money(o.cart_tax), "total": money(o.total), "total_tax": money(o.total_tax),
            "customer_id": o.customer_id, "order_key": o.order_key,
            "billing": dict(o.billing), "shipping": dict(o.shipping),
            "payment_method": o.payment_method, "payment_method_title": o.payment_method_title,
            "transaction_id": o.transaction_id, "customer_ip_address": o.customer_ip_address,
            "customer_user_agent": o.customer_user_agent, "created_via": o.created_via,
            "customer_note": o.customer_note, "date_completed": fmt_date(self.local(o.date_completed)),
            "date_paid": fmt_date(self.local(o.date_paid)), "cart_hash": "", "number": str(o.id),
            "meta_data": copy.deepcopy(o.meta_data),
            "line_items": [line_item_json(i) for i in o.line_items],
            "tax_lines": [tax_line_json(t) for t in o.tax_lines],
            "shipping_lines": [shipping_line_json(s) for s in o.shipping_lines],
            "fee_lines": [fee_line_json(f) for f in o.fee_lines],
            "coupon_lines": [coupon_line_json(c) for c in o.coupon_lines],
            "refunds": [{"id": r.id, "reason": r.reason, "total": money(-r.amount)}
                        for r in sorted((self.refunds[i] for i in o.refund_ids if i in self.refunds),
                                        key=lambda r: r.id, reverse=True)],
            "payment_url": f"{base}/checkout/order-pay/{o.id}/?pay_for_order=true&key={o.order_key}",
            "is_editable": o.status in ("pending", "on-hold", "auto-draft", "checkout-draft"),
            "needs_payment": self.needs_payment(o), "needs_processing": True,
            "date_created_gmt": fmt_date(o.created), "date_modified_gmt": fmt_date(o.modified),
            "date_completed_gmt": fmt_date(o.date_completed), "date_paid_gmt": fmt_date(o.date_paid),
            "currency_symbol": CURRENCY_SYMBOLS.get(o.currency, o.currency),
        }
        extra = {"customer": f"customers/{o.customer_id}"} if o.customer_id else {}
        data["_links"] = self.links(base, f"orders/{o.id}", "orders", **extra)
        return data

    def refund_json(self, refund: Refund, base: str, *, with_parent: bool = False) -> dict:
        data: dict[str, Any] = {"id": refund.id}
        if with_parent:
            data["parent_id"] = refund.order_id
        data |= {
            **self.dates("date_created", refund.created), "amount": money(refund.amount),
            "reason": refund.reason, "refunded_by": refund.refunded_by,
            "refunded_payment": refund.refunded_payment, "meta_data": list(refund.meta_data),
            "line_items": [refund_item_json(i) for i in refund.items if i.kind == "line_item"],
            "shipping_lines": [refund_item_json(i) for i in refund.items if i.kind == "shipping"],
            "tax_lines": [tax_line_json(t) for t in refund.tax_lines],
            "fee_lines": [refund_item_json(i) for i in refund.items if i.kind == "fee"],
        }
        path = f"orders/{refund.order_id}/refunds"
        data["_links"] = self.links(base, f"{path}/{refund.id}", path, up=f"orders/{refund.order_id}")
        return data

    def customer_json(self, c: Customer, base: str) -> dict:
        digest = hashlib.md5(c.email.strip().lower().encode()).hexdigest()
        return {"id": c.id, **self.dates("date_created", c.created), **self.dates("date_modified", c.modified),
                "email": c.email, "first_name": c.first_name, "last_name": c.last_name,
                "role": c.role, "username": c.username, "billing": dict(c.billing),
                "shipping": dict(c.shipping), "is_paying_customer": c.is_paying_customer,
                "avatar_url": f"https://secure.gravatar.com/avatar/{digest}?s=96&d=mm&r=g",
                "meta_data": list(c.meta_data),
                "_links": self.links(base, f"customers/{c.id}", "customers")}

    def product_json(self, p: Product, base: str) -> dict:
        price = self.price_of(p)
        data = {
            "id": p.id, "name": p.name if p.type != "variation" else self._variation_title(p),
            "slug": slugify(p.name), "permalink": f"{base}/product/{slugify(p.name)}/",
            **self.dates("date_created", p.created), **self.dates("date_modified", p.modified),
            "type": p.type, "status": p.status, "featured": False, "catalog_visibility": "visible",
            "description": p.description, "short_description": "", "sku": p.sku, "price": price,
            "regular_price": p.regular_price, "sale_price": p.sale_price,
            "on_sale": bool(p.sale_price), "purchasable": price != "" and p.status == "publish",
            "total_sales": p.total_sales, "virtual": p.virtual, "downloadable": False,
            "tax_status": p.tax_status, "tax_class": p.tax_class, "manage_stock": p.manage_stock,
            "stock_quantity": p.stock_quantity, "backorders": p.backorders,
            "backorders_allowed": p.backorders != "no", "backordered": False,
            "stock_status": p.stock_status, "parent_id": p.parent_id,
            "attributes": self._product_attributes(p), "variations": list(p.variations),
            "meta_data": list(p.meta_data),
        }
        data["_links"] = self.links(base, f"products/{p.id}", "products")
        return data

    def variation_json(self, v: Product, base: str) -> dict:
        price = self.price_of(v)
        data = {
            "id": v.id, **self.dates("date_created", v.created), **self.dates("date_modified", v.modified),
            "description": v.description, "permalink": f"{base}/product/{v.id}/", "sku": v.sku,
            "price": price, "regular_price": v.regular_price, "sale_price": v.sale_price,
            "on_sale": bool(v.sale_price), "status": v.status, "purchasable": price != "",
            "virtual": v.virtual, "downloadable": False, "tax_status": v.tax_status,
            "tax_class": v.tax_class, "manage_stock": v.manage_stock,
            "stock_quantity": v.stock_quantity, "stock_status": v.stock_status,
            "backorders": v.backorders, "backorders_allowed": v.backorders != "no",
            "backordered": False, "attributes": [dict(a) for a in v.attributes],
            "parent_id": v.parent_id, "meta_data": list(v.meta_data),
        }
        path = f"products/{v.parent_id}/variations"
        data["_links"] = self.links(base, f"{path}/{v.id}", path, up=f"products/{v.parent_id}")
        return data

    def _variation_title(self, variation: Product) -> str:
        return variation_name(variation, self.products.get(variation.parent_id))

    def _product_attributes(self, product: Product) -> list[dict]:
        if product.type != "variable":
            return [dict(a) for a in product.attributes]
        options: dict[str, list[str]] = {}
        for variation in self.variations_of(product):
            for attribute in variation.attributes:
                values = options.setdefault(attribute["name"], [])
                if attribute["option"] not in values:
                    values.append(attribute["option"])
        return [{"id": 0, "name": name, "position": n, "visible": True, "variation": True, "options": values}
                for n, (name, values) in enumerate(options.items())]

    def webhook_json(self, hook: Webhook, base: str, *, edit: bool = False) -> dict:
        data = {"id": hook.id, "name": hook.name, "status": hook.status, "topic": hook.topic,
                "resource": hook.resource, "event": hook.event,
                "hooks": list(WEBHOOK_HOOKS.get(hook.topic, [hook.topic.removeprefix("action.")])),
                "delivery_url": hook.delivery_url,
                **self.dates("date_created", hook.created), **self.dates("date_modified", hook.modified)}
        if edit:
            data["secret"] = hook.secret
        data["_links"] = self.links(base, f"webhooks/{hook.id}", "webhooks")
        return data


# --------------------------------------------------------------------------------------------
# Small pure helpers for the store
# --------------------------------------------------------------------------------------------

def random_token(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def merge_address(current: dict, update: dict | None, *, billing: bool) -> dict:
    keys = (*ADDRESS_FIELDS, "email", "phone") if billing else (*ADDRESS_FIELDS, "phone")
    merged = {k: current.get(k, "") for k in keys}
    for key, value in (update or {}).items():
        if key in keys:
            merged[key] = "" if value is None else str(value)
    return merged


def normalise_attributes(value: Any, variation: bool) -> list[dict]:
    if isinstance(value, dict):
        value = [{"name": k, "option": v} for k, v in value.items()]
    result = []
    for attribute in value or []:
        entry = {"id": int(attribute.get("id", 0) or 0), "name": str(attribute.get("name", ""))}
        if variation:
            entry["option"] = str(attribute.get("option", ""))
        else:
            entry |= {"position": int(attribute.get("position", 0) or 0), "visible": True,
                      "variation": bool(attribute.get("variation", False)),
                      "options": [str(o) for o in attribute.get("options", [])]}
        result.append(entry)
    return result


def variation_name(product: Product, parent: Product | None) -> str:
    if parent is None:
        return product.name
    options = ", ".join(a["option"] for a in product.attributes)
    return f"{parent.name} - {options}" if options else parent.name


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


def is_number(value: Any) -> bool:
    try:
        return value not in (None, "") and not isinstance(value, bool) and Decimal(str(value)).is_finite()
    except InvalidOperation:
        return False


def refund_failure(message: str) -> ApiError:
    return ApiError(500, "woocommerce_rest_cannot_create_order_refund", message)


def valid_topic(topic: Any) -> str:
    topic = str(topic)
    resource, _, event = topic.partition(".")
    if resource == "action" and event:
        return topic
    if resource in WEBHOOK_RESOURCES and event in WEBHOOK_EVENTS:
        return topic
    raise ApiError(400, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic is required and must be valid.")


def valid_delivery_url(url: Any) -> str:
    url = str(url).strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "woocommerce_rest_shop_webhook_invalid_delivery_url",
                       "Webhook delivery URL must be a valid URL starting with http:// or https://.")
    return url


def sign_payload(body: bytes, secret: str) -> str:
    """§8.4: base64 of the raw HMAC-SHA256 of the body, the secret HTML-entity-decoded first."""
    key = wp_specialchars_decode(secret).encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def wp_specialchars_decode(text: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'"),
                         ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def taxes_json(totals: dict[int, Decimal], subtotals: dict[int, Decimal] | None) -> list[dict]:
    ids = dict.fromkeys([*totals, *(subtotals or {})])
    return [{"id": rid, "total": trimmed(totals.get(rid, ZERO)),
             "subtotal": trimmed(subtotals.get(rid, ZERO)) if subtotals is not None else ""}
            for rid in ids]


def line_item_json(i: LineItem) -> dict:
    return {"id": i.id, "name": i.name, "product_id": i.product_id, "variation_id": i.variation_id,
            "quantity": i.quantity, "tax_class": i.tax_class, "subtotal": money(i.subtotal),
            "subtotal_tax": money(sum(i.subtotal_taxes.values(), ZERO)), "total": money(i.total),
            "total_tax": money(sum(i.taxes.values(), ZERO)),
            "taxes": taxes_json(i.taxes, i.subtotal_taxes), "meta_data": copy.deepcopy(i.meta_data),
            "sku": i.sku, "price": float(i.total / max(1, abs(i.quantity))),
            "image": {"id": "", "src": ""}, "parent_name": i.parent_name}


def shipping_line_json(s: ShippingLine) -> dict:
    return {"id": s.id, "method_title": s.method_title, "method_id": s.method_id,
            "instance_id": s.instance_id, "total": money(s.total),
            "total_tax": money(sum(s.taxes.values(), ZERO)), "taxes": taxes_json(s.taxes, None),
            "meta_data": copy.deepcopy(s.meta_data)}


def fee_line_json(f: FeeLine) -> dict:
    return {"id": f.id, "name": f.name, "tax_class": f.tax_class, "tax_status": f.tax_status,
            "amount": trimmed(f.total), "total": money(f.total),
            "total_tax": money(sum(f.taxes.values(), ZERO)), "taxes": taxes_json(f.taxes, None),
            "meta_data": copy.deepcopy(f.meta_data)}


def coupon_line_json(c: CouponLine) -> dict:
    return {"id": c.id, "code": c.code, "discount": money(c.discount),
            "discount_tax": money(c.discount_tax), "discount_type": c.discount_type,
            "nominal_amount": number(c.nominal), "free_shipping": c.free_shipping, "meta_data": []}


def tax_line_json(t: TaxLine) -> dict:
    return {"id": t.id, "rate_code": t.rate.code, "rate_id": t.rate.id, "label": t.rate.label,
            "compound": t.rate.compound, "tax_total": money(t.tax_total),
            "shipping_tax_total": money(t.shipping_tax_total), "rate_percent": number(t.rate.rate),
            "meta_data": []}


def refund_item_json(r: RefundItem) -> dict:
    negative = {k: -v for k, v in r.taxes.items()}
    meta = [{"id": r.id, "key": "_refunded_item_id", "value": str(r.source.id),
             "display_key": "_refunded_item_id", "display_value": str(r.source.id)}]
    if r.kind == "line_item":
        data = line_item_json(r.source)
        data |= {"quantity": -r.quantity, "subtotal": money(-r.total), "total": money(-r.total),
                 "subtotal_tax": money(-sum(r.taxes.values(), ZERO)),
                 "total_tax": money(-sum(r.taxes.values(), ZERO)),
                 "taxes": taxes_json(negative, negative),
                 "price": float(-r.total / max(1, abs(r.quantity)))}
    elif r.kind == "shipping":
        data = shipping_line_json(r.source)
        data |= {"total": money(-r.total), "total_tax": money(-sum(r.taxes.values(), ZERO)),
                 "taxes": taxes_json(negative, None)}
    else:
        data = fee_line_json(r.source)
        data |= {"amount": trimmed(-r.total), "total": money(-r.total),
                 "total_tax": money(-sum(r.taxes.values(), ZERO)), "taxes": taxes_json(negative, None)}
    data["id"] = r.id
    data["meta_data"] = [*data["meta_data"], *meta]
    return data


# --------------------------------------------------------------------------------------------
# Authentication (§2)
# --------------------------------------------------------------------------------------------

@dataclass
class AuthResult:
    key: ApiKey | None = None
    error: ApiError | None = None
    method: str = ""


def php_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """PHP's ``$_GET``/``$_POST``: ``a[]=x`` and ``a[k]=x`` become arrays, last plain key wins."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[]+)\[([^\]]*)\]", key)
        if not match:
            params[key] = value
            continue
        name, sub = match.groups()
        bucket = params.get(name)
        if not isinstance(bucket, dict):
            bucket = params[name] = {}
        bucket[sub if sub else str(len(bucket))] = value
    return params


def oauth_header_params(header: str) -> dict[str, str]:
    if not header.startswith("OAuth "):
        return {}
    params = {}
    for name, _, quoted, bare in re.findall(r'(oauth_[a-z_-]*)=(:?"([^"]*)"|([^,]*))', header):
        params[name] = unquote((quoted or bare).replace("+", " "))
    return params


def rfc3986(text: str) -> str:
    return quote(str(text), safe="~")


def oauth_base_string(method: str, url: str, params: dict[str, Any]) -> str:
    pairs = []
    for key in sorted(params, key=lambda k: k.encode()):
        value = params[key]
        if isinstance(value, dict):
            pairs += [(f"{key}[{sub}]", v) for sub, v in value.items()]
        else:
            pairs.append((key, value))
    normalized = "%26".join(rfc3986(f"{rfc3986(k)}={rfc3986(v)}") for k, v in pairs)
    return f"{method.upper()}&{rfc3986(url)}&{normalized}"


def oauth_signature(base_string: str, consumer_secret: str, method: str) -> str:
    digest = hashlib.sha256 if method == "HMAC-SHA256" else hashlib.sha1
    return base64.b64encode(hmac.new(f"{consumer_secret}&".encode(), base_string.encode(), digest).digest()).decode()


class Authenticator:
    """``WC_REST_Authentication``."""

    REQUIRED = ("oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature",
                "oauth_signature_method")

    def __init__(self, state: WooState) -> None:
        self.state = state

    def authenticate(self, request: Request, query: list[tuple[str, str]], form: list[tuple[str, str]]) -> AuthResult:
        result = AuthResult()
        header = "" if self.state.settings.strip_authorization else request.headers.get("authorization", "")
        if request.url.scheme == "https":
            self._basic(result, header, dict(query))
        if result.key is None:
            self._oauth(result, request, header, query, form)
        return result

    def _basic(self, result: AuthResult, header: str, query: dict[str, str]) -> None:
        key, secret = query.get("consumer_key", ""), query.get("consumer_secret", "")
        if not (key and secret):
            key, secret = parse_basic(header)
        if not (key and secret):
            return
        result.method = "basic_auth"
        found = self.state.keys.get(key)
        if found is None:
            return
        if not hmac.compare_digest(found.consumer_secret.encode(), secret.encode()):
            result.error = ApiError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
            result.error.headers["WWW-Authenticate"] = (
                'Basic realm="WooCommerce API. Use a consumer key in the username field and a '
                'consumer secret in the password field."')
            return
        result.key = found

    def _oauth(self, result: AuthResult, request: Request, header: str,
               query: list[tuple[str, str]], form: list[tuple[str, str]]) -> None:
        params = php_params(query) | php_params(form) | oauth_header_params(header.strip())
        missing = [name for name in self.REQUIRED if not params.get(name)]
        if len(missing) == len(self.REQUIRED):
            return
        result.method = "oauth1"
        if missing:
            word = "parameter" if len(missing) == 1 else "parameters"
            result.error = ApiError(401, "woocommerce_rest_authentication_missing_parameter",
                                    f"Missing OAuth {word} {', '.join(missing)}")
            return
        key = self.state.keys.get(str(params["oauth_consumer_key"]))
        if key is None:
            result.error = auth_error("Consumer key is invalid.")
            return
        result.error = self._check_signature(request, key, params) or self._check_nonce(key, params)
        if result.error is None:
            result.key = key

    def _check_signature(self, request: Request, key: ApiKey, params: dict) -> ApiError | None:
        given = unquote(str(params["oauth_signature"]).replace(" ", "+"))
        signed = {k: v for k, v in params.items() if k != "oauth_signature"}
        method = signed["oauth_signature_method"]
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return auth_error("Invalid signature - signature method is invalid.")
        base = oauth_base_string(request.method, request_url(request), signed)
        if not hmac.compare_digest(oauth_signature(base, key.consumer_secret, method), given):
            return auth_error("Invalid signature - provided signature does not match.")
        return None

    def _check_nonce(self, key: ApiKey, params: dict) -> ApiError | None:
        now = self.state.now().replace(tzinfo=timezone.utc).timestamp()
        try:
            stamp = int(str(params["oauth_timestamp"]))
        except ValueError:
            return auth_error("Invalid timestamp.")
        if not now - OAUTH_WINDOW <= stamp <= now + OAUTH_WINDOW:
            return auth_error("Invalid timestamp.")
        nonce = str(params["oauth_nonce"])
        if nonce in key.nonces.values():
            return auth_error("Invalid nonce - nonce has already been used.")
        key.nonces[stamp] = nonce
        for old in [t for t in key.nonces if t < now - OAUTH_WINDOW]:
            del key.nonces[old]
        return None


def auth_error(message: str) -> ApiError:
    return ApiError(401, "woocommerce_rest_authentication_error", message)


def parse_basic(header: str) -> tuple[str, str]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return "", ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else ("", "")


def request_url(request: Request) -> str:
    """The URL the server sees: scheme, Host header and the raw path."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1").split("?", 1)[0] if raw else request.url.path
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}{path}"


def request_base(request: Request) -> str:
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}"


# --------------------------------------------------------------------------------------------
# REST layer
# --------------------------------------------------------------------------------------------

@dataclass
class Call:
    """One API request: merged parameters (JSON body > form > query, like WP_REST_Request)."""

    request: Request
    state: WooState
    query: dict[str, Any]
    query_pairs: list[tuple[str, str]]
    body: dict[str, Any]
    ids: dict[str, int]
    base: str

    @property
    def params(self) -> dict[str, Any]:
        return {**self.query, **self.body}

    def arg(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, self.query.get(name, default))


class Params:
    """WordPress argument validation: every bad argument reported in one ``rest_invalid_param``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def given(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def integer(self, name: str, default: int | None, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        if not self.given(name):
            return default
        try:
            value = int(str(self.values[name]).strip())
        except ValueError:
            self.errors[name] = f"{name} is not of type integer."
            return default
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            self.errors[name] = f"{name} must be between {minimum} (inclusive) and {maximum} (inclusive)"
        elif minimum is not None and value < minimum:
            self.errors[name] = f"{name} must be greater than or equal to {minimum}"
        return value

    def enum(self, name: str, allowed: Iterable[str], default: str) -> str:
        allowed = tuple(allowed)
        if not self.given(name):
            return default
        value = str(self.values[name])
        if value not in allowed:
            self.errors[name] = f"{name} is not one of {wp_list(allowed)}."
            return default
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        if not self.given(name):
            return default
        value = self.values[name]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
        self.errors[name] = f"{name} is not of type boolean."
        return default

    def strings(self, name: str) -> list[str]:
        value = self.values.get(name)
        if value in (None, ""):
            return []
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in str(value).split(",") if v.strip()]

    def ids(self, name: str) -> list[int]:
        try:
            return [int(v) for v in self.strings(name)]
        except ValueError:
            self.errors[name] = f"{name}[0] is not of type integer."
            return []

    def date(self, name: str, offset: timedelta, gmt: bool) -> datetime | None:
        """A naive datetime in the zone of the compared column."""
        if not self.given(name):
            return None
        try:
            value = parse_iso(str(self.values[name]))
        except ValueError:
            self.errors[name] = "Invalid date."
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None) + (timedelta() if gmt else offset)
        return value

    def check(self) -> None:
        if self.errors:
            raise invalid_param(self.errors)


@dataclass(frozen=True)
class ListSpec:
    orderby: tuple[str, ...] = ("date", "id", "include", "title", "slug", "modified")
    default_orderby: str = "date"
    default_order: str = "desc"
    dates: bool = True


def sort_key(orderby: str, include: list[int]) -> Callable[[Any], Any]:
    if orderby == "include":
        position = {v: n for n, v in enumerate(include)}
        return lambda obj: (position.get(obj.id, len(position)), obj.id)
    if orderby == "id":
        return lambda obj: obj.id
    if orderby == "modified":
        return lambda obj: (getattr(obj, "modified", None) or obj.created, obj.id)
    if orderby in ("title", "slug", "name"):
        return lambda obj: (str(getattr(obj, "name", getattr(obj, "username", ""))).lower(), obj.id)
    if orderby == "registered_date":
        return lambda obj: (obj.created, obj.id)
    return lambda obj: (obj.created, obj.id)


def paginate(call: Call, items: list, spec: ListSpec, render: Callable[[Any], dict],
             params: Params | None = None) -> Response:
    """§3.1: validation, date filters, ordering, page slicing and the paging headers."""
    p = params or Params(call.query)
    page = p.integer("page", 1, minimum=1)
    per_page = p.integer("per_page", 10, minimum=1, maximum=MAX_PER_PAGE)
    offset = p.integer("offset", None, minimum=0)
    order = p.enum("order", ("asc", "desc"), spec.default_order)
    orderby = p.enum("orderby", spec.orderby, spec.default_orderby)
    include, exclude = p.ids("include"), p.ids("exclude")
    items = [i for i in items if (not include or i.id in include) and i.id not in exclude]
    if spec.dates:
        items = date_filtered(call, p, items)
    p.check()
    items.sort(key=sort_key(orderby, include), reverse=order == "desc" and orderby != "include")
    total = len(items)
    pages = math.ceil(total / per_page)
    start = offset if offset is not None else (page - 1) * per_page
    headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
    link = link_header(call, page, pages)
    if link:
        headers["Link"] = link
    data = [shape(call, render(item)) for item in items[start:start + per_page]]
    return wp_response(data, 200, headers)


def date_filtered(call: Call, p: Params, items: list) -> list:
    gmt = p.boolean("dates_are_gmt")
    offset = call.state.utc_offset
    shift = timedelta() if gmt else offset
    bounds = [("after", "created", 1), ("before", "created", -1),
              ("modified_after", "modified", 1), ("modified_before", "modified", -1)]
    for name, attr, direction in bounds:
        limit = p.date(name, offset, gmt)
        if limit is None:
            continue
        items = [i for i in items
                 if (getattr(i, attr, None) or i.created) + shift > limit] if direction > 0 else [
            i for i in items if (getattr(i, attr, None) or i.created) + shift < limit]
    return items


def link_header(call: Call, page: int, pages: int) -> str:
    base = f"{call.base}{call.request.url.path}"
    query = [(k, v) for k, v in call.query_pairs if k != "page"]
    links = []
    if page > 1:
        links.append(f'<{base}?{urlencode(query + [("page", str(min(page - 1, max(pages, 1))))])}>; rel="prev"')
    if pages > page:
        links.append(f'<{base}?{urlencode(query + [("page", str(page + 1))])}>; rel="next"')
    return ", ".join(links)


def shape(call: Call, data: dict) -> dict:
    """``_fields``: keep only the named top-level keys."""
    wanted = Params(call.query).strings("_fields")
    if not wanted:
        return data
    keys = {w.split(".", 1)[0] for w in wanted}
    return {k: v for k, v in data.items() if k in keys}


class Resource:
    """One CRUD collection; subclasses say how to find, filter, write and render records."""

    path = ""
    post_type = ""
    spec = ListSpec()
    trashable = False
    default_force = False
    trash_message = "The resource does not support trashing."

    def invalid_id(self, status: int) -> ApiError:
        return ApiError(status, f"woocommerce_rest_{self.post_type}_invalid_id", "Invalid ID.")

    def find(self, call: Call, record_id: int) -> Any:
        raise NotImplementedError

    def records(self, call: Call, p: Params) -> list:
        raise NotImplementedError

    def render(self, call: Call, obj: Any) -> dict:
        raise NotImplementedError

    def location(self, call: Call, obj: Any) -> str:
        return f"{call.base}{API_ROOT}{self.path.format(**call.ids)}/{obj.id}"

    async def create(self, call: Call, body: dict) -> Any:
        raise NotImplementedError

    async def update(self, call: Call, obj: Any, body: dict) -> Any:
        raise NotImplementedError

    def delete(self, call: Call, obj: Any, force: bool) -> None:
        raise NotImplementedError

    def lookup(self, call: Call, record_id: Any, status: int) -> Any:
        try:
            found = self.find(call, int(record_id))
        except (TypeError, ValueError):
            found = None
        if found is None:
            raise self.invalid_id(status)
        return found

    # ---- handlers --------------------------------------------------------------------------
    async def list(self, call: Call) -> Response:
        p = Params(call.query)
        return paginate(call, self.records(call, p), self.spec, lambda o: self.render(call, o), p)

    async def get(self, call: Call) -> Response:
        obj = self.lookup(call, call.ids["id"], 404)
        return wp_response(shape(call, self.render(call, obj)))

    async def post(self, call: Call) -> Response:
        obj = await self.create(call, call.body)
        return wp_response(self.render(call, obj), 201, {"Location": self.location(call, obj)})

    async def put(self, call: Call) -> Response:
        obj = self.lookup(call, call.ids["id"], 400)
        obj = await self.update(call, obj, call.body)
        return wp_response(self.render(call, obj))

    async def remove(self, call: Call) -> Response:
        obj = self.lookup(call, call.ids["id"], 404)
        force = Params(call.query | call.body).boolean("force", self.default_force)
        if not force and not self.trashable:
            raise ApiError(501, "woocommerce_rest_trash_not_supported", self.trash_message)
        before = self.render(call, obj)
        self.delete(call, obj, force)
        return wp_response(self.render(call, obj) if not force else before)

    async def batch(self, call: Call) -> Response:
        """§3.4: up to 100 items, processed in order, errors reported per item."""
        body = call.body
        groups = {name: body.get(name) or [] for name in ("create", "update", "delete")}
        if sum(len(v) for v in groups.values()) > BATCH_LIMIT:
            raise ApiError(413, "woocommerce_rest_request_entity_too_large",
                           f"Unable to accept more than {BATCH_LIMIT} items for this request.")
        result: dict[str, list] = {}
        if groups["create"]:
            result["create"] = [await self._batch_item(call, self._batch_create, e) for e in groups["create"]]
        if groups["update"]:
            result["update"] = [await self._batch_item(call, self._batch_update, e) for e in groups["update"]]
        if groups["delete"]:
            result["delete"] = [await self._batch_item(call, self._batch_delete, e) for e in groups["delete"]]
        return wp_response(result)

    async def _batch_item(self, call: Call, action: Callable[[Call, Any], Awaitable[dict]], entry: Any) -> dict:
        try:
            return await action(call, entry)
        except ApiError as err:
            item_id = entry.get("id", 0) if isinstance(entry, dict) else entry
            try:
                item_id = int(item_id or 0)
            except (TypeError, ValueError):
                item_id = 0
            return {"id": 0 if action == self._batch_create else item_id, "error": err.body()}

    async def _batch_create(self, call: Call, entry: dict) -> dict:
        return self.render(call, await self.create(call, entry))

    async def _batch_update(self, call: Call, entry: dict) -> dict:
        obj = self.lookup(call, entry.get("id"), 400)
        return self.render(call, await self.update(call, obj, entry))

    async def _batch_delete(self, call: Call, entry: Any) -> dict:
        obj = self.lookup(call, entry.get("id") if isinstance(entry, dict) else entry, 404)
        data = self.render(call, obj)
        self.delete(call, obj, True)
        return data


class Orders(Resource):
    path, post_type, trashable = "orders", "shop_order", True

    def find(self, call: Call, record_id: int) -> Order | None:
        return call.state.orders.get(record_id)

    def records(self, call: Call, p: Params) -> list[Order]:
        allowed = ("any", "trash", *ORDER_STATUSES)
        statuses = p.strings("status") or ["any"]
        bad = [s for s in statuses if s not in allowed]
        if bad:
            p.errors["status"] = f"status[{statuses.index(bad[0])}] is not one of {wp_list(allowed)}."
        wanted = set(ORDER_STATUSES) if "any" in statuses else set()
        wanted |= {s for s in statuses if s != "any"}
        customer, product = p.integer("customer", None), p.integer("product", None)
        parent, search = p.ids("parent"), str(p.values.get("search") or "").lower()
        orders = [o for o in call.state.orders.values() if o.status in wanted]
        if customer is not None:
            orders = [o for o in orders if o.customer_id == customer]
        if product is not None:
            orders = [o for o in orders if any(product in (i.product_id, i.variation_id) for i in o.line_items)]
        if parent:
            orders = [o for o in orders if o.parent_id in parent]
        if search:
            orders = [o for o in orders if search in order_search_text(o)]
        return orders

    def render(self, call: Call, obj: Order) -> dict:
        return call.state.order_json(obj, call.base)

    async def create(self, call: Call, body: dict) -> Order:
        return call.state._create_order(body)

    async def update(self, call: Call, obj: Order, body: dict) -> Order:
        return call.state._edit_order(obj, body)

    def delete(self, call: Call, obj: Order, force: bool) -> None:
        call.state.delete_order(obj, force)


def order_search_text(order: Order) -> str:
    parts = [str(order.id), *order.billing.values(), *order.shipping.values(),
             *(i.name for i in order.line_items)]
    return " ".join(parts).lower()


class OrderRefunds(Resource):
    path, post_type, default_force = "orders/{order_id}/refunds", "shop_order_refund", True
    trash_message = "Refunds do not support trashing."
    spec = ListSpec(orderby=("date", "id", "include", "title", "slug", "modified"))

    def order(self, call: Call) -> Order:
        order = call.state.orders.get(call.ids["order_id"])
        if order is None:
            raise ApiError(404, "woocommerce_rest_invalid_order_id", "Invalid order ID.")
        return order

    def find(self, call: Call, record_id: int) -> Refund | None:
        refund = call.state.refunds.get(record_id)
        return refund if refund and refund.order_id == self.order(call).id else None

    def records(self, call: Call, p: Params) -> list[Refund]:
        order = self.order(call)
        return [call.state.refunds[r] for r in order.refund_ids if r in call.state.refunds]

    def render(self, call: Call, obj: Refund) -> dict:
        return call.state.refund_json(obj, call.base)

    async def create(self, call: Call, body: dict) -> Refund:
        return call.state._create_refund(call.ids["order_id"], body)

    def delete(self, call: Call, obj: Refund, force: bool) -> None:
        call.state.delete_refund(obj)


class AllRefunds(OrderRefunds):
    path = "refunds"

    def find(self, call: Call, record_id: int) -> Refund | None:
        return call.state.refunds.get(record_id)

    def records(self, call: Call, p: Params) -> list[Refund]:
        parents = p.ids("parent")
        return [r for r in call.state.refunds.values() if not parents or r.order_id in parents]

    def render(self, call: Call, obj: Refund) -> dict:
        return call.state.refund_json(obj, call.base, with_parent=True)


class Customers(Resource):
    path, post_type = "customers", "customer"
    trash_message = "Customers do not support trashing."
    spec = ListSpec(orderby=("id", "include", "name", "registered_date"), default_orderby="name",
                    default_order="asc", dates=False)

    def invalid_id(self, status: int) -> ApiError:
        return ApiError(status, "woocommerce_rest_invalid_id", "Invalid resource ID.")

    def find(self, call: Call, record_id: int) -> Customer | None:
        return call.state.customers.get(record_id)

    def records(self, call: Call, p: Params) -> list[Customer]:
        email = str(p.values.get("email") or "").strip().lower()
        role = str(p.values.get("role") or "customer")
        search = str(p.values.get("search") or "").strip("*").lower()
        found = [c for c in call.state.customers.values() if role == "all" or c.role == role]
        if email:
            found = [c for c in found if c.email.lower() == email]
        if search:
            found = [c for c in found if search in f"{c.email} {c.username} {c.first_name} {c.last_name}".lower()]
        return found

    def render(self, call: Call, obj: Customer) -> dict:
        return call.state.customer_json(obj, call.base)

    async def create(self, call: Call, body: dict) -> Customer:
        return call.state.create_customer(body)

    async def update(self, call: Call, obj: Customer, body: dict) -> Customer:
        return call.state.update_customer(obj, body)

    def delete(self, call: Call, obj: Customer, force: bool) -> None:
        del call.state.customers[obj.id]
        call.state.emit("customer", "deleted", obj.id)


class Products(Resource):
    path, post_type, trashable = "products", "product", True
    spec = ListSpec(orderby=("date", "id", "include", "title", "slug", "modified", "price",
                             "popularity", "rating"))

    def find(self, call: Call, record_id: int) -> Product | None:
        return call.state.products.get(record_id)

    def records(self, call: Call, p: Params) -> list[Product]:
        skus = set(p.strings("sku"))
        status = str(p.values.get("status") or "any")
        kind, stock = p.values.get("type"), p.values.get("stock_status")
        search = str(p.values.get("search") or "").lower()
        found = [x for x in call.state.products.values() if x.type != "variation"]
        found = [x for x in found if (x.status != "trash" if status == "any" else x.status == status)]
        if skus:
            found = [x for x in found if x.sku in skus]
        if kind:
            found = [x for x in found if x.type == kind]
        if stock:
            found = [x for x in found if x.stock_status == stock]
        if search:
            found = [x for x in found if search in x.name.lower()]
        return found

    def render(self, call: Call, obj: Product) -> dict:
        return call.state.product_json(obj, call.base)

    async def create(self, call: Call, body: dict) -> Product:
        return call.state.create_product(body)

    async def update(self, call: Call, obj: Product, body: dict) -> Product:
        return call.state.update_product(obj, body)

    def delete(self, call: Call, obj: Product, force: bool) -> None:
        call.state.delete_product(obj, force)


class Variations(Products):
    path, post_type, trashable = "products/{product_id}/variations", "product_variation", False
    trash_message = "Variations do not support trashing."

    def parent(self, call: Call) -> Product:
        parent = call.state.products.get(call.ids["product_id"])
        if parent is None or parent.type == "variation":
            raise ApiError(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
        return parent

    def find(self, call: Call, record_id: int) -> Product | None:
        found = call.state.products.get(record_id)
        return found if found and found.parent_id == self.parent(call).id else None

    def records(self, call: Call, p: Params) -> list[Product]:
        skus = set(p.strings("sku"))
        found = call.state.variations_of(self.parent(call))
        return [v for v in found if not skus or v.sku in skus]

    def render(self, call: Call, obj: Product) -> dict:
        return call.state.variation_json(obj, call.base)

    async def create(self, call: Call, body: dict) -> Product:
        parent = self.parent(call)
        variation = call.state.new_product(body, parent)
        parent.type = "variable"
        call.state.emit("product", "created", variation.id)
        return variation


class Webhooks(Resource):
    path, post_type = "webhooks", "shop_webhook"
    trash_message = "Webhooks do not support trashing."
    spec = ListSpec(orderby=("date", "id", "title"))

    def find(self, call: Call, record_id: int) -> Webhook | None:
        return call.state.webhooks.get(record_id)

    def records(self, call: Call, p: Params) -> list[Webhook]:
        status = p.enum("status", ("all", *WEBHOOK_STATUSES), "all")
        search = str(p.values.get("search") or "").lower()
        hooks = [h for h in call.state.webhooks.values() if status == "all" or h.status == status]
        return [h for h in hooks if search in h.name.lower()]

    def render(self, call: Call, obj: Webhook) -> dict:
        edit = call.arg("context") == "edit"
        return call.state.webhook_json(obj, call.base, edit=edit)

    async def create(self, call: Call, body: dict) -> Webhook:
        return await call.state.create_webhook(body)

    async def update(self, call: Call, obj: Webhook, body: dict) -> Webhook:
        return await call.state.update_webhook(obj, body)

    def delete(self, call: Call, obj: Webhook, force: bool) -> None:
        call.state.delete_webhook(obj)


EDITABLE = ("POST", "PUT", "PATCH")
PERMISSION_ERRORS = {
    "list": ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
    "view": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "create": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "edit": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "delete": ("woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource."),
    "batch": ("woocommerce_rest_cannot_batch", "Sorry, you are not allowed to batch manipulate this resource."),
}


@dataclass(frozen=True)
class Endpoint:
    pattern: re.Pattern
    methods: tuple[str, ...]
    resource: Resource
    action: str


def crud(pattern: str, resource: Resource, *, item: bool = True, batch: bool = True,
         writable: bool = True) -> list[Endpoint]:
    """The WordPress route set of one collection."""
    one = pattern + r"/(?P<id>\d+)"
    routes = [Endpoint(re.compile(pattern), ("GET",), resource, "list")]
    if writable:
        routes.append(Endpoint(re.compile(pattern), ("POST",), resource, "create"))
    if batch:
        routes.append(Endpoint(re.compile(pattern + "/batch"), EDITABLE, resource, "batch"))
    if item:
        routes.append(Endpoint(re.compile(one), ("GET",), resource, "view"))
        if writable:
            routes.append(Endpoint(re.compile(one), EDITABLE, resource, "edit"))
            routes.append(Endpoint(re.compile(one), ("DELETE",), resource, "delete"))
    return routes


ENDPOINTS: list[Endpoint] = [
    *crud(r"orders", Orders()),
    *[e for e in crud(r"orders/(?P<order_id>\d+)/refunds", OrderRefunds(), batch=False) if e.action != "edit"],
    *crud(r"refunds", AllRefunds(), batch=False, writable=False),
    *crud(r"customers", Customers()),
    *crud(r"products/(?P<product_id>\d+)/variations", Variations()),
    *crud(r"products", Products()),
    *crud(r"webhooks", Webhooks()),
]

HANDLERS = {"list": "list", "view": "get", "create": "post", "edit": "put", "delete": "remove",
            "batch": "batch"}


def match_route(route: str, method: str) -> tuple[Endpoint, dict[str, int]] | None:
    method = "GET" if method == "HEAD" else method
    for endpoint in ENDPOINTS:
        found = endpoint.pattern.fullmatch(route)
        if found and method in endpoint.methods:
            return endpoint, {k: int(v) for k, v in found.groupdict().items()}
    return None


def no_route() -> ApiError:
    return ApiError(404, "rest_no_route", "No route was found matching the URL and request method.")


def key_permission_error(key: ApiKey, method: str) -> ApiError | None:
    if method in ("GET", "HEAD") and key.permissions not in ("read", "read_write"):
        return auth_error("The API key provided does not have read permissions.")
    if method in ("POST", "PUT", "PATCH", "DELETE") and key.permissions not in ("write", "read_write"):
        return auth_error("The API key provided does not have write permissions.")
    return None


async def read_body(request: Request) -> tuple[dict, list[tuple[str, str]]]:
    """JSON body (400 ``rest_invalid_json`` if broken) or form fields."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return php_params(pairs), pairs
    if not raw.strip():
        return {}, []
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "rest_invalid_json", "Invalid JSON body passed.",
                       json_error_code=4, json_error_message=str(exc)) from None
    return (data if isinstance(data, dict) else {}), []


class Api:
    """The ``/wp-json/`` entry point: host faults, authentication, routing, permission, handler."""

    def __init__(self, state: WooState, faults: Faults) -> None:
        self.state, self.faults = state, faults
        self.auth = Authenticator(state)

    async def handle(self, request: Request) -> Response:
        await self.faults.delay()
        fault = self._host_fault()
        if fault is not None:
            return fault
        writes = request.method in ("POST", "PUT", "PATCH", "DELETE")
        token = self.state.open_scope()
        try:
            response = await self._handle(request)
        except ApiError as err:
            response = error_response(err)
        finally:
            await self.state.close_scope(token)
        if writes and response.status_code < 400 and self.faults.take_lost_commit():
            return lost_response()
        return response

    def _host_fault(self) -> Response | None:
        retry_after = self.faults.take_429()
        if retry_after is not None:
            return PlainTextResponse("429 Too Many Requests", status_code=429,
                                     headers={"Retry-After": f"{retry_after:g}"})
        status = self.faults.take_failure()
        if status is None:
            return None
        if status == 500:
            return wp_response({"code": "internal_server_error",
                                "message": "<p>There has been a critical error on this website.</p>",
                                "data": {"status": 500}, "additional_errors": []}, 500)
        return PlainTextResponse(f"{status} Service Unavailable", status_code=status)

    async def _handle(self, request: Request) -> Response:
        query_pairs = parse_qsl(request.url.query, keep_blank_values=True)
        try:
            body, form_pairs = await read_body(request)
            body_error = None
        except ApiError as err:
            body, form_pairs, body_error = {}, [], err
        auth = self.auth.authenticate(request, query_pairs, form_pairs)
        if auth.error is not None:
            if auth.method != "basic_auth":
                auth.error.headers.pop("WWW-Authenticate", None)
            raise auth.error
        if auth.key is not None:
            denied = key_permission_error(auth.key, request.method)
            if denied:
                raise denied
        route = request.url.path.removeprefix(API_ROOT.rstrip("/")).strip("/")
        matched = match_route(route, request.method) if request.url.path.startswith(API_ROOT) else None
        if matched is None:
            raise no_route()
        if body_error is not None:
            raise body_error
        endpoint, ids = matched
        if auth.key is None:
            code, message = PERMISSION_ERRORS[endpoint.action]
            raise ApiError(401, code, message)
        call = Call(request, self.state, php_params(query_pairs), query_pairs, body, ids, request_base(request))
        return await getattr(endpoint.resource, HANDLERS[endpoint.action])(call)


# --------------------------------------------------------------------------------------------
# Control surface and the app
# --------------------------------------------------------------------------------------------

def control_routes(state: WooState, faults: Faults) -> list[Route]:
    """``/_sandbox/``: seeding, settings, webhook delivery faults and observation (no auth)."""

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw.strip() else {}

    def listed(data: Any, key: str) -> list[dict]:
        return data.get(key, [data]) if isinstance(data, dict) else list(data)

    async def reset(request: Request) -> Response:
        state.reset()
        for f in fields(faults):
            setattr(faults, f.name, getattr(Faults(), f.name))
        return JSONResponse({"ok": True})

    async def products(request: Request) -> Response:
        created = []
        for spec in listed(await body_of(request), "products"):
            spec = dict(spec)
            created.append(seeded_product(state, state.add_product(
                spec.pop("sku", ""), spec.pop("name", "Product"), spec.pop("regular_price", ""), **spec)))
        return JSONResponse(created)

    async def coupons(request: Request) -> Response:
        try:
            made = [state.add_coupon(**c) for c in listed(await body_of(request), "coupons")]
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(made)

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.settings.update(await body_of(request))
            except (TypeError, ValueError, KeyError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(state.settings))

    async def keys(request: Request) -> Response:
        data = await body_of(request)
        state.add_key(data["consumer_key"], data["consumer_secret"], data.get("permissions", "read_write"))
        return JSONResponse({"ok": True})

    async def outage(request: Request) -> Response:
        state.outage_next = int((await body_of(request)).get("fail_next", 0))
        return JSONResponse({"fail_next": state.outage_next})

    async def duplicate(request: Request) -> Response:
        state.duplicate_next = int((await body_of(request)).get("next", 0))
        return JSONResponse({"next": state.duplicate_next})

    async def deliveries(request: Request) -> Response:
        return JSONResponse(state.webhook_deliveries())

    async def wait_idle(request: Request) -> Response:
        timeout = float((await body_of(request)).get("timeout", 120))
        idle = await state.wait_idle(timeout)
        return JSONResponse({"idle": idle}, status_code=200 if idle else 504)

    async def counts(request: Request) -> Response:
        return JSONResponse(state.counts())

    async def clock(request: Request) -> Response:
        state.advance_clock(float((await body_of(request)).get("advance", 0)))
        return JSONResponse({"now_gmt": fmt_date(state.now())})

    return [
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/products", products, methods=["POST"]),
        Route("/_sandbox/coupons", coupons, methods=["POST"]),
        Route("/_sandbox/settings", settings, methods=["GET", "POST"]),
        Route("/_sandbox/keys", keys, methods=["POST"]),
        Route("/_sandbox/webhooks/outage", outage, methods=["POST"]),
        Route("/_sandbox/webhooks/duplicate", duplicate, methods=["POST"]),
        Route("/_sandbox/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/_sandbox/webhooks/wait-idle", wait_idle, methods=["POST"]),
        Route("/_sandbox/state", counts, methods=["GET"]),
        Route("/_sandbox/clock", clock, methods=["POST"]),
        *fault_routes(faults),
    ]


def seeded_product(state: WooState, product: dict) -> dict:
    """A seeded product as the API shows it, its variations expanded for the seeder's use."""
    variations = [state.variation_json(state.products[v], state.home) for v in product["variations"]]
    return {**product, "variations": variations}


def create_app(*, consumer_key: str = "ck_test", consumer_secret: str = "cs_test",
               home_url: str = "https://shop.test/", currency: str = "USD",
               prices_include_tax: bool = False, tax_rates: dict | None = None,
               strip_authorization: bool = False, max_webhook_failures: int = 5,
               delivery_timeout: float = 60.0, deliver_async: bool = True) -> Starlette:
    """The simulator. ``app.state.woo`` is the :class:`WooState`, ``app.state.faults`` the faults."""
    settings = Settings(home_url=home_url if home_url.endswith("/") else home_url + "/",
                        currency=currency, prices_include_tax=prices_include_tax,
                        strip_authorization=strip_authorization,
                        max_webhook_failures=max_webhook_failures,
                        delivery_timeout=delivery_timeout, deliver_async=deliver_async)
    if tax_rates is not None:
        parse_tax_rates(tax_rates)
        settings.tax_rates = copy.deepcopy(tax_rates)
    state = WooState(settings, [ApiKey(consumer_key, consumer_secret)])
    faults = Faults()
    api = Api(state, faults)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [*control_routes(state, faults),
              Route("/wp-json/{rest:path}", api.handle, methods=methods),
              Route("/wp-json", api.handle, methods=methods)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(no_route())

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.woo = state
    app.state.faults = faults
    return app
