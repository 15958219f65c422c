"""The Temporal workers of one process: every workflow and activity of ml-connector on its
task queue, and one rate-limited worker per connection with an ERP quota. ``worker.py`` is
the entry point that runs them; the CLI and the embedded stack build them from here."""
from __future__ import annotations

import asyncio
import math
import os

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from activities.customers import CustomerActivities
from activities.heartbeat import HeartbeatInterceptor
from activities.interceptors import ObservabilityInterceptor
from activities.orders import ERP_STEP_NAMES, OrderActivities, activity_name
from activities.poll import PollActivities
from activities.quota import QuotaInterceptor
from activities.reconcile import ReconcileActivities
from activities.runtime import Runtime
from activities.shipments import ShipmentActivities
from activities.vouch import vouch_marks
from activities.webhooks import WebhookActivities
from connections.config import SETTINGS_REREAD_SECONDS, Connection, Environment
from connections.store import ConnectionStore, open_store
from starter.dispatch import erp_queue, signal_order
from starter.schedules import set_poll_interval
from workflows.backfill import Backfill
from workflows.catalog import CatalogPush
from workflows.customers import CustomerSync, StoreCustomerChanged
from workflows.order import OrderSync
from workflows.poll import OrderPoll
from workflows.reconcile import Reconcile
from workflows.shipments import ShipmentSync
from workflows.webhooks import WebhookHealth

WORKFLOWS = [OrderSync, OrderPoll, Backfill, CatalogPush, WebhookHealth, ShipmentSync,
             CustomerSync, StoreCustomerChanged, Reconcile]
ACTIVITY_GROUPS = (OrderActivities, PollActivities, CatalogActivities, WebhookActivities,
                   ShipmentActivities, CustomerActivities, ReconcileActivities)


def worker_runtime(store: ConnectionStore, client: Client, **kwargs) -> Runtime:
    """The activities' Runtime, with the client-side hand-offs some activities start (the
    poll hands orders over; the webhook check re-times the poll schedule)."""
    return Runtime(store, client=client, signal_order=signal_order,
                   set_poll_interval=set_poll_interval, **kwargs)


def interceptors(runtime: Runtime) -> list:
    """Heartbeats (a killed worker's attempts retry in seconds), the connection's ERP request
    rate (activities/quota.py), and logs/metrics."""
    return [HeartbeatInterceptor(), QuotaInterceptor(runtime.store), ObservabilityInterceptor()]


# An order's workflow task runs its first-try ERP steps as local activities (the SDK heartbeats
# the task past 8 s), so a task of several seconds is the ERP's work, not slow workflow code:
# core warns (TMPRL1104) only for a task longer than its 10-s timeout. An operator's value wins.
WFT_DURATION_WARN = ("TEMPORAL_WORKFLOW_TASK_DURATION_WARN_SECONDS", "10")


def worker_activities(runtime: Runtime) -> list:
    """What the main queue's worker registers: every activity of every group."""
    return [fn for group in ACTIVITY_GROUPS for fn in group(runtime).all()]


def build_worker(client: Client, runtime: Runtime, task_queue: str) -> Worker:
    os.environ.setdefault(*WFT_DURATION_WARN)
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS,
                  activities=worker_activities(runtime), max_concurrent_activities=200,
                  interceptors=interceptors(runtime))


def erp_worker_limits(requests_per_minute: int) -> dict[str, float | int]:
    """The quota queue's limits. The request gate (activities/quota.py) sets the exact pace;
    the server's rate (shared by every worker of the queue, on every host: most activities
    make one to three requests) is a ceiling that keeps a backlog in Temporal, where it is
    seen. A few attempts in flight per worker keep a request always waiting for the next
    slot, while bounding how long a started attempt waits for its own."""
    per_second = requests_per_minute / 60
    return {"max_task_queue_activities_per_second": 2 * per_second,
            "max_concurrent_activities": min(50, max(8, math.ceil(2 * per_second)))}


def erp_activities(runtime: Runtime) -> list:
    """What a quota queue's worker registers: the ERP steps (activities/orders.ERP_STEPS),
    the only activities OrderSync sends to that queue."""
    return [fn for fn in OrderActivities(runtime).all() if activity_name(fn) in ERP_STEP_NAMES]


def build_erp_worker(client: Client, runtime: Runtime, task_queue: str,
                     conn: Connection) -> Worker | None:
    """The worker of a connection's ERP quota queue, or None when it has no quota."""
    queue = erp_queue(task_queue, conn.id, conn.erp_requests_per_minute)
    if queue is None:
        return None
    return Worker(client, task_queue=queue, activities=erp_activities(runtime),
                  interceptors=interceptors(runtime),
                  **erp_worker_limits(conn.erp_requests_per_minute))


async def run_erp_workers(client: Client, runtime: Runtime, task_queue: str,
                          every: float = SETTINGS_REREAD_SECONDS) -> None:
    """Keep one ERP quota worker per connection that has a quota (connections added or
    changed later are picked up within ``every`` seconds), and read each connection's vouch
    mark (activities/vouch.py) as soon as the process sees it."""
    running: dict[str, tuple[int | None, Worker, asyncio.Task]] = {}
    try:
        while True:
            for conn in runtime.store.list_connections():
                vouch_marks(runtime).warm(conn)  # this process's vouch mark, read early
                have = running.get(conn.id)
                if have and have[0] == conn.erp_requests_per_minute:
                    continue
                if have:
                    await have[1].shutdown()
                    running.pop(conn.id)
                worker = build_erp_worker(client, runtime, task_queue, conn)
                if worker is not None:
                    running[conn.id] = (conn.erp_requests_per_minute, worker,
                                        asyncio.create_task(worker.run()))
            await asyncio.sleep(every)
    finally:
        for _, worker, _task in running.values():
            await worker.shutdown()


async def run(env: Environment | None = None) -> None:
    """With ``ML_CONNECTOR_METRICS_ADDRESS`` set, the client carries the Prometheus runtime
    (the SDK's metrics and the interceptor's) and the freshness gauges are kept current."""
    from starter.metrics import freshness_loop, metrics_runtime
    from starter.temporal import connect

    env = env or Environment()
    store = open_store(env)
    telemetry = metrics_runtime()
    client = await connect(env, store.vault.keyring,
                           **({"runtime": telemetry} if telemetry else {}))
    runtime = worker_runtime(store, client)
    freshness = (asyncio.create_task(freshness_loop(telemetry.metric_meter, store))
                 if telemetry else None)
    quotas = asyncio.create_task(run_erp_workers(client, runtime, env.task_queue))
    try:
        await build_worker(client, runtime, env.task_queue).run()
    finally:
        quotas.cancel()
        if freshness is not None:
            freshness.cancel()
        await runtime.aclose()
