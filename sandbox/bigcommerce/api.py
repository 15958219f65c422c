"""Routing, auth (X-Auth-Token and scopes), the quota headers and the fault guard."""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from sandbox.faults import Faults, lost_response

from sandbox.bigcommerce.listing import Call
from sandbox.bigcommerce.v2 import (v2_addresses, v2_coupons, v2_order, v2_orders, v2_orders_count,
                                    v2_products, v2_shipments, v2_statuses, v2_taxes)
from sandbox.bigcommerce.v3_catalog import (v3_customers, v3_inventory_absolute, v3_inventory_items,
                                            v3_product, v3_product_variants, v3_products, v3_variants)
from sandbox.bigcommerce.v3_hooks import v3_hook, v3_hooks
from sandbox.bigcommerce.v3_orders import (v3_all_refunds, v3_capture, v3_order_refunds, v3_refund,
                                           v3_refund_quotes, v3_transactions)
from sandbox.bigcommerce.wire import ApiError, UNAUTHORIZED, dumps

if TYPE_CHECKING:
    from sandbox.bigcommerce.state import Store


ROUTES: list[tuple[str, str, tuple[str, ...], Callable]] = [
    ("v2", r"orders", ("GET", "POST"), v2_orders),
    ("v2", r"orders/count", ("GET",), v2_orders_count),
    ("v2", r"orders/(\d+)", ("GET", "PUT", "DELETE"), v2_order),
    ("v2", r"orders/(\d+)/products", ("GET",), v2_products),
    ("v2", r"orders/(\d+)/shipping_addresses", ("GET",), v2_addresses),
    ("v2", r"orders/(\d+)/coupons", ("GET",), v2_coupons),
    ("v2", r"orders/(\d+)/taxes", ("GET",), v2_taxes),
    ("v2", r"orders/(\d+)/shipments", ("GET", "POST"), v2_shipments),
    ("v2", r"order_statuses", ("GET",), v2_statuses),
    ("v3", r"orders/(\d+)/transactions", ("GET",), v3_transactions),
    ("v3", r"orders/(\d+)/payment_actions/capture", ("POST",), v3_capture),
    ("v3", r"orders/(\d+)/payment_actions/refund_quotes", ("POST",), v3_refund_quotes),
    ("v3", r"orders/(\d+)/payment_actions/refunds", ("GET", "POST"), v3_order_refunds),
    ("v3", r"orders/payment_actions/refunds", ("GET",), v3_all_refunds),
    ("v3", r"orders/payment_actions/refunds/(\d+)", ("GET",), v3_refund),
    ("v3", r"customers", ("GET", "POST", "PUT"), v3_customers),
    ("v3", r"catalog/products", ("GET", "PUT"), v3_products),
    ("v3", r"catalog/products/(\d+)", ("GET", "PUT"), v3_product),
    ("v3", r"catalog/products/(\d+)/variants", ("GET",), v3_product_variants),
    ("v3", r"catalog/variants", ("GET", "PUT"), v3_variants),
    ("v3", r"inventory/adjustments/absolute", ("PUT",), v3_inventory_absolute),
    ("v3", r"inventory/items", ("GET",), v3_inventory_items),
    ("v3", r"hooks", ("GET", "POST"), v3_hooks),
    ("v3", r"hooks/(\d+)", ("GET", "PUT", "DELETE"), v3_hook),
]
_COMPILED = [(v, re.compile(p + r"/?"), m, h) for v, p, m, h in ROUTES]
WRITES = ("POST", "PUT", "DELETE")


class Api:
    """``/stores/{hash}/v2|v3/...``: faults, quota, auth, routing, handler."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self.store, self.faults = store, faults

    async def handle(self, request: Request) -> Response:
        version = request.path_params["version"]
        await self.faults.delay()
        allowed, rate_headers = self.store.spend()
        try:
            response = await self._guarded(request, version, allowed, rate_headers)
        except ApiError as err:
            response = Response(dumps(err.body(version), version), status_code=err.status,
                                media_type=err.media_type, headers=err.headers)
        for key, value in rate_headers.items():
            response.headers.setdefault(key, value)
        return response

    async def _guarded(self, request: Request, version: str, allowed: bool,
                       rate_headers: dict[str, str]) -> Response:
        if (retry := self.faults.take_429()) is not None:
            rate_headers.update({"X-Rate-Limit-Time-Reset-Ms": str(int(retry * 1000)),
                                 "X-Rate-Limit-Requests-Left": "0"})
            raise ApiError(429, "Too many requests", headers={"X-Retry-After": str(math.ceil(retry))})
        if not allowed:
            raise ApiError(429, "Too many requests", headers={
                "X-Retry-After": str(math.ceil(int(rate_headers["X-Rate-Limit-Time-Reset-Ms"]) / 1000))})
        if (status := self.faults.take_failure()) is not None:
            title = ("Service Unavailable - the store is down for maintenance" if status == 503
                     else "Internal Server Error")
            raise ApiError(status, title)
        self.faults.expire_tokens = False  # API account tokens do not expire
        if request.path_params["store_hash"] != self.store.settings.store_hash:
            raise ApiError(404, "Store not found.")
        if request.headers.get("x-auth-token") != self.store.settings.access_token:
            raise ApiError(401, UNAUTHORIZED)
        route = request.path_params["rest"]
        match = None
        for v, pattern, methods, handler in _COMPILED:
            if v == version and (m := pattern.fullmatch(route)):
                if request.method not in methods:
                    raise ApiError(405, "The requested method is not allowed for this resource.")
                match = (handler, [int(g) for g in m.groups()])
                break
        if match is None:
            raise ApiError(404, "The requested resource was not found.")
        body = await self._body(request)
        call = Call(request, self.store, version, dict(parse_qsl(request.url.query, keep_blank_values=True)),
                    body, match[1])
        response = await match[0](call)
        if request.method in WRITES and response.status_code < 400 and self.faults.take_lost_commit():
            return lost_response()
        return response

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        if not request.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
            raise ApiError(415, "The request content type is not supported; use application/json.")
        try:
            return json.loads(raw, parse_float=Decimal)
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON.") from None
