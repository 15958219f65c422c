"""Request handling shared by the routes: paging (v2 page/limit, v3 meta.pagination), field
selection, order filters."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.bigcommerce.dates import read_date
from sandbox.bigcommerce.wire import ApiError, MAX_LIMIT, dec, dumps

if TYPE_CHECKING:
    from sandbox.bigcommerce.state import Store


def date_param(value: str, name: str) -> datetime:
    """A date bound of a list request; an unreadable one is the documented 400."""
    try:
        return read_date(value)
    except ValueError:
        raise ApiError(400, f"The field '{name}' is invalid.") from None


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

@dataclass
class Call:
    request: Request
    store: Store
    version: str
    params: dict[str, str]
    body: Any
    ids: list[int]


def respond(data: Any, version: str, status: int = 200) -> Response:
    if status == 204:
        return Response(status_code=204)
    return Response(dumps(data, version), status_code=status, media_type="application/json")


def page_args(p: dict[str, str], version: str) -> tuple[int, int]:
    try:
        page = int(p.get("page", 1))
        limit = int(p.get("limit", 50))
    except ValueError:
        raise ApiError(400, "The field 'page' or 'limit' is invalid.") from None
    if page < 1 or limit < 1:
        raise ApiError(400, "The field 'page' or 'limit' is invalid.")
    if limit > MAX_LIMIT:
        raise ApiError(413, f"The maximum limit is {MAX_LIMIT}.")
    return page, limit


def v2_list(call: Call, items: list) -> Response:
    page, limit = page_args(call.params, "v2")
    chunk = items[(page - 1) * limit: page * limit]
    return respond(chunk, "v2", 204 if not chunk else 200)


def v3_list(call: Call, items: list, *, empty_204: bool = False) -> Response:
    page, limit = page_args(call.params, "v3")
    chunk = items[(page - 1) * limit: page * limit]
    if empty_204 and not items:
        return Response(status_code=204)
    pages = max(1, math.ceil(len(items) / limit))
    links = {"current": f"?page={page}&limit={limit}"}
    if page > 1:
        links["previous"] = f"?page={page - 1}&limit={limit}"
    if page < pages:
        links["next"] = f"?page={page + 1}&limit={limit}"
    meta = {"pagination": {"total": len(items), "count": len(chunk), "per_page": limit,
                           "current_page": page, "total_pages": pages, "links": links}}
    return respond({"data": chunk, "meta": meta}, "v3")


def fields_filtered(call: Call, rows: list[dict]) -> list[dict]:
    include = [f for f in call.params.get("include_fields", "").split(",") if f]
    exclude = {f for f in call.params.get("exclude_fields", "").split(",") if f}
    if include:
        rows = [{k: v for k, v in r.items() if k in include or k == "id"} for r in rows]
    if exclude:
        rows = [{k: v for k, v in r.items() if k not in exclude} for r in rows]
    return rows


def csv(call: Call, name: str) -> list[str]:
    return [v for v in call.params.get(name, "").split(",") if v]


def the_order(call: Call) -> dict:
    order = call.store.orders.get(call.ids[0])
    if order is None or order["is_deleted"]:
        raise ApiError(404, "The requested resource was not found.")
    return order


# ---- v2 handlers ---------------------------------------------------------------------------

ORDER_SORTS = {"id", "customer_id", "date_created", "date_modified", "status_id", "channel_id",
               "external_id"}


def filter_orders(call: Call) -> list[dict]:
    p, store = call.params, call.store
    orders = [o for o in store.orders.values() if not o["is_deleted"]]

    def num(name: str) -> int | None:
        return int(dec(p[name], name)) if p.get(name) not in (None, "") else None

    if (status := num("status_id")) is not None:
        orders = [o for o in orders if o["status_id"] == status]
    else:
        orders = [o for o in orders if o["status_id"] != 0]
    for name, key, cmp in (("min_id", "id", 1), ("max_id", "id", -1)):
        if (value := num(name)) is not None:
            orders = [o for o in orders if (o[key] - value) * cmp >= 0]
    if (cid := num("customer_id")) is not None:
        orders = [o for o in orders if o["customer_id"] == cid]
    if p.get("email"):
        orders = [o for o in orders if o["billing_address"]["email"].lower() == p["email"].lower()]
    for name in ("min_date_created", "max_date_created", "min_date_modified", "max_date_modified"):
        if p.get(name):
            bound, key = date_param(p[name], name), name.split("_", 1)[1]
            orders = [o for o in orders if (o[key] >= bound if name.startswith("min") else o[key] <= bound)]
    for name, cmp in (("min_total", 1), ("max_total", -1)):
        if p.get(name):
            bound = dec(p[name], name)
            orders = [o for o in orders if (o["total_inc_tax"] - bound) * cmp >= 0]
    sort = p.get("sort", "id")
    key, _, direction = sort.partition(":")
    if key not in ORDER_SORTS or direction not in ("", "asc", "desc"):
        raise ApiError(400, "The field 'sort' is invalid.")
    key = {"channel_id": "id", "external_id": "id"}.get(key, key)
    return sorted(orders, key=lambda o: (o[key], o["id"]), reverse=direction == "desc")
