"""Exact Online goods deliveries back to WooCommerce through the real ShipmentSync workflow: the
buyer's order shows completed with the tracking number, once."""
from __future__ import annotations

import uuid

from activities.messages import ConnectionInput, ShipmentReport
from tests.integration.test_pairs import wait_docs

API = "wp-json/wc/v3/"
TRACKING_META = "_wc_shipment_tracking_items"


async def shipment_sync(stack, conn) -> ShipmentReport:
    return await stack.client.execute_workflow(
        "ShipmentSync", ConnectionInput(connection_id=conn.id), result_type=ShipmentReport,
        id=f"shipments/{conn.id}/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue)


async def test_exact_delivery_completes_the_store_order_with_tracking_once(stack_factory):
    stack = await stack_factory(store_system="woocommerce", erp_system="exact_online")
    conn = await stack.add_connection(f"sh-{uuid.uuid4().hex[:8]}")
    ref_of = lambda order_id: f"{conn.mappings.document_prefix}{order_id}"  # noqa: E731
    async with stack.store_client() as shop:
        shipped = await stack.shop_sandbox.place_order(shop, quantities=(2, 1))
        waiting = await stack.shop_sandbox.place_order(shop, quantities=(1,))
    await wait_docs(stack, ref_of(shipped.id))
    await wait_docs(stack, ref_of(waiting.id))
    assert (await shipment_sync(stack, conn)).marked == 0  # nothing delivered yet

    delivery = await stack.erp_sandbox.record_delivery(
        stack.http, stack.erp_server.url, ref_of(shipped.id), "3SABCD1234567", "POSTNL")
    report = await shipment_sync(stack, conn)
    assert (report.seen, report.marked, report.unknown) == (1, 1, []), report

    async with stack.store_client() as shop:
        order = (await shop.get(f"{API}orders/{shipped.id}")).json()
        other = (await shop.get(f"{API}orders/{waiting.id}")).json()
    assert order["status"] == "completed" and other["status"] != "completed"
    [items] = [m["value"] for m in order["meta_data"] if m["key"] == TRACKING_META]
    assert [(i["tracking_number"], i["tracking_provider"], i["tracking_id"]) for i in items] == [
        ("3SABCD1234567", "POSTNL", str(delivery["DeliveryNumber"]))]

    again = await shipment_sync(stack, conn)
    assert again.marked == 0, again
    row = stack.store.ledger_get(conn.id, "shipment", str(delivery["DeliveryNumber"]))
    assert row is not None and row.state == "posted" and row.order_number == shipped.id
