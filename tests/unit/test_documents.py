"""Accounting rules shared by every ERP: totals to the cent, mapping, refunds, edits."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from connectors.documents import Mappings, PostedTotals, build_adjustment, build_credit_memo, build_invoice
from connectors.errors import MappingMissing, TotalsMismatch
from connectors.model import (Customer, ErpDocumentRef, Order, OrderLine, Refund, RefundLine,
                              TaxLine, quantize)

LOCAL = timezone(timedelta(hours=2))
MAP = Mappings(tax_codes={"US-CA-TAX-1": "CATAX"})
INVOICE = ErpDocumentRef(system="acumatica", kind="invoice", doc_type="Invoice", number="INV000001")


def order(**over) -> Order:
    lines = [
        OrderLine(line_id="11", sku="HOODIE-M", name="Hoodie", quantity=D(3), subtotal=D("100.00"),
                  total=D("90.00"), tax=D("7.43"), tax_rate_codes=["US-CA-TAX-1"]),
        OrderLine(line_id="12", kind="shipping", name="Flat rate", subtotal=D("10.00"),
                  total=D("10.00"), tax=D("0.83"), tax_rate_codes=["US-CA-TAX-1"]),
    ]
    base = dict(store="woocommerce", store_id="727", number="727", status="processing",
                currency="EUR", created_at=datetime(2026, 3, 1, 23, 30, tzinfo=LOCAL),
                modified_at=datetime(2026, 3, 2, 0, 10, tzinfo=LOCAL),
                paid_at=datetime(2026, 3, 1, 23, 31, tzinfo=LOCAL),
                customer=Customer(store_id="5", email="ann@example.com"), lines=lines,
                tax_lines=[TaxLine(rate_code="US-CA-TAX-1", amount=D("8.26"))],
                tax_total=D("8.26"), total=D("108.26"))
    base.update(over)
    return Order(**base)


def test_invoice_posts_store_amounts_and_reconciles():
    doc = build_invoice(order(), "C123", MAP)
    assert doc.total == D("108.26") and doc.currency == "EUR"
    hoodie, ship = doc.lines
    assert (hoodie.item_id, hoodie.quantity, hoodie.amount, hoodie.discount) == ("HOODIE-M", 3, D("90.00"), D("10.00"))
    assert quantize(hoodie.quantity * hoodie.unit_price, "EUR") - hoodie.discount == hoodie.amount
    assert ship.item_id == "SHIPPING"
    assert [(t.tax_code, t.taxable_amount, t.amount) for t in doc.taxes] == [("CATAX", D("100.00"), D("8.26"))]
    assert doc.date.isoformat() == "2026-03-01"  # the store's paid date, not the sync date
    assert doc.external_ref == "WC-727"


def test_sku_override_and_unknown_tax_parks():
    doc = build_invoice(order(), "C1", MAP.model_copy(update={"sku_to_item": {"HOODIE-M": "HOOD01"}}))
    assert doc.lines[0].item_id == "HOOD01"
    with pytest.raises(MappingMissing, match="map tax rate US-CA-TAX-1"):
        build_invoice(order(), "C1", Mappings())


def test_line_without_sku_parks_with_resolution():
    o = order()
    o.lines[0].sku = None
    with pytest.raises(MappingMissing) as err:
        build_invoice(o, "C1", MAP)
    assert "give the product 'Hoodie' a SKU" in str(err.value)


def test_rounding_within_tolerance_and_park_outside():
    doc = build_invoice(order(total=D("108.27")), "C1", MAP)
    assert doc.lines[-1].item_id == "ROUNDING" and doc.lines[-1].amount == D("0.01")
    assert doc.total == D("108.27")
    with pytest.raises(TotalsMismatch, match="difference 1.74"):
        build_invoice(order(total=D("110.00")), "C1", MAP)


def test_uneven_unit_price_still_reconciles():
    o = order(lines=[OrderLine(line_id="1", sku="A", quantity=D(3), subtotal=D("10.00"),
                               total=D("10.00"))], tax_lines=[], tax_total=D(0), total=D("10.00"))
    doc = build_invoice(o, "C1", MAP)
    line = doc.lines[0]
    assert line.unit_price == D("3.333333") and line.amount == D("10.00") and doc.total == D("10.00")


def test_partial_line_refund_credit_memo():
    refund = Refund(store_id="900", created_at=datetime(2026, 3, 5, 9, tzinfo=LOCAL), amount=D("32.48"),
                    lines=[RefundLine(line_id="11", sku="HOODIE-M", quantity=D(1), amount=D("30.00"),
                                      tax=D("2.48"), tax_rate_codes=["US-CA-TAX-1"])])
    doc = build_credit_memo(order(refunds=[refund]), refund, "C1", INVOICE, MAP)
    assert doc.kind == "credit_memo" and doc.applies_to == INVOICE
    assert doc.total == D("32.48") and doc.external_ref == "WC-727-R900"
    assert [ln.item_id for ln in doc.lines] == ["HOODIE-M"]
    assert doc.taxes[0].amount == D("2.48")


def test_amount_only_refund_goes_to_adjustment_item():
    refund = Refund(store_id="901", created_at=datetime(2026, 3, 5, tzinfo=LOCAL), amount=D("15.00"),
                    reason="goodwill")
    doc = build_credit_memo(order(), refund, "C1", INVOICE, MAP)
    assert [(ln.item_id, ln.amount) for ln in doc.lines] == [("ADJUSTMENT", D("15.00"))]
    assert doc.taxes == [] and doc.total == D("15.00")


def test_refund_lines_plus_remainder():
    refund = Refund(store_id="902", created_at=datetime(2026, 3, 5, tzinfo=LOCAL), amount=D("40.00"),
                    lines=[RefundLine(line_id="11", sku="HOODIE-M", quantity=D(1), amount=D("30.00"))])
    doc = build_credit_memo(order(), refund, "C1", INVOICE, MAP)
    assert [(ln.item_id, ln.amount) for ln in doc.lines] == [("HOODIE-M", D("30.00")), ("ADJUSTMENT", D("10.00"))]


def test_edit_after_posting_is_an_explicit_adjustment():
    posted = PostedTotals.of(build_invoice(order(), "C1", MAP))
    assert build_adjustment(order(), posted, "C1", INVOICE, MAP, 1) is None
    more = order(total=D("119.09"), tax_lines=[TaxLine(rate_code="US-CA-TAX-1", amount=D("9.09"))])
    more.lines[0].total, more.lines[0].tax = D("100.00"), D("8.26")
    up = build_adjustment(more, posted, "C1", INVOICE, MAP, 1)
    assert up.kind == "adjustment_invoice" and up.total == D("10.83") and up.external_ref == "WC-727-A1"
    assert (up.net_total, up.tax_total) == (D("10.00"), D("0.83"))
    less = order(total=D("100.00"), tax_lines=[TaxLine(rate_code="US-CA-TAX-1", amount=D("8.26"))])
    down = build_adjustment(less, posted, "C1", INVOICE, MAP, 2)
    assert down.kind == "credit_memo" and down.total == D("8.26") and down.applies_to == INVOICE
    assert posted.plus(PostedTotals.of(up)).total == D("119.09")


def test_money_never_float():
    with pytest.raises(ValueError):
        Refund(store_id="1", created_at=datetime.now(timezone.utc), amount=D("-1"))


# --- per-line GL rules, receipts --------------------------------------------------------

from connectors.documents import LineRule, ReceiptDocument, build_receipt, require_rule  # noqa: E402
from connectors.model import Payment  # noqa: E402

RULES = MAP.model_copy(update={"line_rules": [
    LineRule(sku="HOODIE-*", gl_account="4010", cost_center="APPAREL"),
    LineRule(kind="shipping", gl_account="4900"),
    LineRule(kind="rounding", gl_account="6990"),
]})


def test_first_matching_rule_books_each_line_with_its_tax_code():
    hoodie, ship = build_invoice(order(), "C1", RULES).lines
    assert (hoodie.gl_account, hoodie.cost_center, hoodie.tax_code, hoodie.tax) == (
        "4010", "APPAREL", "CATAX", D("7.43"))
    assert (ship.kind, ship.gl_account, ship.cost_center) == ("shipping", "4900", "")


def test_a_line_no_rule_matches_parks_naming_the_fix():
    o = order()
    o.lines[0].sku = "MUG-1"
    mug = build_invoice(o, "C1", RULES).lines[0]
    assert mug.gl_account == ""
    with pytest.raises(MappingMissing) as err:
        require_rule(mug, "Oracle Fusion")
    assert "SKU MUG-1" in str(err.value) and "--gl-rule sku=MUG-1" in str(err.value)
    assert require_rule(build_invoice(order(), "C1", RULES).lines[0], "X").gl_account == "4010"


def test_rounding_line_takes_its_own_rule():
    o = order(total=D("108.28"))  # two cents the lines don't explain: within tolerance
    rounding = build_invoice(o, "C1", RULES).lines[-1]
    assert (rounding.kind, rounding.amount, rounding.gl_account) == ("rounding", D("0.02"), "6990")


def test_category_rule_matches_case_insensitively():
    rules = MAP.model_copy(update={"line_rules": [LineRule(category="apparel", gl_account="4011")]})
    o = order()
    o.lines[0].category = "Apparel"
    assert build_invoice(o, "C1", rules).lines[0].gl_account == "4011"


def test_receipt_of_a_payment_applies_to_the_invoice():
    o = order(payments=[Payment(store_id="727", amount=D("108.26"), method="stripe",
                                reference="ch_1")])
    mapped = MAP.model_copy(update={"payment_methods": {"stripe": "CARD"}})
    receipt = build_receipt(o, o.payments[0], "C1", INVOICE, mapped)
    assert isinstance(receipt, ReceiptDocument)
    assert (receipt.external_ref, receipt.amount, receipt.currency, receipt.payment_method,
            receipt.reference, receipt.applies_to.number) == (
        "WC-727-P727", D("108.26"), "EUR", "CARD", "ch_1", "INV000001")
    assert receipt.date.isoformat() == "2026-03-01"


def test_unmapped_payment_method_parks_unless_a_default_exists():
    o = order(payments=[Payment(store_id="1", amount=D("1"), method="bacs")])
    with pytest.raises(MappingMissing, match="payment method bacs"):
        build_receipt(o, o.payments[0], "C1", INVOICE, MAP)
    fallback = MAP.model_copy(update={"default_payment_method": "EFT"})
    assert build_receipt(o, o.payments[0], "C1", INVOICE, fallback).payment_method == "EFT"


# --- currency precision, zero-total orders ---------------------------------------------

from connectors.documents import receipt_due  # noqa: E402
from connectors.errors import Rejected  # noqa: E402
from connectors.model import places, store_places  # noqa: E402


def one_line(currency: str, net: str, tax: str, total: str, **over) -> Order:
    line = OrderLine(line_id="1", sku="TEA", name="Tea", quantity=D(1), subtotal=D(net),
                     total=D(net), tax=D(tax), tax_rate_codes=["US-CA-TAX-1"] if D(tax) else [])
    tax_lines = [TaxLine(rate_code="US-CA-TAX-1", amount=D(tax))] if D(tax) else []
    return order(currency=currency, lines=[line], tax_lines=tax_lines, tax_total=D(tax),
                 total=D(total), **over)


def test_store_precision_is_what_the_store_reported_never_below_the_minor_unit():
    assert (places(D("72.95")), places(D("73")), places(D("73.00")), places(D("1E+2"))) == (2, 0, 0, 0)
    assert store_places("JPY", D("72.95"), D("73")) == 2 and store_places("JPY", D("73")) == 0
    assert store_places("KWD", D("12.35")) == 3 and store_places("EUR", D("10")) == 2
    assert one_line("JPY", "66.32", "6.63", "72.95").precision == 2
    assert one_line("JPY", "66.32", "6.63", "72.96").check_totals() == D("0.01")  # not rounded to 0


def test_fractional_jpy_total_parks_instead_of_becoming_73():
    with pytest.raises(TotalsMismatch) as err:
        build_invoice(one_line("JPY", "66.32", "6.63", "72.95"), "C1", MAP)
    assert "72.95 JPY" in str(err.value) and "become 73" not in str(err.value)
    assert "0 decimals for JPY" in err.value.resolution


def test_whole_jpy_total_books_exactly_with_per_line_rounding_on_the_rounding_item():
    o = order(currency="JPY", total=D("1100.00"), tax_lines=[], tax_total=D(0), lines=[
        OrderLine(line_id="1", sku="A", subtotal=D("549.50"), total=D("549.50")),
        OrderLine(line_id="2", sku="B", subtotal=D("550.50"), total=D("550.50"))])
    doc = build_invoice(o, "C1", MAP)
    assert [ln.amount for ln in doc.lines] == [D("550"), D("551"), D("-1")]
    assert doc.lines[-1].item_id == "ROUNDING" and doc.total == D("1100")
    assert [ln.discount for ln in doc.lines[:2]] == [0, 0]  # 549.50 booked as 550, not 550 - 1


def test_discount_is_what_the_erp_books_between_extended_price_and_amount():
    o = order(currency="JPY", total=D("40.00"), tax_lines=[], tax_total=D(0), lines=[
        OrderLine(line_id="1", sku="A", quantity=D(3), subtotal=D("30.00"), total=D("24.95")),
        OrderLine(line_id="2", kind="shipping", subtotal=D("15.05"), total=D("15.05"))])
    doc = build_invoice(o, "C1", MAP)
    assert [(ln.amount, ln.discount) for ln in doc.lines] == [(D(25), D(5)), (D(15), D(0))]
    assert all(quantize(ln.quantity * ln.unit_price, "JPY") - ln.discount == ln.amount for ln in doc.lines)
    assert doc.total == D(40) and len(doc.lines) == 2


def test_kwd_books_three_decimals_exactly():
    doc = build_invoice(one_line("KWD", "12.345", "0.617", "12.962"), "C1", MAP)
    assert doc.total == D("12.962") and [ln.kind for ln in doc.lines] == ["product"]
    assert doc.taxes[0].amount == D("0.617")


def test_difference_at_store_precision_is_never_rounded_away():
    with pytest.raises(TotalsMismatch, match="10.004 EUR"):  # 0.004 EUR: not a cent the ERP holds
        build_invoice(one_line("EUR", "10.00", "0", "10.004"), "C1", MAP)


def test_zero_total_paid_order_books_the_invoice_and_no_receipt():
    o = one_line("EUR", "0.00", "0", "0.00", payments=[Payment(store_id="9", amount=D("0.00"))])
    doc = build_invoice(o, "C1", MAP)
    assert doc.total == 0 and [ln.kind for ln in doc.lines] == ["product"]
    assert not receipt_due(o, o.payments[0])
    with pytest.raises(Rejected, match="nothing to book"):
        build_receipt(o, o.payments[0], "C1", INVOICE, MAP.model_copy(update={"default_payment_method": "X"}))


def test_receipt_the_erp_currency_cannot_hold_parks():
    o = one_line("JPY", "73", "0", "73", payments=[Payment(store_id="9", amount=D("72.95"))])
    with pytest.raises(TotalsMismatch, match="72.95 JPY"):
        build_receipt(o, o.payments[0], "C1", INVOICE, MAP.model_copy(update={"default_payment_method": "X"}))
    o.payments[0].amount = D("73.00")
    assert build_receipt(o, o.payments[0], "C1", INVOICE,
                         MAP.model_copy(update={"default_payment_method": "X"})).amount == D("73")


# --- a refund's cash-back ----------------------------------------------------------------

from connectors.documents import build_refund_payment  # noqa: E402

MEMO = ErpDocumentRef(system="acumatica", kind="credit_memo", doc_type="Credit Memo",
                      number="CRM000001", external_ref="WC-727-R900")
PAID = MAP.model_copy(update={"payment_methods": {"stripe": "CARD"}})


def test_refund_is_paid_back_through_the_orders_payment_method_applied_to_its_memo():
    refund = Refund(store_id="900", created_at=datetime(2026, 3, 5, 9, tzinfo=LOCAL),
                    amount=D("32.48"))
    o = order(refunds=[refund], payments=[Payment(store_id="1", amount=D("108.26"),
                                                  method="stripe", reference="ch_1")])
    doc = build_refund_payment(o, refund, "C1", MEMO, PAID)
    assert (doc.kind, doc.external_ref, doc.amount, doc.currency) == (
        "refund_payment", "WC-727-R900-P", D("32.48"), "EUR")
    assert (doc.payment_method, doc.reference, doc.applies_to) == ("CARD", "ch_1", MEMO)
    assert doc.date == refund.created_at.date() and isinstance(doc.amount, D)


def test_refund_payment_with_an_unmapped_method_parks_naming_the_fix():
    refund = Refund(store_id="900", created_at=datetime(2026, 3, 5, tzinfo=LOCAL), amount=D("5"))
    o = order(refunds=[refund], payments=[Payment(store_id="1", amount=D("108.26"), method="paypal")])
    with pytest.raises(MappingMissing, match="--payment paypal"):
        build_refund_payment(o, refund, "C1", MEMO, PAID)


def test_refund_payment_the_erp_currency_cannot_hold_parks():
    refund = Refund(store_id="900", created_at=datetime(2026, 3, 5, tzinfo=LOCAL), amount=D("72.95"))
    o = one_line("JPY", "73", "0", "73", refunds=[refund],
                 payments=[Payment(store_id="9", amount=D("73"), method="stripe")])
    with pytest.raises(TotalsMismatch, match="72.95 JPY"):
        build_refund_payment(o, refund, "C1", MEMO, PAID)


def test_refund_payment_pays_back_only_the_credit_its_memo_still_holds():
    """A refund part of which settled the open invoice: only the rest went back."""
    refund = Refund(store_id="900", created_at=datetime(2026, 3, 5, tzinfo=LOCAL), amount=D("32.48"))
    o = order(refunds=[refund], payments=[Payment(store_id="1", amount=D("108.26"), method="stripe")])
    assert build_refund_payment(o, refund, "C1", MEMO, PAID, D("12.5")).amount == D("12.50")
    for outside in (D("0"), D("32.49")):
        with pytest.raises(Rejected, match="not within"):
            build_refund_payment(o, refund, "C1", MEMO, PAID, outside)
