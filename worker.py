"""Runs the Temporal workers of one process: every workflow and activity of ml-connector on
its task queue, and one rate-limited worker per connection with an ERP quota."""
from __future__ import annotations

import asyncio
import os

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from activities.heartbeat import HeartbeatInterceptor
from activities.interceptors import ObservabilityInterceptor
from activities.customers import CustomerActivities
from activities.orders import OrderActivities
from activities.poll import PollActivities
from activities.runtime import Runtime, connector_module
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
DEFAULT_REQUESTS_PER_ACTIVITY = 3.0
# The share of the licensed rate the quota queue is paced to: an activity's requests vary
# around the module's average, so riding exactly at the licence would trip it at times.
QUOTA_HEADROOM = 0.85


def interceptors() -> list:
    """Heartbeats (a killed worker's attempts retry in seconds) and logs/metrics."""
    return [HeartbeatInterceptor(), ObservabilityInterceptor()]  # the ERP module's REQUESTS_PER_ACTIVITY says otherwise


def build_worker(client: Client, runtime: Runtime, task_queue: str) -> Worker:
    activities = [fn for group in ACTIVITY_GROUPS for fn in group(runtime).all()]
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities,
                  max_concurrent_activities=200, interceptors=interceptors())


def build_erp_worker(client: Client, runtime: Runtime, task_queue: str,
                     conn: Connection) -> Worker | None:
    """The worker of a connection's ERP quota queue, or None when it has no quota. The server
    enforces ``max_task_queue_activities_per_second`` across every worker of the queue, on
    every host, so N workers share one licensed rate instead of each spending it."""
    queue = erp_queue(task_queue, conn.id, conn.erp_requests_per_minute)
    if queue is None:
        return None
    orders = OrderActivities(runtime)
    per_activity = getattr(connector_module(conn.erp_system), "REQUESTS_PER_ACTIVITY",
                           DEFAULT_REQUESTS_PER_ACTIVITY)
    rate = conn.erp_requests_per_minute * QUOTA_HEADROOM / 60 / per_activity
    return Worker(client, task_queue=queue,
                  activities=[fn for fn in orders.all() if activity_name(fn) in ERP_ACTIVITIES],
                  max_task_queue_activities_per_second=rate, max_concurrent_activities=50,
                  interceptors=interceptors())


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
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    os._exit(0)
