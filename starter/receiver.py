"""ASGI webhook receiver: verify, acknowledge, signal-with-start.

``POST /webhooks/{connection_id}/{source}``: ``source`` is the connection's store, or its ERP
where the ERP pushes changes (Exact Online). The signature is checked over the raw bytes
before anything else is read; only then is the body parsed and the order's (or customer's,
or catalog's) workflow signalled. Answers: 200 handed over (or ping / topic not handled),
400 malformed (not JSON, nested deeper than MAX_DEPTH, an id that is no store id, headers
that disagree with the body), 401 bad or missing signature, 404 unknown connection or
source, 408 body not received within ``body_timeout`` (the connection is closed), 413
oversize, 503 Temporal unreachable (the store retries or the poll catches up). Nothing is
started on bad input, and no input gets a 500 or a traceback: an unexpected error is logged
(redacted) and answered without dropping the keep-alive connection.
"""
from __future__ import annotations

import asyncio
import re
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
from connections.config import (ERP_CREDENTIALS, SETTINGS_REREAD_SECONDS, STORE_CREDENTIALS,
                                WEBHOOK_SECRET, Connection)
from connectors.base import WebhookEvent
from connections.store import ConnectionNotFound, ConnectionStore
from activities.runtime import connector_module
from starter.dispatch import (ERP_WEBHOOK_SYSTEMS, customer_changed, erp_changed, erp_sync_for,
                              signal_order)
from starter.temporal import TemporalUnavailable
from starter.webhook_body import Oversize, SlowBody, read_streamed, refuse_declared_oversize

# A store whose module has a streaming ``signature_check`` (WooCommerce, BigCommerce) may send
# up to MAX_BODY: the signature is computed as the bytes arrive and a body over KEEP_WHOLE is
# reduced to its JSON skeleton (starter.webhook_body), so memory stays bounded. A 10,000-line
# WooCommerce order is about 3.2 MB. Other sources (Exact's notifications) get KEEP_WHOLE.
MAX_BODY = 32 * 1024 * 1024
KEEP_WHOLE = 1024 * 1024
BODY_TIMEOUT = 10.0  # seconds for a whole body; ML_CONNECTOR_BODY_TIMEOUT / --body-timeout
HANDOVER_TIMEOUT = 10.0  # seconds for Temporal to take a delivery before it is a 503
MAX_DEPTH = 64  # JSON nesting; a real order is about 6 deep
MAX_ID_DIGITS = 20  # store ids are 64-bit integers
SECRET_TTL = float(SETTINGS_REREAD_SECONDS)
# The store credential that keys a Standard Webhooks signature: when a connection has it,
# every delivery must carry that signature (BigCommerce signs with the app's client secret).
STANDARD_WEBHOOKS_SECRET = {"bigcommerce": "client_secret"}
# Exceptions a connector's pure webhook functions raise on input they cannot read.
UNREADABLE = (ValueError, TypeError, KeyError, OverflowError, RecursionError, UnicodeError)
log = structlog.get_logger("receiver")


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The whole body, refused past ``limit`` bytes or ``timeout`` seconds (a slow sender
    would otherwise hold a connection for as long as it likes)."""
    refuse_declared_oversize(request, limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Oversize
                chunks.append(chunk)
    except TimeoutError:
        raise SlowBody from None
    return b"".join(chunks)


_JSON_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.DOTALL)


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether JSON ``body`` opens more than ``limit`` arrays/objects inside one another,
    found without parsing (a parser would recurse once per level). Linear: strings are
    skipped whole, and an unterminated one ends the scan (not JSON; the parser says so)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
        elif token == b'"':
            return False
    return False


def _answer(status: int, message: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, **extra}, status_code=status,
                        headers=headers)


class _Refused:
    """The check of a delivery that cannot be authentic (no secret, unreadable key)."""

    def update(self, chunk: bytes) -> None:
        pass

    def verify(self) -> bool:
        return False


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS


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
                    task_queue: str, max_body: int = MAX_BODY, keep_whole: int = KEEP_WHOLE,
                    skeleton_limit: int = KEEP_WHOLE,
                    body_timeout: float | None = BODY_TIMEOUT,
                    handover_timeout: float = HANDOVER_TIMEOUT) -> Starlette:
    """``client_factory`` is awaited for the Temporal client on each hand-over, so the
    receiver starts and answers (503) while Temporal is down (starter.temporal.LazyClient)."""
    cache: dict[tuple[str, str], tuple[float, str | None, str | None, Connection]] = {}

    def connection_secrets(connection_id: str, side: str) -> tuple[str | None, str | None, Connection]:
        """(the webhook secret of ``side``, its Standard Webhooks secret, connection), cached
        for SECRET_TTL. The store's hooks are keyed with the connection's own secret; an
        ERP's (Exact) with its app's."""
        hit = cache.get((connection_id, side))
        if hit and time.monotonic() - hit[0] < SECRET_TTL:
            return hit[1], hit[2], hit[3]
        conn = store.get_connection(connection_id)
        standard = None
        if side == "store":
            secret = store.get_secret(connection_id, WEBHOOK_SECRET)
            if credential := STANDARD_WEBHOOKS_SECRET.get(conn.store_system):
                standard = (store.get_secret_json(connection_id, STORE_CREDENTIALS) or {}).get(credential)
        else:
            secret = (store.get_secret_json(connection_id, ERP_CREDENTIALS) or {}).get("webhook_secret")
        cache[(connection_id, side)] = (time.monotonic(), secret, standard, conn)
        return secret, standard, conn

    def signature_check(reader: Any, request: Request, secret: str | None,
                        standard: str | None) -> Any:
        """The reader's streaming check; None when it has none (it then verifies the whole
        body, of at most ``keep_whole`` bytes)."""
        streaming = getattr(reader, "signature_check", None)
        if streaming is None:
            return None
        if not secret:
            return _Refused()
        options = {"standard_secret": standard} if standard else {}
        try:
            return streaming(request.headers, secret, **options)
        except UNREADABLE:  # e.g. a signing key no verifier can read: not authentic
            return _Refused()

    def authentic(reader: Any, check: Any, request: Request, body: bytes, secret: str | None,
                  standard: str | None) -> bool:
        if not secret:
            return False
        options = {"standard_secret": standard} if standard else {}
        try:
            if check is not None:
                return check.verify()
            return reader.verify_webhook(request.headers, body, secret, **options)
        except UNREADABLE:  # e.g. a signature header no verifier can read: not authentic
            return False

    async def webhook(request: Request) -> JSONResponse:
        connection_id, source = request.path_params["connection_id"], request.path_params["source"]
        try:
            conn = store.get_connection(connection_id) if (connection_id, "store") not in cache \
                else cache[(connection_id, "store")][3]
        except ConnectionNotFound:
            return _answer(404, f"unknown connection {connection_id!r}")
        side = ("store" if source == conn.store_system else
                "erp" if source == conn.erp_system and source in ERP_WEBHOOK_SYSTEMS else None)
        if side is None:
            return _answer(404, f"connection {connection_id!r} takes webhooks from "
                                f"{conn.store_system}")
        secret, standard, conn = connection_secrets(connection_id, side)
        reader = connector_module(source)
        check = signature_check(reader, request, secret, standard)
        limit = max_body if check is not None else min(max_body, keep_whole)
        try:
            delivery = await read_streamed(request, check or _Refused(), limit=limit,
                                           keep_whole=keep_whole, skeleton_limit=skeleton_limit,
                                           timeout=body_timeout)
        except Oversize:
            return _answer(413, f"body larger than {limit} bytes")
        except SlowBody:
            log.warning("webhook.slow_body", connection=connection_id, source=source)
            return _answer(408, f"body not received within {body_timeout:g} s",
                           {"Connection": "close"})
        except ClientDisconnect:
            return _answer(400, "client disconnected")
        body = delivery.body
        if reader.is_ping(request.headers, body):
            return _answer(200, "pong")
        if not authentic(reader, check, request, body, secret, standard):
            log.warning("webhook.bad_signature", connection=connection_id, source=source)
            return _answer(401, "signature missing or invalid")
        if delivery.overflow:
            return _answer(413, f"body of {delivery.size} bytes has more than {skeleton_limit} "
                                f"bytes outside its arrays")
        if (nested_deeper_than(body, MAX_DEPTH) if delivery.whole
                else delivery.max_depth > MAX_DEPTH):
            return _answer(400, f"malformed webhook: JSON nested deeper than {MAX_DEPTH} levels")
        try:
            event = reader.parse_webhook(request.headers, body)
        except UNREADABLE as exc:
            message = str(exc) if isinstance(exc, ValueError) else "the body cannot be read"
            return _answer(400, f"malformed webhook: {message[:300]}")
        if event is None:
            return _answer(200, "pong")
        if side == "store" and event.resource in ("order", "customer") and not _is_id(event.resource_id):
            return _answer(400, f"malformed webhook: the {event.resource} id is missing or "
                                f"not a store id (at most {MAX_ID_DIGITS} digits)")
        if not _handled(conn, side, event):
            return _answer(200, "ignored: topic not handled", topic=event.topic)
        try:
            async with asyncio.timeout(handover_timeout):
                client = await client_factory()
                wf_id = await _hand_over(client, conn, side, event, task_queue)
        except (RPCError, OSError, RuntimeError, TemporalUnavailable, TimeoutError) as exc:
            log.error("webhook.temporal_unavailable", connection=connection_id, error=type(exc).__name__)
            return _answer(503, "workflow service unavailable; retry later", {"Retry-After": "30"})
        log.info("webhook.accepted", connection=connection_id, workflow_id=wf_id, topic=event.topic)
        return _answer(200, "accepted", workflow_id=wf_id)

    async def guarded(request: Request) -> JSONResponse:
        """A 500 answered here, not re-raised: the server then logs no traceback of its own
        and keeps the connection open (Starlette's error middleware re-raises)."""
        try:
            return await webhook(request)
        except Exception:
            log.exception("receiver.error", path=request.url.path)
            return _answer(500, "internal error")

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/webhooks/{connection_id}/{source}", guarded, methods=["POST"]),
                            Route("/healthz", health)])
    app.router.redirect_slashes = False  # a store must not be sent elsewhere: 404 it is
    return app
