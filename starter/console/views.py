"""What each page reads, as plain rows: from the connection store first (it answers while
Temporal is down), from Temporal for timelines, amounts and schedules. No personal data:
orders by number, customers by their ERP key only (as ``audit`` shows them)."""
from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from temporalio.service import RPCError

from activities.reconcile import DIFFERENCE_COLUMNS, nightly_window, reconcile_patiently
from connections import error_history
from connections.error_history import EpisodeKind
from connections.ledger import LedgerKind, LedgerRow, OrderState
from connections.reconciliations import last_reconciliation
from connections.store import ConnectionStore
from starter.durations import how_long
from workflows.order import order_workflow_id

DOCUMENT_KINDS = (LedgerKind.INVOICE, LedgerKind.CREDIT_MEMO, LedgerKind.RECEIPT,
                  LedgerKind.ADJUSTMENT, LedgerKind.REFUND_PAYMENT)
# The resolutions connectors write (connectors/*_mapping.py, documents.py): "map SKU X to ...".
SUGGESTION = re.compile(r"map (SKU|tax rate|payment method) (\S+) to ")
FIX_KINDS = {"SKU": "sku", "tax rate": "tax", "payment method": "payment"}
ATTENTION_ORDER_STATES = (OrderState.PARKED, OrderState.FAILED, OrderState.NEEDS_ATTENTION)
ATTENTION_STATES = (*(str(s) for s in ATTENTION_ORDER_STATES), "retrying")


def age(since: str, now: datetime | None = None) -> str:
    """How long a row has waited since ``since`` (an ISO time; "?" when unreadable)."""
    try:
        then = datetime.fromisoformat(since)
    except ValueError:
        return "?"
    return how_long(((now or datetime.now(timezone.utc)) - then).total_seconds())


# --- connections overview ------------------------------------------------------------------

async def overview(store: ConnectionStore, client_factory, task_queue: str) -> list[dict]:
    """``status`` of every connection (the same truthful verdicts, starter/status.py) with
    what Temporal adds (schedules, quota backlog) when it answers, and the last
    reconciliation."""
    from starter import status as st

    conns = store.list_connections()
    views: dict[str, st.TemporalView] = {}
    try:
        client = await client_factory()
        for conn in conns:
            views[conn.id] = st.TemporalView(
                True, schedules=await st.schedule_runs(client, conn.id),
                quota_backlog=await st.quota_backlog(client, task_queue, conn))
    except Exception as exc:  # Temporal down or an RPC timed out: said on the page
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        views = {c.id: st.TemporalView(False, reason) for c in conns}
    out = []
    for conn in conns:
        status = st.connection_status(store, conn.id, views.get(conn.id))
        waiting = sum(len(status.get(str(s), [])) for s in ATTENTION_ORDER_STATES)
        out.append({**status, "pair": f"{conn.store_system} → {conn.erp_system}",
                    "waiting": waiting + len(status.get("retrying", [])),
                    "reconciliation": last_reconciliation(store, conn.id)})
    return out


# --- needs attention -----------------------------------------------------------------------

@dataclass
class AttentionRow:
    connection_id: str
    order_id: str
    order_number: str
    state: str  # parked, failed, retrying
    message: str
    since: str
    age: str
    amount: str = ""
    documents: list[str] = field(default_factory=list)  # the documents being retried

    @property
    def key(self) -> str:
        return f"{self.connection_id}|{self.order_id}"

    @property
    def suggested_fix(self) -> tuple[str, str] | None:
        """(kind, store value) when the resolution names a mapping ("map SKU X to ...")."""
        found = SUGGESTION.search(self.message)
        if not found or found.group(2) == "(none)":
            return None
        return FIX_KINDS[found.group(1)], found.group(2)


def attention(store: ConnectionStore, *, connection_id: str = "", state: str = "",
              query: str = "") -> list[AttentionRow]:
    """Parked, failed and needs-attention orders (the order's ledger row), and orders with a
    step that failed and is being retried (an open *retrying* episode of the error history)."""
    from starter.logs import redact_text

    ids = [connection_id] if connection_id else [c.id for c in store.list_connections()]
    rows: list[AttentionRow] = []
    now = datetime.now(timezone.utc)
    for cid in ids:
        listed = set()
        for r in store.ledger_rows(cid, kind=LedgerKind.ORDER):
            if r.state in ATTENTION_ORDER_STATES:
                listed.add(r.store_id)
                rows.append(AttentionRow(cid, r.store_id, r.order_number or r.store_id, r.state,
                                         redact_text(r.last_error or ""), r.updated_at,
                                         age(r.updated_at, now)))
        for e in error_history.episodes(store, cid, open=True, kind=EpisodeKind.RETRYING):
            if e.order_id in listed:
                continue
            rows.append(AttentionRow(cid, e.order_id, e.order_number or e.order_id, "retrying",
                                     redact_text(e.message), e.opened_at, age(e.opened_at, now),
                                     documents=[f"{e.step}: {e.attempts} failed attempt(s)"]))
    if state:
        rows = [r for r in rows if r.state == state]
    if query:
        q = query.lower()
        rows = [r for r in rows if q in r.order_number.lower() or q in r.message.lower()]
    return sorted(rows, key=lambda r: r.since)


async def fill_amounts(client, rows: list[AttentionRow], *, limit: int = 200) -> None:
    """Each order's total as its workflow last fetched it (history, decoded here; the
    customer's data in the same payload is dropped at once). Missing: left blank."""
    gate = asyncio.Semaphore(8)

    async def one(row: AttentionRow) -> None:
        async with gate:
            row.amount = await order_amount(client, order_workflow_id(row.connection_id,
                                                                      row.order_id))

    await asyncio.gather(*(one(r) for r in rows[:limit]))


async def order_amount(client, workflow_id: str) -> str:
    from starter.audit import fetched_order_result

    try:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError:
        return ""
    amount = ""
    for ev in history.events:
        if (result := fetched_order_result(ev)) is None:
            continue
        values = await client.data_converter.decode_wrapper(result)
        order = values[0] if values else None
        if isinstance(order, dict) and order.get("total") is not None:
            amount = f"{Decimal(str(order['total'])):.2f} {order.get('currency') or ''}".strip()
    return amount


# --- one order -----------------------------------------------------------------------------

def erp_documents(store: ConnectionStore, connection_id: str, order_number: str) -> list[dict]:
    """Every ERP document booked for the order, with its external reference."""
    rows = [r for r in store.ledger_rows(connection_id, order_number=order_number)
            if r.kind in DOCUMENT_KINDS]
    out = []
    for r in rows:
        ref = r.erp_ref or {}
        total = ref.get("total")
        out.append({"kind": r.kind, "store_id": r.store_id, "state": r.state,
                    "number": ref.get("number", ""), "doc_type": ref.get("doc_type", ""),
                    "external_ref": ref.get("external_ref", ""),
                    "amount": f"{Decimal(str(total)):.2f} {ref.get('currency') or ''}".strip()
                    if total is not None else "", "attempts": r.attempts})
    return out


def order_row(store: ConnectionStore, connection_id: str, order_number: str) -> LedgerRow | None:
    rows = store.ledger_rows(connection_id, kind=LedgerKind.ORDER, order_number=order_number)
    return rows[-1] if rows else store.ledger_get(connection_id, LedgerKind.ORDER, order_number)


def temporal_ui_link(ui_url: str, namespace: str, workflow_id: str) -> str:
    from urllib.parse import quote

    return f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/" \
           f"{quote(workflow_id, safe='')}"


# --- reconciliation ------------------------------------------------------------------------

def reconciliation_csv(store: ConnectionStore, connection_id: str) -> str:
    """The last run's differences in the columns of `ml-connector reconcile --csv`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=DIFFERENCE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    run = last_reconciliation(store, connection_id)
    writer.writerows(run["differences"] if run else [])
    return buf.getvalue()


async def reconcile_now(store: ConnectionStore, connection_id: str) -> dict:
    """A run over the nightly window, read from both systems and kept as the last (each GET
    retried alone on a transient failure; the run itself once)."""
    from activities.runtime import Runtime

    conn = store.get_connection(connection_id)
    until = datetime.now(timezone.utc)
    runtime = Runtime(store)
    try:
        await reconcile_patiently(runtime, conn, nightly_window(until)[0], until, attempts=1)
    finally:
        await runtime.aclose()
    return last_reconciliation(store, connection_id)


# --- error history -------------------------------------------------------------------------

def error_episodes(store: ConnectionStore, connection_id: str = "") -> list[dict]:
    """Open and resolved episodes, newest first, with how long each stayed open."""
    now = datetime.now(timezone.utc)
    out = []
    for e in reversed(error_history.episodes(store, connection_id or None)):
        out.append({**e.as_dict(), "open_for": how_long(e.duration_seconds(now))})
    return out
