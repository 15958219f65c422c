"""ASGI webhook receiver: verify, acknowledge, signal-with-start.

``POST /webhooks/{connection_id}/{source}``: ``source`` is the connection's store, or its ERP
where the ERP pushes changes (Exact Online). The signature is checked over the raw bytes
before anything else is read; only then is the body parsed and the order's (or customer's,
or catalog's) workflow signalled. Answers: 200 handed over (or ping / topic not handled), 400 malformed, 401 bad
signature, 404 unknown connection or source, 413 oversize, 503 Temporal unreachable (the
store retries or the poll catches up). Nothing is started on bad input, never a traceback.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.service import RPCError

from activities.messages import OrderEvent
from connections.config import ERP_CREDENTIALS, WEBHOOK_SECRET, Connection
from connectors.base import WebhookEvent
from connections.store import ConnectionNotFound, ConnectionStore
from activities.runtime import connector_module
from workflows.dispatch import (ERP_WEBHOOK_SYSTEMS, customer_changed, erp_changed, erp_sync_for,
                                signal_order)

MAX_BODY = 1024 * 1024
SECRET_TTL = 30.0
log = structlog.get_logger("receiver")


class Oversize(Exception):
    """The body is larger than the limit (read no further)."""


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise Oversize
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Oversize
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, **extra}, status_code=status)


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _handled(conn: Connection, side: str, event: WebhookEvent) -> bool:
    if side == "erp":
        return erp_sync_for(conn, event.resource) is not None
    return event.resource == "order" or (event.resource == "customer" and conn.customer_sync)


async def _hand_over(client: Any, conn: Connection, side: str, event: WebhookEvent,
                     task_queue: str) -> str:
    """Start or signal the workflow a handled event is for."""
    if side == "erp":
        return await erp_changed(client, conn, event.resource, task_queue=task_queue)
    if event.resource == "customer":
        return await customer_changed(client, conn.id, event.resource_id, task_queue=task_queue)
    return await signal_order(
        client, conn.id, event.resource_id,
        OrderEvent(kind=event.event, source="webhook", delivery_id=event.delivery_id or "",
                   received_at=datetime.now(timezone.utc)),
        task_queue=task_queue, erp_requests_per_minute=conn.erp_requests_per_minute)


def create_receiver(store: ConnectionStore, client_factory: Callable[[], Any], *,
                    task_queue: str, max_body: int = MAX_BODY) -> Starlette:
    """``client_factory`` is awaited for the Temporal client on each hand-over, so the
    receiver starts and answers (503) while Temporal is down."""
    cache: dict[tuple[str, str], tuple[float, str | None, Connection]] = {}

    def connection_secret(connection_id: str, side: str) -> tuple[str | None, Connection]:
        """(the webhook secret of ``side``, connection), cached for SECRET_TTL. The store's
        hooks are keyed with the connection's own secret; an ERP's (Exact) with its app's."""
        hit = cache.get((connection_id, side))
        if hit and time.monotonic() - hit[0] < SECRET_TTL:
            return hit[1], hit[2]
        conn = store.get_connection(connection_id)
        if side == "store":
            secret = store.get_secret(connection_id, WEBHOOK_SECRET)
        else:
            secret = (store.get_secret_json(connection_id, ERP_CREDENTIALS) or {}).get("webhook_secret")
        cache[(connection_id, side)] = (time.monotonic(), secret, conn)
        return secret, conn

    async def webhook(request: Request) -> JSONResponse:
        connection_id, source = request.path_params["connection_id"], request.path_params["source"]
        try:
            conn = store.get_connection(connection_id) if (connection_id, "store") not in cache \
                else cache[(connection_id, "store")][2]
        except ConnectionNotFound:
            return _answer(404, f"unknown connection {connection_id!r}")
        side = ("store" if source == conn.store_system else
                "erp" if source == conn.erp_system and source in ERP_WEBHOOK_SYSTEMS else None)
        if side is None:
            return _answer(404, f"connection {connection_id!r} takes webhooks from "
                                f"{conn.store_system}")
        secret, conn = connection_secret(connection_id, side)
        try:
            body = await read_body(request, max_body)
        except Oversize:
            return _answer(413, f"body larger than {max_body} bytes")
        except ClientDisconnect:
            return _answer(400, "client disconnected")
        reader = connector_module(source)
        if reader.is_ping(request.headers, body):
            return _answer(200, "pong")
        if not secret or not reader.verify_webhook(request.headers, body, secret):
            log.warning("webhook.bad_signature", connection=connection_id, source=source)
            return _answer(401, "signature missing or invalid")
        try:
            event = reader.parse_webhook(request.headers, body)
        except ValueError as exc:
            return _answer(400, f"malformed webhook: {exc}")
        if event is None:
            return _answer(200, "pong")
        if side == "store" and event.resource in ("order", "customer") and not _is_id(event.resource_id):
            return _answer(400, f"malformed webhook: the {event.resource} id is missing")
        if not _handled(conn, side, event):
            return _answer(200, "ignored: topic not handled", topic=event.topic)
        try:
            client = await client_factory()
            wf_id = await _hand_over(client, conn, side, event, task_queue)
        except (RPCError, OSError, RuntimeError) as exc:
            log.error("webhook.temporal_unavailable", connection=connection_id, error=type(exc).__name__)
            return _answer(503, "workflow service unavailable; retry later")
        log.info("webhook.accepted", connection=connection_id, workflow_id=wf_id, topic=event.topic)
        return _answer(200, "accepted", workflow_id=wf_id)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("receiver.error", error=type(exc).__name__)
        return _answer(500, "internal error")

    app = Starlette(routes=[Route("/webhooks/{connection_id}/{source}", webhook, methods=["POST"]),
                            Route("/healthz", health)],
                    exception_handlers={Exception: server_error})
    app.router.redirect_slashes = False  # a store must not be sent elsewhere: 404 it is
    return app
