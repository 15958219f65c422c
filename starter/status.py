"""``ml-connector status``: what an operator checks first, and what cron checks.

It tells the truth rather than the defaults: every order that is not booked is listed
(parked, failed, needing attention, retrying — from the error history — and, for a
connection with an ERP quota, the ERP calls waiting in its task queue); "healthy" is said
only with evidence (an order posted, a poll done, a webhook check run), else "never
checked". The store answers alone; Temporal adds the schedules and the quota backlog, and
when it cannot be reached that is said too.

The verdict of each connection, and the exit code (README "Status"):
``attention`` (1) — something is not being booked or is broken: parked, failed, needing
attention or retrying orders, a quota backlog older than a minute, an unhealthy connection,
webhooks down, no poll schedule, Temporal unreachable; ``unknown`` (3) — nothing wrong seen,
but something was never checked (health, webhooks, the first poll); ``healthy`` (0).
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from activities.poll import POLLED
from activities.webhooks import webhook_state
from connections import error_history
from connections.config import Connection, Environment
from connections.ledger import LedgerKind, OrderState
from connections.reconciliations import last_reconciliation
from connections.store import ConnectionStore

ORDER_STATES = tuple(OrderState)  # in the order an operator reads them
ATTENTION = (OrderState.PARKED, OrderState.FAILED,
             OrderState.NEEDS_ATTENTION)  # listed order by order

SCHEMA_VERSION = 1  # of the --json document; bumped only when a field changes meaning
HEALTHY, UNKNOWN, NEEDS_ATTENTION = "healthy", "unknown", "attention"
EXIT_CODES = {HEALTHY: 0, NEEDS_ATTENTION: 1, UNKNOWN: 3}
NEVER_CHECKED = "never checked"
BACKLOG_ATTENTION_SECONDS = 60.0  # a quota queue's oldest call waiting longer needs a look
RPC_TIMEOUT = timedelta(seconds=5)
WAITING_LISTED = 50  # running order workflows described to name the orders in a backlog


@dataclass
class TemporalView:
    """What status learns from Temporal about one connection."""

    reachable: bool
    error: str = ""
    schedules: dict[str, str | None] = field(default_factory=dict)  # kind -> last run, absent: none
    quota_backlog: dict | None = None


def connection_status(store: ConnectionStore, connection_id: str,
                      temporal: TemporalView | None = None) -> dict:
    """One connection's status (the --json schema, README "Status"). Without ``temporal``
    it is the store's view alone: schedules and the quota backlog are left out."""
    conn = store.get_connection(connection_id)
    orders = store.ledger_rows(conn.id, kind=LedgerKind.ORDER)
    today = datetime.now(timezone.utc).date().isoformat()
    retrying = error_history.episodes(store, conn.id, open=True,
                                      kind=error_history.EpisodeKind.RETRYING)
    watermark = store.get_watermark(conn.id, POLLED)
    status = {
        "connection": conn.id,
        "pair": f"{conn.store_system} -> {conn.erp_system}",
        "health": _health(store, conn, orders, watermark),
        "webhooks": _webhooks(store, conn, temporal),
        "last_poll_watermark": watermark,
        "schedules": None if temporal is None or not temporal.reachable else temporal.schedules,
        "temporal": None if temporal is None else {"reachable": temporal.reachable,
                                                   "error": temporal.error},
        "quota_backlog": None if temporal is None else temporal.quota_backlog,
        "orders": dict(Counter(r.state for r in orders)),
        "orders_today": dict(Counter(r.state for r in orders if r.updated_at.startswith(today))),
        **{state.value: [{"order": r.order_number or r.store_id, "since": r.updated_at,
                          "message": r.last_error or ""} for r in orders if r.state == state]
           for state in ATTENTION},
        "retrying": [{"order": e.order_number or e.order_id, "step": e.step,
                      "attempts": e.attempts, "since": e.opened_at, "last_error": e.message}
                     for e in retrying],
        "reconciliation": _reconciliation(store, conn.id),
    }
    status["attention"], status["unknown"] = _findings(conn, status)
    status["verdict"] = (NEEDS_ATTENTION if status["attention"]
                         else UNKNOWN if status["unknown"] else HEALTHY)
    return status


def _health(store: ConnectionStore, conn: Connection, orders: list, watermark: str | None) -> dict:
    """A recorded problem (e.g. needs_consent); else healthy only on evidence that both
    systems answered (an order posted) or the store did (a poll)."""
    recorded = store.connection_health(conn.id)
    if recorded["state"] != "ok":
        return {"state": recorded["state"], "message": recorded["message"],
                "since": recorded["updated_at"]}
    posted = max((r.updated_at for r in orders if r.state == OrderState.POSTED), default=None)
    if posted:
        return {"state": HEALTHY, "message": f"last order posted {posted}", "since": posted}
    if watermark:
        return {"state": HEALTHY, "message": f"store last polled at {watermark}", "since": watermark}
    return {"state": NEVER_CHECKED, "message": "no order posted and no poll yet", "since": None}


def _webhooks(store: ConnectionStore, conn: Connection, temporal: TemporalView | None) -> dict:
    state = webhook_state(store, conn.id)
    last_check = (temporal.schedules.get("webhooks") if temporal and temporal.reachable
                  else None)
    shown = {"polling_mode": bool(state.get("polling_mode")), "since": state.get("since"),
             "reason": state.get("reason"), "last_check": last_check}
    if shown["polling_mode"]:
        return {"state": "down", **shown}
    if not conn.receiver_url:
        return {"state": "not used", **shown, "reason": "no receiver_url: polls alone"}
    if "since" in state or last_check:  # a check ran (and put the hooks back, if it had to)
        return {"state": HEALTHY, **shown}
    return {"state": NEVER_CHECKED, **shown}


def _findings(conn: Connection, s: dict) -> tuple[list[str], list[str]]:
    attention, unknown = [], []
    for state in ATTENTION:
        if s[state.value]:
            attention.append(f"{len(s[state.value])} order(s) {state.value.replace('_', ' ')}")
    if s["retrying"]:
        attention.append(f"{len(s['retrying'])} order(s) retrying")
    health = s["health"]["state"]
    if health not in (HEALTHY, NEVER_CHECKED):
        attention.append(f"connection {health.replace('_', ' ')}")
    elif health == NEVER_CHECKED:
        unknown.append("health never checked")
    if s["webhooks"]["state"] == "down":
        attention.append("webhooks down (polling mode)")
    elif s["webhooks"]["state"] == NEVER_CHECKED:
        unknown.append("webhooks never checked")
    if s["last_poll_watermark"] is None:
        unknown.append("never polled")
    rec = s.get("reconciliation")
    if rec is not None and not rec["ok"]:
        attention.append(f"last reconciliation found {rec['differences']} difference(s): "
                         f"`ml-connector reconcile {conn.id}` lists them")
    temporal = s["temporal"]
    if temporal is not None and not temporal["reachable"]:
        attention.append("Temporal unreachable: schedules and quota backlog unknown")
    elif temporal is not None:
        if "poll" not in (s["schedules"] or {}):
            attention.append(f"no schedules: run `ml-connector schedules apply {conn.id}`")
        backlog = s["quota_backlog"]
        if backlog and backlog["waiting"] and (
                backlog["oldest_seconds"] or 0) > BACKLOG_ATTENTION_SECONDS:
            attention.append(f"{backlog['waiting']} ERP call(s) waiting in the quota backlog")
    return attention, unknown


def overall(statuses: list[dict]) -> dict:
    """The document ``status --json`` prints: a verdict over every connection and its exit
    code (no connection at all is ``unknown``)."""
    verdicts = {s["verdict"] for s in statuses}
    verdict = (NEEDS_ATTENTION if NEEDS_ATTENTION in verdicts
               else UNKNOWN if UNKNOWN in verdicts or not statuses else HEALTHY)
    return {"schema": SCHEMA_VERSION, "verdict": verdict, "exit_code": EXIT_CODES[verdict],
            "connections": statuses}


# --- what Temporal knows ------------------------------------------------------------------------

async def temporal_views(env: Environment, store: ConnectionStore,
                         conns: list[Connection]) -> dict[str, TemporalView]:
    """Each connection's schedules (their last run) and, with an ERP quota, the backlog of
    its ERP task queue. Temporal down: every view says so, nothing raises."""
    from starter.temporal import FAIL_FAST, TemporalUnavailable, connect

    try:
        client = await connect(env, store.vault.keyring, retry_config=FAIL_FAST)
    except TemporalUnavailable as exc:
        return {c.id: TemporalView(False, str(exc)) for c in conns}
    views = {}
    for conn in conns:
        try:
            views[conn.id] = TemporalView(
                True, schedules=await schedule_runs(client, conn.id),
                quota_backlog=await quota_backlog(client, env.task_queue, conn))
        except Exception as exc:  # an RPC that timed out: said, not raised
            views[conn.id] = TemporalView(False, f"{type(exc).__name__}: "
                                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
    return views


async def schedule_runs(client, connection_id: str) -> dict[str, str | None]:
    """Each existing schedule of the connection by kind, with its last run (None: not yet)."""
    from temporalio.service import RPCError, RPCStatusCode

    from starter.schedules import schedule_id

    found = {}
    for kind in ("poll", "webhooks"):
        try:
            desc = await client.get_schedule_handle(schedule_id(kind, connection_id)).describe(
                rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        recent = desc.info.recent_actions
        found[kind] = recent[-1].started_at.isoformat() if recent else None
    return found


async def quota_backlog(client, task_queue: str, conn: Connection) -> dict | None:
    """The ERP calls waiting on the connection's quota queue (the server's approximate
    backlog of its activity task queue): how many, and how long the oldest has waited."""
    from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from starter.dispatch import erp_queue

    queue = erp_queue(task_queue, conn.id, conn.erp_requests_per_minute)
    if queue is None:
        return None
    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, report_stats=True),
        timeout=RPC_TIMEOUT)
    stats = resp.stats
    age = stats.approximate_backlog_age.ToTimedelta().total_seconds() \
        if stats.HasField("approximate_backlog_age") else 0.0
    waiting = int(stats.approximate_backlog_count)
    return {"task_queue": queue, "requests_per_minute": conn.erp_requests_per_minute,
            "waiting": waiting, "oldest_seconds": round(age, 1),
            "orders": await _waiting_orders(client, conn.id) if waiting else []}


_schedules, _quota_backlog = schedule_runs, quota_backlog  # the names earlier callers use


async def _waiting_orders(client, connection_id: str) -> list[dict]:
    """The orders whose ERP step waits for its turn (scheduled, due, not started), found
    among the connection's running OrderSync workflows (at most WAITING_LISTED of them are
    described: the count above is the whole backlog)."""
    from temporalio.api.enums.v1 import PendingActivityState

    from starter.dispatch import workflow_type
    from workflows.order import OrderSync
    from workflows.search_attributes import SA_ORDER_NUMBER

    now = datetime.now(timezone.utc)
    query = (f'WorkflowType = "{workflow_type(OrderSync.run)}" AND ExecutionStatus = "Running" '
             f'AND MlConnection = "{connection_id.replace(chr(34), "")}"')
    out = []
    async for wf in client.list_workflows(query, limit=WAITING_LISTED, rpc_timeout=RPC_TIMEOUT):
        desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe(
            rpc_timeout=RPC_TIMEOUT)
        for pending in desc.raw_description.pending_activities:
            scheduled = pending.scheduled_time.ToDatetime(tzinfo=timezone.utc)
            if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED \
                    and scheduled <= now:
                out.append({"order": wf.typed_search_attributes.get(SA_ORDER_NUMBER)
                            or wf.id.rsplit("/", 1)[-1], "step": pending.activity_type.name,
                            "attempt": pending.attempt, "since": scheduled.isoformat()})
    return out


def collect(env: Environment, store: ConnectionStore, connection_id: str | None) -> dict:
    """The whole ``status`` document for one connection or all of them."""
    conns = ([store.get_connection(connection_id)] if connection_id
             else store.list_connections())
    views = asyncio.run(temporal_views(env, store, conns)) if conns else {}
    return overall([connection_status(store, c.id, views.get(c.id)) for c in conns])


# --- text ---------------------------------------------------------------------------------------

def render(status: dict) -> str:
    health, hooks = status["health"], status["webhooks"]
    verdict = {HEALTHY: "healthy", UNKNOWN: "UNKNOWN — " + "; ".join(status["unknown"]),
               NEEDS_ATTENTION: "NEEDS ATTENTION — " + "; ".join(status["attention"])}
    lines = [f"{status['connection']}  ({status['pair']})  {verdict[status['verdict']]}",
             f"  health: {health['state']}" + (f" — {health['message']}" if health.get("message")
                                               else "")]
    if hooks["state"] == "down":
        lines.append(f"  webhooks: DOWN — polling mode since {hooks.get('since')} "
                     f"({hooks.get('reason')})")
    else:
        checked = f" (last check {hooks['last_check']})" if hooks.get("last_check") else ""
        lines.append(f"  webhooks: {hooks['state']}{checked}")
    temporal, schedules = status["temporal"], status["schedules"]
    if temporal is not None and not temporal["reachable"]:
        lines.append(f"  schedules: unknown — {temporal['error']}")
    elif schedules is not None:
        lines.append("  schedules: " + (", ".join(
            f"{kind} last ran {last or 'not yet'}" for kind, last in sorted(schedules.items()))
            or "none — run `ml-connector schedules apply`"))
    lines.append(f"  last poll watermark: {status['last_poll_watermark'] or 'never polled'}")
    if backlog := status["quota_backlog"]:
        lines.append(f"  quota backlog: {backlog['waiting']} ERP call(s) waiting"
                     + (f", oldest {backlog['oldest_seconds']:.0f}s" if backlog["waiting"] else "")
                     + f" ({backlog['requests_per_minute']}/min)")
        for row in backlog.get("orders", []):
            lines.append(f"  waiting for quota: order {row['order']} ({row['step']}) "
                         f"since {row['since']}")
    lines += [
        "  orders: " + (", ".join(f"{status['orders'].get(s, 0)} {s}" for s in ORDER_STATES
                                  if status["orders"].get(s)) or "none yet"),
        "  today: " + (", ".join(f"{n} {s}" for s, n in sorted(status["orders_today"].items()))
                       or "none")]
    for row in status["retrying"]:
        lines.append(f"  retrying order {row['order']} since {row['since']} "
                     f"({row['attempts']} failed attempt(s), {row['step']}): "
                     + _indented(row["last_error"]))
    for title in ATTENTION:
        for row in status[title.value]:
            lines.append(f"  {title.value.replace('_', ' ')} order {row['order']} since "
                         f"{row['since']}: {_indented(row['message'])}")
    lines += _reconciliation_lines(status.get("reconciliation"))
    return "\n".join(lines)


def _reconciliation(store: ConnectionStore, connection_id: str) -> dict | None:
    """The last store-versus-ERP reconciliation (``ml-connector reconcile`` or the nightly
    schedule): when, which orders, and its first differences."""
    run = last_reconciliation(store, connection_id)
    if run is None:
        return None
    return {"ran_at": run["ran_at"], "ok": run["ok"], "since": run["summary"].get("since"),
            "until": run["summary"].get("until"), "differences": len(run["differences"]),
            "first": [d.get("detail", "") for d in run["differences"][:5]]}


def _reconciliation_lines(rec: dict | None) -> list[str]:
    if rec is None:
        return ["  reconciliation: never run"]
    return [f"  reconciliation {rec['ran_at']} (orders from {rec['since']} to {rec['until']}): "
            + ("store and ERP agree" if rec["ok"] else f"{rec['differences']} difference(s)")
            ] + [f"    {detail}" for detail in rec["first"]]


def _indented(message: str) -> str:
    """A multi-line (ERP) message: its further lines under the first, indented."""
    return "\n      ".join(line for line in (message or "").splitlines() if line.strip())
