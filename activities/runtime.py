"""What activities share in one worker process: the connection store, the Temporal client,
the client-side hand-offs the worker wires in, and one connector (with its HTTP connection
pool and tokens) per connection."""
from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import ModuleType
from typing import Any

import httpx

from connections.config import (ERP_CREDENTIALS, ERP_SYSTEMS, ERP_TOKENS, STORE_CREDENTIALS,
                                STORE_SYSTEMS, Connection)
from connections.store import ConnectionStore
from connectors.auth import TokenSet
from connectors.base import Erp, Storefront
from connectors.errors import Unavailable

log = logging.getLogger(__name__)


def connector_module(system: str) -> ModuleType:
    """``connectors/<system>.py``: its ``open_connector`` (and, for a store, the receiver's
    webhook functions)."""
    if system not in STORE_SYSTEMS + ERP_SYSTEMS:
        raise ValueError(f"unknown system {system!r}")
    return importlib.import_module(f"connectors.{system}")


@asynccontextmanager
async def store_lease(store: ConnectionStore, name: str, seconds: float, *, what: str,
                      poll_seconds: float = 0.2) -> AsyncIterator[None]:
    """Hold the lease ``name`` (one holder across every process and host) while the block
    runs, renewed every third of ``seconds`` so a block that runs long keeps it, while a
    holder that died loses it within ``seconds``; waits for a holder that is still inside it,
    for at most twice its lease."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + 2 * seconds
    while not await asyncio.to_thread(store.try_lease, name, owner, seconds):
        if time.monotonic() > deadline:
            raise Unavailable(f"{what} is still held by another worker", system="connection store")
        await asyncio.sleep(poll_seconds * random.uniform(0.5, 1.5))
    done = asyncio.Event()
    renewer = asyncio.get_running_loop().create_task(
        _renew_lease(store, name, owner, seconds, done))
    try:
        yield
    finally:
        # Shielded: a cancelled block still hands the lease back rather than let it expire;
        # the renewer ends first, so no late renewal re-takes a released lease.
        done.set()
        await asyncio.shield(renewer)
        await asyncio.shield(asyncio.to_thread(store.release_lease, name, owner))


async def _renew_lease(store: ConnectionStore, name: str, owner: str, seconds: float,
                       done: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(done.wait(), seconds / 3)
            return
        except asyncio.TimeoutError:
            pass
        if not await asyncio.to_thread(store.try_lease, name, owner, seconds):
            log.warning("lease %s was lost while held", name)
            return


CUSTOMER_LEASE_SECONDS = 60.0  # longer than a customer look-up and create may take


def customer_lease(store: ConnectionStore, connection_id: str,
                   external_id: str) -> AbstractAsyncContextManager[None]:
    """One writer of a customer's ERP record at a time (an order's upsert, the customer sync),
    so two at once never create it twice: the second finds the first's ledger row."""
    return store_lease(store, f"customer:{connection_id}:{external_id}", CUSTOMER_LEASE_SECONDS,
                       what="the customer's upsert")


class StoreTokenStore:
    """OAuth tokens of one connection, encrypted in the connection store. The newest token
    set is saved before it is used, so a crash never strands a rotated refresh token.

    ``refresh_lock()`` is single-flight across coroutines (an asyncio lock per connection) and
    across processes and hosts (a lease row in the connection store, with an owner and an
    expiry, renewed while held, so a crashed holder cannot block the connection for longer
    than ``LEASE_SECONDS``).
    ``consent_required``/``require_consent`` keep the "needs re-consent" state of a connection
    whose refresh token the ERP refused, so every worker stops spending refresh attempts."""

    NEEDS_CONSENT = "needs_consent"  # connection health: the chain needs a user's new consent
    LEASE_SECONDS = 20.0  # renewed while held; a holder that died frees it within this time
    POLL_SECONDS = 0.05
    _locks: dict[tuple[int, str], asyncio.Lock] = {}

    def __init__(self, store: ConnectionStore, connection_id: str) -> None:
        self._store, self._cid = store, connection_id

    async def load(self) -> TokenSet | None:
        data = self._store.get_secret_json(self._cid, ERP_TOKENS)
        return TokenSet.model_validate(data) if data else None

    async def save(self, tokens: TokenSet) -> None:
        self._store.put_secret(self._cid, ERP_TOKENS, tokens.to_secret_dict())

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        return self._locked()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        key = (id(asyncio.get_running_loop()), self._cid)
        async with self._locks.setdefault(key, asyncio.Lock()):
            async with store_lease(self._store, f"oauth-refresh:{self._cid}", self.LEASE_SECONDS,
                                   what=f"the token refresh lock of connection {self._cid}",
                                   poll_seconds=self.POLL_SECONDS):
                yield

    async def consent_required(self) -> str | None:
        health = self._store.connection_health(self._cid)
        if health["state"] != self.NEEDS_CONSENT:
            return None
        return health["message"] or health["state"]

    async def require_consent(self, reason: str) -> None:
        self._store.set_connection_health(self._cid, self.NEEDS_CONSENT, reason)


# Client-side work some activities start, handed in by the worker process (starter/workers.py)
# so that activities/ never imports the starter or the workflows:
# ``signal_order(client, connection_id, order_id, event, *, task_queue, erp_requests_per_minute)``
# hands an order to its OrderSync (starter/dispatch.py); ``set_poll_interval(client,
# connection_id, minutes)`` re-times a connection's poll schedule (starter/schedules.py).
SignalOrder = Callable[..., Awaitable[str]]
SetPollInterval = Callable[[Any, str, float], Awaitable[bool]]


def _not_wired(what: str) -> Callable[..., Awaitable[Any]]:
    async def missing(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"this worker's Runtime was built without {what}")
    return missing


class Runtime:
    def __init__(self, store: ConnectionStore, *, client: Any = None,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None,
                 signal_order: SignalOrder | None = None,
                 set_poll_interval: SetPollInterval | None = None) -> None:
        self.store = store
        self.client = client
        self.signal_order: SignalOrder = signal_order or _not_wired("signal_order")
        self.set_poll_interval: SetPollInterval = (set_poll_interval
                                                   or _not_wired("set_poll_interval"))
        self._transports = transports or {}
        self._connectors: dict[tuple[str, str], Any] = {}
        self._retired: set[asyncio.Task] = set()

    def connection(self, connection_id: str) -> Connection:
        return self.store.get_connection(connection_id)

    def _cache_key(self, conn: Connection, side: str, secret_name: str) -> tuple[str, str]:
        settings = conn.store if side == "store" else conn.erp
        # A re-encrypted secret (key rotation) rebuilds the connector once, harmlessly.
        secret = self.store.secret_stamp(conn.id, secret_name)
        digest = hashlib.sha256(f"{settings}|{secret}".encode()).hexdigest()
        return (f"{side}:{conn.id}", digest)

    def storefront(self, conn: Connection) -> Storefront:
        return self._connector(conn, "store", conn.store_system, conn.store, STORE_CREDENTIALS)

    def erp(self, conn: Connection) -> Erp:
        return self._connector(conn, "erp", conn.erp_system, conn.erp, ERP_CREDENTIALS)

    def _connector(self, conn: Connection, side: str, system: str, settings: dict[str, Any],
                   secret_name: str) -> Any:
        """One connector per connection side, rebuilt when its settings or secret change."""
        key = self._cache_key(conn, side, secret_name)
        cached = self._connectors.get(key[0])
        if cached and cached[0] == key[1]:
            return cached[1]
        connector = connector_module(system).open_connector(
            settings, self.store.get_secret_json(conn.id, secret_name) or {},
            tokens=StoreTokenStore(self.store, conn.id), transport=self._transports.get(system),
            on_settings_change=lambda changes: self._remember(conn.id, side, changes))
        self._connectors[key[0]] = (key[1], connector)
        if cached:
            self._retire(cached[1])
        return connector

    def _retire(self, connector: Any) -> None:
        """Close a replaced connector once the attempts still using it are done."""
        try:
            task = asyncio.get_running_loop().create_task(_close_later(connector))
        except RuntimeError:  # no loop runs: nothing can still be using it
            return
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _remember(self, connection_id: str, side: str, changes: dict[str, Any]) -> None:
        conn = self.store.get_connection(connection_id)
        (conn.store if side == "store" else conn.erp).update(changes)
        self.store.save_connection(conn)

    async def aclose(self) -> None:
        for _, connector in self._connectors.values():
            await connector.aclose()
        self._connectors.clear()
        for task in list(self._retired):
            task.cancel()  # closes its connector now
        await asyncio.gather(*self._retired, return_exceptions=True)


# Longer than the longest start-to-close timeout (an ERP write's, 5 minutes).
RETIRED_CONNECTOR_GRACE_SECONDS = 360.0


async def _close_later(connector: Any) -> None:
    try:
        await asyncio.sleep(RETIRED_CONNECTOR_GRACE_SECONDS)
    finally:
        await connector.aclose()
