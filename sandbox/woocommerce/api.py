"""Routing of ``/wp-json/wc/v3/``: endpoints, permissions, body reading and the fault-guarded dispatcher."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from sandbox.faults import Faults, lost_response

from sandbox.woocommerce.auth import Authenticator, auth_error, php_params, request_base
from sandbox.woocommerce.constants import API_ROOT
from sandbox.woocommerce.listing import Call
from sandbox.woocommerce.resources import (AllRefunds, Customers, OrderRefunds, Orders, Products, Variations,
                                           Webhooks)
from sandbox.woocommerce.wire import ApiError, error_response, wp_response

if TYPE_CHECKING:
    from sandbox.woocommerce.listing import Resource
    from sandbox.woocommerce.model import ApiKey
    from sandbox.woocommerce.state import WooState


EDITABLE = ("POST", "PUT", "PATCH")
PERMISSION_ERRORS = {
    "list": ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
    "view": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "create": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "edit": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "delete": ("woocommerce_rest_cannot_delete", "Sorry, you are not allowed to delete this resource."),
    "batch": ("woocommerce_rest_cannot_batch", "Sorry, you are not allowed to batch manipulate this resource."),
}


@dataclass(frozen=True)
class Endpoint:
    pattern: re.Pattern
    methods: tuple[str, ...]
    resource: Resource
    action: str


def crud(pattern: str, resource: Resource, *, item: bool = True, batch: bool = True,
         writable: bool = True) -> list[Endpoint]:
    """The WordPress route set of one collection."""
    one = pattern + r"/(?P<id>\d+)"
    routes = [Endpoint(re.compile(pattern), ("GET",), resource, "list")]
    if writable:
        routes.append(Endpoint(re.compile(pattern), ("POST",), resource, "create"))
    if batch:
        routes.append(Endpoint(re.compile(pattern + "/batch"), EDITABLE, resource, "batch"))
    if item:
        routes.append(Endpoint(re.compile(one), ("GET",), resource, "view"))
        if writable:
            routes.append(Endpoint(re.compile(one), EDITABLE, resource, "edit"))
            routes.append(Endpoint(re.compile(one), ("DELETE",), resource, "delete"))
    return routes


ENDPOINTS: list[Endpoint] = [
    *crud(r"orders", Orders()),
    *[e for e in crud(r"orders/(?P<order_id>\d+)/refunds", OrderRefunds(), batch=False) if e.action != "edit"],
    *crud(r"refunds", AllRefunds(), batch=False, writable=False),
    *crud(r"customers", Customers()),
    *crud(r"products/(?P<product_id>\d+)/variations", Variations()),
    *crud(r"products", Products()),
    *crud(r"webhooks", Webhooks()),
]

HANDLERS = {"list": "list", "view": "get", "create": "post", "edit": "put", "delete": "remove",
            "batch": "batch"}


def match_route(route: str, method: str) -> tuple[Endpoint, dict[str, int]] | None:
    method = "GET" if method == "HEAD" else method
    for endpoint in ENDPOINTS:
        found = endpoint.pattern.fullmatch(route)
        if found and method in endpoint.methods:
            return endpoint, {k: int(v) for k, v in found.groupdict().items()}
    return None


def no_route() -> ApiError:
    return ApiError(404, "rest_no_route", "No route was found matching the URL and request method.")


def key_permission_error(key: ApiKey, method: str) -> ApiError | None:
    if method in ("GET", "HEAD") and key.permissions not in ("read", "read_write"):
        return auth_error("The API key provided does not have read permissions.")
    if method in ("POST", "PUT", "PATCH", "DELETE") and key.permissions not in ("write", "read_write"):
        return auth_error("The API key provided does not have write permissions.")
    return None


async def read_body(request: Request) -> tuple[dict, list[tuple[str, str]]]:
    """JSON body (400 ``rest_invalid_json`` if broken) or form fields."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return php_params(pairs), pairs
    if not raw.strip():
        return {}, []
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "rest_invalid_json", "Invalid JSON body passed.",
                       json_error_code=4, json_error_message=str(exc)) from None
    return (data if isinstance(data, dict) else {}), []


class Api:
    """The ``/wp-json/`` entry point: host faults, authentication, routing, permission, handler."""

    def __init__(self, state: WooState, faults: Faults) -> None:
        self.state, self.faults = state, faults
        self.auth = Authenticator(state)

    async def handle(self, request: Request) -> Response:
        await self.faults.delay()
        fault = self._host_fault()
        if fault is not None:
            return fault
        writes = request.method in ("POST", "PUT", "PATCH", "DELETE")
        token = self.state.open_scope()
        try:
            response = await self._handle(request)
        except ApiError as err:
            response = error_response(err)
        finally:
            await self.state.close_scope(token)
        if writes and response.status_code < 400 and self.faults.take_lost_commit():
            return lost_response()
        return response

    def _host_fault(self) -> Response | None:
        retry_after = self.faults.take_429()
        if retry_after is not None:
            return PlainTextResponse("429 Too Many Requests", status_code=429,
                                     headers={"Retry-After": f"{retry_after:g}"})
        status = self.faults.take_failure()
        if status is None:
            return None
        if status == 500:
            return wp_response({"code": "internal_server_error",
                                "message": "<p>There has been a critical error on this website.</p>",
                                "data": {"status": 500}, "additional_errors": []}, 500)
        return PlainTextResponse(f"{status} Service Unavailable", status_code=status)

    async def _handle(self, request: Request) -> Response:
        query_pairs = parse_qsl(request.url.query, keep_blank_values=True)
        try:
            body, form_pairs = await read_body(request)
            body_error = None
        except ApiError as err:
            body, form_pairs, body_error = {}, [], err
        auth = self.auth.authenticate(request, query_pairs, form_pairs)
        if auth.error is not None:
            if auth.method != "basic_auth":
                auth.error.headers.pop("WWW-Authenticate", None)
            raise auth.error
        if auth.key is not None:
            denied = key_permission_error(auth.key, request.method)
            if denied:
                raise denied
        route = request.url.path.removeprefix(API_ROOT.rstrip("/")).strip("/")
        matched = match_route(route, request.method) if request.url.path.startswith(API_ROOT) else None
        if matched is None:
            raise no_route()
        if body_error is not None:
            raise body_error
        endpoint, ids = matched
        if auth.key is None:
            code, message = PERMISSION_ERRORS[endpoint.action]
            raise ApiError(401, code, message)
        call = Call(request, self.state, php_params(query_pairs), query_pairs, body, ids, request_base(request))
        return await getattr(endpoint.resource, HANDLERS[endpoint.action])(call)
