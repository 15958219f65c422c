"""Reconciliation: duplicates, missing documents and cents cannot hide."""
from decimal import Decimal as D

from starter.reconcile import reconcile
from starter.sandboxes import ErpDoc, StoreOrder

ORDERS = [StoreOrder(id="1", currency="USD", total=D("10.00"), paid=True,
                     refunds=[("9", D("2.50"))], payments=[("1", D("10.00"))]),
          StoreOrder(id="2", currency="EUR", total=D("5.00"), paid=True, payments=[("2", D("5.00"))]),
          StoreOrder(id="3", currency="USD", total=D("7.00"), paid=False)]


def docs(*extra: ErpDoc) -> list[ErpDoc]:
    return [ErpDoc("WC-1", "invoice", D("10.00"), "USD"), ErpDoc("WC-1-R9", "credit_memo", D("2.50"), "USD"),
            ErpDoc("WC-1-P1", "receipt", D("10.00"), "USD"), ErpDoc("WC-2", "invoice", D("5.00"), "EUR"),
            ErpDoc("WC-2-P2", "receipt", D("5.00"), "EUR"), ErpDoc("BC-1", "invoice", D("1"), "USD"),
            *extra]


def test_books_that_agree_reconcile():
    rec = reconcile(ORDERS, docs(), "WC-")
    assert rec.ok and (rec.paid_orders, rec.invoices, rec.credit_memos, rec.receipts) == (2, 2, 1, 2)


def test_a_duplicate_a_missing_receipt_and_a_cent_are_each_caught():
    dup = reconcile(ORDERS, docs(ErpDoc("WC-2", "invoice", D("5.00"), "EUR")), "WC-")
    assert not dup.ok and dup.duplicates == ["WC-2"]
    missing = reconcile(ORDERS, [d for d in docs() if d.external_ref != "WC-2-P2"], "WC-")
    assert missing.missing == ["WC-2-P2"] and not missing.ok
    off = [ErpDoc(d.external_ref, d.kind, d.amount + (D("0.01") if d.external_ref == "WC-1" else 0),
                  d.currency) for d in docs()]
    assert reconcile(ORDERS, off, "WC-").difference_cents == 1


def test_receipts_can_be_left_out():
    rec = reconcile(ORDERS, [d for d in docs() if d.kind != "receipt"], "WC-", with_receipts=False)
    assert rec.ok
