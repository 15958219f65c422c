"""List requests (§3.1): parameters, paging, date bounds, ordering, ``_fields`` and the generic resource."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from sandbox.woocommerce.constants import API_ROOT, BATCH_LIMIT, MAX_PER_PAGE
from sandbox.woocommerce.wire import ApiError, invalid_param, parse_iso, wp_list, wp_response

if TYPE_CHECKING:
    from sandbox.woocommerce.state import WooState


# --------------------------------------------------------------------------------------------
# REST layer
# --------------------------------------------------------------------------------------------

@dataclass
class Call:
    """One API request: merged parameters (JSON body > form > query, like WP_REST_Request)."""

    request: Request
    state: WooState
    query: dict[str, Any]
    query_pairs: list[tuple[str, str]]
    body: dict[str, Any]
    ids: dict[str, int]
    base: str

    @property
    def params(self) -> dict[str, Any]:
        return {**self.query, **self.body}

    def arg(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, self.query.get(name, default))


class Params:
    """WordPress argument validation: every bad argument reported in one ``rest_invalid_param``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def given(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def integer(self, name: str, default: int | None, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        if not self.given(name):
            return default
        try:
            value = int(str(self.values[name]).strip())
        except ValueError:
            self.errors[name] = f"{name} is not of type integer."
            return default
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            self.errors[name] = f"{name} must be between {minimum} (inclusive) and {maximum} (inclusive)"
        elif minimum is not None and value < minimum:
            self.errors[name] = f"{name} must be greater than or equal to {minimum}"
        return value

    def enum(self, name: str, allowed: Iterable[str], default: str) -> str:
        allowed = tuple(allowed)
        if not self.given(name):
            return default
        value = str(self.values[name])
        if value not in allowed:
            self.errors[name] = f"{name} is not one of {wp_list(allowed)}."
            return default
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        if not self.given(name):
            return default
        value = self.values[name]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
        self.errors[name] = f"{name} is not of type boolean."
        return default

    def strings(self, name: str) -> list[str]:
        value = self.values.get(name)
        if value in (None, ""):
            return []
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in str(value).split(",") if v.strip()]

    def ids(self, name: str) -> list[int]:
        try:
            return [int(v) for v in self.strings(name)]
        except ValueError:
            self.errors[name] = f"{name}[0] is not of type integer."
            return []

    def date(self, name: str, offset: timedelta, gmt: bool) -> datetime | None:
        """A naive datetime in the zone of the compared column."""
        if not self.given(name):
            return None
        try:
            value = parse_iso(str(self.values[name]))
        except ValueError:
            self.errors[name] = "Invalid date."
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None) + (timedelta() if gmt else offset)
        return value

    def check(self) -> None:
        if self.errors:
            raise invalid_param(self.errors)


@dataclass(frozen=True)
class ListSpec:
    orderby: tuple[str, ...] = ("date", "id", "include", "title", "slug", "modified")
    default_orderby: str = "date"
    default_order: str = "desc"
    dates: bool = True


def sort_key(orderby: str, include: list[int]) -> Callable[[Any], Any]:
    if orderby == "include":
        position = {v: n for n, v in enumerate(include)}
        return lambda obj: (position.get(obj.id, len(position)), obj.id)
    if orderby == "id":
        return lambda obj: obj.id
    if orderby == "modified":
        return lambda obj: (getattr(obj, "modified", None) or obj.created, obj.id)
    if orderby in ("title", "slug", "name"):
        return lambda obj: (str(getattr(obj, "name", getattr(obj, "username", ""))).lower(), obj.id)
    if orderby == "registered_date":
        return lambda obj: (obj.created, obj.id)
    return lambda obj: (obj.created, obj.id)


def paginate(call: Call, items: list, spec: ListSpec, render: Callable[[Any], dict],
             params: Params | None = None) -> Response:
    """§3.1: validation, date filters, ordering, page slicing and the paging headers."""
    p = params or Params(call.query)
    page = p.integer("page", 1, minimum=1)
    per_page = p.integer("per_page", 10, minimum=1, maximum=MAX_PER_PAGE)
    offset = p.integer("offset", None, minimum=0)
    order = p.enum("order", ("asc", "desc"), spec.default_order)
    orderby = p.enum("orderby", spec.orderby, spec.default_orderby)
    include, exclude = p.ids("include"), p.ids("exclude")
    items = [i for i in items if (not include or i.id in include) and i.id not in exclude]
    if spec.dates:
        items = date_filtered(call, p, items)
    p.check()
    items.sort(key=sort_key(orderby, include), reverse=order == "desc" and orderby != "include")
    total = len(items)
    pages = math.ceil(total / per_page)
    start = offset if offset is not None else (page - 1) * per_page
    headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
    link = link_header(call, page, pages)
    if link:
        headers["Link"] = link
    data = [shape(call, render(item)) for item in items[start:start + per_page]]
    return wp_response(data, 200, headers)


def date_filtered(call: Call, p: Params, items: list) -> list:
    gmt = p.boolean("dates_are_gmt")
    offset = call.state.utc_offset
    shift = timedelta() if gmt else offset
    bounds = [("after", "created", 1), ("before", "created", -1),
              ("modified_after", "modified", 1), ("modified_before", "modified", -1)]
    for name, attr, direction in bounds:
        limit = p.date(name, offset, gmt)
        if limit is None:
            continue
        items = [i for i in items
                 if (getattr(i, attr, None) or i.created) + shift > limit] if direction > 0 else [
            i for i in items if (getattr(i, attr, None) or i.created) + shift < limit]
    return items


def link_header(call: Call, page: int, pages: int) -> str:
    base = f"{call.base}{call.request.url.path}"
    query = [(k, v) for k, v in call.query_pairs if k != "page"]
    links = []
    if page > 1:
        links.append(f'<{base}?{urlencode(query + [("page", str(min(page - 1, max(pages, 1))))])}>; rel="prev"')
    if pages > page:
        links.append(f'<{base}?{urlencode(query + [("page", str(page + 1))])}>; rel="next"')
    return ", ".join(links)


def shape(call: Call, data: dict) -> dict:
    """``_fields``: keep only the named top-level keys."""
    wanted = Params(call.query).strings("_fields")
    if not wanted:
        return data
    keys = {w.split(".", 1)[0] for w in wanted}
    return {k: v for k, v in data.items() if k in keys}


class Resource:
    """One CRUD collection; subclasses say how to find, filter, write and render records."""

    path = ""
    post_type = ""
    spec = ListSpec()
    trashable = False
    default_force = False
    trash_message = "The resource does not support trashing."
    # names of the state's methods behind the default render/create/update/delete:
    # view(obj, base), creates(body), updates(obj, body), deletes(obj, force)
    view = creates = updates = deletes = ""

    def invalid_id(self, status: int) -> ApiError:
        return ApiError(status, f"woocommerce_rest_{self.post_type}_invalid_id", "Invalid ID.")

    def find(self, call: Call, record_id: int) -> Any:
        raise NotImplementedError

    def records(self, call: Call, p: Params) -> list:
        raise NotImplementedError

    def render(self, call: Call, obj: Any) -> dict:
        return getattr(call.state, self.view)(obj, call.base)

    def location(self, call: Call, obj: Any) -> str:
        return f"{call.base}{API_ROOT}{self.path.format(**call.ids)}/{obj.id}"

    async def create(self, call: Call, body: dict) -> Any:
        return getattr(call.state, self.creates)(body)

    async def update(self, call: Call, obj: Any, body: dict) -> Any:
        return getattr(call.state, self.updates)(obj, body)

    def delete(self, call: Call, obj: Any, force: bool) -> None:
        getattr(call.state, self.deletes)(obj, force)

    def lookup(self, call: Call, record_id: Any, status: int) -> Any:
        try:
            found = self.find(call, int(record_id))
        except (TypeError, ValueError):
            found = None
        if found is None:
            raise self.invalid_id(status)
        return found

    # ---- handlers --------------------------------------------------------------------------
    async def list(self, call: Call) -> Response:
        p = Params(call.query)
        return paginate(call, self.records(call, p), self.spec, lambda o: self.render(call, o), p)

    async def get(self, call: Call) -> Response:
        obj = self.lookup(call, call.ids["id"], 404)
        return wp_response(shape(call, self.render(call, obj)))

    async def post(self, call: Call) -> Response:
        obj = await self.create(call, call.body)
        return wp_response(self.render(call, obj), 201, {"Location": self.location(call, obj)})

    async def put(self, call: Call) -> Response:
        obj = self.lookup(call, call.ids["id"], 400)
        obj = await self.update(call, obj, call.body)
        return wp_response(self.render(call, obj))

    async def remove(self, call: Call) -> Response:
        obj = self.lookup(call, call.ids["id"], 404)
        force = Params(call.query | call.body).boolean("force", self.default_force)
        if not force and not self.trashable:
            raise ApiError(501, "woocommerce_rest_trash_not_supported", self.trash_message)
        before = self.render(call, obj)
        self.delete(call, obj, force)
        return wp_response(self.render(call, obj) if not force else before)

    async def batch(self, call: Call) -> Response:
        """§3.4: up to 100 items, processed in order, errors reported per item."""
        body = call.body
        groups = {name: body.get(name) or [] for name in ("create", "update", "delete")}
        if sum(len(v) for v in groups.values()) > BATCH_LIMIT:
            raise ApiError(413, "woocommerce_rest_request_entity_too_large",
                           f"Unable to accept more than {BATCH_LIMIT} items for this request.")
        result: dict[str, list] = {}
        if groups["create"]:
            result["create"] = [await self._batch_item(call, self._batch_create, e) for e in groups["create"]]
        if groups["update"]:
            result["update"] = [await self._batch_item(call, self._batch_update, e) for e in groups["update"]]
        if groups["delete"]:
            result["delete"] = [await self._batch_item(call, self._batch_delete, e) for e in groups["delete"]]
        return wp_response(result)

    async def _batch_item(self, call: Call, action: Callable[[Call, Any], Awaitable[dict]], entry: Any) -> dict:
        try:
            return await action(call, entry)
        except ApiError as err:
            item_id = entry.get("id", 0) if isinstance(entry, dict) else entry
            try:
                item_id = int(item_id or 0)
            except (TypeError, ValueError):
                item_id = 0
            return {"id": 0 if action == self._batch_create else item_id, "error": err.body()}

    async def _batch_create(self, call: Call, entry: dict) -> dict:
        return self.render(call, await self.create(call, entry))

    async def _batch_update(self, call: Call, entry: dict) -> dict:
        obj = self.lookup(call, entry.get("id"), 400)
        return self.render(call, await self.update(call, obj, entry))

    async def _batch_delete(self, call: Call, entry: Any) -> dict:
        obj = self.lookup(call, entry.get("id") if isinstance(entry, dict) else entry, 404)
        data = self.render(call, obj)
        self.delete(call, obj, True)
        return data
