"""Runs the Temporal workers of one process: every workflow and activity of ml-connector on
its task queue, and one rate-limited worker per connection with an ERP quota."""
from __future__ import annotations

import asyncio
import math
import os

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from activities.heartbeat import HeartbeatInterceptor
from activities.interceptors import ObservabilityInterceptor
from activities.quota import QuotaInterceptor
from activities.customers import CustomerActivities
from activities.orders import OrderActivities
from activities.poll import PollActivities
from activities.runtime import Runtime
from activities.shipments import ShipmentActivities
from activities.webhooks import WebhookActivities
from connections.config import Connection, Environment, open_store
from workflows.backfill import Backfill
from workflows.catalog import CatalogPush
from workflows.customers import CustomerSync, StoreCustomerChanged
from workflows.dispatch import erp_queue
from workflows.order import OrderSync
from workflows.poll import OrderPoll
from workflows.shipments import ShipmentSync
from workflows.webhooks import WebhookHealth

WORKFLOWS = [OrderSync, OrderPoll, Backfill, CatalogPush, WebhookHealth, ShipmentSync,
             CustomerSync, StoreCustomerChanged]
ACTIVITY_GROUPS = (OrderActivities, PollActivities, CatalogActivities, WebhookActivities,
                   ShipmentActivities, CustomerActivities)


# The activities that call the ERP on an order's behalf: on a connection with an ERP quota
# they run on its own task queue (workflows/dispatch.erp_queue).
ERP_ACTIVITIES = ("upsert_customer", "post_invoice", "post_credit_memo", "post_receipt",
                  "post_adjustment")


def interceptors(runtime: Runtime) -> list:
    """Heartbeats (a killed worker's attempts retry in seconds), the connection's ERP request
    rate (activities/quota.py), and logs/metrics."""
    return [HeartbeatInterceptor(), QuotaInterceptor(runtime.store), ObservabilityInterceptor()]


# An order's workflow task runs its first-try ERP steps as local activities (the SDK heartbeats
# the task past 8 s), so a task of several seconds is the ERP's work, not slow workflow code:
# core warns (TMPRL1104) only for a task longer than its 10-s timeout. An operator's value wins.
WFT_DURATION_WARN = ("TEMPORAL_WORKFLOW_TASK_DURATION_WARN_SECONDS", "10")


def build_worker(client: Client, runtime: Runtime, task_queue: str) -> Worker:
    os.environ.setdefault(*WFT_DURATION_WARN)
    activities = [fn for group in ACTIVITY_GROUPS for fn in group(runtime).all()]
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities,
                  max_concurrent_activities=200, interceptors=interceptors(runtime))


def erp_worker_limits(requests_per_minute: int) -> dict[str, float | int]:
    """The quota queue's limits. The request gate (activities/quota.py) sets the exact pace;
    the server's rate (shared by every worker of the queue, on every host: most activities
    make one to three requests) is a ceiling that keeps a backlog in Temporal, where it is
    seen. A few attempts in flight per worker keep a request always waiting for the next
    slot, while bounding how long a started attempt waits for its own."""
    per_second = requests_per_minute / 60
    return {"max_task_queue_activities_per_second": 2 * per_second,
            "max_concurrent_activities": min(50, max(8, math.ceil(2 * per_second)))}


def build_erp_worker(client: Client, runtime: Runtime, task_queue: str,
                     conn: Connection) -> Worker | None:
    """The worker of a connection's ERP quota queue, or None when it has no quota."""
    queue = erp_queue(task_queue, conn.id, conn.erp_requests_per_minute)
    if queue is None:
        return None
    orders = OrderActivities(runtime)
    return Worker(client, task_queue=queue,
                  activities=[fn for fn in orders.all() if activity_name(fn) in ERP_ACTIVITIES],
                  interceptors=interceptors(runtime),
                  **erp_worker_limits(conn.erp_requests_per_minute))


def activity_name(fn) -> str:
    return getattr(fn, "__temporal_activity_definition").name


async def run_erp_workers(client: Client, runtime: Runtime, task_queue: str,
                          every: float = 30.0) -> None:
    """Keep one ERP quota worker per connection that has a quota (connections added or
    changed later are picked up within ``every`` seconds)."""
    running: dict[str, tuple[int | None, Worker, asyncio.Task]] = {}
    try:
        while True:
            for conn in runtime.store.list_connections():
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
    runtime = Runtime(store, client=client)
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


if __name__ == "__main__":
    import logging

    from starter import eventloop
    from starter.logs import configure

    configure(logging.INFO)  # as ``ml-connector worker`` logs: redacted, no debug lines
    try:
        eventloop.run(run())
    except KeyboardInterrupt:
        pass
    os._exit(0)
