"""WooCommerce wc/v3 JSON -> canonical models (pure functions, no I/O).

WooCommerce line amounts exclude tax whether or not the store enters prices with tax, so
they map straight onto canonical lines. Dates come as naive local/UTC twins (``date_x`` and
``date_x_gmt``); each canonical datetime carries the store's offset at that moment, so
``.date()`` is the store's local business date (offsets change with DST, so each field
derives its own).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from connectors.model import (Address, Customer, ItemChange, Order, OrderLine, Payment,
                              Refund, RefundLine, TaxLine)
from connectors.payloads import amount as _money, field as _field, text as _text

STORE = "woocommerce"
REFUNDED_ITEM_META = "_refunded_item_id"
_MAX_OFFSET = timedelta(hours=18)
# Where a refund line's order line is looked for, and the fields that must agree.
_MATCH_BY = {"product": ("line_items", ("product_id", "variation_id")),
             "shipping": ("shipping_lines", ("method_id",)),
             "fee": ("fee_lines", ("name",))}


# --- primitives ------------------------------------------------------------------------


def _list(obj: Mapping, key: str, what: str) -> list:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise ValueError(f"{what}: '{key}' must be a list")
    return value


def _naive(value: Any, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{what}: not a date: {value!r}") from None
    if parsed.tzinfo is not None:  # tolerate an explicit offset: normalise to naive UTC
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def store_datetime(obj: Mapping, field: str, what: str) -> datetime | None:
    """``field``'s UTC twin as an aware datetime in the store's offset at that moment."""
    gmt = obj.get(f"{field}_gmt")
    if not gmt:
        return None
    utc = _naive(gmt, f"{what}.{field}_gmt")
    local = obj.get(field)
    offset = timedelta(0)
    if local:
        seconds = (_naive(local, f"{what}.{field}") - utc).total_seconds()
        offset = timedelta(minutes=round(seconds / 60))
        if abs(offset) >= _MAX_OFFSET:
            raise ValueError(f"{what}: {field} and {field}_gmt are {offset} apart")
    return utc.replace(tzinfo=UTC).astimezone(timezone(offset))


def _required_datetime(obj: Mapping, field: str, what: str) -> datetime:
    value = store_datetime(obj, field, what)
    if value is None:
        raise ValueError(f"{what}: missing '{field}_gmt'")
    return value


# --- orders ----------------------------------------------------------------------------

def _rate_codes(order_json: Mapping, what: str) -> dict[str, str]:
    """Tax rate id -> rate code, from the order's tax lines."""
    codes = {}
    for tax in _list(order_json, "tax_lines", what):
        codes[str(_field(tax, "rate_id", f"{what} tax line"))] = str(
            _field(tax, "rate_code", f"{what} tax line"))
    return codes


def _line_rate_codes(item: Mapping, codes: Mapping[str, str], what: str) -> list[str]:
    """Codes of the rates that taxed this line (zero-total rates are left out)."""
    out = []
    for tax in _list(item, "taxes", what):
        if _money(tax.get("total"), what) == 0:
            continue
        rate_id = str(_field(tax, "id", f"{what} tax"))
        if rate_id not in codes:
            raise ValueError(f"{what}: tax rate {rate_id} is not among the order's tax lines")
        if codes[rate_id] not in out:
            out.append(codes[rate_id])
    return out


def _product_line(item: Mapping, codes: Mapping[str, str], what: str) -> OrderLine:
    line_id = str(_field(item, "id", what))
    what = f"{what} line {line_id}"
    return OrderLine(
        line_id=line_id, kind="product", sku=_text(item.get("sku")) or None,
        name=_text(item.get("name")), quantity=_money(_field(item, "quantity", what), what),
        subtotal=_money(_field(item, "subtotal", what), what),
        total=_money(_field(item, "total", what), what),
        tax=_money(item.get("total_tax"), what),
        tax_rate_codes=_line_rate_codes(item, codes, what))


def _charge_line(item: Mapping, kind: str, codes: Mapping[str, str], what: str) -> OrderLine:
    """A shipping or fee line: one unit, no discount."""
    line_id = str(_field(item, "id", what))
    what = f"{what} {kind} line {line_id}"
    total = _money(_field(item, "total", what), what)
    name = item.get("method_title") if kind == "shipping" else item.get("name")
    return OrderLine(line_id=line_id, kind=kind, name=_text(name), quantity=Decimal(1),
                     subtotal=total, total=total, tax=_money(item.get("total_tax"), what),
                     tax_rate_codes=_line_rate_codes(item, codes, what))


def order_lines(order_json: Mapping) -> list[OrderLine]:
    """Product, shipping and fee lines of an order, in that order."""
    what = f"order {order_json.get('id')}"
    codes = _rate_codes(order_json, what)
    return (
        [_product_line(i, codes, what) for i in _list(order_json, "line_items", what)]
        + [_charge_line(i, "shipping", codes, what)
           for i in _list(order_json, "shipping_lines", what)]
        + [_charge_line(i, "fee", codes, what) for i in _list(order_json, "fee_lines", what)])


def _tax_line(tax: Mapping, what: str) -> TaxLine:
    what = f"{what} tax line {tax.get('id')}"
    amount = (_money(tax.get("tax_total"), what) + _money(tax.get("shipping_tax_total"), what))
    return TaxLine(rate_code=str(_field(tax, "rate_code", what)), label=_text(tax.get("label")),
                   rate_id=_text(tax.get("rate_id")), amount=abs(amount))


def _address(raw: Any) -> Address:
    raw = raw if isinstance(raw, Mapping) else {}
    return Address(
        first_name=_text(raw.get("first_name")), last_name=_text(raw.get("last_name")),
        company=_text(raw.get("company")), line1=_text(raw.get("address_1")),
        line2=_text(raw.get("address_2")), city=_text(raw.get("city")),
        state=_text(raw.get("state")), postcode=_text(raw.get("postcode")),
        country=_text(raw.get("country")), phone=_text(raw.get("phone")))


def _customer(order_json: Mapping) -> Customer:
    """Guest checkouts (``customer_id`` 0) have no store id, only the billing e-mail."""
    raw_billing = order_json.get("billing")
    billing = _address(raw_billing)
    shipping = _address(order_json.get("shipping"))
    email = raw_billing.get("email") if isinstance(raw_billing, Mapping) else ""
    customer_id = str(order_json.get("customer_id") or 0)
    return Customer(
        store_id=customer_id if customer_id != "0" else None,
        email=_text(email), first_name=billing.first_name,
        last_name=billing.last_name, company=billing.company, phone=billing.phone,
        billing=billing, shipping=shipping if shipping != Address() else None)


def customer_from_wc(customer_json: Mapping) -> Customer:
    """A registered customer (``/customers/{id}``)."""
    billing = _address(customer_json.get("billing"))
    shipping = _address(customer_json.get("shipping"))
    return Customer(
        store_id=str(customer_json.get("id")), email=_text(customer_json.get("email")),
        first_name=_text(customer_json.get("first_name")) or billing.first_name,
        last_name=_text(customer_json.get("last_name")) or billing.last_name,
        company=billing.company, phone=billing.phone, billing=billing,
        shipping=shipping if shipping != Address() else None)


def _address_to_wc(address: Address) -> dict[str, str]:
    return {"first_name": address.first_name, "last_name": address.last_name,
            "company": address.company, "address_1": address.line1, "address_2": address.line2,
            "city": address.city, "state": address.state, "postcode": address.postcode,
            "country": address.country}


def customer_to_wc(customer: Customer) -> dict[str, Any]:
    """Update fields for ``PUT /customers/{id}`` (name, e-mail, addresses, phone)."""
    billing = {**_address_to_wc(customer.billing), "email": customer.email,
               "phone": customer.phone or customer.billing.phone}
    body: dict[str, Any] = {"email": customer.email, "first_name": customer.first_name,
                            "last_name": customer.last_name, "billing": billing}
    if customer.shipping is not None:
        body["shipping"] = _address_to_wc(customer.shipping)
    return body


def order_from_wc(order_json: dict, refunds_json: list[dict]) -> Order:
    """The canonical order. ``refunds_json`` are the full refund objects
    (``/orders/{id}/refunds``); the order's own ``refunds[]`` summary has no dates or
    lines, so it is not mapped: pass ``[]`` and the order carries no refunds."""
    what = f"order {order_json.get('id') if isinstance(order_json, Mapping) else '?'}"
    order_id = str(_field(order_json, "id", what))
    currency = str(_field(order_json, "currency", what)).upper()
    total = _money(_field(order_json, "total", what), what)
    paid_at = store_datetime(order_json, "date_paid", what)
    payment_method = _text(order_json.get("payment_method"))
    reference = _text(order_json.get("transaction_id"))
    refunds = sorted((refund_from_wc(r, order_json) for r in refunds_json or []),
                     key=lambda r: (r.created_at, r.store_id))
    return Order(
        store=STORE, store_id=order_id, number=_text(order_json.get("number")) or order_id,
        status=str(_field(order_json, "status", what)), currency=currency,
        created_at=_required_datetime(order_json, "date_created", what),
        modified_at=(store_datetime(order_json, "date_modified", what)
                     or _required_datetime(order_json, "date_created", what)),
        paid_at=paid_at, prices_include_tax=bool(order_json.get("prices_include_tax")),
        customer=_customer(order_json), lines=order_lines(order_json),
        tax_lines=[_tax_line(t, what) for t in _list(order_json, "tax_lines", what)],
        discount_total=_money(order_json.get("discount_total"), what),
        shipping_total=_money(order_json.get("shipping_total"), what),
        tax_total=_money(order_json.get("total_tax"), what), total=total,
        payment_method=payment_method, payment_reference=reference, refunds=refunds,
        # WooCommerce captures one payment per order, for its total, when it is paid.
        payments=[Payment(store_id=order_id, amount=total, method=payment_method,
                          reference=reference, paid_at=paid_at)] if paid_at else [])


# --- refunds ---------------------------------------------------------------------------

def _meta(item: Mapping, key: str) -> str | None:
    for entry in item.get("meta_data") or []:
        if isinstance(entry, Mapping) and entry.get("key") == key:
            value = entry.get("value")
            return str(value) if value not in (None, "") else None
    return None


def _refunded_line_id(item: Mapping, kind: str, order_json: Mapping,
                      by_id: Mapping[str, OrderLine], what: str) -> str:
    """The order line a refund line reduces: the ``_refunded_item_id`` meta when the API
    shows it, else the order line of the same product/variation (products), the same
    method or name (shipping, fees), or the only line of that kind."""
    line_id = _meta(item, REFUNDED_ITEM_META)
    if line_id is not None:
        if line_id not in by_id:
            raise ValueError(f"{what}: refunds order line {line_id}, which the order lacks")
        return line_id
    source, key = _MATCH_BY[kind]
    candidates = [o for o in order_json.get(source) or [] if isinstance(o, Mapping)]
    matches = [o for o in candidates if all(o.get(k) == item.get(k) for k in key)]
    if not matches and len(candidates) == 1:
        matches = candidates
    if not matches:
        raise ValueError(f"{what}: cannot tell which order line it refunds")
    return str(matches[0].get("id"))


def _refund_line(item: Mapping, kind: str, order_json: Mapping,
                 by_id: Mapping[str, OrderLine], what: str) -> RefundLine | None:
    what = f"{what} {kind} line {item.get('id')}"
    amount = abs(_money(item.get("total"), what))
    tax = abs(_money(item.get("total_tax"), what))
    quantity = abs(_money(item.get("quantity"), what)) if kind == "product" else Decimal(1)
    if amount == 0 and tax == 0 and (kind != "product" or quantity == 0):
        return None  # WooCommerce may list untouched lines with zero amounts
    order_line = by_id[_refunded_line_id(item, kind, order_json, by_id, what)]
    name = item.get("method_title") if kind == "shipping" else item.get("name")
    return RefundLine(line_id=order_line.line_id, kind=kind,
                      sku=_text(item.get("sku")) or order_line.sku,
                      name=_text(name) or order_line.name, quantity=quantity, amount=amount,
                      tax=tax, tax_rate_codes=list(order_line.tax_rate_codes))


def refund_from_wc(refund_json: dict, order_json: dict) -> Refund:
    """A refund with positive amounts. Refund line items carry negative quantities and
    totals in WooCommerce; an amount-only refund has no lines."""
    what = f"refund {refund_json.get('id') if isinstance(refund_json, Mapping) else '?'}"
    refund_id = str(_field(refund_json, "id", what))
    by_id = {ln.line_id: ln for ln in order_lines(order_json)}
    lines = []
    for source, kind in (("line_items", "product"), ("shipping_lines", "shipping"),
                         ("fee_lines", "fee")):
        for item in _list(refund_json, source, what):
            line = _refund_line(item, kind, order_json, by_id, what)
            if line is not None:
                lines.append(line)
    return Refund(
        store_id=refund_id, created_at=_required_datetime(refund_json, "date_created", what),
        amount=_money(_field(refund_json, "amount", what), what),
        reason=_text(refund_json.get("reason")), lines=lines,
        tax_lines=[_tax_line(t, what) for t in _list(refund_json, "tax_lines", what)])


# --- catalog ---------------------------------------------------------------------------

def item_change_to_wc(change: ItemChange) -> dict[str, Any]:
    """Product/variation update fields (without ``id``): absolute price and stock.
    Stock is rounded down: WooCommerce counts whole units and must not oversell."""
    fields: dict[str, Any] = {}
    if change.price is not None:
        fields["regular_price"] = format(change.price, "f")
    if change.quantity_available is not None:
        fields["manage_stock"] = True
        fields["stock_quantity"] = int(change.quantity_available.to_integral_value(ROUND_FLOOR))
    return fields


__all__ = ["STORE", "customer_from_wc", "customer_to_wc", "item_change_to_wc", "order_from_wc",
           "order_lines", "refund_from_wc", "store_datetime"]
