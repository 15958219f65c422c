"""Scheduled work over real sockets: webhooks are hints, schedules are the guarantee."""
from __future__ import annotations

import asyncio
import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from temporalio.client import ScheduleActionStartWorkflow

from activities.messages import (BackfillInput, BackfillProgress, CatalogInput, CatalogReport,
                                 ConnectionInput, WebhookReport)
from activities.webhooks import webhook_state
from connectors.woocommerce import BATCH_SIZE
from starter.demo import catch_up
from tests.integration.conftest import eventually
from tests.integration.helpers import place_order, settled, wait_documents, wait_order_state
from starter.schedules import apply_schedules, schedule_id


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def run(stack, workflow: str, arg, result_type):
    return await stack.client.execute_workflow(
        workflow, arg, id=f"{workflow}/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue,
        result_type=result_type)


async def poll_interval(stack, conn_id: str) -> timedelta:
    desc = await stack.client.get_schedule_handle(schedule_id("poll", conn_id)).describe()
    return desc.schedule.spec.intervals[0].every


async def test_outage_until_disabled_poll_posts_everything_hook_reenabled(stack_factory):
    stack = await stack_factory(store_options={"max_webhook_failures": 2})
    conn = await stack.add_connection(uid("outage"))
    await apply_schedules(stack.client, conn, stack.task_queue)
    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    await stack.control("woocommerce", "/_sandbox/webhooks/outage", {"fail_next": 1000})
    shop = stack.runtime.storefront(conn)
    placed = []
    for _ in range(8):  # deliveries fail until the store disables the hooks
        placed.append(await place_order(stack, quantities=(1,)))
        await stack.control("woocommerce", "/_sandbox/webhooks/wait-idle", {})
        if all(h.status == "disabled" for h in await shop.list_webhooks()):
            break
    assert all(h.status == "disabled" for h in await shop.list_webhooks())
    placed.append(await place_order(stack, quantities=(2,)))  # while disabled: no delivery at all
    await stack.control("woocommerce", "/_sandbox/webhooks/outage", {"fail_next": 0})

    report = await run(stack, "WebhookHealth", ConnectionInput(connection_id=conn.id), WebhookReport)
    assert report.repairs and all(r.startswith("re-enabled") for r in report.repairs)
    assert all(h.status == "active" for h in await shop.list_webhooks())
    assert webhook_state(stack.store, conn.id)["polling_mode"] is True
    assert await poll_interval(stack, conn.id) == timedelta(minutes=conn.polling_mode_minutes)

    await catch_up(stack, conn.id, since=started)
    for order in placed:
        await wait_documents(stack, f"WC-{order['id']}")
    rec = await settled(stack, conn)
    assert rec.paid_orders == len(placed) and rec.duplicates == []

    healthy = await run(stack, "WebhookHealth", ConnectionInput(connection_id=conn.id), WebhookReport)
    assert healthy.repairs == [] and webhook_state(stack.store, conn.id)["polling_mode"] is False
    assert await poll_interval(stack, conn.id) == timedelta(minutes=conn.poll_minutes)
    later = await place_order(stack)  # the re-enabled hook delivers again
    await wait_documents(stack, f"WC-{later['id']}")


async def test_catalog_push_of_5000_skus_costs_the_batch_bound(stack_factory):
    stack = await stack_factory(seed=False)
    skus = [f"BULK-{i:05d}" for i in range(5000)]
    await stack.control("woocommerce", "/_sandbox/products", [
        {"sku": s, "name": s, "regular_price": "10.00", "manage_stock": True, "stock_quantity": 1}
        for s in skus])
    await stack.control("acumatica", "/_sandbox/stock-items", [
        {"InventoryID": s, "DefaultPrice": f"{11 + i % 7}.50", "LastCost": "4.00",
         "QtyOnHand": 20 + i % 5, "WarehouseID": "MAIN"} for i, s in enumerate(skus)]
        + [{"InventoryID": "NOT-IN-STORE", "DefaultPrice": "1.00", "LastCost": "1.00",
            "QtyOnHand": 1, "WarehouseID": "MAIN"}])
    conn = await stack.add_connection(uid("cat"), register_webhooks=False)
    report = await run(stack, "CatalogPush", CatalogInput(connection_id=conn.id), CatalogReport)
    assert report.updated == 5000 and report.unknown == ["NOT-IN-STORE"]
    assert report.write_calls == math.ceil(5000 / BATCH_SIZE)
    async with stack.store_client() as admin:
        [p] = (await admin.get("wp-json/wc/v3/products", params={"sku": "BULK-00003"})).json()
    assert (Decimal(p["regular_price"]), p["stock_quantity"]) == (Decimal("14.50"), 23)

    nightly = await run(stack, "CatalogPush", CatalogInput(connection_id=conn.id, full=True),
                        CatalogReport)
    assert (nightly.in_sync, nightly.updated, nightly.write_calls) == (5000, 0, 0)
    async with stack.store_client() as admin:
        await admin.put(f"wp-json/wc/v3/products/{p['id']}", json={"regular_price": "99.00"})
    drift = await run(stack, "CatalogPush", CatalogInput(connection_id=conn.id, full=True),
                      CatalogReport)
    assert (drift.updated, drift.write_calls) == (1, 1)


async def test_backfill_skips_posted_orders_without_erp_writes(stack):
    conn = await stack.add_connection(uid("bf"), register_webhooks=False)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    old = [await place_order(stack, quantities=(1,)) for _ in range(2)]
    await catch_up(stack, conn.id, since=since)
    for order in old:  # both booked in full (invoice and receipt)
        await wait_order_state(stack, conn.id, order["id"])
    log_before = len(await stack.control("acumatica", "/_sandbox/requests"))
    new = [await place_order(stack, quantities=(2,)) for _ in range(2)]
    done = await run(stack, "Backfill", BackfillInput(
        connection_id=conn.id, task_queue=stack.task_queue, since=since,
        until=datetime.now(timezone.utc) + timedelta(minutes=1), window_hours=0.25),
        BackfillProgress)
    assert done.done and (done.orders_seen, done.handed_over) == (4, 2)
    for order in new:
        await wait_documents(stack, f"WC-{order['id']}")
    rec = await settled(stack, conn)
    assert rec.paid_orders == 4
    since_backfill = (await stack.control("acumatica", "/_sandbox/requests"))[log_before:]
    invoices = [r for r in since_backfill if (r["method"], r["entity"]) == ("PUT", "SalesInvoice")]
    assert len(invoices) == 2  # the two new orders; nothing was spent on the two in the books
    assert not any(f"WC-{o['id']}'" in (r.get("query") or "") for o in old for r in since_backfill)


async def test_schedules_apply_is_idempotent_and_survives_a_worker_restart(stack):
    conn = await stack.add_connection(uid("sch"), register_webhooks=False)
    first = await apply_schedules(stack.client, conn, stack.task_queue)
    assert set(first.values()) == {"created"} and len(first) == 6  # reconcile/ included
    again = await apply_schedules(stack.client, conn, stack.task_queue)
    assert set(again) == set(first) and set(again.values()) == {"updated"}
    listed = [s.id async for s in await stack.client.list_schedules()]
    assert set(first) <= set(listed)
    desc = await stack.client.get_schedule_handle(schedule_id("poll", conn.id)).describe()
    assert isinstance(desc.schedule.action, ScheduleActionStartWorkflow)

    await stack.stop_worker()
    stack.start_worker()
    order = await place_order(stack)
    await stack.client.get_schedule_handle(schedule_id("poll", conn.id)).trigger()
    await wait_documents(stack, f"WC-{order['id']}")
    assert stack.store.get_watermark(conn.id, "orders_modified") is not None
    for sid in first:
        await stack.client.get_schedule_handle(sid).delete()


async def test_erp_calls_ride_the_connections_quota_queue(stack):
    """With an ERP quota, the connection's ERP activities run on their own task queue, which
    the server rate limits for every worker at once; the other activities stay on the main."""
    conn = await stack.add_connection(uid("quota"), register_webhooks=False)
    conn.erp_requests_per_minute = 900
    stack.store.save_connection(conn)
    await asyncio.sleep(1.5)  # the worker picks the new quota up
    order = await place_order(stack)
    await catch_up(stack, conn.id, since=datetime.now(timezone.utc) - timedelta(minutes=5))
    await wait_order_state(stack, conn.id, order["id"])
    history = await stack.client.get_workflow_handle(f"order/{conn.id}/{order['id']}").fetch_history()
    queues = {e.activity_task_scheduled_event_attributes.activity_type.name:
              e.activity_task_scheduled_event_attributes.task_queue.name
              for e in history.events if e.HasField("activity_task_scheduled_event_attributes")}
    quota_queue = f"{stack.task_queue}/erp/{conn.id}"
    assert {queues[a] for a in ("upsert_customer", "post_invoice", "post_receipt")} == {quota_queue}
    assert "fetch_order" not in queues  # a local activity of the main queue's worker
