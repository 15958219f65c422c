"""Store versus ERP, to the cent, order by order: the pure rules of a reconciliation.

The store's paid orders of a date range say what the books must hold: an invoice under
``{prefix}{order}`` for the order's total (net of any ``-A{n}`` edit adjustments), a credit
memo under ``-R{refund}`` for each refund, a receipt under ``-P{payment}`` for each non-zero
captured payment (where the connection books receipts). The ERP's documents under the
connection's prefix say what they do hold. Every expected document is then missing,
duplicated (two documents of one kind under one external reference), off by an amount
(``Decimal``, exact: nothing is rounded first), or right; a credit memo or receipt the store
has no refund or payment for is reported as unexpected. Documents under other suffixes
(a refund's cash-back, say) are counted, never judged here. No I/O: the reads are
``activities/reconcile.py``.
"""
from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from connectors.model import ZERO, ErpDocumentRef, Order, store_places
from connectors.documents import receipt_due

DifferenceKind = Literal["missing", "duplicate", "amount", "refund_without_credit_memo",
                         "unexpected"]
Category = Literal["invoice", "credit_memo", "receipt"]
# What an external reference's suffix names: the order's invoice, a refund, a payment, an edit.
_SUFFIX = re.compile(r"^(?P<order>[^-]+)(?:-(?P<tag>[RPA])(?P<id>[^-]+))?$")


def shown(amount: Decimal, currency: str) -> str:
    """An amount at the places it means: the currency's minor unit, more only where they are
    not zeros (a store's ``85.5100`` shows ``85.51``, a ``0.125`` stays)."""
    return str(amount.quantize(Decimal(1).scaleb(-store_places(currency, amount))))


def category_of(kind: str) -> Category:
    return "credit_memo" if kind == "credit_memo" else "receipt" if kind == "receipt" else "invoice"


class Difference(BaseModel):
    order: str  # the store's order id
    external_ref: str
    kind: DifferenceKind
    document: Category
    currency: str
    store_amount: Decimal | None = None
    erp_amount: Decimal | None = None
    erp_numbers: list[str] = Field(default_factory=list)  # the ERP's own document numbers

    @property
    def difference(self) -> Decimal:
        return (self.erp_amount or ZERO) - (self.store_amount or ZERO)

    def amount_text(self, amount: Decimal | None) -> str:
        return "" if amount is None else shown(amount, self.currency)

    @property
    def message(self) -> str:
        store, erp = self.amount_text(self.store_amount), self.amount_text(self.erp_amount)
        what = {"invoice": "invoice", "credit_memo": "credit memo", "receipt": "receipt"}[self.document]
        if self.kind == "missing":
            return f"{what} {self.external_ref} missing in the ERP ({store} {self.currency})"
        if self.kind == "refund_without_credit_memo":
            return (f"refund {self.external_ref} ({store} {self.currency}) has no "
                    f"credit memo in the ERP")
        if self.kind == "duplicate":
            return (f"{what} {self.external_ref} booked {len(self.erp_numbers)} times: "
                    f"{', '.join(self.erp_numbers)}")
        if self.kind == "unexpected":
            return (f"{what} {self.external_ref} ({erp} {self.currency}) has nothing "
                    f"in the store")
        return (f"{what} {self.external_ref}: store {store}, ERP {erp} {self.currency} "
                f"(difference {'+' if self.difference > 0 else ''}"
                f"{self.amount_text(self.difference)})")


def _money() -> dict[str, Decimal]:
    return defaultdict(Decimal)


class Totals(BaseModel):
    """Per currency: what the store says and what the ERP holds."""

    store_orders: dict[str, Decimal] = Field(default_factory=_money)
    erp_invoices: dict[str, Decimal] = Field(default_factory=_money)  # net of edit adjustments
    store_refunds: dict[str, Decimal] = Field(default_factory=_money)
    erp_credit_memos: dict[str, Decimal] = Field(default_factory=_money)
    store_payments: dict[str, Decimal] = Field(default_factory=_money)
    erp_receipts: dict[str, Decimal] = Field(default_factory=_money)

    def add(self, field: str, currency: str, amount: Decimal) -> None:
        book = getattr(self, field)
        book[currency] = book.get(currency, ZERO) + amount


class ReconciliationReport(BaseModel):
    since: datetime
    until: datetime
    prefix: str
    with_receipts: bool = True
    paid_orders: int = 0
    invoices: int = 0
    refunds: int = 0
    credit_memos: int = 0
    payments: int = 0
    receipts: int = 0
    adjustments: int = 0
    other_documents: int = 0  # under the prefix, but neither invoice, memo, receipt nor edit
    totals: Totals = Field(default_factory=Totals)
    differences: list[Difference] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def count(self, kind: DifferenceKind) -> int:
        return sum(1 for d in self.differences if d.kind == kind)

    @property
    def difference_amount(self) -> dict[str, Decimal]:
        """Per currency, the sum of the absolute amount differences of every judged pair."""
        out: dict[str, Decimal] = {}
        pairs = [("store_orders", "erp_invoices"), ("store_refunds", "erp_credit_memos")]
        if self.with_receipts:
            pairs.append(("store_payments", "erp_receipts"))
        for store_field, erp_field in pairs:
            store, erp = getattr(self.totals, store_field), getattr(self.totals, erp_field)
            for cur in set(store) | set(erp):
                gap = abs(store.get(cur, ZERO) - erp.get(cur, ZERO))
                if gap:
                    out[cur] = out.get(cur, ZERO) + gap
        return out

    @property
    def missing(self) -> list[str]:
        """External references the ERP lacks (invoices, receipts, refunds' credit memos)."""
        return [d.external_ref for d in self.differences
                if d.kind in ("missing", "refund_without_credit_memo")]

    @property
    def duplicates(self) -> list[str]:
        return [d.external_ref for d in self.differences if d.kind == "duplicate"]

    @property
    def difference_cents(self) -> int:
        """Every currency's total gap, in hundredths (a quick "0" for the demo's eye)."""
        return int(sum(self.difference_amount.values(), ZERO) * 100)

    def summary(self) -> dict:
        """What status and the console show of a run (no document lists)."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "ok": self.ok, "paid_orders": self.paid_orders, "differences": len(self.differences),
                **{kind: self.count(kind) for kind in ("missing", "duplicate", "amount",
                                                       "refund_without_credit_memo", "unexpected")}}


def in_range(order: Order, since: datetime, until: datetime) -> bool:
    """The orders a range reconciles: paid, created in [since, until)."""
    return order.is_paid and since <= order.created_at < until


def reconcile(orders: list[Order], documents: list[ErpDocumentRef], *, prefix: str,
              since: datetime, until: datetime, with_receipts: bool = True) -> ReconciliationReport:
    """``orders``: the store's orders (full records: refunds, payments) — those outside the
    range are ignored; ``documents``: the ERP's documents under ``prefix`` (any date)."""
    rep = ReconciliationReport(since=since, until=until, prefix=prefix, with_receipts=with_receipts)
    wanted = {o.store_id: o for o in orders if in_range(o, since, until)}
    found: dict[tuple[str, Category], list[ErpDocumentRef]] = defaultdict(list)
    adjustments: dict[str, list[ErpDocumentRef]] = defaultdict(list)
    for doc in documents:
        m = _SUFFIX.match(doc.external_ref.removeprefix(prefix)) \
            if doc.external_ref.startswith(prefix) else None
        if m is None or m["order"] not in wanted:
            if m is None and doc.external_ref.startswith(prefix):
                rep.other_documents += 1
            continue
        tag, category = m["tag"], category_of(doc.kind)
        if tag == "A":
            adjustments[m["order"]].append(doc)
        elif {None: "invoice", "R": "credit_memo", "P": "receipt"}[tag] == category:
            found[(doc.external_ref, category)].append(doc)
        else:
            rep.other_documents += 1

    def amount(doc: ErpDocumentRef) -> Decimal:
        return doc.total if doc.total is not None else ZERO

    expected: set[tuple[str, Category]] = set()
    for order_id in sorted(wanted, key=_natural):
        order, ref = wanted[order_id], f"{prefix}{order_id}"
        cur = order.currency
        rep.paid_orders += 1
        rep.totals.add("store_orders", cur, order.total)
        edits = sum((amount(d) if category_of(d.kind) != "credit_memo" else -amount(d)
                     for d in adjustments[order_id]), ZERO)
        rep.adjustments += len(adjustments[order_id])
        rep.totals.add("erp_invoices", cur, edits)

        def check(ext: str, category: Category, store_amount: Decimal, net: Decimal = ZERO,
                  missing: DifferenceKind = "missing") -> None:
            expected.add((ext, category))
            docs = found.get((ext, category), [])
            if not docs:
                rep.differences.append(Difference(order=order_id, external_ref=ext, kind=missing,
                                                  document=category, currency=cur,
                                                  store_amount=store_amount))
                return
            if len(docs) > 1:
                rep.differences.append(Difference(
                    order=order_id, external_ref=ext, kind="duplicate", document=category,
                    currency=cur, store_amount=store_amount,
                    erp_amount=sum((amount(d) for d in docs), ZERO),
                    erp_numbers=[d.number for d in docs]))
            booked = amount(docs[0]) + net
            if booked != store_amount or (docs[0].currency or cur).upper() != cur:
                rep.differences.append(Difference(
                    order=order_id, external_ref=ext, kind="amount", document=category,
                    currency=cur, store_amount=store_amount, erp_amount=booked,
                    erp_numbers=[docs[0].number]))

        check(ref, "invoice", order.total, edits)
        for refund in order.refunds:
            rep.refunds += 1
            rep.totals.add("store_refunds", cur, refund.amount)
            check(f"{ref}-R{refund.store_id}", "credit_memo", refund.amount,
                  missing="refund_without_credit_memo")
        if with_receipts:
            for payment in order.payments:
                if not receipt_due(order, payment):
                    continue
                rep.payments += 1
                rep.totals.add("store_payments", cur, payment.amount)
                check(f"{ref}-P{payment.store_id}", "receipt", payment.amount)

    book = {"invoice": "erp_invoices", "credit_memo": "erp_credit_memos", "receipt": "erp_receipts"}
    for (ext, category), docs in sorted(found.items()):
        counter = {"invoice": "invoices", "credit_memo": "credit_memos", "receipt": "receipts"}[category]
        setattr(rep, counter, getattr(rep, counter) + len(docs))
        for doc in docs:
            rep.totals.add(book[category], (doc.currency or "").upper(), amount(doc))
        if (ext, category) not in expected and (category != "receipt" or with_receipts):
            order_id = _SUFFIX.match(ext.removeprefix(prefix))["order"]
            rep.differences.append(Difference(
                order=order_id, external_ref=ext, kind="unexpected", document=category,
                currency=(docs[0].currency or "").upper(),
                erp_amount=sum((amount(d) for d in docs), ZERO),
                erp_numbers=[d.number for d in docs]))
    rep.differences.sort(key=lambda d: (_natural(d.order), d.external_ref, d.kind))
    return rep


def _natural(order_id: str) -> tuple[int, str]:
    """Numeric store ids in numeric order (``9`` before ``10``)."""
    return (int(order_id), "") if order_id.isdigit() else (1 << 62, order_id)
