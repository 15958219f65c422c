"""Runs one Temporal worker: every workflow and activity of ml-connector on its task queue."""
from __future__ import annotations

import asyncio
import os

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from activities.customers import CustomerActivities
from activities.orders import OrderActivities
from activities.poll import PollActivities
from activities.runtime import Runtime
from activities.shipments import ShipmentActivities
from activities.webhooks import WebhookActivities
from connections.config import Environment, open_store
from workflows.backfill import Backfill
from workflows.catalog import CatalogPush
from workflows.customers import CustomerSync, StoreCustomerChanged
from workflows.order import OrderSync
from workflows.poll import OrderPoll
from workflows.shipments import ShipmentSync
from workflows.webhooks import WebhookHealth

WORKFLOWS = [OrderSync, OrderPoll, Backfill, CatalogPush, WebhookHealth, ShipmentSync,
             CustomerSync, StoreCustomerChanged]
ACTIVITY_GROUPS = (OrderActivities, PollActivities, CatalogActivities, WebhookActivities,
                   ShipmentActivities, CustomerActivities)


def build_worker(client: Client, runtime: Runtime, task_queue: str) -> Worker:
    activities = [fn for group in ACTIVITY_GROUPS for fn in group(runtime).all()]
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities,
                  max_concurrent_activities=200)


async def run(env: Environment | None = None) -> None:
    from starter.temporal import connect

    env = env or Environment()
    store = open_store(env)
    client = await connect(env, store.vault.keyring)
    runtime = Runtime(store, client=client)
    try:
        await build_worker(client, runtime, env.task_queue).run()
    finally:
        await runtime.aclose()


if __name__ == "__main__":
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    os._exit(0)
