"""BigCommerce JSON (v2 orders + sub-resources, v3 transactions and refunds) -> canonical
models. Pure functions, no I/O.

Where the amounts come from (reference §3.3-§5):
- A product line's ``total_ex_tax`` is the undiscounted line (the canonical ``subtotal``);
  ``total_tax`` is the tax after discounts and ``discounted_total_inc_tax`` what the shopper
  paid for the line, so the discounted net is ``discounted_total_inc_tax - total_tax``. This
  holds for tax-inclusive and tax-exclusive stores alike.
- Shipping and handling live on the order's shipping addresses (``cost_*``,
  ``handling_cost_*``), gift wrapping on the products, custom fees on the order.
- Tax per rate comes from ``/v2/orders/{id}/taxes?details=true`` (one row per taxed line and
  rate); a rate's code is its ``sales_tax_id``, else its ``tax_rate_id``.
- The currency is the transactional one (``default_currency_code``), never the store's
  default or the display currency.
- Refund line amounts are not in the v3 refund (``requested_amount`` is meaningless for
  PRODUCT items): they are the refunded share of the order line, rounded to the currency's
  minor unit per line; amount-bound items (SHIPPING, HANDLING, FEE) carry their amount in
  the store's price basis (incl. tax when ``is_tax_inclusive_pricing``), their tax in
  proportion to the order line's. ORDER items are amount-only (no line).
"""
from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from connectors.model import (ZERO, Address, Customer, ItemChange, Order, OrderLine, Payment,
                              Refund, RefundLine, TaxLine, quantize)
from connectors.payloads import amount as _money, field as _field, text as _text

STORE = "bigcommerce"
# Statuses a store only reaches once payment is confirmed (reference §3.2; Refunded and
# Partially Refunded were paid before they were refunded).
PAID_STATUS_IDS = frozenset({2, 3, 4, 8, 9, 10, 11, 14})
SALE_EVENTS = frozenset({"purchase", "capture"})
DEFAULT_LOCATION_ID = 1  # always exists (reference §8)

_TAX_ROW_KINDS = {"item": "product", "shipping": "shipping", "handling": "handling",
                  "gift-wrapping": "wrapping"}
_REFUND_KINDS = {"PRODUCT": "product", "GIFT_WRAPPING": "wrapping", "SHIPPING": "shipping",
                 "HANDLING": "handling", "FEE": "fee"}


# --- primitives ------------------------------------------------------------------------


def _rows(value: Any, what: str) -> list[Mapping]:
    """A v2 sub-resource list (a 204 arrives as None); anything else is malformed."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
        raise ValueError(f"{what}: expected a list of objects")
    return value


class DateUnreadable(ValueError):
    """A BigCommerce date in neither of the shapes its APIs write (a malformed record)."""


_STARTS_WITH_YEAR = re.compile(r"^\d{4}")  # ISO 8601; RFC 2822 starts with a day (name or number)


def parse_datetime(value: Any, what: str) -> datetime | None:
    """An instant as BigCommerce writes it: v2 in RFC 2822 (``Tue, 05 Mar 2019 21:40:11 +0000``),
    v3 in ISO 8601 (``2019-03-05T21:40:11Z``); the shape says which. An empty string means "not
    set" (``date_shipped``); an instant without an offset is UTC, as v2 documents its dates."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    read = _iso_8601 if _STARTS_WITH_YEAR.match(text) else _rfc_2822
    moment = read(text)
    if moment is None:
        raise DateUnreadable(f"{what}: not a date: {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rfc_2822(text: str) -> datetime | None:
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _iso_8601(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)  # with "Z", fractions and offsets (Python 3.11)
    except ValueError:
        return None


def _required_datetime(obj: Mapping, key: str, what: str) -> datetime:
    parsed = parse_datetime(_field(obj, key, what), f"{what}.{key}")
    if parsed is None:
        raise ValueError(f"{what}: empty '{key}'")
    return parsed


def status_slug(name: str) -> str:
    """``Awaiting Fulfillment`` -> ``awaiting_fulfillment`` (the system name, not the
    merchant's renamable ``custom_status``)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def order_currency(order: Mapping) -> str:
    """The transactional currency (what the shopper was charged in)."""
    code = order.get("default_currency_code") or order.get("currency_code")
    if not code:
        raise ValueError(f"order {order.get('id')}: no currency")
    return str(code).upper()


# --- customers -------------------------------------------------------------------------

def _address(raw: Any) -> Address:
    raw = raw if isinstance(raw, Mapping) else {}
    return Address(
        first_name=_text(raw.get("first_name")), last_name=_text(raw.get("last_name")),
        company=_text(raw.get("company")), line1=_text(raw.get("street_1")),
        line2=_text(raw.get("street_2")), city=_text(raw.get("city")),
        state=_text(raw.get("state")), postcode=_text(raw.get("zip")),
        country=_text(raw.get("country_iso2") or raw.get("country")),
        phone=_text(raw.get("phone")))


def customer_from_order(order: Mapping, shipping_addresses: Iterable[Mapping] = ()) -> Customer:
    """Guests (``customer_id`` 0) have no store id, only the billing e-mail."""
    raw = order.get("billing_address") if isinstance(order.get("billing_address"), Mapping) else {}
    billing = _address(raw)
    first_ship = next(iter(shipping_addresses), None)
    shipping = _address(first_ship) if first_ship else None
    customer_id = str(order.get("customer_id") or 0)
    return Customer(
        store_id=None if customer_id in ("0", "0.0") else customer_id,
        email=_text(raw.get("email")), first_name=billing.first_name,
        last_name=billing.last_name, company=billing.company, phone=billing.phone,
        billing=billing, shipping=shipping if shipping and shipping != Address() else None)


def customer_from_bc(raw: Mapping) -> Customer:
    """A registered customer (``/v3/customers``, ``include=addresses``): the first address
    as billing address (v3 addresses use ``address1``/``postal_code``/``country_code``)."""
    what = f"customer {raw.get('id') if isinstance(raw, Mapping) else '?'}"
    addresses = raw.get("addresses") if isinstance(raw.get("addresses"), list) else []
    first = addresses[0] if addresses and isinstance(addresses[0], Mapping) else {}
    billing = Address(
        first_name=_text(first.get("first_name") or raw.get("first_name")),
        last_name=_text(first.get("last_name") or raw.get("last_name")),
        company=_text(first.get("company") or raw.get("company")),
        line1=_text(first.get("address1")), line2=_text(first.get("address2")),
        city=_text(first.get("city")), state=_text(first.get("state_or_province")),
        postcode=_text(first.get("postal_code")), country=_text(first.get("country_code")),
        phone=_text(first.get("phone") or raw.get("phone")))
    return Customer(store_id=str(_field(raw, "id", what)), email=_text(raw.get("email")),
                    first_name=_text(raw.get("first_name")), last_name=_text(raw.get("last_name")),
                    company=_text(raw.get("company")), phone=_text(raw.get("phone")), billing=billing)


# --- tax -------------------------------------------------------------------------------

def rate_code(row: Mapping) -> str:
    """The code a tax rate is mapped by: ``sales_tax_id`` (the documented identifier of the
    applied rate), else the deprecated ``tax_rate_id``, else its name."""
    for key in ("sales_tax_id", "tax_rate_id", "name"):
        value = row.get(key)
        if value not in (None, "", 0):
            return str(value)
    raise ValueError(f"tax row {row.get('id')}: no rate identifier")


def _row_amount(row: Mapping, what: str) -> Decimal:
    value = row.get("line_amount")
    return _money(value if value not in (None, "") else row.get("priority_amount"), what)


def _line_key(row: Mapping) -> tuple[str, str] | None:
    kind = _TAX_ROW_KINDS.get(_text(row.get("line_item_type")))
    if kind is None:
        return None
    if kind == "product" or kind == "wrapping" and row.get("order_product_id") not in (None, ""):
        return kind, _text(row.get("order_product_id"))
    if kind == "wrapping":
        return kind, ""
    return kind, _text(row.get("order_address_id"))


def rate_codes_by_line(taxes: Iterable[Mapping]) -> dict[tuple[str, str], list[str]]:
    """(line kind, source id) -> codes of the rates that taxed it (non-zero rows only)."""
    out: dict[tuple[str, str], list[str]] = {}
    for row in taxes:
        key = _line_key(row)
        if key is None or _row_amount(row, f"tax row {row.get('id')}") == 0:
            continue
        codes = out.setdefault(key, [])
        if (code := rate_code(row)) not in codes:
            codes.append(code)
    return out


def tax_lines(taxes: Iterable[Mapping]) -> list[TaxLine]:
    """One canonical tax line per rate, summed over addresses and lines."""
    out: dict[str, TaxLine] = {}
    for row in taxes:
        code = rate_code(row)
        amount = _row_amount(row, f"tax row {row.get('id')}")
        if code in out:
            out[code].amount += amount
        else:
            out[code] = TaxLine(rate_code=code, label=_text(row.get("name")),
                                rate_id=_text(row.get("tax_rate_id")), amount=amount)
    return [t for t in out.values() if t.amount != 0]


# --- order lines -----------------------------------------------------------------------

def _charge(line_id: str, kind: str, name: str, net: Decimal, tax: Decimal,
            codes: list[str], quantity: Decimal = Decimal(1)) -> OrderLine:
    return OrderLine(line_id=line_id, kind=kind, name=name, quantity=quantity, subtotal=net,
                     total=net, tax=tax, tax_rate_codes=codes)


def _product_line(p: Mapping, codes: Mapping[tuple[str, str], list[str]], what: str) -> OrderLine:
    line_id = str(_field(p, "id", what))
    what = f"{what} product {line_id}"
    subtotal = _money(p.get("total_ex_tax"), what)
    tax = _money(p.get("total_tax"), what)
    discounted_inc = p.get("discounted_total_inc_tax")
    if discounted_inc not in (None, ""):
        total = _money(discounted_inc, what) - tax
    else:
        total = subtotal - sum((_money(d.get("amount"), what)
                                for d in _rows(p.get("applied_discounts"), what)), ZERO)
    return OrderLine(line_id=line_id, kind="product", sku=_text(p.get("sku")) or None,
                     name=_text(p.get("name")), quantity=_money(_field(p, "quantity", what), what),
                     subtotal=subtotal, total=total, tax=tax,
                     tax_rate_codes=list(codes.get(("product", line_id), [])))


def _is_bundled_child(p: Mapping) -> bool:
    """Bundle components are priced in their parent line (reference §3.4)."""
    return bool(p.get("is_bundled_product")) and p.get("parent_order_product_id") not in (None, 0)


def order_lines(order: Mapping, products: Iterable[Mapping],
                shipping_addresses: Iterable[Mapping] = (),
                taxes: Iterable[Mapping] = ()) -> list[OrderLine]:
    """Products, then per product gift wrapping, then shipping and handling per shipping
    address, then custom fees. Line ids: the order product id for products;
    ``wrapping-{product}``, ``shipping-{address}``, ``handling-{address}``, ``fee-{fee}``."""
    what = f"order {order.get('id')}"
    codes = rate_codes_by_line(taxes)
    products = [p for p in products if not _is_bundled_child(p)]
    addresses = list(shipping_addresses)
    lines = [_product_line(p, codes, what) for p in products]
    for p in products:
        net = _money(p.get("wrapping_cost_ex_tax"), what)
        tax = _money(p.get("wrapping_cost_tax"), what)
        if net or tax:
            pid = str(p["id"])
            lines.append(_charge(f"wrapping-{pid}", "fee", _text(p.get("wrapping_name")) or "Gift wrapping",
                                 net, tax, list(codes.get(("wrapping", pid), [])),
                                 _money(p.get("quantity"), what) or Decimal(1)))
    lines += _address_charges(order, addresses, codes, what)
    lines += _order_level_charges(order, products, codes, what)
    return lines


def _address_charges(order: Mapping, addresses: list[Mapping],
                     codes: Mapping[tuple[str, str], list[str]], what: str) -> list[OrderLine]:
    out = []
    for a in addresses:
        aid = str(_field(a, "id", f"{what} shipping address"))
        where = f"{what} shipping address {aid}"
        net, tax = _money(a.get("cost_ex_tax"), where), _money(a.get("cost_tax"), where)
        method = _text(a.get("shipping_method"))
        if net or tax or method:
            out.append(_charge(f"shipping-{aid}", "shipping", method or "Shipping", net, tax,
                               list(codes.get(("shipping", aid), []))))
        net, tax = _money(a.get("handling_cost_ex_tax"), where), _money(a.get("handling_cost_tax"), where)
        if net or tax:
            out.append(_charge(f"handling-{aid}", "fee", "Handling", net, tax,
                               list(codes.get(("handling", aid), []))))
    if not addresses:  # digital orders: order-level shipping/handling only
        for key, kind, name in (("shipping", "shipping", "Shipping"), ("handling", "fee", "Handling")):
            net = _money(order.get(f"{key}_cost_ex_tax"), what)
            tax = _money(order.get(f"{key}_cost_tax"), what)
            if net or tax:
                out.append(_charge(key, kind, name, net, tax, list(codes.get((key, ""), []))))
    return out


def _order_level_charges(order: Mapping, products: list[Mapping],
                         codes: Mapping[tuple[str, str], list[str]], what: str) -> list[OrderLine]:
    out = []
    if not any(_money(p.get("wrapping_cost_ex_tax"), what) for p in products):
        net = _money(order.get("wrapping_cost_ex_tax"), what)
        tax = _money(order.get("wrapping_cost_tax"), what)
        if net or tax:
            out.append(_charge("wrapping", "fee", "Gift wrapping", net, tax,
                               list(codes.get(("wrapping", ""), []))))
    fees = order.get("fees")
    for fee in fees if isinstance(fees, list) else []:
        fid = str(_field(fee, "id", f"{what} fee"))
        where = f"{what} fee {fid}"
        # the spec spells the net both cost_ex_tax and cost_exc_tax
        net = _money(fee.get("cost_ex_tax", fee.get("cost_exc_tax")), where)
        tax = _money(fee.get("cost_tax"), where)
        name = _text(fee.get("display_name_merchant") or fee.get("display_name_customer")) or "Fee"
        out.append(_charge(f"fee-{fid}", "fee", name, net, tax, []))
    return out


def _fill_single_rate(lines: list[OrderLine], tax: list[TaxLine]) -> None:
    """A taxed line the tax rows do not name (no ``details`` rows for it) takes the order's
    rate when the order has exactly one."""
    if len(tax) != 1:
        return
    for ln in lines:
        if ln.tax and not ln.tax_rate_codes:
            ln.tax_rate_codes = [tax[0].rate_code]


# --- payments --------------------------------------------------------------------------

def _transaction_ok(t: Mapping) -> bool:
    return _text(t.get("status") or "ok").lower() == "ok"


def payments_from_bc(transactions: Iterable[Mapping]) -> list[Payment]:
    """Money taken, one payment per transaction: every successful ``purchase`` and
    ``capture`` (several partial captures of one authorization are several payments; an
    ``authorization`` is no money). A ``settled`` transaction counts when it is a tender of
    its own (offline methods settle without a capture, e.g. the bank deposit paying what store
    credit did not), not when it settles money a sale already counts: one referring to a sale
    or its authorization, one of a gateway that has a sale, one naming no gateway beside a
    sale."""
    rows = [t for t in transactions if _transaction_ok(t)]
    sales = [t for t in rows if t.get("event") in SALE_EVENTS]
    chain = {_text(t.get(k)) for t in sales for k in ("id", "reference_transaction_id")} - {""}
    gateways = {_text(t.get("gateway")) for t in sales}

    def own_tender(t: Mapping) -> bool:
        if _text(t.get("reference_transaction_id")) in chain:
            return False
        return not sales or _text(t.get("gateway")) not in gateways | {""}

    out: list[Payment] = []
    for t in sales + [t for t in rows if t.get("event") == "settled" and own_tender(t)]:
        what = f"transaction {t.get('id')}"
        if any(p.store_id == str(_field(t, "id", what)) for p in out):
            continue  # listed twice (a page boundary moved): one transaction, one payment
        out.append(Payment(
            store_id=str(_field(t, "id", what)), amount=_money(_field(t, "amount", what), what),
            method=_text(t.get("gateway") or t.get("method")),
            reference=_text(t.get("gateway_transaction_id")),
            paid_at=parse_datetime(t.get("date_created"), f"{what}.date_created")))
    return sorted(out, key=lambda p: (p.paid_at or datetime.min.replace(tzinfo=UTC),
                                      int(p.store_id) if p.store_id.isdigit() else 0, p.store_id))


def paid_at(order: Mapping, payments: list[Payment]) -> datetime | None:
    """When the store took the money: the first captured sale; for an order without one
    (manual/offline payment) that is in a paid status, its creation time (the moment it
    became paid is not recorded, and the creation time does not move)."""
    dates = [p.paid_at for p in payments if p.paid_at is not None]
    if dates:
        return min(dates)
    if int(order.get("status_id") or 0) in PAID_STATUS_IDS:
        return _required_datetime(order, "date_created", f"order {order.get('id')}")
    return None


# --- refunds ---------------------------------------------------------------------------

def _refund_keys(lines: list[OrderLine]) -> dict[tuple[str, str], OrderLine]:
    """Refund (item_type, item_id) -> the order line it refunds."""
    out: dict[tuple[str, str], OrderLine] = {}
    for ln in lines:
        prefix, _, source = ln.line_id.partition("-")
        if ln.kind == "product":
            out[("PRODUCT", ln.line_id)] = ln
        elif prefix == "wrapping" and source:
            out[("GIFT_WRAPPING", source)] = ln
        elif prefix in ("shipping", "handling", "fee"):
            out[(prefix.upper(), source)] = ln
    return out


def _share(amount: Decimal, part: Decimal, whole: Decimal, currency: str) -> Decimal:
    return quantize(amount * part / whole, currency) if whole else ZERO


def _refund_line(item: Mapping, line: OrderLine, currency: str, inclusive: bool,
                 what: str) -> RefundLine | None:
    if item.get("item_type") in ("PRODUCT", "GIFT_WRAPPING"):
        qty = _money(item.get("quantity"), what)
        net = _share(line.total, qty, line.quantity, currency)
        tax = _share(line.tax, qty, line.quantity, currency)
    else:
        qty = Decimal(1)
        requested = _money(item.get("requested_amount", item.get("amount")), what)
        if inclusive:
            tax = _share(requested, line.tax, line.total + line.tax, currency)
            net = requested - tax
        else:
            net, tax = requested, _share(requested, line.tax, line.total, currency)
    if not (net or tax or qty):
        return None
    return RefundLine(line_id=line.line_id, kind=line.kind, sku=line.sku, name=line.name,
                      quantity=qty, amount=net, tax=tax, tax_rate_codes=list(line.tax_rate_codes))


def refund_from_bc(refund: Mapping, lines: list[OrderLine], currency: str,
                   prices_include_tax: bool = False) -> Refund:
    """A v3 refund with positive amounts. ORDER (and TAX) items, which refund an amount
    without a line, stay out of ``lines``: the credit memo books what the lines do not
    explain on the adjustment item."""
    what = f"refund {refund.get('id') if isinstance(refund, Mapping) else '?'}"
    refund_id = str(_field(refund, "id", what))
    by_key = _refund_keys(lines)
    out = []
    for item in _rows(refund.get("items"), what):
        key = (_text(item.get("item_type")), _text(item.get("item_id")))
        if key[0] not in _REFUND_KINDS:
            continue
        line = by_key.get(key)
        if line is None:
            raise ValueError(f"{what}: refunds {key[0]} {key[1]}, which the order lacks")
        if (refund_line := _refund_line(item, line, currency, prices_include_tax, what)):
            out.append(refund_line)
    reasons = [_text(i.get("reason")) for i in _rows(refund.get("items"), what) if i.get("reason")]
    return Refund(
        store_id=refund_id, created_at=_required_datetime(refund, "created", what),
        amount=_money(_field(refund, "total_amount", what), what),
        reason=_text(refund.get("reason")) or (reasons[0] if reasons else ""), lines=out)


# --- orders ----------------------------------------------------------------------------

def order_from_bc(order: Mapping, *, products: Iterable[Mapping],
                  shipping_addresses: Iterable[Mapping] = (), coupons: Iterable[Mapping] = (),
                  taxes: Iterable[Mapping] = (), transactions: Iterable[Mapping] = (),
                  refunds: Iterable[Mapping] = ()) -> Order:
    """The canonical order from the v2 order and its sub-resources (each as the API
    returned it; a 204 is an empty list) plus v3 transactions and refunds."""
    what = f"order {order.get('id') if isinstance(order, Mapping) else '?'}"
    _field(order, "id", what)  # an order without an id is not a record
    addresses = _rows(list(shipping_addresses), f"{what} shipping addresses")
    tax_rows = _rows(list(taxes), f"{what} taxes")
    lines = order_lines(order, _rows(list(products), f"{what} products"), addresses, tax_rows)
    taxes_by_rate = tax_lines(tax_rows)
    _fill_single_rate(lines, taxes_by_rate)
    currency = order_currency(order)
    payments = payments_from_bc(_rows(list(transactions), f"{what} transactions"))
    inclusive = bool(order.get("is_tax_inclusive_pricing"))
    refund_rows = _rows(list(refunds), f"{what} refunds")
    header = _header(order, what)
    return Order(
        **header, currency=currency, paid_at=paid_at(order, payments),
        prices_include_tax=inclusive, customer=customer_from_order(order, addresses),
        lines=lines, tax_lines=taxes_by_rate,
        discount_total=sum((ln.discount for ln in lines if ln.kind == "product"), ZERO),
        shipping_total=sum((ln.total for ln in lines if ln.kind == "shipping"), ZERO),
        payment_reference=_payment_reference(order, payments),
        refunds=sorted((refund_from_bc(r, lines, currency, inclusive) for r in refund_rows),
                       key=lambda r: (r.created_at, int(r.store_id) if r.store_id.isdigit() else 0)),
        payments=payments)


def _header(order: Mapping, what: str) -> dict[str, Any]:
    created = _required_datetime(order, "date_created", what)
    return dict(
        store=STORE, store_id=str(order["id"]), number=str(order["id"]),
        status=status_slug(_text(order.get("status")) or f"status {order.get('status_id')}"),
        created_at=created,
        modified_at=parse_datetime(order.get("date_modified"), f"{what}.date_modified") or created,
        tax_total=_money(order.get("total_tax"), what),
        total=_money(_field(order, "total_inc_tax", what), what),
        payment_method=_text(order.get("payment_method")))


def _payment_reference(order: Mapping, payments: list[Payment]) -> str:
    if order.get("payment_provider_id") not in (None, ""):
        return _text(order["payment_provider_id"])
    return next((p.reference for p in payments if p.reference), "")


def order_summary_from_bc(order: Mapping) -> Order:
    """An order from the list endpoint alone (no sub-resources: no lines, refunds or
    payments): enough to know it changed. The paid date is the status-based one."""
    what = f"order {order.get('id') if isinstance(order, Mapping) else '?'}"
    _field(order, "id", what)
    return Order(**_header(order, what), currency=order_currency(order),
                 paid_at=paid_at(order, []),
                 prices_include_tax=bool(order.get("is_tax_inclusive_pricing")),
                 customer=customer_from_order(order), lines=[],
                 discount_total=_money(order.get("discount_amount"), what)
                 + _money(order.get("coupon_discount"), what),
                 shipping_total=_money(order.get("shipping_cost_ex_tax"), what))


# --- catalog ---------------------------------------------------------------------------

def catalog_fields(change: ItemChange) -> dict[str, Decimal]:
    """Product/variant update fields (without ``id``): absolute price and cost."""
    fields: dict[str, Decimal] = {}
    if change.price is not None:
        fields["price"] = change.price
    if change.cost is not None:
        fields["cost_price"] = change.cost
    return fields


def stock_quantity(change: ItemChange) -> int | None:
    """Whole units, rounded down: the store must not oversell."""
    if change.quantity_available is None:
        return None
    return max(0, int(change.quantity_available.to_integral_value(ROUND_FLOOR)))


__all__ = ["STORE", "DateUnreadable", "catalog_fields", "customer_from_bc", "customer_from_order", "order_currency", "order_from_bc",
           "order_lines", "order_summary_from_bc", "paid_at", "parse_datetime",
           "payments_from_bc", "rate_code", "refund_from_bc", "status_slug", "stock_quantity",
           "tax_lines"]
