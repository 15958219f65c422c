"""The v3 webhook routes, with their destination and header checks."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.responses import Response

from sandbox.bigcommerce.listing import respond, v3_list
from sandbox.bigcommerce.model import Hook
from sandbox.bigcommerce.wire import ApiError

if TYPE_CHECKING:
    from sandbox.bigcommerce.listing import Call
    from sandbox.bigcommerce.state import Store


async def v3_hooks(call: Call) -> Response:
    store = call.store
    if call.request.method == "POST":
        hook = create_hook(call, call.body)
        return respond({"data": store.hook_json(hook), "meta": {}}, "v3")
    client = store.settings.client_id
    hooks = [h for h in sorted(store.hooks.values(), key=lambda h: h.id) if h.client_id == client]
    if "is_active" in call.params:
        active = call.params["is_active"].lower() == "true"
        hooks = [h for h in hooks if h.is_active == active]
    for name in ("scope", "destination"):
        if call.params.get(name):
            hooks = [h for h in hooks if getattr(h, name) == call.params[name]]
    return v3_list(call, [store.hook_json(h) for h in hooks])


def check_destination(store: Store, destination: Any) -> str:
    if not isinstance(destination, str) or not destination:
        raise ApiError(422, "JSON data is missing or invalid", errors={"destination": "error.path.missing."})
    parts = urlsplit(destination)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, "JSON data is missing or invalid", errors={"destination": "error.format.url"})
    if store.settings.enforce_destination_rules and (parts.scheme != "https" or (parts.port or 443) != 443):
        raise ApiError(422, "JSON data is missing or invalid",
                       errors={"destination": "must be HTTPS on port 443"})
    return destination


def check_headers(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(422, "JSON data is missing or invalid", errors={"headers": "error.type.object"})
    if len(value) > 64 or any(len(k) > 64 or len(v) > 8192 for k, v in value.items()):
        raise ApiError(422, "JSON data is missing or invalid", errors={"headers": "error.size"})
    return dict(value)


def create_hook(call: Call, body: Any) -> Hook:
    store = call.store
    if not isinstance(body, dict):
        raise ApiError(400, "Input is invalid.")
    if not isinstance(body.get("scope"), str) or not body["scope"].startswith("store/"):
        raise ApiError(422, "JSON data is missing or invalid", errors={"scope": "error.path.missing."})
    destination = check_destination(store, body.get("destination"))
    client = store.settings.client_id
    same = [h for h in store.hooks.values() if h.client_id == client and h.scope == body["scope"]]
    if any(h.destination == destination for h in same):
        raise ApiError(422, "JSON data is missing or invalid",
                       errors={"destination": "a webhook with this scope and destination already exists"})
    if len(same) >= 10:
        raise ApiError(422, "JSON data is missing or invalid", errors={"scope": "at most 10 webhooks per scope"})
    now = int(time.time())
    hook = Hook(store.next_id("hook", 18048287), client, body["scope"], destination,
                check_headers(body.get("headers")), bool(body.get("is_active", True)), now, now)
    store.hooks[hook.id] = hook
    return hook


async def v3_hook(call: Call) -> Response:
    store = call.store
    hook = store.hooks.get(call.ids[0])
    if hook is None or hook.client_id != store.settings.client_id:
        raise ApiError(404, f"Webhook with id [{call.ids[0]}] not found")
    if call.request.method == "PUT":
        body = call.body
        if not isinstance(body, dict) or not body:
            raise ApiError(400, "Input is invalid.")
        if "scope" in body:
            hook.scope = str(body["scope"])
        if "destination" in body:
            hook.destination = check_destination(store, body["destination"])
        if "headers" in body:
            hook.headers = check_headers(body["headers"])
        if "is_active" in body:
            hook.is_active = bool(body["is_active"])
        hook.updated_at = int(time.time())
    elif call.request.method == "DELETE":
        store.hooks.pop(hook.id)
    return respond({"data": store.hook_json(hook), "meta": {}}, "v3")
