"""Store versus ERP, to the cent: what the demo prints and the end-to-end tests assert.

The store side is read through the store's own REST API (all pages); the ERP side from the
ERP's document list. Documents are matched by external reference (prefix + order id [+ R
refund id | + A adjustment number]), so a duplicate or a missing document cannot hide.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

ZERO = Decimal(0)


@dataclass
class Reconciliation:
    paid_orders: int = 0
    invoices: int = 0
    refunds: int = 0
    credit_memos: int = 0
    adjustments: int = 0
    store_totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    erp_totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    store_refunds: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    erp_credits: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def difference_cents(self) -> int:
        cents = ZERO
        for cur in set(self.store_totals) | set(self.erp_totals):
            cents += abs(self.store_totals[cur] - self.erp_totals[cur])
        for cur in set(self.store_refunds) | set(self.erp_credits):
            cents += abs(self.store_refunds[cur] - self.erp_credits[cur])
        return int(cents * 100)

    @property
    def ok(self) -> bool:
        return (not self.duplicates and not self.missing and self.difference_cents == 0
                and self.invoices == self.paid_orders and self.credit_memos == self.refunds)

    def rows(self) -> list[tuple[str, str, str, str]]:
        def fmt(d: dict) -> str:
            return ", ".join(f"{v:.2f} {c}" for c, v in sorted(d.items())) or "0"

        def mark(a, b) -> str:
            return "ok" if a == b else "MISMATCH"

        return [
            ("paid orders / invoices", str(self.paid_orders), str(self.invoices),
             mark(self.paid_orders, self.invoices)),
            ("refunds / credit memos", str(self.refunds), str(self.credit_memos),
             mark(self.refunds, self.credit_memos)),
            ("order totals", fmt(self.store_totals), fmt(self.erp_totals),
             mark(dict(self.store_totals), dict(self.erp_totals))),
            ("refund totals", fmt(self.store_refunds), fmt(self.erp_credits),
             mark(dict(self.store_refunds), dict(self.erp_credits))),
            ("edit adjustments", "", str(self.adjustments), ""),
            ("duplicates", "0", str(len(self.duplicates)), mark(len(self.duplicates), 0)),
            ("missing", "0", str(len(self.missing)), mark(len(self.missing), 0)),
        ]


async def store_orders(shop: httpx.AsyncClient) -> list[dict]:
    orders, page = [], 1
    while True:
        resp = await shop.get("wp-json/wc/v3/orders", params={"per_page": 100, "page": page})
        resp.raise_for_status()
        orders += resp.json()
        if page >= int(resp.headers.get("X-WP-TotalPages", "1")):
            return orders
        page += 1


def reconcile(orders: list[dict], documents: list[dict], prefix: str = "WC-") -> Reconciliation:
    """``documents`` are the ERP's sales documents as plain dicts with ``type``,
    ``external_ref``, ``currency`` and ``amount``."""
    rec = Reconciliation()
    refs = Counter(d["external_ref"] for d in documents)
    rec.duplicates = sorted(r for r, n in refs.items() if n > 1)
    by_ref = {d["external_ref"]: d for d in documents}
    for order in orders:
        if not order.get("date_paid_gmt"):
            continue
        cur, ref = order["currency"], f"{prefix}{order['id']}"
        rec.paid_orders += 1
        rec.store_totals[cur] += Decimal(order["total"])
        if ref not in by_ref:
            rec.missing.append(ref)
        for refund in order.get("refunds", []):
            rec.refunds += 1
            rec.store_refunds[cur] += -Decimal(str(refund["total"]))
            if f"{ref}-R{refund['id']}" not in by_ref:
                rec.missing.append(f"{ref}-R{refund['id']}")
    for doc in documents:
        cur, amount, ext = doc["currency"], Decimal(str(doc["amount"])), doc["external_ref"]
        credit = doc["type"] == "Credit Memo"
        if "-A" in ext:
            rec.adjustments += 1
            rec.erp_totals[cur] += -amount if credit else amount
        elif credit:
            rec.credit_memos += 1
            rec.erp_credits[cur] += amount
        else:
            rec.invoices += 1
            rec.erp_totals[cur] += amount
    return rec
