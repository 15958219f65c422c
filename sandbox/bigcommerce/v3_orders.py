"""The v3 order routes: transactions, capture, refund quotes and refunds."""
from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from sandbox.bigcommerce.listing import csv, date_param, respond, the_order, v3_list
from sandbox.bigcommerce.wire import ApiError

if TYPE_CHECKING:
    from sandbox.bigcommerce.listing import Call


# ---- v3 handlers ---------------------------------------------------------------------------

async def v3_transactions(call: Call) -> Response:
    order = the_order(call)
    return v3_list(call, list(order["transactions"]), empty_204=True)


async def v3_capture(call: Call) -> Response:
    call.store.capture(the_order(call))
    return respond({"data": {}, "meta": {}}, "v3", 201)


async def v3_refund_quotes(call: Call) -> Response:
    quote = call.store.quote(the_order(call), call.body)
    quote = {k: v for k, v in quote.items() if k != "items"}
    return respond({"data": quote, "meta": {}}, "v3", 201)


async def v3_order_refunds(call: Call) -> Response:
    order, store = the_order(call), call.store
    if call.request.method == "POST":
        refund = await store.create_refund(order, call.body)
        return respond({"data": store.refund_json(refund), "meta": {}}, "v3", 201)
    return v3_list(call, [store.refund_json(store.refunds[r]) for r in sorted(order["refund_ids"])])


async def v3_all_refunds(call: Call) -> Response:
    store = call.store
    refunds = sorted(store.refunds.values(), key=lambda r: r["id"])
    if order_ids := csv(call, "order_id:in"):
        refunds = [r for r in refunds if str(r["order_id"]) in order_ids]
    if ids := csv(call, "id:in"):
        refunds = [r for r in refunds if str(r["id"]) in ids]
    for name, cmp in (("created:min", 1), ("created:max", -1)):
        if call.params.get(name):
            bound = date_param(call.params[name], name)
            refunds = [r for r in refunds if (r["created"] >= bound if cmp > 0 else r["created"] <= bound)]
    return v3_list(call, [store.refund_json(r) for r in refunds])


async def v3_refund(call: Call) -> Response:
    refund = call.store.refunds.get(call.ids[0])
    if refund is None:
        raise ApiError(404, f"Refund with id [{call.ids[0]}] not found")
    return respond({"data": call.store.refund_json(refund), "meta": {}}, "v3")
