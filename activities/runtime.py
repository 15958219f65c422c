"""What activities share in one worker process: the connection store, the Temporal client,
and one connector (with its HTTP connection pool and tokens) per connection."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx

from connections.config import (ERP_CREDENTIALS, ERP_TOKENS, STORE_CREDENTIALS, Connection)
from connections.store import ConnectionStore
from connectors.auth import TokenSet
from connectors.base import Erp, Storefront


class StoreTokenStore:
    """OAuth tokens of one connection, encrypted in the connection store. The newest token
    set is saved before it is used, so a crash never strands a rotated refresh token."""

    _locks: dict[str, asyncio.Lock] = {}

    def __init__(self, store: ConnectionStore, connection_id: str) -> None:
        self._store, self._cid = store, connection_id

    async def load(self) -> TokenSet | None:
        data = self._store.get_secret_json(self._cid, ERP_TOKENS)
        return TokenSet.model_validate(data) if data else None

    async def save(self, tokens: TokenSet) -> None:
        self._store.put_secret(self._cid, ERP_TOKENS, tokens.to_secret_dict())

    def refresh_lock(self) -> asyncio.Lock:
        return self._locks.setdefault(self._cid, asyncio.Lock())


class Runtime:
    def __init__(self, store: ConnectionStore, *, client: Any = None,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self.store = store
        self.client = client
        self._transports = transports or {}
        self._connectors: dict[tuple[str, str], Any] = {}

    def connection(self, connection_id: str) -> Connection:
        return self.store.get_connection(connection_id)

    def _cache_key(self, conn: Connection, side: str, secret_name: str) -> tuple[str, str]:
        settings = conn.store if side == "store" else conn.erp
        secret = self.store.get_secret(conn.id, secret_name) or ""
        digest = hashlib.sha256(f"{settings}|{secret}".encode()).hexdigest()
        return (f"{side}:{conn.id}", digest)

    def storefront(self, conn: Connection) -> Storefront:
        key = self._cache_key(conn, "store", STORE_CREDENTIALS)
        cached = self._connectors.get(key[0])
        if cached and cached[0] == key[1]:
            return cached[1]
        from connectors.woocommerce import (WooCommerceCredentials, WooCommerceSettings,
                                            WooCommerceStore)

        creds = WooCommerceCredentials.model_validate(
            self.store.get_secret_json(conn.id, STORE_CREDENTIALS))
        connector = WooCommerceStore(
            WooCommerceSettings.model_validate(conn.store), creds,
            on_auth_mode_detected=lambda mode: self._remember_auth_mode(conn.id, mode),
            transport=self._transports.get("woocommerce"))
        self._connectors[key[0]] = (key[1], connector)
        return connector

    def erp(self, conn: Connection) -> Erp:
        key = self._cache_key(conn, "erp", ERP_CREDENTIALS)
        cached = self._connectors.get(key[0])
        if cached and cached[0] == key[1]:
            return cached[1]
        from connectors.acumatica import AcumaticaCredentials, AcumaticaErp, AcumaticaSettings

        creds = AcumaticaCredentials.model_validate(
            self.store.get_secret_json(conn.id, ERP_CREDENTIALS))
        connector = AcumaticaErp(AcumaticaSettings.model_validate(conn.erp), creds,
                                 StoreTokenStore(self.store, conn.id),
                                 transport=self._transports.get("acumatica"))
        self._connectors[key[0]] = (key[1], connector)
        return connector

    def _remember_auth_mode(self, connection_id: str, mode: str) -> None:
        conn = self.store.get_connection(connection_id)
        conn.store["auth_mode"] = mode
        self.store.save_connection(conn)

    async def aclose(self) -> None:
        for _, connector in self._connectors.values():
            await connector.aclose()
        self._connectors.clear()
