"""The control surface every simulator shares: ``/_sandbox/...`` routes, without auth, for the
tests, ``make demo`` and the benchmarks.

One place serves what each simulator used to repeat: reset, settings, token expiry, the
request counters and log, webhook delivery faults (outage, duplicates, delivery log, waiting
for an idle queue), and the fault injection of :mod:`sandbox.faults` (failures, 429 storms,
lost commits, slow answers). A simulator passes callables that reach into its own state, read
at request time (a reset may replace the objects behind them), and adds its seeding routes.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import Faults, fault_routes

Render = Callable[..., Response]  # (content, status_code=...) -> Response


async def read_json(request: Request, parse_float: Callable[[str], Any] | None = None) -> Any:
    """The request body as JSON; an empty body reads as ``{}``."""
    raw = await request.body()
    return json.loads(raw, parse_float=parse_float) if raw.strip() else {}


def listed(data: Any) -> list:
    """A body that is one item or a list of them, as a list."""
    return data if isinstance(data, list) else [data]


@dataclass
class SettingsControl:
    """How a simulator's settings are read (as a dataclass) and changed (from a dict)."""
    current: Callable[[], Any]
    change: Callable[[dict], None]


@dataclass
class WebhookControl:
    """A store's webhook queue as the control surface drives it: ``queue`` carries the
    ``outage_next`` and ``duplicate_next`` counters the delivery loop consumes."""
    queue: Callable[[], Any]
    deliveries: Callable[[], Any]
    wait_idle: Callable[[float, dict], Awaitable[bool]]


def control_routes(faults: Faults, *, reset: Callable[[], None], render: Render = JSONResponse,
                   parse_float: Callable[[str], Any] | None = None,
                   settings: SettingsControl | None = None,
                   expire_tokens: Callable[[], None] | None = None,
                   stats: Callable[[], Any] | None = None,
                   requests: Callable[[], Any] | None = None,
                   counts: Callable[[], Any] | None = None,
                   webhooks: WebhookControl | None = None) -> list[Route]:
    """The shared ``/_sandbox/`` routes; a route is served only when its callable is given.
    ``render`` writes answers the way the simulator writes JSON (exact decimals, its dates)."""

    async def body(request: Request) -> Any:
        return await read_json(request, parse_float)

    async def reset_endpoint(request: Request) -> Response:
        reset()
        faults.reset()
        return render({"ok": True})

    routes = [Route("/_sandbox/reset", reset_endpoint, methods=["POST"]), *fault_routes(faults)]

    def read_out(path: str, read: Callable[[], Any] | None) -> None:
        if read is not None:
            async def endpoint(request: Request) -> Response:
                return render(read())
            routes.append(Route(path, endpoint, methods=["GET"]))

    read_out("/_sandbox/stats", stats)
    read_out("/_sandbox/requests", requests)
    read_out("/_sandbox/state", counts)

    if settings is not None:
        async def settings_endpoint(request: Request) -> Response:
            if request.method == "POST":
                try:
                    settings.change(await body(request))
                except (KeyError, TypeError, ValueError) as exc:
                    return render({"error": str(exc)}, status_code=400)
            return render(asdict(settings.current()))
        routes.append(Route("/_sandbox/settings", settings_endpoint, methods=["GET", "POST"]))

    if expire_tokens is not None:
        async def expire_endpoint(request: Request) -> Response:
            expire_tokens()
            return render({"ok": True})
        routes.append(Route("/_sandbox/expire-tokens", expire_endpoint, methods=["POST"]))

    if webhooks is not None:
        routes.extend(_webhook_routes(webhooks, body, render))
    return routes


def _webhook_routes(webhooks: WebhookControl, body: Callable[[Request], Awaitable[Any]],
                    render: Render) -> list[Route]:
    """Webhook delivery faults: the next N deliveries fail (an outage of the receiver) or go
    out twice; the delivery log; waiting until the queue is idle (504 when it is not in time)."""

    async def outage(request: Request) -> Response:
        queue = webhooks.queue()
        queue.outage_next = int((await body(request)).get("fail_next", 0))
        return render({"fail_next": queue.outage_next})

    async def duplicate(request: Request) -> Response:
        queue = webhooks.queue()
        queue.duplicate_next = int((await body(request)).get("next", 0))
        return render({"next": queue.duplicate_next})

    async def deliveries(request: Request) -> Response:
        return render(webhooks.deliveries())

    async def wait_idle(request: Request) -> Response:
        options = await body(request)
        idle = await webhooks.wait_idle(float(options.get("timeout", 120)), options)
        return render({"idle": idle}, status_code=200 if idle else 504)

    return [
        Route("/_sandbox/webhooks/outage", outage, methods=["POST"]),
        Route("/_sandbox/webhooks/duplicate", duplicate, methods=["POST"]),
        Route("/_sandbox/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/_sandbox/webhooks/wait-idle", wait_idle, methods=["POST"]),
    ]
