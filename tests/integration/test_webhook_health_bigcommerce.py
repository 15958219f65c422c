"""BigCommerce webhook health over real sockets: deliveries fail until the store deactivates
the hooks (its documented retry schedule, compressed by ``retry_time_scale``); the poll posts
what the outage hid, WebhookHealth re-activates the hooks (``is_active: true``, re-keyed) and
the connection polls at its tighter cadence until the hooks are healthy again."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from activities.messages import ConnectionInput, WebhookReport
from activities.webhooks import webhook_state
from starter.demo import catch_up
from tests.integration.conftest import eventually
from tests.integration.helpers import settled
from tests.integration.test_pairs import wait_docs
from starter.schedules import apply_schedules, schedule_id

# 11 retries from 60 s to 86400 s (~48 h) become ~1.7 s.
RETRY_TIME_SCALE = 0.00001
BROKEN = ("store/order/created", "store/order/updated")  # the hooks orders fire


async def webhook_health(stack, conn) -> WebhookReport:
    return await stack.client.execute_workflow(
        "WebhookHealth", ConnectionInput(connection_id=conn.id), result_type=WebhookReport,
        id=f"WebhookHealth/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue)


async def poll_interval(stack, conn_id: str) -> timedelta:
    desc = await stack.client.get_schedule_handle(schedule_id("poll", conn_id)).describe()
    return desc.schedule.spec.intervals[0].every


async def hooks(stack) -> dict[str, dict]:
    """The store's hooks by scope, as its API shows them."""
    async with stack.store_client() as admin:
        body = (await admin.get("v3/hooks")).json()
    return {h["scope"]: h for h in body["data"]}


def delivered(deliveries: list[dict], order_id: str) -> bool:
    return any(str(d["resource_id"]) == order_id and d["status"] is not None
               and 200 <= d["status"] < 300 for d in deliveries)


async def test_outage_until_deactivated_poll_posts_everything_hook_reactivated(stack_factory):
    stack = await stack_factory(store_system="bigcommerce",
                                store_options={"retry_time_scale": RETRY_TIME_SCALE})
    sb, url = stack.shop_sandbox, stack.shop.url
    conn = await stack.add_connection(f"bc-outage-{uuid.uuid4().hex[:6]}")
    await apply_schedules(stack.client, conn, stack.task_queue)
    keyed = {scope: h["headers"] for scope, h in (await hooks(stack)).items()}
    started = datetime.now(timezone.utc) - timedelta(minutes=1)

    await sb.outage(stack.http, url, 100_000)  # every delivery attempt fails
    async with stack.store_client() as admin:
        placed = [await sb.place_order(admin, quantities=(1,)) for _ in range(2)]

    async def deactivated():
        now = await hooks(stack)
        return now if not any(now[scope]["is_active"] for scope in BROKEN) else None

    await eventually(deactivated, timeout=30)  # the retry schedule ran out
    # events still in their retry schedule are dropped at their next attempt, not delivered
    # late once the hooks are back
    await stack.control("bigcommerce", "/_sandbox/webhooks/wait-idle", {"retries": True})
    async with stack.store_client() as admin:  # while deactivated: no delivery at all
        placed.append(await sb.place_order(admin, quantities=(2,)))
    await sb.outage(stack.http, url, 0)

    report = await webhook_health(stack, conn)
    assert sorted(report.repairs) == [f"re-enabled {scope} (was disabled)" for scope in BROKEN]
    now = await hooks(stack)
    assert all(h["is_active"] for h in now.values())
    assert {scope: h["headers"] for scope, h in now.items()} == keyed  # same secret header
    assert webhook_state(stack.store, conn.id)["polling_mode"] is True
    assert await poll_interval(stack, conn.id) == timedelta(minutes=conn.polling_mode_minutes)

    await catch_up(stack, conn.id, since=started)
    for order in placed:
        await wait_docs(stack, f"{sb.prefix}{order.id}")
    rec = await settled(stack, conn)
    assert rec.paid_orders == len(placed) and rec.duplicates == []
    deliveries = await stack.control("bigcommerce", "/_sandbox/webhooks/deliveries")
    assert not any(delivered(deliveries, order.id) for order in placed)  # the poll posted them

    healthy = await webhook_health(stack, conn)
    assert healthy.repairs == [] and webhook_state(stack.store, conn.id)["polling_mode"] is False
    assert await poll_interval(stack, conn.id) == timedelta(minutes=conn.poll_minutes)

    async with stack.store_client() as admin:  # the re-activated hooks deliver again
        later = await sb.place_order(admin)
    await wait_docs(stack, f"{sb.prefix}{later.id}")
    await sb.wait_deliveries(stack.http, url)
    assert delivered(await stack.control("bigcommerce", "/_sandbox/webhooks/deliveries"), later.id)
    rec = await settled(stack, conn)
    assert rec.paid_orders == len(placed) + 1 and rec.duplicates == []
