"""``ml-connector audit STORE_ORDER_NUMBER``: one order's timeline, from every run of its
workflow history (continue-as-new included) and from the ledger.

History payloads and failures are AES-GCM ciphertext; they are decoded here with the
client's data converter. The timeline names documents, ERP references, attempts and error
messages — never the customer's e-mail, name or address: a buyer appears as the ERP's
customer key only.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.converter import decode_search_attributes
from temporalio.service import RPCError

from activities.orders import GUEST_ACCOUNT, OrderActivities, activity_name
from connections.ledger import LedgerKey, LedgerKind, LedgerRow, customer_external_id
from connections.store import ConnectionStore
from connectors.errors import PARKING_KINDS
from connectors.model import Customer
from starter.dispatch import workflow_type
from starter.logs import redact_value
from workflows.order import OrderSync, order_workflow_id
from workflows.search_attributes import SA_CONNECTION, SA_ORDER_NUMBER, SA_STATE

LEDGER_KINDS = (LedgerKind.ORDER, LedgerKind.CUSTOMER, LedgerKind.INVOICE, LedgerKind.CREDIT_MEMO,
                LedgerKind.RECEIPT, LedgerKind.ADJUSTMENT)
# The names OrderSync's history records its steps under, from their definitions.
FETCH_ORDER, UPSERT_CUSTOMER, POST_INVOICE, POST_CREDIT_MEMO, POST_RECEIPT, POST_ADJUSTMENT = (
    activity_name(fn) for fn in (OrderActivities.fetch_order, OrderActivities.upsert_customer,
                                 OrderActivities.post_invoice, OrderActivities.post_credit_memo,
                                 OrderActivities.post_receipt, OrderActivities.post_adjustment))


@dataclass
class TimelineEntry:
    at: datetime  # a step's entry is stamped when the step began, so the ledger rows it
    #               wrote come after it
    what: str  # run, received, fetched, customer, posted, receipt, credit_memo, adjustment,
    #            state, running, retrying (only what is retried), refused, parked, failed, ledger
    detail: str
    attempts: int | None = None
    source: str = "history"  # or "ledger"
    workflow_id: str = ""
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def connection(self) -> str:
        """Every workflow id and ledger-derived id is ``{kind}/{connection}/...``."""
        return self.extra.get("connection") or (self.workflow_id.split("/") + ["", ""])[1]


class OrderNotFound(LookupError):
    def __str__(self) -> str:
        return self.args[0]


async def audit(client: Client, store: ConnectionStore, connection_id: str | None,
                order_number: str) -> list[TimelineEntry]:
    """Every recorded step of the order, oldest first."""
    connections = [connection_id] if connection_id else [c.id for c in store.list_connections()]
    rows = {cid: _ledger_rows(store, cid, order_number) for cid in connections}
    workflow_ids = await _workflow_ids(client, connections, order_number, rows)
    if not workflow_ids and not any(rows.values()):
        where = f"connection {connection_id}" if connection_id else "any connection"
        raise OrderNotFound(f"no order numbered {order_number!r} in {where}: neither a workflow "
                            f"(MlOrderNumber) nor a ledger row")
    timeline: list[TimelineEntry] = []
    customers: dict[str, set[str]] = {}
    for wid in sorted(workflow_ids):
        cid = wid.split("/")[1]
        reader = _HistoryReader(client, wid)
        for run_id in await _runs(client, wid):
            timeline += await reader.read(run_id)
        customers.setdefault(cid, set()).update(reader.customer_ids(store, cid))
    for cid, cid_rows in rows.items():
        for ext_id in sorted(customers.get(cid, ())):
            row = store.ledger_get(cid, *LedgerKey.customer(ext_id))
            if row is not None:
                cid_rows.append(row)
        timeline += [_ledger_entry(r) for r in cid_rows]
    return sorted(timeline, key=lambda e: (e.at, e.source != "history"))  # stable: history order


def _ledger_rows(store: ConnectionStore, connection_id: str, order_number: str) -> list[LedgerRow]:
    rows = store.ledger_rows(connection_id, order_number=order_number)
    # An order that failed before its number was known is keyed by its store id alone.
    row = store.ledger_get(connection_id, *LedgerKey.order(order_number))
    if row is not None and all(r.kind != LedgerKind.ORDER or r.store_id != row.store_id
                               for r in rows):
        rows.append(row)
    return [r for r in rows if r.kind in LEDGER_KINDS]


async def _workflow_ids(client: Client, connections: list[str], order_number: str,
                        rows: dict[str, list[LedgerRow]]) -> set[str]:
    """By the MlOrderNumber search attribute, plus the ids the ledger implies (an order
    whose first fetch failed never set its number)."""
    query = f'WorkflowType = "{workflow_type(OrderSync.run)}" AND {SA_ORDER_NUMBER.name} = "{_quoted(order_number)}"'
    if len(connections) == 1:
        query += f' AND {SA_CONNECTION.name} = "{_quoted(connections[0])}"'
    found = set()
    async for wf in client.list_workflows(query):
        if wf.id.split("/")[1:2] and wf.id.split("/")[1] in connections:
            found.add(wf.id)
    for cid, cid_rows in rows.items():
        order_ids = {r.store_id for r in cid_rows if r.kind in (LedgerKind.ORDER, LedgerKind.INVOICE)}
        for order_id in order_ids or {order_number}:
            wid = order_workflow_id(cid, order_id)
            if wid not in found and await _exists(client, wid):
                found.add(wid)
    return found


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except RPCError:
        return False


async def _runs(client: Client, workflow_id: str) -> list[str]:
    """Every run of the workflow id, oldest first (continue-as-new makes a chain)."""
    runs = [(wf.start_time, wf.run_id) async for wf in
            client.list_workflows(f'WorkflowId = "{_quoted(workflow_id)}"')]
    if not runs:  # visibility lags a just-started run: the latest run is still readable
        desc = await client.get_workflow_handle(workflow_id).describe()
        runs = [(desc.start_time, desc.run_id)]
    return [run_id for _, run_id in sorted(runs)]


# --- one history -----------------------------------------------------------------------------

def _time(event: Any) -> datetime:
    return event.event_time.ToDatetime(tzinfo=timezone.utc)


class _HistoryReader:
    def __init__(self, client: Client, workflow_id: str) -> None:
        self.client = client
        self.converter = client.data_converter
        self.workflow_id = workflow_id
        self._customers: list[dict] = []

    async def _values(self, payloads: Any) -> list[Any]:
        return await self.converter.decode_wrapper(payloads) if payloads else []

    async def _first(self, payloads: Any) -> Any:
        values = await self._values(payloads)
        return values[0] if values else None

    async def _failure(self, failure: Failure) -> tuple[str, str]:
        """(error type, message) of an encoded failure, from its innermost application cause."""
        kind, message, _ = await self._failure_of(failure)
        return kind, message

    async def _failure_of(self, failure: Failure) -> tuple[str, str, bool]:
        """(error type, message, whether it is retried) of an encoded failure."""
        copy = Failure()
        copy.CopyFrom(failure)
        exc: BaseException | None = await self.converter.decode_failure(copy)
        kind, message, retried = type(exc).__name__, str(exc), True
        while exc is not None:
            if getattr(exc, "type", None):
                kind, message = exc.type, getattr(exc, "message", str(exc))
                retried = not getattr(exc, "non_retryable", False)
            exc = exc.__cause__
        return kind, _clean(message), retried and kind not in PARKING_KINDS

    def customer_ids(self, store: ConnectionStore, connection_id: str) -> set[str]:
        """Ledger keys of the buyers this order upserted (computed, never shown)."""
        try:
            conn = store.get_connection(connection_id)
        except KeyError:
            return set()
        out = set()
        for raw in self._customers:
            try:
                out.add(customer_external_id(conn, Customer.model_validate(raw)))
            except (ValidationError, TypeError, ValueError):
                continue
        return out

    async def read(self, run_id: str) -> list[TimelineEntry]:
        handle = self.client.get_workflow_handle(self.workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        out: list[TimelineEntry] = []
        scheduled: dict[int, tuple[str, Any]] = {}
        started: dict[int, Any] = {}
        began: dict[int, datetime] = {}  # when each activity's (last) attempt started
        task_began: datetime | None = None  # the workflow task local activities run in

        def add(at: datetime, what: str, detail: str, attempts: int | None = None,
                **extra: Any) -> None:
            out.append(TimelineEntry(at, what, detail, attempts, "history", self.workflow_id,
                                     run_id, extra))

        def refused(at: datetime, name: str, kind: str, message: str,
                    attempts: int | None) -> None:
            """An activity's last failure: parked when it names a fix, else failed."""
            add(at, "parked" if kind in PARKING_KINDS else "failed", f"{name}: {kind}: {message}",
                attempts, activity=name, error=kind)

        for ev in history.events:
            at, t = _time(ev), ev.event_type
            if t == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                task_began = at
            if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                a = ev.workflow_execution_started_event_attributes
                if a.continued_execution_run_id:
                    add(at, "run", f"run {run_id} continues run {a.continued_execution_run_id} "
                        f"(continue-as-new, booked state carried over)")
                else:
                    add(at, "run", f"workflow {self.workflow_id} started (run {run_id})")
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                a = ev.workflow_execution_signaled_event_attributes
                event = await self._first(a.input) or {}
                add(at, "received", _received(a.signal_name, event),
                    kind=event.get("kind", ""), source=event.get("source", ""))
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = ev.activity_task_scheduled_event_attributes
                scheduled[ev.event_id] = (a.activity_type.name, await self._first(a.input))
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[ev.activity_task_started_event_attributes.scheduled_event_id] = \
                    ev.activity_task_started_event_attributes
                began[ev.activity_task_started_event_attributes.scheduled_event_id] = at
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                a = ev.activity_task_completed_event_attributes
                name, inp = scheduled.get(a.scheduled_event_id, ("?", None))
                attempt, retried = await self._attempts(started.get(a.scheduled_event_id))
                if name == UPSERT_CUSTOMER and isinstance(inp, dict) and inp.get("customer"):
                    self._customers.append(inp["customer"])
                entry = _completed(name, inp or {}, await self._first(a.result))
                if entry is not None:
                    what, detail = entry
                    add(began.get(a.scheduled_event_id, at), what, detail + retried, attempt,
                        activity=name)
            elif (t == EventType.EVENT_TYPE_MARKER_RECORDED
                  and ev.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER):
                details = ev.marker_recorded_event_attributes.details
                meta = marker_data(details.get("data"))
                result = await self._first(details["result"]) if "result" in details else None
                name = meta.get("activity_type", "?")
                if name == FETCH_ORDER and isinstance(result, dict) and result.get("customer"):
                    self._customers.append(result["customer"])
                # The order fetch, and an ERP step's first try, ran in the workflow task.
                ran = task_began or at
                if ev.marker_recorded_event_attributes.HasField("failure"):
                    kind, message, retried = await self._failure_of(
                        ev.marker_recorded_event_attributes.failure)
                    if name == FETCH_ORDER:  # retried locally until it succeeds or refuses
                        refused(ran, name, kind, message, meta.get("attempt"))
                    elif retried:
                        add(ran, "retrying", f"{name}: first try failed ({kind}: {message}); "
                            f"handed to an activity that retries it", meta.get("attempt"),
                            activity=name, error=kind)
                    else:  # a refusal is not retried: the activity tries once more, then parks
                        add(ran, "refused", f"{name}: first try refused ({kind}: {message}); "
                            f"one more attempt as an activity, not retried after that",
                            meta.get("attempt"), activity=name, error=kind)
                elif (entry := _completed(name, {}, result)) is not None:
                    add(ran, entry[0], entry[1], meta.get("attempt"), activity=name)
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                a = ev.activity_task_failed_event_attributes
                name, _ = scheduled.get(a.scheduled_event_id, ("?", None))
                attempt, _ = await self._attempts(started.get(a.scheduled_event_id))
                kind, message = await self._failure(a.failure)
                refused(at, name, kind, message, attempt)
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                a = ev.activity_task_timed_out_event_attributes
                name, _ = scheduled.get(a.scheduled_event_id, ("?", None))
                attempt, _ = await self._attempts(started.get(a.scheduled_event_id))
                add(at, "failed", f"{name} timed out", attempt, activity=name)
            elif t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                attrs = decode_search_attributes(
                    ev.upsert_workflow_search_attributes_event_attributes.search_attributes)
                if attrs.get(SA_STATE.name):
                    add(at, "state", f"state {attrs[SA_STATE.name][0]}")
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                add(at, "run", "continued as new (history kept short; state carried over)")
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                add(at, "run", "workflow closed (idle: a later event starts a new run that "
                    "finds everything in the ledger)")
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                kind, message = await self._failure(
                    ev.workflow_execution_failed_event_attributes.failure)
                add(at, "failed", f"workflow failed: {kind}: {message}", error=kind)
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
                reason = ev.workflow_execution_terminated_event_attributes.reason
                add(at, "run", f"workflow terminated by an operator: {_clean(reason)}")
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
                add(at, "failed", "workflow timed out")
        out += await self._pending(handle, run_id)
        return out

    async def _attempts(self, started: Any) -> tuple[int | None, str]:
        """The attempt that ended the activity, and the failure that made it retry."""
        if started is None:
            return None, ""
        retried = ""
        if started.attempt > 1 and started.HasField("last_failure"):
            kind, message = await self._failure(started.last_failure)
            retried = f" (after retries; last retry cause: {kind}: {message})"
        return started.attempt, retried

    async def _pending(self, handle: Any, run_id: str) -> list[TimelineEntry]:
        """An activity still retrying (its attempts are not in history until it ends)."""
        try:
            desc = await handle.describe()
        except RPCError:
            return []
        out = []
        now = datetime.now(timezone.utc)
        for pa in desc.raw_description.pending_activities:
            what, detail = "running", f"{pa.activity_type.name} running"
            if pa.HasField("last_failure") and pa.attempt > 1:
                kind, message = await self._failure(pa.last_failure)
                what = "retrying"
                detail = f"{pa.activity_type.name} retrying; last failure: {kind}: {message}"
            out.append(TimelineEntry(now, what, detail, pa.attempt, "history",
                                     self.workflow_id, run_id, {"activity": pa.activity_type.name}))
        return out


LOCAL_ACTIVITY_MARKER = "core_local_activity"


def marker_data(payloads: Any) -> dict:
    """The SDK's own (plain JSON) record of a local activity: its type and attempt."""
    try:
        return json.loads(payloads.payloads[0].data)
    except (AttributeError, IndexError, ValueError):
        return {}


def fetched_order_result(event: Any) -> Any | None:
    """The still-encoded result (payloads) of an order fetch that ran as a local activity,
    from its marker in the order's history; None for any other event or a failed fetch."""
    if (event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED
            or event.marker_recorded_event_attributes.marker_name != LOCAL_ACTIVITY_MARKER):
        return None
    details = event.marker_recorded_event_attributes.details
    if marker_data(details.get("data")).get("activity_type") != FETCH_ORDER:
        return None
    return details["result"] if "result" in details else None


def _received(signal: str, event: dict) -> str:
    text = f"{event.get('kind') or signal} event from {event.get('source') or 'unknown source'}"
    if event.get("delivery_id"):
        text += f" (delivery {event['delivery_id']})"
    return text


def _money(amount: Any, currency: Any) -> str:
    return f"{amount} {currency or ''}".strip() if amount is not None else ""


def _document(ref: dict) -> str:
    label = f"{ref.get('doc_type') or ref.get('kind', '')} {ref.get('number', '')}".strip()
    parts = [label]
    if ref.get("external_ref"):
        parts.append(f"external ref {ref['external_ref']}")
    if ref.get("total") is not None:
        parts.append(f"total {_money(ref['total'], ref.get('currency'))}")
    text = ", ".join(parts)
    if ref.get("created") is False:
        text += " — already in the ERP, not posted again"
    return text


def _completed(name: str, inp: dict, result: Any) -> tuple[str, str] | None:
    """(what, detail) of a completed OrderSync activity; personal data left out."""
    if name == FETCH_ORDER and isinstance(result, dict):
        # The whole order, or the summary the workflow decides from (no lines, a paid flag).
        lines = f"{len(result['lines'])} line(s), " if "lines" in result else ""
        paid = (f"paid {result['paid_at']}" if result.get("paid_at")
                else "paid" if result.get("paid") else "not paid")
        return "fetched", (
            f"order {result.get('number')} fetched: status {result.get('status')}, total "
            f"{_money(result.get('total'), result.get('currency'))}, {lines}"
            f"{len(result.get('refunds') or [])} refund(s), "
            f"{len(result.get('payments') or [])} payment(s), {paid}")
    if name == UPSERT_CUSTOMER and isinstance(result, dict):
        how = ("the connection's guest account" if result.get("doc_type") == GUEST_ACCOUNT
               else "matched (existing)" if result.get("created") is False else "created")
        return "customer", f"customer {result.get('number')} {how} in {result.get('system')}"
    ref = (result or {}).get("ref") if isinstance(result, dict) else None
    if name == POST_INVOICE and ref:
        return "posted", f"posted {_document(ref)}"
    if name == POST_CREDIT_MEMO and ref:
        refund = _named("refund", inp.get("refund_id"))
        return "credit_memo", f"{refund} → credit memo {_document(ref)}"
    if name == POST_RECEIPT:
        if not ref:
            return "receipt", (f"{_named('payment', inp.get('payment_id'))}: this connection "
                               f"does not book receipts")
        return "receipt", f"{_named('payment', inp.get('payment_id'))} → receipt {_document(ref)}"
    if name == POST_ADJUSTMENT and ref:
        return "adjustment", f"edit after posting → adjustment {_document(ref)}"
    return None


def _named(what: str, store_id: Any) -> str:
    """A local activity's input is not in history: then the id is left out."""
    return f"{what} {store_id}" if store_id else what


def _ledger_entry(row: LedgerRow) -> TimelineEntry:
    at = datetime.fromisoformat(row.updated_at)
    detail = f"{row.kind} {row.store_id}: {row.state}"
    if row.erp_ref:
        detail += f" as {_document(row.erp_ref).removesuffix(' — already in the ERP, not posted again')}"
    if row.last_error:
        detail += f" — {_clean(row.last_error)}"
    return TimelineEntry(at, "ledger", detail, row.attempts or None, "ledger",
                         order_workflow_id(row.connection_id, row.store_id)
                         if row.kind == LedgerKind.ORDER else "", "", {"kind": row.kind,
                                                              "state": row.state,
                                                              "connection": row.connection_id})


def _clean(text: str) -> str:
    """Error text from systems may echo an e-mail address: never print one."""
    return str(redact_value(text or ""))


# --- rendering -------------------------------------------------------------------------------

def render(order_number: str, timeline: list[TimelineEntry]) -> str:
    """One line per entry, oldest first; each line names its connection when the order
    number was found in several. An ERP's multi-line message continues indented under its
    entry, so the columns hold."""
    workflows = sorted({e.workflow_id for e in timeline if e.workflow_id})
    lines = [f"order {order_number}: " + (", ".join(workflows) or "no workflow history "
                                          "(closed workflows are kept for the retention period; "
                                          "the ledger is kept for ever)")]
    connections = sorted({e.connection for e in timeline if e.connection})
    width = max((len(c) for c in connections), default=0) if len(connections) > 1 else 0
    for e in timeline:
        attempts = f"  [attempt {e.attempts}]" if e.attempts and e.source == "history" else (
            f"  [{e.attempts} attempt(s)]" if e.attempts else "")
        stamp = e.at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        label = f"{e.connection:<{width}}  " if width else ""
        first, *more = [ln.rstrip() for ln in e.detail.splitlines() if ln.strip()] or [""]
        lines.append(f"  {stamp}Z  {label}{e.what:<11} {first}{attempts}")
        indent = " " * (2 + len(stamp) + 3 + len(label) + 12)
        lines += [f"{indent}{ln.strip()}" for ln in more]
    return "\n".join(lines)


def as_json(timeline: list[TimelineEntry]) -> str:
    return json.dumps([{**asdict(e), "at": e.at.isoformat(), "connection": e.connection}
                       for e in timeline], indent=2, default=str)
