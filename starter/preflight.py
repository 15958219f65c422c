"""``ml-connector connections check NAME [--orders 50]``: the store's latest orders run through
fetch, mapping and validation as OrderSync would book them, without writing to the ERP
(its reads — items, GL accounts, receipt methods — are fine), so a connection goes live
knowing which orders would post and which would park, and why.

What is checked per paid order: every line's item and tax mapping, the totals to the cent
at the currency's precision (``connectors/documents.py``'s builders), the GL rule of each
line where the ERP needs one, each refund's credit memo, each payment's method (when the
connection books receipts), and — where the ERP connector can look them up — that the items,
GL accounts and receipt methods exist in the ERP. Customers are not looked up (a buyer is
matched or created at posting time and never parks an order).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from activities.runtime import Runtime
from connections.config import Connection
from connections.ledger import LedgerKind, OrderState
from connections.store import ConnectionStore
from connectors.documents import (ErpDocument, build_credit_memo, build_invoice, build_receipt,
                                  receipt_due, require_rule)
from connectors.errors import ExternalError
from connectors.model import ErpDocumentRef, Order
from starter.logs import redact_value

CUSTOMER = "(customer matched at posting)"
WINDOWS_DAYS = (1, 7, 30, 90, 365, 3650)  # read back in growing windows until N orders are found
NEEDS_GL_RULES = {"exact_online": "Exact Online", "oracle_fusion": "Oracle Fusion"}


@dataclass
class Verdict:
    order: str  # the store's order number
    store_id: str
    outcome: str  # "post", "park", "skip"
    reasons: list[str] = field(default_factory=list)  # why it would park (or is skipped)
    documents: list[str] = field(default_factory=list)  # what would post


async def latest_orders(storefront: Any, count: int, now: datetime | None = None) -> list[Order]:
    """The ``count`` most recently modified orders, newest first, read back window by window
    (the store lists by modification time, oldest first)."""
    now = now or datetime.now(timezone.utc)
    found: dict[str, Order] = {}
    until = now + timedelta(minutes=1)
    for days in WINDOWS_DAYS:
        since = now - timedelta(days=days)
        async for order in storefront.iter_orders_modified(since, until):
            found[order.store_id] = order
        if len(found) >= count:
            break
        until = since
    return sorted(found.values(), key=lambda o: o.modified_at, reverse=True)[:count]


def _doc(doc: ErpDocument) -> str:
    return f"{doc.kind.replace('_', ' ')} {doc.external_ref} {doc.total} {doc.currency}"


def _reason(exc: ExternalError, connection_id: str) -> str:
    """The error as the order would park with it, its fix naming this connection."""
    text = f"{exc.kind}: {exc}".replace(" CONNECTION ", f" {connection_id} ")
    return str(redact_value(text))


class _Checker:
    def __init__(self, conn: Connection, erp: Any) -> None:
        self.conn, self.erp, self.m = conn, erp, conn.mappings
        self._missing_items: dict[str, bool] = {}
        self._missing_gl: dict[str, bool] = {}

    async def check(self, order: Order) -> Verdict:
        v = Verdict(order=order.number, store_id=order.store_id, outcome="post")
        if not order.is_paid:
            v.outcome, v.reasons = "skip", [f"not paid (status {order.status}): nothing to book yet"]
            return v
        placeholder = ErpDocumentRef(kind="invoice", number="(new)", system=self.conn.erp_system,
                                     external_ref=f"{self.m.document_prefix}{order.store_id}")
        docs: list[ErpDocument] = []
        for build in ([lambda: build_invoice(order, CUSTOMER, self.m)]
                      + [lambda r=r: build_credit_memo(order, r, CUSTOMER, placeholder, self.m)
                         for r in order.refunds]):
            try:
                docs.append(build())
            except ExternalError as exc:
                v.reasons.append(_reason(exc, self.conn.id))
        for doc in docs:
            v.reasons += await self._erp_reasons(doc)
        v.documents = [_doc(d) for d in docs]
        if self.m.post_receipts:
            for payment in order.payments:
                if not receipt_due(order, payment):
                    continue
                try:
                    receipt = build_receipt(order, payment, CUSTOMER, placeholder, self.m)
                    if hasattr(self.erp, "validate_receipt_method"):
                        await self.erp.validate_receipt_method(receipt.payment_method)
                    v.documents.append(f"receipt {receipt.external_ref} {receipt.amount} "
                                       f"{receipt.currency} ({payment.method or 'no method'} → "
                                       f"{receipt.payment_method})")
                except ExternalError as exc:
                    v.reasons.append(_reason(exc, self.conn.id))
        if v.reasons:
            v.outcome = "park"
        return v

    async def _erp_reasons(self, doc: ErpDocument) -> list[str]:
        """What the ERP itself would refuse, from reads only."""
        out: list[str] = []
        label = NEEDS_GL_RULES.get(self.conn.erp_system)
        if label:
            for line in doc.lines:
                try:
                    require_rule(line, label)
                except ExternalError as exc:
                    out.append(_reason(exc, self.conn.id))
            if out:
                return out  # without rules the ERP's own checks cannot run
        try:
            if hasattr(self.erp, "validate_accounts"):
                await self.erp.validate_accounts(doc)
            if hasattr(self.erp, "missing_items"):
                for item in await self._unknown(doc, "missing_items", self._missing_items,
                                                {ln.item_id for ln in doc.lines}):
                    line = next(ln for ln in doc.lines if ln.item_id == item)
                    what = f"SKU {line.sku}" if line.sku else f"{line.kind} item"
                    out.append(f"MappingMissing: {what}: {self.conn.erp_system} has no item "
                               f"{item}. Resolution: map it to an existing item (ml-connector "
                               f"connections map {self.conn.id} --sku {line.sku or item}=ITEM) "
                               f"or create the item in the ERP")
            if hasattr(self.erp, "missing_gl_accounts"):
                for account in await self._unknown(doc, "missing_gl_accounts", self._missing_gl,
                                                   {ln.gl_account for ln in doc.lines if ln.gl_account}):
                    out.append(f"MappingMissing: {self.conn.erp_system} has no GL account "
                               f"{account}. Resolution: change the GL rule (ml-connector "
                               f"connections map {self.conn.id} --gl-rule ...)")
        except ExternalError as exc:
            out.append(_reason(exc, self.conn.id))
        return out

    async def _unknown(self, doc: ErpDocument, method: str, cache: dict[str, bool],
                       wanted: set[str]) -> list[str]:
        new = wanted - set(cache)
        if new:
            missing = await getattr(self.erp, method)(new)
            cache.update({x: x in missing for x in new})
        return sorted(x for x in wanted if cache[x])


async def preflight(store: ConnectionStore, conn: Connection, orders: int = 50) -> list[Verdict]:
    runtime = Runtime(store)
    try:
        storefront, erp = runtime.storefront(conn), runtime.erp(conn)
        checker = _Checker(conn, erp)
        verdicts = []
        for order in await latest_orders(storefront, orders):
            row = store.ledger_get(conn.id, LedgerKind.ORDER, order.store_id)
            if row is not None and row.state == OrderState.POSTED:
                verdicts.append(Verdict(order.number, order.store_id, "skip",
                                        ["already booked (in the ledger)"]))
                continue
            verdicts.append(await checker.check(order))
        return verdicts
    finally:
        await runtime.aclose()


def would_park(verdicts: list[Verdict]) -> bool:
    return any(v.outcome == "park" for v in verdicts)


def render(conn: Connection, verdicts: list[Verdict]) -> str:
    counts = {k: sum(v.outcome == k for v in verdicts) for k in ("post", "park", "skip")}
    lines = [f"connection {conn.id}: {len(verdicts)} latest order(s) checked, nothing written "
             f"to {conn.erp_system}: {counts['post']} would post, {counts['park']} would park, "
             f"{counts['skip']} skipped"]
    for v in verdicts:
        lines.append(f"  order {v.order}: {'WOULD PARK' if v.outcome == 'park' else v.outcome}")
        for reason in v.reasons:
            first, *rest = reason.splitlines() or [""]
            lines.append(f"    - {first}")
            lines += [f"      {more}" for more in rest]
        if v.outcome == "post":
            lines += [f"    {d}" for d in v.documents]
    causes: dict[str, int] = {}
    for v in verdicts:
        for reason in v.reasons if v.outcome == "park" else []:
            causes[reason] = causes.get(reason, 0) + 1
    if causes:
        lines.append("what to fix before going live:")
        lines += [f"  {n}× {reason}" for reason, n in sorted(causes.items(), key=lambda c: -c[1])]
    return "\n".join(lines)


def as_json(verdicts: list[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
