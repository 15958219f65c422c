"""The store's records (keys, products, coupons, customers, orders and their lines, refunds, webhooks)
and settings."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.woocommerce.constants import DEFAULT_TAX_RATES, ZERO
from sandbox.woocommerce.taxes import parse_tax_rates

if TYPE_CHECKING:
    from sandbox.woocommerce.taxes import TaxRate


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
