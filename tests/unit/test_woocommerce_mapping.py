"""WooCommerce wc/v3 payloads -> canonical models, to the cent."""
from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.model import ItemChange
from connectors.woocommerce_mapping import item_change_to_wc, order_from_wc, refund_from_wc

FIXTURES = Path(__file__).parent.parent / "fixtures" / "woocommerce"
D = Decimal


def load(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


ORDER_FIXTURES = {
    "order_us_ny": "refunds_us_ny",
    "order_de_guest_incl_tax": None,
    "order_jp_negative_fee": None,
}


def mapped(name: str):
    refunds = ORDER_FIXTURES[name]
    return order_from_wc(load(name), load(refunds) if refunds else [])


@pytest.mark.parametrize("name", ORDER_FIXTURES)
def test_every_fixture_adds_up_to_the_cent(name):
    order = mapped(name)
    assert order.check_totals() == 0
    assert sum(t.amount for t in order.tax_lines) == order.tax_total
    assert sum(ln.tax for ln in order.lines) == order.tax_total
    assert sum(ln.total for ln in order.lines if ln.kind == "shipping") == order.shipping_total
    products = [ln for ln in order.lines if ln.kind == "product"]
    assert sum(ln.subtotal - ln.total for ln in products) == order.discount_total
    for refund in order.refunds:
        if not refund.is_amount_only:
            assert refund.lines_total == refund.amount
            assert sum(t.amount for t in refund.tax_lines) == sum(ln.tax for ln in refund.lines)


def test_us_order_lines_taxes_and_discounts():
    order = mapped("order_us_ny")
    assert (order.store, order.store_id, order.number, order.status) == (
        "woocommerce", "1047", "1047", "processing")
    assert order.currency == "USD" and order.prices_include_tax is False
    assert [(ln.line_id, ln.kind, ln.sku, ln.quantity) for ln in order.lines] == [
        ("311", "product", "TSHIRT-BLU-L", 2), ("312", "product", "MUG-CER-01", 3),
        ("313", "shipping", None, 1), ("314", "fee", None, 1)]
    shirt, mug, shipping, fee = order.lines
    assert (shirt.name, shirt.subtotal, shirt.total, shirt.tax) == (
        "Organic Cotton T-Shirt - Blue, L", D("50.00"), D("45.00"), D("3.99"))
    assert shirt.discount == D("5.00") and shirt.unit_price == D("25.00")
    assert shirt.tax_rate_codes == ["US-NY-STATE-1", "US-NY-NYC-2"]
    assert (shipping.name, shipping.subtotal, shipping.total, shipping.tax) == (
        "Flat rate", D("8.00"), D("8.00"), D("0.71"))
    assert (fee.name, fee.total, fee.tax) == ("Gift wrapping", D("5.00"), D("0.44"))
    assert [(t.rate_code, t.rate_id, t.label, t.amount) for t in order.tax_lines] == [
        ("US-NY-STATE-1", "11", "NY State Tax", D("3.62")),
        ("US-NY-NYC-2", "12", "NYC Local Tax", D("4.40"))]
    assert (order.discount_total, order.shipping_total, order.tax_total, order.total) == (
        D("8.60"), D("8.00"), D("8.02"), D("98.42"))
    assert (order.payment_method, order.payment_reference) == (
        "stripe", "ch_3OsK2bLkdIwHu7ix0a1B2c3D")


def test_us_order_dates_carry_the_store_offset_across_dst():
    order = mapped("order_us_ny")
    est, edt = timezone(timedelta(hours=-5)), timezone(timedelta(hours=-4))
    assert order.created_at == datetime(2024, 3, 10, 2, 24, 8, tzinfo=UTC)
    assert order.created_at.utcoffset() == est.utcoffset(None)
    # Paid late evening local time: the UTC date is already the next day.
    assert order.paid_at.date() == date(2024, 3, 9)
    assert order.paid_at.astimezone(UTC).date() == date(2024, 3, 10)
    assert order.modified_at == datetime(2024, 3, 12, 10, 20, 31, tzinfo=edt)
    assert order.modified_at.utcoffset() == timedelta(hours=-4)
    assert [p.model_dump() for p in order.payments] == [{
        "store_id": "1047", "amount": D("98.42"), "method": "stripe",
        "reference": "ch_3OsK2bLkdIwHu7ix0a1B2c3D", "paid_at": order.paid_at}]


def test_registered_customer_and_addresses():
    customer = mapped("order_us_ny").customer
    assert customer.store_id == "42" and not customer.is_guest
    assert (customer.email, customer.first_name, customer.last_name, customer.phone) == (
        "dana.whitfield@example.com", "Dana", "Whitfield", "+1 212 555 0142")
    assert customer.billing.line1 == "350 W 42nd St" and customer.billing.line2 == "Apt 12B"
    assert (customer.billing.city, customer.billing.state, customer.billing.postcode,
            customer.billing.country) == ("New York", "NY", "10036", "US")
    assert customer.shipping is not None and customer.shipping.city == "New York"


def test_refunds_sorted_oldest_first_with_lines_matched_to_order_lines():
    refunds = mapped("order_us_ny").refunds
    assert [r.store_id for r in refunds] == ["1052", "1058", "1063"]
    broken_mug, shirt_return, goodwill = refunds

    assert broken_mug.amount == D("20.47") and broken_mug.reason == "Mug arrived broken"
    assert broken_mug.created_at == datetime(2024, 3, 10, 23, 48, 10, tzinfo=UTC)
    assert broken_mug.created_at.utcoffset() == timedelta(hours=-4)
    assert [(ln.line_id, ln.kind, ln.sku, ln.quantity, ln.amount, ln.tax)
            for ln in broken_mug.lines] == [
        ("312", "product", "MUG-CER-01", 1, D("10.80"), D("0.96")),
        ("313", "shipping", None, 1, D("8.00"), D("0.71"))]
    assert broken_mug.lines[0].tax_rate_codes == ["US-NY-STATE-1", "US-NY-NYC-2"]
    assert [(t.rate_code, t.amount) for t in broken_mug.tax_lines] == [
        ("US-NY-STATE-1", D("0.75")), ("US-NY-NYC-2", D("0.92"))]

    # No _refunded_item_id meta in the API output: matched by product + variation.
    assert [(ln.line_id, ln.sku, ln.quantity, ln.amount, ln.tax) for ln in shirt_return.lines] == [
        ("311", "TSHIRT-BLU-L", 1, D("22.50"), D("2.00"))]

    assert goodwill.is_amount_only and goodwill.amount == D("5.00") and not goodwill.tax_lines


def test_guest_order_with_prices_including_tax_in_euro():
    order = mapped("order_de_guest_incl_tax")
    assert order.currency == "EUR" and order.prices_include_tax is True
    assert order.number == "DE-2210" and order.store_id == "2210"
    assert order.customer.is_guest and order.customer.store_id is None
    assert order.customer.email == "joerg.mueller@example.de"
    assert order.customer.company == "Kaffeerösterei Müller GmbH"
    assert order.customer.shipping.city == "Hamburg"
    assert order.customer.shipping.line2 == "Hinterhaus"
    beans, frother, shipping = order.lines
    assert frother.sku is None  # empty SKU in the store
    assert (frother.subtotal, frother.total, frother.tax) == (D("50.00"), D("45.00"), D("8.55"))
    assert beans.tax_rate_codes == ["DE-MWST ERMÄSSIGT-1"]
    assert shipping.tax_rate_codes == ["DE-MWST-1"]  # the zero-total reduced rate is left out
    assert order.paid_at is None and not order.is_paid and order.payments == []
    assert order.created_at.isoformat() == "2024-01-15T23:45:00+01:00"


def test_zero_decimal_currency_and_negative_fee():
    order = mapped("order_jp_negative_fee")
    assert order.currency == "JPY" and order.total == D("6920")
    fee = order.lines[-1]
    assert (fee.kind, fee.name, fee.total, fee.tax, fee.tax_rate_codes) == (
        "fee", "Member discount", D("-500"), D("0"), [])
    assert order.created_at.date() == date(2024, 6, 1)  # 2024-05-31 in UTC
    assert order.created_at.utcoffset() == timedelta(hours=9)
    assert order.customer.shipping is None  # all blank in the store


def test_order_summary_refunds_are_not_mapped_without_refund_objects():
    order = order_from_wc(load("order_us_ny"), [])
    assert order.refunds == []


def test_refund_from_wc_standalone_and_lowercase_currency():
    order_json = load("order_us_ny")
    order_json["currency"] = "usd"
    assert order_from_wc(order_json, []).currency == "USD"
    refund = refund_from_wc(load("refunds_us_ny")[2], order_json)
    assert refund.store_id == "1052" and refund.amount == D("20.47")


def test_refund_lines_with_nothing_refunded_are_skipped():
    refund = copy.deepcopy(load("refunds_us_ny")[2])
    refund["line_items"].append({
        "id": 1099, "name": "Organic Cotton T-Shirt - Blue, L", "product_id": 101,
        "variation_id": 105, "quantity": 0, "subtotal": "0.00", "total": "0.00",
        "total_tax": "0.00", "taxes": [], "meta_data": [], "sku": "TSHIRT-BLU-L"})
    mapped_refund = refund_from_wc(refund, load("order_us_ny"))
    assert [ln.line_id for ln in mapped_refund.lines] == ["312", "313"]


def test_shipping_refund_without_meta_matches_by_method():
    refund = copy.deepcopy(load("refunds_us_ny")[2])
    refund["shipping_lines"][0]["meta_data"] = []
    lines = refund_from_wc(refund, load("order_us_ny")).lines
    assert lines[1].line_id == "313" and lines[1].kind == "shipping"


# --- malformed payloads: a clear ValueError, never a bare KeyError ---------------------

def _broken(mutate):
    order = load("order_us_ny")
    mutate(order)
    return order


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.pop("id"), "missing 'id'"),
    (lambda o: o.pop("currency"), "missing 'currency'"),
    (lambda o: o.pop("date_created_gmt"), "date_created_gmt"),
    (lambda o: o["line_items"][0].pop("total"), "missing 'total'"),
    (lambda o: o["line_items"][0].update(subtotal="12,50"), "not an amount"),
    (lambda o: o["line_items"][0]["taxes"].append({"id": 99, "total": "1.00"}),
     "tax rate 99"),
    (lambda o: o.update(line_items={"311": {}}), "must be a list"),
    (lambda o: o.update(date_paid_gmt="yesterday"), "not a date"),
    (lambda o: o["tax_lines"][0].pop("rate_code"), "missing 'rate_code'"),
])
def test_malformed_order_raises_value_error(mutate, message):
    with pytest.raises(ValueError, match=message):
        order_from_wc(_broken(mutate), [])


def test_non_object_payload_raises_value_error():
    with pytest.raises(ValueError, match="expected a JSON object"):
        order_from_wc([], [])


def test_refund_of_an_unknown_order_line_raises_value_error():
    refund = copy.deepcopy(load("refunds_us_ny")[2])
    refund["line_items"][0]["meta_data"][0]["value"] = "999"
    with pytest.raises(ValueError, match="order line 999"):
        refund_from_wc(refund, load("order_us_ny"))


def test_refund_line_that_matches_no_order_line_raises_value_error():
    refund = copy.deepcopy(load("refunds_us_ny")[1])
    refund["line_items"][0]["variation_id"] = 777
    with pytest.raises(ValueError, match="cannot tell which order line"):
        refund_from_wc(refund, load("order_us_ny"))


def test_refund_without_amount_raises_value_error():
    refund = copy.deepcopy(load("refunds_us_ny")[0])
    del refund["amount"]
    with pytest.raises(ValueError, match="missing 'amount'"):
        refund_from_wc(refund, load("order_us_ny"))


# --- catalog ---------------------------------------------------------------------------

def _change(**kw) -> ItemChange:
    return ItemChange(sku="MUG-CER-01", modified_at=datetime(2024, 5, 1, tzinfo=UTC), **kw)


def test_item_change_to_wc_writes_absolute_price_and_whole_stock():
    assert item_change_to_wc(_change(price=D("12.50"), quantity_available=D("7.9"))) == {
        "regular_price": "12.50", "manage_stock": True, "stock_quantity": 7}
    assert item_change_to_wc(_change(quantity_available=D("-0.5"))) == {
        "manage_stock": True, "stock_quantity": -1}
    assert item_change_to_wc(_change(price=D("1E+2"))) == {"regular_price": "100"}
    assert item_change_to_wc(_change(cost=D("3.10"))) == {}
