"""BigCommerce JSON -> canonical models, from realistic payloads (tests/fixtures/bigcommerce/):
taxes per class and rate, coupons and manual discounts, shipping and handling, variants,
another currency, a guest, a tax-inclusive store, fees/wrapping/bundles, authorisations."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.bigcommerce_mapping import (catalog_fields, order_from_bc, order_summary_from_bc,
                                            parse_datetime, payments_from_bc, refund_from_bc,
                                            status_slug, stock_quantity)
from connectors.model import ItemChange

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bigcommerce"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(), parse_float=D)


def mapped(name: str):
    data = load(name)
    return order_from_bc(data["order"], **{k: v for k, v in data.items() if k != "order"})


def test_registered_us_order_with_coupon_adds_up_to_the_cent():
    order = mapped("order_us_ca_registered_coupon")
    assert order.store == "bigcommerce" and order.number == order.store_id
    assert order.check_totals() == 0
    assert order.total == D("144.20") and order.tax_total == D("9.45")
    assert order.currency == "USD" and not order.prices_include_tax
    assert order.customer.store_id == "1" and order.customer.email == "grace.hughes.7@example.com"
    assert order.customer.billing.line1 == "500 Castro St" and order.customer.billing.country == "US"
    kinds = [(ln.line_id, ln.kind) for ln in order.lines]
    assert kinds == [("1", "product"), ("2", "product"), ("3", "product"),
                     ("shipping-1", "shipping"), ("handling-1", "fee")]
    mug, book, shirt = order.lines[:3]
    # 10 % coupon: subtotal before, total after the discount, both excl. tax
    assert (mug.sku, mug.quantity, mug.subtotal, mug.total, mug.tax) == (
        "MUG-CER-01", 2, D("24.00"), D("21.60"), D("1.78"))
    assert book.tax_rate_codes == ["CA-REDUCED-RATE"] and book.tax == D("0.72")
    assert shirt.sku == "TSHIRT-GRN-L" and shirt.subtotal == D("81.00") and shirt.discount == D("8.10")
    assert order.lines[3].tax_rate_codes == ["CA-SALES-TAX"] and order.lines[3].total == D("6.95")
    assert order.discount_total == D("13.70") and order.shipping_total == D("6.95")
    assert {t.rate_code: t.amount for t in order.tax_lines} == {"CA-SALES-TAX": D("8.73"),
                                                                "CA-REDUCED-RATE": D("0.72")}
    assert sum(t.amount for t in order.tax_lines) == order.tax_total


def test_paid_date_and_payments_come_from_the_captured_sale():
    order = mapped("order_us_ca_registered_coupon")
    txn = load("order_us_ca_registered_coupon")["transactions"][0]
    assert [(p.store_id, p.amount, p.method, p.reference) for p in order.payments] == [
        (str(txn["id"]), D("144.2"), "braintree", txn["gateway_transaction_id"])]
    assert order.paid_at == order.payments[0].paid_at
    assert order.paid_at.tzinfo is not None


def test_refunds_by_line_and_amount_only():
    order = mapped("order_us_ca_registered_coupon")
    by_line, goodwill = order.refunds
    assert by_line.reason == "Wrong size" and by_line.amount == D("29.55")
    assert [(ln.line_id, ln.kind, ln.quantity, ln.amount, ln.tax) for ln in by_line.lines] == [
        ("3", "product", 1, D("24.30"), D("2.00")), ("shipping-1", "shipping", 1, D("3.00"), D("0.25"))]
    assert by_line.lines_total == by_line.amount
    assert by_line.lines[0].sku == "TSHIRT-GRN-L" and by_line.lines[0].tax_rate_codes == ["CA-SALES-TAX"]
    assert goodwill.is_amount_only and goodwill.amount == D("5.00")


def test_guest_order_in_another_currency_with_a_full_refund():
    order = mapped("order_de_guest_eur")
    assert order.customer.store_id is None and order.customer.is_guest
    assert order.customer.email.endswith("@guest.example.com")
    assert order.currency == "EUR"
    assert order.check_totals() == 0
    coffee = next(ln for ln in order.lines if ln.sku == "COFFEE-BN-1K")
    assert coffee.tax == 0 and coffee.tax_rate_codes == []  # reduced class has no EU rate here
    (refund,) = order.refunds
    assert refund.amount == order.total == refund.lines_total
    assert {ln.line_id for ln in refund.lines} == {ln.line_id for ln in order.lines}


def test_tax_inclusive_store_derives_net_amounts_and_settled_offline_payment():
    order = mapped("order_fr_tax_inclusive_bankdeposit")
    assert order.prices_include_tax and order.check_totals() == 0
    lamp = order.lines[0]
    assert lamp.total + lamp.tax == D("82.90")  # 89.00 less its share of the 10.00 manual discount
    assert order.discount_total == sum(ln.discount for ln in order.lines)
    assert [p.method for p in order.payments] == ["bankdeposit"]  # "settled", no capture
    (refund,) = order.refunds  # shipping refunded gross: its VAT in proportion
    assert [(ln.amount, ln.tax) for ln in refund.lines] == [(D("5.79"), D("1.16"))]
    assert refund.lines_total == refund.amount == D("6.95")


def test_spec_shaped_order_fees_wrapping_bundles_and_an_authorisation_only():
    order = mapped("order_spec_fees_wrapping_authorized")
    # the transactional currency, not the display currency (CAD) nor the store default
    assert order.currency == "USD"
    assert order.paid_at is None and order.payments == []  # authorised, not captured
    assert order.status == "awaiting_payment"  # the system name, not the custom label
    assert [(ln.line_id, ln.kind) for ln in order.lines] == [
        ("65", "product"), ("wrapping-65", "fee"), ("shipping-51", "shipping"), ("fee-1", "fee")]
    assert order.lines[1].name == "Gift box" and order.lines[1].tax_rate_codes == ["1"]
    assert order.lines[3].name == "Small order fee" and order.lines[3].total == D("2.50")
    assert order.check_totals() == 0
    assert order.customer.company == "Acme Pty Ltd" and order.customer.shipping.first_name == "Trish"
    assert order.created_at == datetime(2019, 3, 5, 21, 40, 11, tzinfo=UTC)


def test_paid_status_without_transactions_is_paid_at_creation():
    data = load("order_spec_fees_wrapping_authorized")
    data["order"]["status_id"], data["transactions"] = 11, []
    order = order_from_bc(data["order"], **{k: v for k, v in data.items() if k != "order"})
    assert order.paid_at == order.created_at


def test_settled_does_not_double_count_a_capture():
    rows = [{"id": 1, "event": "authorization", "amount": D("10"), "status": "ok"},
            {"id": 2, "event": "capture", "amount": D("10"), "status": "ok", "gateway": "stripe",
             "date_created": "2026-03-01T10:00:00+00:00"},
            {"id": 3, "event": "settled", "amount": D("10"), "status": "ok"},
            {"id": 4, "event": "purchase", "amount": D("5"), "status": "error"}]
    assert [(p.store_id, p.method) for p in payments_from_bc(rows)] == [("2", "stripe")]


def test_summary_from_the_list_alone():
    order = order_summary_from_bc(load("order_de_guest_eur")["order"])
    assert order.lines == [] and order.refunds == [] and order.currency == "EUR"
    assert order.total == D("191.84") and order.is_paid


def test_refund_of_unknown_line_is_malformed():
    order = mapped("order_de_guest_eur")
    refund = {"id": 9, "created": "2026-03-01T10:00:00+00:00", "total_amount": 1,
              "items": [{"item_type": "PRODUCT", "item_id": 999, "quantity": 1}]}
    with pytest.raises(ValueError, match="PRODUCT 999"):
        refund_from_bc(refund, order.lines, "EUR")


@pytest.mark.parametrize("value", ["Tue, 05 Mar 2019 21:40:11 +0000", "2019-03-05T21:40:11+00:00",
                                   "2019-03-05T21:40:11Z"])
def test_dates(value):
    assert parse_datetime(value, "x") == datetime(2019, 3, 5, 21, 40, 11, tzinfo=UTC)


def test_dates_empty_and_bad():
    assert parse_datetime("", "date_shipped") is None
    with pytest.raises(ValueError, match="not a date"):
        parse_datetime("yesterday", "x")


def test_missing_total_is_named():
    data = load("order_de_guest_eur")
    del data["order"]["total_inc_tax"]
    with pytest.raises(ValueError, match="total_inc_tax"):
        order_from_bc(data["order"], products=data["products"])


def test_status_slug_and_catalog_fields():
    assert status_slug("Partially Refunded") == "partially_refunded"
    change = ItemChange(sku="A", price=D("12.50"), cost=D("4"), quantity_available=D("7.9"),
                        modified_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert catalog_fields(change) == {"price": D("12.50"), "cost_price": D("4")}
    assert stock_quantity(change) == 7
    assert stock_quantity(change.model_copy(update={"quantity_available": D("-3")})) == 0


def _txn(tid, event, amount, gateway="braintree", ref=None, when="2026-03-01T10:00:00+00:00",
         status="ok"):
    return {"id": tid, "event": event, "amount": D(amount), "status": status, "gateway": gateway,
            "reference_transaction_id": ref, "gateway_transaction_id": f"gw-{tid}",
            "date_created": when}


def test_several_partial_captures_are_one_payment_each_and_the_authorization_none():
    rows = [_txn(9001, "authorization", "60.00"),
            _txn(9002, "capture", "25.00", ref=9001, when="2026-03-01T11:00:00+00:00"),
            _txn(9003, "capture", "20.00", ref=9001, when="2026-03-02T09:00:00+00:00"),
            _txn(9004, "capture", "15.00", ref=9001, when="2026-03-02T09:00:00+00:00"),
            _txn(9005, "void", "0.00", ref=9001)]
    assert [(p.store_id, p.amount, p.reference) for p in payments_from_bc(rows)] == [
        ("9002", D("25.00"), "gw-9002"), ("9003", D("20.00"), "gw-9003"),
        ("9004", D("15.00"), "gw-9004")]


def test_split_tender_gift_certificate_and_card_two_payments_with_their_own_amounts():
    rows = [_txn(9010, "purchase", "10.00", "giftcertificate"),
            _txn(9011, "purchase", "22.47", "braintree"),
            _txn(9012, "refund", "5.00", "braintree")]
    assert [(p.store_id, p.amount, p.method) for p in payments_from_bc(rows)] == [
        ("9010", D("10.00"), "giftcertificate"), ("9011", D("22.47"), "braintree")]


def test_settled_tender_beside_store_credit_counts_but_a_settled_capture_does_not():
    rows = [_txn(1, "purchase", "39.00", "storecredit"),
            _txn(2, "settled", "80.35", "bankdeposit"),
            _txn(3, "authorization", "20.00", "stripe"),
            _txn(4, "capture", "20.00", "stripe", ref=3),
            _txn(5, "settled", "20.00", "stripe"),  # the capture's money, settled
            _txn(6, "settled", "20.00", "", ref=3)]
    assert [(p.store_id, p.amount) for p in payments_from_bc(rows)] == [
        ("1", D("39.00")), ("2", D("80.35")), ("4", D("20.00"))]


def test_ids_order_numerically_and_a_transaction_listed_twice_is_one_payment():
    rows = [_txn(10000, "capture", "1.00", ref=1), _txn(9999, "capture", "2.00", ref=1),
            _txn(9999, "capture", "2.00", ref=1)]
    assert [p.store_id for p in payments_from_bc(rows)] == ["9999", "10000"]
