"""Canonical models: what every store connector produces and every ERP connector consumes.

Money is always ``Decimal`` with the currency carried on the owning document. ERP documents
book amounts at the currency's ISO 4217 minor unit (:func:`quantize`), the precision Acumatica,
Oracle Fusion and Exact Online keep; a store may report more places (WooCommerce prints JPY
with 2 decimals by default), so totals are compared at :func:`store_places`, never rounded
to the ERP's unit first. Amounts on lines exclude tax.
"""
from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ISO 4217 minor units that differ from 2.
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

ZERO = Decimal("0")


def minor_unit(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit (the way stores and ERPs print totals)."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_UP)


def places(amount: Decimal) -> int:
    """Decimal places an amount was reported with (``Decimal("72.95")`` -> 2, ``73`` -> 0)."""
    exponent = amount.normalize().as_tuple().exponent if amount else 0
    return max(0, -exponent) if isinstance(exponent, int) else 0


def store_places(currency: str, *amounts: Decimal) -> int:
    """The precision to compare a store's amounts at: every place the store reported, and
    never fewer than the currency's minor unit (so a cent is never rounded away)."""
    return max([minor_unit(currency), *(places(a) for a in amounts)])


def to_decimal(value: object) -> Decimal:
    """Parse an API amount (string, int or JSON number) without passing through binary float."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Money(_Model):
    amount: Decimal
    currency: str = Field(min_length=3, max_length=3)

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class Address(_Model):
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postcode: str = ""
    country: str = ""
    phone: str = ""


class Customer(_Model):
    """A buyer as the store knows it. ``store_id`` is None for a guest checkout."""

    store_id: str | None = None
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    phone: str = ""
    billing: Address = Field(default_factory=Address)
    shipping: Address | None = None

    @property
    def is_guest(self) -> bool:
        return self.store_id is None

    @property
    def display_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return self.company or name or self.email


class TaxLine(_Model):
    """One tax rate's total on an order or refund, as the store computed it."""

    rate_code: str
    label: str = ""
    rate_id: str = ""
    amount: Decimal  # tax on items + shipping for this rate
    taxable_amount: Decimal | None = None


LineKind = Literal["product", "shipping", "fee"]


class OrderLine(_Model):
    line_id: str
    kind: LineKind = "product"
    sku: str | None = None
    name: str = ""
    quantity: Decimal = Decimal(1)
    subtotal: Decimal  # before discounts, excl. tax
    total: Decimal  # after discounts, excl. tax
    tax: Decimal = ZERO
    tax_rate_codes: list[str] = Field(default_factory=list)
    category: str = ""  # the product's category where the store says it (GL rules use it)

    @property
    def discount(self) -> Decimal:
        return self.subtotal - self.total

    @property
    def unit_price(self) -> Decimal:
        return self.subtotal / self.quantity if self.quantity else self.subtotal


class RefundLine(_Model):
    """A refunded part of an order line; amounts positive, excl. tax (tax separate)."""

    line_id: str  # the order line it refunds
    kind: LineKind = "product"
    sku: str | None = None
    name: str = ""
    quantity: Decimal = ZERO
    amount: Decimal
    tax: Decimal = ZERO
    tax_rate_codes: list[str] = Field(default_factory=list)


class Refund(_Model):
    store_id: str
    created_at: datetime
    amount: Decimal  # positive, incl. tax: what the customer got back
    reason: str = ""
    lines: list[RefundLine] = Field(default_factory=list)
    tax_lines: list[TaxLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _positive(self) -> "Refund":
        if self.amount < 0:
            raise ValueError(f"refund {self.store_id}: amount must be positive, got {self.amount}")
        return self

    @property
    def lines_total(self) -> Decimal:
        return sum((ln.amount + ln.tax for ln in self.lines), ZERO)

    @property
    def is_amount_only(self) -> bool:
        return not self.lines


class Payment(_Model):
    store_id: str
    amount: Decimal
    method: str = ""
    reference: str = ""
    paid_at: datetime | None = None


class Order(_Model):
    store: str  # "woocommerce", "bigcommerce"
    store_id: str
    number: str
    status: str
    currency: str = Field(min_length=3, max_length=3)
    created_at: datetime
    modified_at: datetime
    paid_at: datetime | None = None
    prices_include_tax: bool = False
    customer: Customer
    lines: list[OrderLine]
    tax_lines: list[TaxLine] = Field(default_factory=list)
    discount_total: Decimal = ZERO  # excl. tax
    shipping_total: Decimal = ZERO  # excl. tax
    tax_total: Decimal = ZERO
    total: Decimal  # what the customer pays, incl. tax
    payment_method: str = ""
    payment_reference: str = ""
    refunds: list[Refund] = Field(default_factory=list)
    payments: list[Payment] = Field(default_factory=list)

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None

    @property
    def lines_total(self) -> Decimal:
        """Sum of line totals plus their tax: equals ``total`` for a consistent order."""
        return sum((ln.total + ln.tax for ln in self.lines), ZERO)

    @property
    def precision(self) -> int:
        """Decimal places of the amounts this store reported (see :func:`store_places`)."""
        amounts = [self.total, self.tax_total, self.shipping_total, self.discount_total]
        amounts += [a for ln in self.lines for a in (ln.subtotal, ln.total, ln.tax)]
        amounts += [t.amount for t in self.tax_lines] + [p.amount for p in self.payments]
        return store_places(self.currency, *amounts)

    def check_totals(self) -> Decimal:
        """Difference between the store's total and the sum of its parts (0 when consistent),
        exact at the store's precision: nothing is rounded to the ERP's minor unit first."""
        return self.total - self.lines_total


class ItemChange(_Model):
    sku: str
    price: Decimal | None = None
    cost: Decimal | None = None
    quantity_available: Decimal | None = None
    currency: str | None = None
    modified_at: datetime


class Shipment(_Model):
    """An ERP shipment confirmation, to show the buyer in the store."""

    shipment_id: str  # the ERP's shipment number
    external_ref: str  # the order's external reference as posted (prefix + store order id)
    tracking_numbers: list[str] = Field(default_factory=list)
    carrier: str = ""
    shipped_at: datetime
    modified_at: datetime


def latest_per_sku(changes: list[ItemChange]) -> dict[str, ItemChange]:
    """The most recent change of each SKU (a push writes absolute values: the newest wins)."""
    latest: dict[str, ItemChange] = {}
    for change in changes:
        if change.sku not in latest or change.modified_at >= latest[change.sku].modified_at:
            latest[change.sku] = change
    return latest


DocumentKind = Literal["customer", "invoice", "credit_memo", "adjustment_invoice", "receipt",
                       "refund_payment"]


class ErpDocumentRef(_Model):
    system: str  # "acumatica", ...
    kind: DocumentKind
    doc_type: str = ""  # ERP's own type, e.g. "Invoice", "Credit Memo"
    number: str  # ERP's reference number / key
    id: str = ""  # ERP's persistent id where it has one
    external_ref: str = ""
    total: Decimal | None = None
    currency: str | None = None
    created: bool = True  # False when an existing document was found and returned

    @property
    def label(self) -> str:
        return f"{self.doc_type or self.kind} {self.number}".strip()
