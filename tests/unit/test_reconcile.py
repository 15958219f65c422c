"""Reconciliation, order by order: a duplicate, a missing document, a refund without its credit
memo and a single cent cannot hide; edits net out; other suffixes are not judged."""
from datetime import datetime, timezone
from decimal import Decimal as D

from connectors.model import Customer, ErpDocumentRef, Order, OrderLine, Payment, Refund
from connectors.reconciliation import reconcile

T0 = datetime(2026, 11, 2, 10, tzinfo=timezone.utc)
SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 3, tzinfo=timezone.utc)


def order(oid: str, total: str, currency: str = "USD", *, paid: bool = True, refunds=(),
          created: datetime = T0, payments: tuple[str, ...] | None = None) -> Order:
    amount = D(total)
    return Order(store="woocommerce", store_id=oid, number=oid, status="processing",
                 currency=currency, created_at=created, modified_at=created,
                 paid_at=created if paid else None, customer=Customer(),
                 lines=[OrderLine(line_id="1", sku="A", subtotal=amount, total=amount)],
                 total=amount,
                 refunds=[Refund(store_id=rid, created_at=created, amount=D(a)) for rid, a in refunds],
                 payments=[Payment(store_id=oid, amount=D(p)) for p in
                           (payments if payments is not None else ((total,) if paid else ()))])


def doc(ref: str, kind: str, total: str, currency: str = "USD", number: str = "") -> ErpDocumentRef:
    return ErpDocumentRef(system="acumatica", kind=kind, number=number or f"N-{ref}",
                          external_ref=ref, total=D(total), currency=currency)


ORDERS = [order("1", "10.00", refunds=[("9", "2.50")]), order("2", "5.00", "EUR"),
          order("3", "7.00", paid=False),
          order("4", "8.00", created=datetime(2026, 10, 1, tzinfo=timezone.utc))]  # out of range


def books(*extra: ErpDocumentRef) -> list[ErpDocumentRef]:
    return [doc("WC-1", "invoice", "10.00"), doc("WC-1-R9", "credit_memo", "2.50"),
            doc("WC-1-P1", "receipt", "10.00"), doc("WC-2", "invoice", "5.00", "EUR"),
            doc("WC-2-P2", "receipt", "5.00", "EUR"), doc("WC-4", "invoice", "1.00"),
            doc("BC-1", "invoice", "1"), *extra]


def run(orders=ORDERS, documents=None, **kw):
    return reconcile(orders, books() if documents is None else documents, prefix="WC-",
                     since=SINCE, until=UNTIL, **kw)


def test_books_that_agree_reconcile():
    rep = run()
    assert rep.ok and rep.differences == []
    assert (rep.paid_orders, rep.invoices, rep.credit_memos, rep.receipts) == (2, 2, 1, 2)
    assert rep.totals.store_orders == {"USD": D("10.00"), "EUR": D("5.00")}
    assert rep.totals.erp_invoices == {"USD": D("10.00"), "EUR": D("5.00")}


def test_a_duplicate_a_missing_receipt_a_refund_without_memo_and_a_cent_are_each_caught():
    dup = run(documents=books(doc("WC-2", "invoice", "5.00", "EUR", number="INV-2B")))
    [d] = dup.differences
    assert (d.kind, d.external_ref, d.erp_numbers) == ("duplicate", "WC-2", ["N-WC-2", "INV-2B"])
    assert dup.duplicates == ["WC-2"] and dup.totals.erp_invoices["EUR"] == D("10.00")

    missing = run(documents=[x for x in books() if x.external_ref not in ("WC-2-P2", "WC-1-R9")])
    assert [(d.kind, d.external_ref, d.store_amount) for d in missing.differences] == [
        ("refund_without_credit_memo", "WC-1-R9", D("2.50")), ("missing", "WC-2-P2", D("5.00"))]
    assert missing.missing == ["WC-1-R9", "WC-2-P2"] and not missing.ok

    off = run(documents=[doc(x.external_ref, x.kind, str(x.total + D("0.01")), x.currency)
                         if x.external_ref == "WC-1" else x for x in books()])
    [d] = off.differences
    assert (d.kind, d.store_amount, d.erp_amount, d.difference) == (
        "amount", D("10.00"), D("10.01"), D("0.01"))
    assert off.difference_cents == 1


def test_edit_adjustments_net_into_the_order_and_unexpected_documents_are_named():
    edited = [order("1", "12.00", refunds=[("9", "2.50")], payments=("10.00",)), ORDERS[1]]
    rep = run(edited, books(doc("WC-1-A1", "invoice", "3.00"), doc("WC-1-A2", "credit_memo", "1.00")))
    assert rep.ok and rep.adjustments == 2 and rep.totals.erp_invoices["USD"] == D("12.00")
    stray = run(documents=books(doc("WC-1-R77", "credit_memo", "4.00"),
                                doc("WC-1-R9-X", "receipt", "2.50")))  # another suffix: not judged
    [d] = stray.differences
    assert (d.kind, d.external_ref, d.erp_amount) == ("unexpected", "WC-1-R77", D("4.00"))
    assert stray.other_documents == 1


def test_receipts_can_be_left_out_and_zero_payments_book_none():
    rep = run(documents=[d for d in books() if d.kind != "receipt"], with_receipts=False)
    assert rep.ok
    free = run([order("5", "0.00")], [doc("WC-5", "invoice", "0.00")])
    assert free.ok and free.payments == 0
