"""Two worker processes (separate OS processes, each with its own connection-store handle on
the same database and its own connector) refresh one Exact connection concurrently, many
times. The sandbox runs strict (no grace window: any refresh token used twice is refused), so
a single race would break the chain; it must never break, on SQLite and on PostgreSQL — not
even when a backlog of ERP requests waiting for their quota slots outlasts the refresh
lease."""
from __future__ import annotations

import asyncio
import multiprocessing

import httpx
import pytest

from activities.quota import request_gate
from activities.runtime import StoreTokenStore, store_lease
from connectors import http
from connections.config import Connection
from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault
from connectors import exact_online as eo
from connectors.auth import TokenSet
from connectors.errors import AuthExpired
from sandbox import exact_online as sandbox
from sandbox.server import serving
from tests.conftest import HISTORY_KEYS

CLIENT_ID, SECRET = "9a8b7c6d-0000-4000-8000-000000000001", "sandbox-secret"
REDIRECT = "http://127.0.0.1:8765/callback"
CONN = "exact-chain"
CALLS = 12  # per coroutine; every call needs a refresh (see the sandbox settings below)
COROUTINES = 2  # per process


async def _work(url: str, db_url: str) -> int:
    store = ConnectionStore(Database(db_url), Vault(Keyring.load(HISTORY_KEYS)))
    # The sandbox here serves plain HTTP on loopback: the explicit, loud opt-in.
    erp = eo.open_connector({"base_url": url, "division": sandbox.DEFAULT_DIVISION,
                             "allow_insecure_http": True},
                            {"client_id": CLIENT_ID, "client_secret": SECRET},
                            tokens=StoreTokenStore(store, CONN))

    async def calls() -> int:
        for i in range(CALLS):
            for attempt in range(10):
                try:
                    await erp.find_document("invoice", f"WC-{i}")
                    break
                except AuthExpired:
                    # The other workers moved the chain on between our refresh and our retry
                    # (here every call refreshes): retryable, like the activity's retry. Any
                    # other error (ConsentRequired above all) fails the test.
                    if attempt == 9:
                        raise
        return CALLS

    try:
        return sum(await asyncio.gather(*(calls() for _ in range(COROUTINES))))
    finally:
        await erp.aclose()
        store.db.close()


def worker(url: str, db_url: str, results) -> None:
    try:
        results.put(("ok", asyncio.run(_work(url, db_url))))
    except BaseException as exc:  # reported to the test, never swallowed
        results.put(("error", f"{type(exc).__name__}: {exc}"))


async def test_two_processes_never_break_the_token_chain(db_url, keyring):
    app = sandbox.create_app(client_id=CLIENT_ID, client_secret=SECRET, token_lifetime=2,
                             refresh_not_before=0, minutely_limit=100_000, daily_limit=1_000_000,
                             refresh_grace_seconds=0)
    state = app.state.exact
    store = ConnectionStore(Database(db_url), Vault(keyring))
    try:
        store.save_connection(Connection(id=CONN, store_system="woocommerce", store={},
                                         erp_system="exact_online", erp={}))
        async with serving(app) as served:
            await _consent(served.url, store)

            ctx = multiprocessing.get_context("spawn")
            results = ctx.Queue()
            procs = [ctx.Process(target=worker, args=(served.url, db_url, results)) for _ in range(2)]
            for p in procs:
                p.start()
            loop = asyncio.get_running_loop()
            outcomes = [await loop.run_in_executor(None, results.get, True, 120) for _ in procs]
            for p in procs:
                await loop.run_in_executor(None, p.join, 30)
        assert outcomes == [("ok", CALLS * COROUTINES)] * 2, outcomes
        stats = state.stats
        assert stats["refresh_reused"] == 0 and stats["by_grant"]["refresh_token"] == stats["refreshes"]
        assert stats["refreshes"] >= CALLS  # the chain really moved, many times
        assert store.connection_health(CONN)["state"] == "ok"
        saved = await StoreTokenStore(store, CONN).load()
        live = [e for e in state.refresh.values() if e["used"] is None]
        assert len(live) == 1  # exactly one unspent refresh token: the one in the store
        assert state.refresh[saved.refresh_token.get_secret_value()]["used"] is None
    finally:
        store.db.close()


async def _consent(url: str, store: ConnectionStore) -> None:
    """A user's consent: the chain's first token set, saved as `connections authorize` does."""
    async with httpx.AsyncClient(base_url=url) as c:
        code = (await c.post("/_sandbox/authorize", json={"redirect_uri": REDIRECT})).json()["code"]
        first = await c.post("/api/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": CLIENT_ID, "client_secret": SECRET})
    await StoreTokenStore(store, CONN).save(TokenSet.from_response(first.json()))


RPM = 60  # the connection's licensed ERP rate: one request slot every ~1.02 s
BACKLOG = 8  # calls per process queued for their slots at once: ~16 s of requests in all
SHORT_LEASE = 2.0  # seconds: far shorter than the backlog ahead of the token request


async def _backlogged(url: str, db_url: str, start) -> int:
    """A worker's ERP calls under the connection's real quota gate: both processes queue theirs
    at the same moment, with the access token already dead, so each refresh comes behind the
    whole backlog."""
    StoreTokenStore.LEASE_SECONDS = SHORT_LEASE
    store = ConnectionStore(Database(db_url), Vault(Keyring.load(HISTORY_KEYS)))
    erp = eo.open_connector({"base_url": url, "division": sandbox.DEFAULT_DIVISION,
                             "allow_insecure_http": True},
                            {"client_id": CLIENT_ID, "client_secret": SECRET},
                            tokens=StoreTokenStore(store, CONN))
    gate = http.REQUEST_GATE.set(request_gate(store, CONN, "exact_online", RPM))
    try:
        await asyncio.to_thread(start.wait, 60)
        await asyncio.gather(*(erp.find_document("invoice", f"WC-{i}") for i in range(BACKLOG)))
        return BACKLOG
    finally:
        http.REQUEST_GATE.reset(gate)
        await erp.aclose()
        store.db.close()


def backlogged_worker(url: str, db_url: str, start, results) -> None:
    try:
        results.put(("ok", asyncio.run(_backlogged(url, db_url, start))))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


async def test_a_quota_backlog_never_outlasts_the_refresh_lease(db_url, keyring):
    """The token expires while both processes have a backlog of requests waiting for their
    slots at the licensed rate, longer than the refresh lease: exactly one refresh, and the
    chain (strict: no grace window) is never presented twice."""
    app = sandbox.create_app(client_id=CLIENT_ID, client_secret=SECRET, minutely_limit=RPM,
                             refresh_grace_seconds=0)
    state = app.state.exact
    store = ConnectionStore(Database(db_url), Vault(keyring))
    try:
        store.save_connection(Connection(id=CONN, store_system="woocommerce", store={},
                                         erp_system="exact_online", erp={},
                                         erp_requests_per_minute=RPM))
        async with serving(app) as served:
            await _consent(served.url, store)
            state.expire_tokens()  # the stored set still looks fresh: each call meets a 401
            ctx = multiprocessing.get_context("spawn")
            results, start = ctx.Queue(), ctx.Barrier(2)
            procs = [ctx.Process(target=backlogged_worker,
                                 args=(served.url, db_url, start, results)) for _ in range(2)]
            for p in procs:
                p.start()
            loop = asyncio.get_running_loop()
            outcomes = [await loop.run_in_executor(None, results.get, True, 120) for _ in procs]
            for p in procs:
                await loop.run_in_executor(None, p.join, 30)
        assert outcomes == [("ok", BACKLOG)] * 2, outcomes
        stats = state.stats
        print(f"backlog: {stats['api_requests']} API requests, {stats['by_grant']}")
        assert stats["by_grant"]["refresh_token"] == stats["refreshes"] == 1, stats
        assert stats["refresh_reused"] == 0
        assert store.connection_health(CONN)["state"] == "ok"
    finally:
        store.db.close()


async def test_a_lease_held_longer_than_its_seconds_is_renewed(db_url, keyring):
    store = ConnectionStore(Database(db_url), Vault(keyring))
    try:
        async with store_lease(store, "oauth-refresh:renewed", 0.6, what="the test lease"):
            for _ in range(4):  # 2 s in all: more than three lease lengths
                await asyncio.sleep(0.5)
                assert not store.try_lease("oauth-refresh:renewed", "other", 30)
        assert store.try_lease("oauth-refresh:renewed", "other", 30)  # handed back on exit
    finally:
        store.db.close()


async def test_store_lease_is_exclusive_and_expires(db_url, keyring):
    store = ConnectionStore(Database(db_url), Vault(keyring))
    try:
        assert store.try_lease("oauth-refresh:c", "a", 30)
        assert not store.try_lease("oauth-refresh:c", "b", 30)
        assert store.try_lease("oauth-refresh:c", "a", 30)  # the holder may extend
        store.release_lease("oauth-refresh:c", "b")  # not b's to release
        assert not store.try_lease("oauth-refresh:c", "b", 30)
        store.release_lease("oauth-refresh:c", "a")
        assert store.try_lease("oauth-refresh:c", "b", -1)  # already expired when taken
        assert store.try_lease("oauth-refresh:c", "a", 30)  # an expired lease is taken over
        store.set_connection_health("c", "needs_consent", "refresh token refused")
        assert store.connection_health("c")["state"] == "needs_consent"
        store.set_connection_health("c", "ok")
        assert store.connection_health("c") == {"state": "ok", "message": "", "updated_at": ""}
    finally:
        store.db.close()
