"""Store versus ERP, to the cent: what the demo prints and the end-to-end tests assert.

The store side is read through the store's own REST API (all pages); the ERP side from the
ERP's document list. Documents are matched by external reference (prefix + order id [+ R
refund id | + P payment id | + A adjustment number]), so a duplicate or a missing document
cannot hide.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from starter.sandboxes import ErpDoc, StoreOrder

ZERO = Decimal(0)


def _money() -> dict[str, Decimal]:
    return defaultdict(Decimal)


@dataclass
class Reconciliation:
    pair: str = ""
    paid_orders: int = 0
    invoices: int = 0
    refunds: int = 0
    credit_memos: int = 0
    payments: int = 0
    receipts: int = 0
    adjustments: int = 0
    store_totals: dict[str, Decimal] = field(default_factory=_money)
    erp_totals: dict[str, Decimal] = field(default_factory=_money)
    store_refunds: dict[str, Decimal] = field(default_factory=_money)
    erp_credits: dict[str, Decimal] = field(default_factory=_money)
    store_payments: dict[str, Decimal] = field(default_factory=_money)
    erp_receipts: dict[str, Decimal] = field(default_factory=_money)
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    with_receipts: bool = True

    def _pairs(self) -> list[tuple[dict[str, Decimal], dict[str, Decimal]]]:
        pairs = [(self.store_totals, self.erp_totals), (self.store_refunds, self.erp_credits)]
        return pairs + ([(self.store_payments, self.erp_receipts)] if self.with_receipts else [])

    @property
    def difference_cents(self) -> int:
        cents = ZERO
        for store, erp in self._pairs():
            for cur in set(store) | set(erp):
                cents += abs(store[cur] - erp[cur])
        return int(cents * 100)

    @property
    def ok(self) -> bool:
        return (not self.duplicates and not self.missing and self.difference_cents == 0
                and self.invoices == self.paid_orders and self.credit_memos == self.refunds
                and (not self.with_receipts or self.receipts == self.payments))

    def rows(self) -> list[tuple[str, str, str, str]]:
        def fmt(d: dict) -> str:
            return ", ".join(f"{v:.2f} {c}" for c, v in sorted(d.items()) if v) or "0"

        def mark(a, b) -> str:
            return "ok" if a == b else "MISMATCH"

        rows = [
            ("paid orders / invoices", str(self.paid_orders), str(self.invoices),
             mark(self.paid_orders, self.invoices)),
            ("refunds / credit memos", str(self.refunds), str(self.credit_memos),
             mark(self.refunds, self.credit_memos)),
            ("order totals", fmt(self.store_totals), fmt(self.erp_totals),
             mark(fmt(self.store_totals), fmt(self.erp_totals))),
            ("refund totals", fmt(self.store_refunds), fmt(self.erp_credits),
             mark(fmt(self.store_refunds), fmt(self.erp_credits))),
        ]
        if self.with_receipts:
            rows += [("payments / receipts", str(self.payments), str(self.receipts),
                      mark(self.payments, self.receipts)),
                     ("payment totals", fmt(self.store_payments), fmt(self.erp_receipts),
                      mark(fmt(self.store_payments), fmt(self.erp_receipts)))]
        return rows + [
            ("edit adjustments", "", str(self.adjustments), ""),
            ("duplicates", "0", str(len(self.duplicates)), mark(len(self.duplicates), 0)),
            ("missing", "0", str(len(self.missing)), mark(len(self.missing), 0)),
        ]


def reconcile(orders: list[StoreOrder], documents: list[ErpDoc], prefix: str, *,
              with_receipts: bool = True, pair: str = "") -> Reconciliation:
    rec = Reconciliation(pair=pair, with_receipts=with_receipts)
    documents = [d for d in documents if d.external_ref.startswith(prefix)]
    refs = Counter(d.external_ref for d in documents)
    rec.duplicates = sorted(r for r, n in refs.items() if n > 1)
    present = set(refs)

    def expect(ref: str) -> None:
        if ref not in present:
            rec.missing.append(ref)

    for order in orders:
        if not order.paid:
            continue
        cur, ref = order.currency, f"{prefix}{order.id}"
        rec.paid_orders += 1
        rec.store_totals[cur] += order.total
        expect(ref)
        for refund_id, amount in order.refunds:
            rec.refunds += 1
            rec.store_refunds[cur] += amount
            expect(f"{ref}-R{refund_id}")
        if with_receipts:
            for payment_id, amount in order.payments:
                rec.payments += 1
                rec.store_payments[cur] += amount
                expect(f"{ref}-P{payment_id}")
    for doc in documents:
        cur, amount, ext = doc.currency, doc.amount, doc.external_ref
        if "-A" in ext:
            rec.adjustments += 1
            rec.erp_totals[cur] += -amount if doc.kind == "credit_memo" else amount
        elif doc.kind == "credit_memo":
            rec.credit_memos += 1
            rec.erp_credits[cur] += amount
        elif doc.kind == "receipt":
            rec.receipts += 1
            rec.erp_receipts[cur] += amount
        else:
            rec.invoices += 1
            rec.erp_totals[cur] += amount
    return rec
