"""Reconciliation through the connectors: the store's orders of a date range (with refunds and
payments) against the ERP's documents under the connection's external references, to the cent
(the rules: :mod:`connectors.reconciliation`). ``ml-connector reconcile``, the nightly
``Reconcile`` workflow and ``make demo`` all run :func:`reconcile_connection`; each run is kept
as the connection's last (:mod:`connections.reconciliations`)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from activities.errors import classified
from activities.quota import quota_gated
from activities.runtime import Runtime
from connections.config import Connection
from connections.reconciliations import save_reconciliation
from connectors import http
from connectors.errors import ConfigurationError
from connectors.model import Order
from connectors.reconciliation import ReconciliationReport, reconcile

# ERP document dates are the store's dates, possibly in the store's own time zone: the ERP is
# read from a day before the range (documents of other orders are ignored anyway).
DATE_SLACK = timedelta(days=1)
FETCH_CONCURRENCY = 8  # full orders read at once (each is a request or two)
NIGHTLY_DAYS = 3  # the nightly run checks the orders of the last three days
READ_RETRIES = 3  # each GET of a reconciliation outside Temporal (0.5 + 1 + 2 s of waits)


class ReconcileInput(BaseModel):
    connection_id: str
    since: datetime | None = None  # None: NIGHTLY_DAYS before ``until``, at midnight UTC
    until: datetime | None = None  # None: now


class ReconcileResult(BaseModel):
    ok: bool
    differences: int
    summary: dict[str, Any]


def nightly_window(now: datetime, days: int = NIGHTLY_DAYS) -> tuple[datetime, datetime]:
    start = (now - timedelta(days=days)).astimezone(timezone.utc)
    return start.replace(hour=0, minute=0, second=0, microsecond=0), now


async def store_orders(runtime: Runtime, conn: Connection, since: datetime,
                       until: datetime) -> list[Order]:
    """Full records (refunds, payments) of the orders created in [since, until). Orders are
    listed by modification, which never precedes creation, up to now so none slips past."""
    store = runtime.storefront(conn)
    ids = [o.store_id async for o in store.iter_orders_modified(since, datetime.now(timezone.utc))
           if since <= o.created_at < until]
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(order_id: str) -> Order:
        async with gate:
            return await store.get_order(order_id)

    return list(await asyncio.gather(*(fetch(i) for i in ids)))


async def reconcile_connection(runtime: Runtime, conn: Connection, since: datetime,
                               until: datetime, *, keep: bool = True) -> ReconciliationReport:
    """Read both sides through the connectors and compare; with ``keep``, save the run as the
    connection's last. The ERP reads take slots of the connection's quota wherever this runs
    (the CLI, the console, the demo): they spend the licence the workers' steps share."""
    erp = runtime.erp(conn)
    if not hasattr(erp, "iter_documents"):
        raise ConfigurationError(f"the {conn.erp_system} connector cannot list documents",
                                 system=conn.erp_system)
    prefix = conn.mappings.document_prefix
    orders = await store_orders(runtime, conn, since, until)
    with quota_gated(runtime.store, conn):
        documents = [d async for d in erp.iter_documents(prefix, (since - DATE_SLACK).date())]
    report = reconcile(orders, documents, prefix=prefix, since=since, until=until,
                       with_receipts=conn.mappings.post_receipts)
    if keep:
        await asyncio.to_thread(save_reconciliation, runtime.store, conn.id, report.summary(),
                                differences_as_rows(report))
    return report


async def reconcile_patiently(runtime: Runtime, conn: Connection, since: datetime,
                              until: datetime, *, keep: bool = True,
                              attempts: int = 8) -> ReconciliationReport:
    """:func:`reconcile_connection` for callers outside Temporal (the CLI, the demo): a failure
    a retry can fix (5xx, timeout, 429) runs the reads again after the server's wait or a
    doubling back-off, as an activity's retry policy would; any other is raised at once. Each
    GET is first retried alone (connectors/http.READ_RETRIES), so a long read of many pages
    survives a flaky ERP without starting over."""
    token = http.READ_RETRIES.set(READ_RETRIES)
    try:
        return await http.with_retries(
            lambda: reconcile_connection(runtime, conn, since, until, keep=keep), attempts - 1)
    finally:
        http.READ_RETRIES.reset(token)


# The columns of a difference, in CSV and JSON and as kept in the connection store: ``kind``
# is the document's (invoice, credit_memo, receipt), ``issue`` what is wrong with it and
# ``difference`` the ERP's amount minus the store's, exact.
DIFFERENCE_COLUMNS = ("order_number", "external_ref", "kind", "issue", "currency", "store_amount",
                      "erp_amount", "difference", "erp_number", "detail")


def differences_as_rows(report: ReconciliationReport) -> list[dict[str, str]]:
    """One flat row per difference, amounts as exact text (at the places they mean)."""
    return [{"order_number": d.order, "external_ref": d.external_ref, "kind": d.document,
             "issue": d.kind, "currency": d.currency, "store_amount": d.amount_text(d.store_amount),
             "erp_amount": d.amount_text(d.erp_amount), "difference": d.amount_text(d.difference),
             "erp_number": " ".join(d.erp_numbers), "detail": d.message}
            for d in report.differences]


class ReconcileActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="reconcile_connection")
    async def reconcile(self, inp: ReconcileInput) -> ReconcileResult:
        conn = self.rt.connection(inp.connection_id)
        until = inp.until or datetime.now(timezone.utc)
        since = inp.since or nightly_window(until)[0]
        async with classified():
            report = await reconcile_connection(self.rt, conn, since, until)
        return ReconcileResult(ok=report.ok, differences=len(report.differences),
                               summary=report.summary())

    def all(self) -> list:
        return [self.reconcile]
