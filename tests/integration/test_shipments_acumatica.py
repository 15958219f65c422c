"""Acumatica shipments back to the store through the real ShipmentSync workflow: an order
posted as a sales order, shipped and confirmed in Acumatica, shows shipped with its tracking
number in WooCommerce and in BigCommerce, once."""
from __future__ import annotations

import uuid

from activities.messages import ConnectionInput, ShipmentReport
from tests.integration.helpers import wait_order_state

WC_API = "wp-json/wc/v3/"
TRACKING_META = "_wc_shipment_tracking_items"
SHIPPED = 2  # BigCommerce status_id "Shipped"


async def shipment_sync(stack, conn) -> ShipmentReport:
    return await stack.client.execute_workflow(
        "ShipmentSync", ConnectionInput(connection_id=conn.id), result_type=ShipmentReport,
        id=f"shipments/{conn.id}/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue)


async def shipped_and_waiting(stack_factory, store_system: str):
    """Two orders booked as Acumatica sales orders; the first shipped and confirmed there."""
    stack = await stack_factory(store_system=store_system, erp_system="acumatica")
    conn = await stack.add_connection(f"sh-{uuid.uuid4().hex[:8]}",
                                      erp={"document_type": "sales_order"})
    async with stack.store_client() as shop:
        shipped = await stack.shop_sandbox.place_order(shop, quantities=(2, 1))
        waiting = await stack.shop_sandbox.place_order(shop, quantities=(1,))
    for order in (shipped, waiting):  # invoice (the sales order) and receipt both posted
        await wait_order_state(stack, conn.id, order.id)
    assert (await shipment_sync(stack, conn)).marked == 0  # nothing shipped yet

    ref = f"{conn.mappings.document_prefix}{shipped.id}"
    shipment = await stack.erp_sandbox.record_shipment(
        stack.http, stack.erp_server.url, ref, "1Z999AA10123456784", ship_via="UPSGROUND")
    assert shipment["status"] == "Confirmed"
    report = await shipment_sync(stack, conn)
    assert (report.seen, report.marked, report.unknown) == (1, 1, []), report
    return stack, conn, shipped, waiting, shipment


async def marked_once(stack, conn, shipped, shipment) -> None:
    again = await shipment_sync(stack, conn)
    assert again.marked == 0, again
    row = stack.store.ledger_get(conn.id, "shipment", shipment["shipment_nbr"])
    assert row is not None and row.state == "posted" and row.order_number == shipped.id


async def test_acumatica_shipment_completes_the_woocommerce_order_with_tracking_once(stack_factory):
    stack, conn, shipped, waiting, shipment = await shipped_and_waiting(stack_factory, "woocommerce")
    async with stack.store_client() as shop:
        order = (await shop.get(f"{WC_API}orders/{shipped.id}")).json()
        other = (await shop.get(f"{WC_API}orders/{waiting.id}")).json()
    assert order["status"] == "completed" and other["status"] != "completed"
    [items] = [m["value"] for m in order["meta_data"] if m["key"] == TRACKING_META]
    assert [(i["tracking_number"], i["tracking_provider"], i["tracking_id"]) for i in items] == [
        ("1Z999AA10123456784", "UPSGROUND", shipment["shipment_nbr"])]
    await marked_once(stack, conn, shipped, shipment)


async def test_acumatica_shipment_ships_the_bigcommerce_order_with_tracking_once(stack_factory):
    stack, conn, shipped, waiting, shipment = await shipped_and_waiting(stack_factory, "bigcommerce")
    async with stack.store_client() as shop:
        order = (await shop.get(f"v2/orders/{shipped.id}")).json()
        other = (await shop.get(f"v2/orders/{waiting.id}")).json()
        [bc_shipment] = (await shop.get(f"v2/orders/{shipped.id}/shipments")).json()
        products = (await shop.get(f"v2/orders/{shipped.id}/products")).json()
    assert order["status_id"] == SHIPPED and other["status_id"] != SHIPPED
    assert (bc_shipment["tracking_number"], bc_shipment["shipping_method"]) == (
        "1Z999AA10123456784", "UPSGROUND")
    assert f"ERP shipment {shipment['shipment_nbr']}" in bc_shipment["comments"]
    assert sorted((i["order_product_id"], i["quantity"]) for i in bc_shipment["items"]) == sorted(
        (p["id"], p["quantity"]) for p in products)
    await marked_once(stack, conn, shipped, shipment)
    async with stack.store_client() as shop:
        assert len((await shop.get(f"v2/orders/{shipped.id}/shipments")).json()) == 1
