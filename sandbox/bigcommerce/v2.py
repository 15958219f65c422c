"""The v2 routes: orders, their products, addresses, coupons, taxes, shipments, and order statuses."""
from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from sandbox.bigcommerce.listing import filter_orders, respond, the_order, v2_list
from sandbox.bigcommerce.wire import ApiError, STATUSES, dec, now_utc

if TYPE_CHECKING:
    from sandbox.bigcommerce.listing import Call


async def v2_orders(call: Call) -> Response:
    if call.request.method == "POST":
        return respond(call.store.order_json(call.store.create_order(call.body)), "v2")
    store = call.store
    return v2_list(call, [store.order_json(o) for o in filter_orders(call)])


async def v2_orders_count(call: Call) -> Response:
    return respond({"count": len(filter_orders(call))}, "v2")


async def v2_order(call: Call) -> Response:
    order, store = the_order(call), call.store
    if call.request.method == "PUT":
        store.update_order(order, call.body)
    elif call.request.method == "DELETE":
        order["is_deleted"] = True
        store.emit("store/order/archived", {"type": "order", "id": order["id"]})
        return Response(status_code=204)
    return respond(store.order_json(order), "v2")


async def v2_products(call: Call) -> Response:
    order = the_order(call)
    return v2_list(call, [call.store.product_line_json(order, ln) for ln in order["lines"]])


async def v2_addresses(call: Call) -> Response:
    order = the_order(call)
    return v2_list(call, [call.store.address_json(order, a) for a in order["addresses"]])


async def v2_coupons(call: Call) -> Response:
    return v2_list(call, call.store.coupon_rows(the_order(call)))


async def v2_taxes(call: Call) -> Response:
    details = call.params.get("details", "false").lower() == "true"
    return v2_list(call, call.store.tax_rows(the_order(call), details))


async def v2_shipments(call: Call) -> Response:
    """Shipments: POST ships units of order products to an address; the order becomes
    Shipped (2) when every unit is, else Partially Shipped (3)."""
    order, store = the_order(call), call.store
    if call.request.method == "GET":
        return v2_list(call, list(order.setdefault("shipments", [])))
    body = call.body if isinstance(call.body, dict) else {}
    address = next((a for a in order["addresses"] if a["id"] == body.get("order_address_id")), None)
    items = body.get("items")
    if address is None:
        raise ApiError(400, "The field 'order_address_id' is invalid.")
    if not isinstance(items, list) or not items:
        raise ApiError(400, "The field 'items' is invalid.")
    for item in items:
        line = next((ln for ln in order["lines"] if ln["id"] == item.get("order_product_id")), None)
        qty = int(dec(item.get("quantity", 0), "quantity"))
        if line is None or qty < 1 or qty > line["quantity"] - line.get("quantity_shipped", 0):
            raise ApiError(400, "The field 'items' is invalid.")
    for item in items:
        line = next(ln for ln in order["lines"] if ln["id"] == item["order_product_id"])
        line["quantity_shipped"] = line.get("quantity_shipped", 0) + int(item["quantity"])
    shipment = {"id": store.next_id("shipment", 1), "order_id": order["id"], "customer_id": order["customer_id"],
                "order_address_id": address["id"], "date_created": now_utc(),
                "tracking_number": str(body.get("tracking_number") or "")[:50],
                "shipping_method": str(body.get("shipping_method") or ""),
                "shipping_provider": str(body.get("shipping_provider") or ""),
                "tracking_carrier": str(body.get("tracking_carrier") or ""),
                "comments": str(body.get("comments") or ""), "items": [
                    {"order_product_id": i["order_product_id"], "product_id": 0, "quantity": int(i["quantity"])}
                    for i in items]}
    order.setdefault("shipments", []).append(shipment)
    done = all(ln.get("quantity_shipped", 0) >= ln["quantity"] for ln in order["lines"])
    store.emit("store/shipment/created", {"type": "shipment", "id": shipment["id"], "orderId": order["id"]})
    store.order_status(order, 2 if done else 3)
    store.touch(order)
    return respond(shipment, "v2", 201)


async def v2_statuses(call: Call) -> Response:
    return respond([{"id": i, "name": n, "system_label": n, "custom_label": n,
                     "system_description": ""} for i, n in STATUSES.items()], "v2")
