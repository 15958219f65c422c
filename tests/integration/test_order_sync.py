"""WooCommerce → Acumatica over real sockets: a real Temporal server, the sandboxes over TLS,
the receiver and a worker. Assertions are on the ERP sandbox's books."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import uuid
from decimal import Decimal

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from activities.messages import OrderEvent
from connections.config import WEBHOOK_SECRET
from starter.demo import books, catch_up, drive_day, settle
from tests.integration.conftest import eventually
from tests.integration.helpers import (documents, get_order, place_order, refund, sign,
                                       update_order, wait_documents)
from starter.dispatch import signal_order
from starter.receiver import MAX_BODY
from workflows.order import order_workflow_id

HISTORIES = Path(__file__).parents[1] / "histories"


async def test_paid_order_posts_one_customer_and_one_invoice(stack):
    conn = await stack.add_connection(unique_id())
    order = await place_order(stack)
    [doc] = await wait_documents(stack, f"WC-{order['id']}")
    assert doc["type"] == "Invoice"
    assert Decimal(str(doc["amount"])) == Decimal(order["total"])
    assert doc["currency"] == order["currency"]
    assert doc["customer_order"] == order["number"]
    customers = await stack.control("acumatica", "/_sandbox/customers")
    assert len(customers) == 1
    row = await posted(stack, conn.id, "invoice", order["id"])
    assert row.erp_ref["number"] == doc["number"]


async def test_same_webhook_three_times_posts_one_invoice(stack):
    conn = await stack.add_connection(unique_id(), register_webhooks=False)
    order = await place_order(stack)
    body = json.dumps(await get_order(stack, order["id"]), separators=(",", ":")).encode()
    headers = {"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Resource": "order",
               "X-WC-Webhook-Event": "created", "X-WC-Webhook-ID": "1",
               "X-WC-Webhook-Delivery-ID": "d1", "Content-Type": "application/json",
               "X-WC-Webhook-Signature": sign(body, stack.store.get_secret(conn.id, WEBHOOK_SECRET))}
    async with httpx.AsyncClient() as http:
        answers = await asyncio.gather(*[http.post(stack.webhook_url(conn.id), content=body,
                                                   headers=headers) for _ in range(3)])
    assert [a.status_code for a in answers] == [200, 200, 200]
    await wait_documents(stack, f"WC-{order['id']}")
    await asyncio.sleep(2)
    assert len(await documents(stack, f"WC-{order['id']}")) == 1


async def test_lost_response_after_commit_still_one_invoice(stack):
    conn = await stack.add_connection(unique_id())
    first = await place_order(stack)  # the buyer is known afterwards: the next write is the invoice
    await posted(stack, conn.id, "order", first["id"])  # its receipt too: nothing else is writing
    await stack.control("acumatica", "/_sandbox/faults", {"lose_next_commits": 1})
    order = await place_order(stack)
    row = await posted(stack, conn.id, "invoice", order["id"])
    assert row.attempts >= 2  # the first attempt committed, but its answer was lost
    await asyncio.sleep(1)
    assert len(await documents(stack, f"WC-{order['id']}")) == 1


async def test_429_storm_completes_after_reset_without_extra_documents(stack):
    conn = await stack.add_connection(unique_id())
    await stack.control("acumatica", "/_sandbox/faults", {"storm_429": 6, "retry_after": 1})
    orders = [await place_order(stack) for _ in range(3)]
    for order in orders:
        await wait_documents(stack, f"WC-{order['id']}")
    stats = await stack.control("acumatica", "/_sandbox/stats")
    assert stats["throttled"] >= 6
    assert len([d for d in await documents(stack) if d["type"] == "Invoice"]) == 3


async def test_expired_token_refreshes_once_and_continues(stack):
    conn = await stack.add_connection(unique_id())
    first = await place_order(stack)
    await wait_documents(stack, f"WC-{first['id']}")
    before = (await stack.control("acumatica", "/_sandbox/stats"))["token_requests"]
    await stack.control("acumatica", "/_sandbox/faults", {"expire_tokens": True})
    second = await place_order(stack)
    await wait_documents(stack, f"WC-{second['id']}")
    after = (await stack.control("acumatica", "/_sandbox/stats"))["token_requests"]
    assert after - before == 1


async def test_refund_before_invoice_posts_credit_memo_after_invoice(stack):
    conn = await stack.add_connection(unique_id())
    await stack.stop_worker()  # the connector is down while the order is paid and refunded
    order = await place_order(stack, quantities=(3,))
    order = await get_order(stack, order["id"])
    r = await refund(stack, order, line_qty=1)
    stack.start_worker()
    await posted(stack, conn.id, "credit_memo", r["id"])
    [memo] = await documents(stack, f"WC-{order['id']}-R{r['id']}")
    [invoice] = await documents(stack, f"WC-{order['id']}")
    assert memo["type"] == "Credit Memo"
    assert Decimal(str(memo["amount"])) == Decimal(r["amount"])
    # The payment closed the invoice before the refund: the memo stays open as customer credit.
    assert memo["applications"] == [] and memo["status"] == "Open"
    assert (invoice["status"], Decimal(str(invoice["balance"]))) == ("Closed", 0)


async def test_partial_and_amount_only_refunds_each_post_once(stack):
    conn = await stack.add_connection(unique_id())
    order = await place_order(stack, quantities=(3, 2))
    await wait_documents(stack, f"WC-{order['id']}")
    order = await get_order(stack, order["id"])
    r1 = await refund(stack, order, line_qty=1)
    await wait_documents(stack, f"WC-{order['id']}-R{r1['id']}")
    r2 = await refund(stack, order, amount="4.00")
    [memo2] = await wait_documents(stack, f"WC-{order['id']}-R{r2['id']}")
    assert Decimal(str(memo2["amount"])) == Decimal("4.00")
    await signal_order(stack.client, conn.id, str(order["id"]), OrderEvent(kind="replay"),
                       task_queue=stack.task_queue)
    await asyncio.sleep(2)
    assert len([d for d in await documents(stack) if d["type"] == "Credit Memo"]) == 2


async def test_wrong_endpoint_version_fails_naming_the_version(stack):
    conn = await stack.add_connection(unique_id(), erp={"endpoint_version": "23.100.001"})
    order = await place_order(stack)
    handle = stack.client.get_workflow_handle(order_workflow_id(conn.id, str(order["id"])))
    await eventually(lambda: _exists(handle))
    with pytest.raises(WorkflowFailureError) as err:
        await asyncio.wait_for(handle.result(), 60)
    message = str(err.value.cause)
    assert "23.100.001" in message and "24.200.001" in message
    assert await documents(stack) == []


def unique_id() -> str:
    return f"shop-{uuid.uuid4().hex[:8]}"


async def posted(stack, connection_id: str, kind: str, store_id) -> object:
    async def check():
        row = stack.store.ledger_get(connection_id, kind, str(store_id))
        return row if row and row.state == "posted" else None

    return await eventually(check)


async def _exists(handle) -> bool:
    try:
        await handle.describe()
        return True
    except RPCError:
        return False


async def test_receiver_rejects_bad_signature_and_starts_nothing(stack):
    conn = await stack.add_connection(unique_id(), register_webhooks=False)
    body = json.dumps({"id": 4242, "status": "processing"}).encode()
    headers = {"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Resource": "order",
               "X-WC-Webhook-Event": "created", "X-WC-Webhook-Signature": sign(body, "wrong")}
    async with httpx.AsyncClient() as http:
        bad = await http.post(stack.webhook_url(conn.id), content=body, headers=headers)
        unsigned = await http.post(stack.webhook_url(conn.id), content=body)
        unknown = await http.post(stack.webhook_url("nope"), content=body, headers=headers)
        garbage = await http.post(stack.webhook_url(conn.id), content=b"{not json",
                                  headers={"X-WC-Webhook-Signature": sign(
                                      b"{not json", stack.store.get_secret(conn.id, WEBHOOK_SECRET))})
        # A big body is read while its signature is checked (refused unsigned), and one over
        # the documented cap is refused for its size.
        big = await http.post(stack.webhook_url(conn.id), content=b"x" * (2 * 1024 * 1024))
        huge = await http.post(stack.webhook_url(conn.id), content=b"x" * (MAX_BODY + 1))
        ping = await http.post(stack.webhook_url(conn.id), content=b"webhook_id=9",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (bad.status_code, unsigned.status_code, unknown.status_code) == (401, 401, 404)
    assert (garbage.status_code, big.status_code, huge.status_code, ping.status_code) == (
        400, 401, 413, 200)
    assert not await _exists(stack.client.get_workflow_handle(order_workflow_id(conn.id, "4242")))


async def test_unknown_sku_parks_then_posts_after_mapping(stack):
    conn = await stack.add_connection(unique_id())
    await stack.control("woocommerce", "/_sandbox/products",
                        [{"sku": "NEW-GADGET", "name": "New gadget", "regular_price": "12.00"}])
    async with stack.store_client() as shop:
        new = [p for p in (await shop.get("wp-json/wc/v3/products", params={"sku": "NEW-GADGET"})).json()][0]
    order = await place_order(stack, quantities=(1,), extra_lines=[{"product_id": new["id"], "quantity": 1}])

    async def parked():
        row = stack.store.ledger_get(conn.id, "order", str(order["id"]))
        return row if row and row.state == "parked" else None

    row = await eventually(parked)
    assert "NEW-GADGET" in row.last_error and "Resolution" in row.last_error
    other = await place_order(stack)  # a parked order never blocks the others
    await wait_documents(stack, f"WC-{other['id']}")
    conn = stack.store.get_connection(conn.id)
    conn.mappings.sku_to_item["NEW-GADGET"] = (await _any_stock_item(stack))
    stack.store.save_connection(conn)
    await signal_order(stack.client, conn.id, str(order["id"]), OrderEvent(kind="mapping_changed"),
                       task_queue=stack.task_queue)
    [doc] = await wait_documents(stack, f"WC-{order['id']}")
    assert Decimal(str(doc["amount"])) == Decimal(order["total"])


async def _any_stock_item(stack) -> str:
    docs = await documents(stack)
    return docs[0]["lines"][0]["inventory_id"]


async def test_edit_after_invoice_becomes_an_adjustment(stack):
    conn = await stack.add_connection(unique_id())
    order = await place_order(stack, quantities=(2,))
    await wait_documents(stack, f"WC-{order['id']}")
    item = order["line_items"][0]
    edited = await update_order(stack, order["id"], {"line_items": [{"id": item["id"], "quantity": 3}]})
    [adj] = await wait_documents(stack, f"WC-{order['id']}-A1")
    assert adj["type"] == "Invoice"
    assert Decimal(str(adj["amount"])) == Decimal(edited["total"]) - Decimal(order["total"])


async def test_day_of_traffic_reconciles_to_the_cent(stack):
    conn = await stack.add_connection(unique_id())
    await drive_day(stack, conn.id, orders=30, duplicate_every=5, outage_deliveries=3)
    rec = await settle(stack, conn, timeout=120)
    assert rec.ok, [d.message for d in rec.differences]
    assert rec.paid_orders == 30 and rec.duplicates == [] and rec.difference_cents == 0
    if record := os.environ.get("ML_RECORD_HISTORIES"):  # "1": all; or names: "plain,refunded"
        await record_histories(stack, conn.id, None if record == "1" else record.split(","))


async def record_histories(stack, connection_id: str, only: list[str] | None = None) -> None:
    """Keep a plain order, a refunded order and the catch-up poll for tests/test_replay.py
    (``only``: just those; a history whose workflow did not change is kept as recorded)."""
    wanted: dict = {"plain": None, "refunded": None}
    async for wf in stack.client.list_workflows(f'MlConnection = "{connection_id}"'):
        if wf.workflow_type != "OrderSync":
            continue
        # Each run of an order is its own history: keep one that posted the step it shows,
        # once it has completed.
        handle = stack.client.get_workflow_handle(wf.id, run_id=wf.run_id)
        await asyncio.wait_for(handle.result(follow_runs=False), 30)
        history = await handle.fetch_history()
        steps = local_steps(history)
        kind = ("refunded" if "post_credit_memo" in steps
                else "plain" if "post_invoice" in steps and "post_receipt" in steps else None)
        if kind and wanted[kind] is None:
            wanted[kind] = history
    async for wf in stack.client.list_workflows(f'WorkflowType = "OrderPoll" AND TaskQueue = "{stack.task_queue}"'):
        wanted["poll"] = await stack.client.get_workflow_handle(wf.id).fetch_history()
    for name, history in wanted.items():
        if only is not None and name not in only:
            continue
        assert history is not None, f"no {name} run to record"
        (HISTORIES / f"{name}.json").write_text(history.to_json())


def local_steps(history) -> list[str]:
    """The activity types of a history's local activities, in order (from their markers)."""
    steps = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            data = event.marker_recorded_event_attributes.details["data"].payloads[0].data
            steps.append(json.loads(data).get("activity_type", ""))
    return steps
