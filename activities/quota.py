"""A connection's licensed ERP rate, shared by every worker on every host.

A connection with ``erp_requests_per_minute`` has one request schedule in the connection
store (``ConnectionStore.reserve_request``): each request to its ERP, from any activity of
any worker, books the next slot and waits for it, so the rate holds to the request whatever
mix of calls an activity makes. The Temporal server's rate limit on the connection's ERP
task queue (worker.build_erp_worker) keeps the backlog in Temporal, where operators see it;
this gate makes the rate exact. Requests to the store side are never gated. Slots are
wall-clock milliseconds, so the hosts' clocks must agree (NTP) to within a slot or so.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from connections.config import Connection
from connections.store import ConnectionNotFound, ConnectionStore
from connectors import http

# Under the licence: paced at 98% with one banked slot, a quota counted in fixed minutes is
# never overrun, and a burst still runs within ~2% of the licensed minimum.
QUOTA_HEADROOM = 0.98
BANKED_SLOTS = 1

Gate = Callable[[str], Awaitable[None]]


def slot_interval_ms(requests_per_minute: int) -> int:
    return math.ceil(60_000 / (requests_per_minute * QUOTA_HEADROOM))


def request_gate(store: ConnectionStore, connection_id: str, erp_system: str,
                 requests_per_minute: int) -> Gate:
    """The gate of one connection: waits for the next slot of its ERP's schedule."""
    name, interval = f"erp:{connection_id}", slot_interval_ms(requests_per_minute)

    async def gate(system: str) -> None:
        if system != erp_system:
            return
        wait_ms = store.reserve_request(name, interval, BANKED_SLOTS)
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)

    return gate


@contextlib.contextmanager
def quota_gated(store: ConnectionStore, conn: Connection) -> Iterator[None]:
    """ERP requests made inside take slots of ``conn``'s quota, as its activities' do: for
    work outside an activity (``ml-connector reconcile``, the demo's books), which spends the
    same licence as the workers."""
    if not conn.erp_requests_per_minute:
        yield
        return
    token = http.REQUEST_GATE.set(request_gate(store, conn.id, conn.erp_system,
                                               conn.erp_requests_per_minute))
    try:
        yield
    finally:
        http.REQUEST_GATE.reset(token)


class QuotaInterceptor(Interceptor):
    """Gates the ERP requests of every activity whose input names a connection with a quota.
    The connection's setting is re-read at most every ``cache_seconds``."""

    def __init__(self, store: ConnectionStore, cache_seconds: float = 10.0) -> None:
        self._store, self._ttl = store, cache_seconds
        self._gates: dict[str, tuple[float, tuple[Any, ...], Gate | None]] = {}

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Gated(next, self)

    def gate_for(self, connection_id: str) -> Gate | None:
        now = time.monotonic()
        cached = self._gates.get(connection_id)
        if cached and cached[0] > now:
            return cached[2]
        try:
            conn = self._store.get_connection(connection_id)
        except ConnectionNotFound:
            return None
        setting = (conn.erp_system, conn.erp_requests_per_minute)
        gate = cached[2] if cached and cached[1] == setting else (
            request_gate(self._store, connection_id, *setting) if setting[1] else None)
        self._gates[connection_id] = (now + self._ttl, setting, gate)
        return gate


class _Gated(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: QuotaInterceptor) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        arg = input.args[0] if input.args else None
        connection_id = getattr(arg, "connection_id", None)
        gate = (self._owner.gate_for(connection_id)
                if connection_id and not activity.info().is_local else None)
        if gate is None:
            return await self.next.execute_activity(input)
        token = http.REQUEST_GATE.set(gate)
        try:
            return await self.next.execute_activity(input)
        finally:
            http.REQUEST_GATE.reset(token)
