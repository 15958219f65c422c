"""Exact's token rules through the connector against the sandbox (ASGI, no sockets):
refresh shortly before expiry but never inside Exact's 570 s "not expired" window, rotation,
and a refused refresh token making orders wait for a new consent."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from connectors import exact_online as eo
from connectors.auth import MemoryTokenStore, TokenSet
from connectors.errors import AuthExpired, ConsentRequired
from sandbox import exact_online as sandbox

CLIENT_ID, SECRET = "9a8b7c6d-0000-4000-8000-000000000001", "sandbox-secret"
REDIRECT = "http://127.0.0.1:8765/callback"
HOST = "https://exact.test"


class ConsentStore(MemoryTokenStore):
    """A token store that keeps the needs-re-consent state, like the connection store."""

    def __init__(self, tokens=None) -> None:
        super().__init__(tokens)
        self.reason: str | None = None

    async def consent_required(self) -> str | None:
        return self.reason

    async def require_consent(self, reason: str) -> None:
        self.reason = reason


@pytest.fixture
def app():  # strict: a used refresh token has no grace window
    return sandbox.create_app(client_id=CLIENT_ID, client_secret=SECRET, refresh_grace_seconds=0)


def control(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST)


async def first_tokens(app) -> TokenSet:
    async with control(app) as c:
        code = (await c.post("/_sandbox/authorize", json={"redirect_uri": REDIRECT})).json()["code"]
        resp = await c.post("/api/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": CLIENT_ID, "client_secret": SECRET})
    assert resp.json()["expires_in"] == "600"
    return TokenSet.from_response(resp.json())


def connector(app, store, **creds) -> eo.ExactOnlineErp:
    return eo.open_connector({"base_url": HOST, "division": sandbox.DEFAULT_DIVISION},
                             {"client_id": CLIENT_ID, "client_secret": SECRET, **creds},
                             tokens=store, transport=httpx.ASGITransport(app=app))


async def stats(app) -> dict:
    async with control(app) as c:
        return (await c.get("/_sandbox/stats")).json()


def expiring_in(tokens: TokenSet, seconds: float) -> TokenSet:
    return tokens.model_copy(update={"expires_at": datetime.now(timezone.utc) + timedelta(seconds=seconds)})


async def test_refreshes_inside_the_last_30_seconds_only(app):
    tokens = await first_tokens(app)
    store = MemoryTokenStore(expiring_in(tokens, 40))  # issued 560 s ago: too early to refresh
    erp = connector(app, store)
    try:
        await erp.find_document("invoice", "WC-1")
        assert (await stats(app))["by_grant"].get("refresh_token") is None
        async with control(app) as c:
            await c.post("/_sandbox/clock", json={"advance": 580})
        store._tokens = expiring_in(tokens, 20)  # 580 s after issue: refresh now
        erp._auth._tokens = None
        await erp.find_document("invoice", "WC-1")
        s = await stats(app)
        assert (s["refreshes"], s["refresh_too_early"], s["unauthorized"]) == (1, 0, 0)
        saved = await store.load()
        assert saved.refresh_token != tokens.refresh_token  # rotated, and saved before use
    finally:
        await erp.aclose()


async def test_a_refresh_exact_calls_too_early_is_retryable_not_a_broken_chain(app):
    tokens = await first_tokens(app)
    store = ConsentStore(expiring_in(tokens, 5))  # the client thinks it is due; Exact does not
    erp = connector(app, store)
    try:
        with pytest.raises(AuthExpired, match="Access Token not expired"):
            await erp.find_document("invoice", "WC-1")
        assert store.reason is None and (await stats(app))["refresh_too_early"] == 1
    finally:
        await erp.aclose()


async def test_refused_refresh_token_waits_for_consent_without_more_token_calls(app):
    tokens = await first_tokens(app)
    async with control(app) as c:  # another party spends the refresh token first
        await c.post("/_sandbox/expire-tokens")
        await c.post("/api/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens.refresh_token.get_secret_value(),
            "client_id": CLIENT_ID, "client_secret": SECRET})
    store = ConsentStore(expiring_in(tokens, -1))
    erp = connector(app, store)
    try:
        with pytest.raises(ConsentRequired) as err:
            await erp.find_document("invoice", "WC-1")
        assert err.value.retryable and err.value.retry_after >= 600
        assert "invalid_grant" in store.reason and "authorize" in str(err.value)
        assert tokens.refresh_token.get_secret_value() not in str(err.value)
        before = (await stats(app))["token_requests"]
        with pytest.raises(ConsentRequired):
            await erp.find_document("invoice", "WC-1")
        assert (await stats(app))["token_requests"] == before
    finally:
        await erp.aclose()


async def test_first_call_redeems_the_consent_code_or_seeds_initial_tokens(app):
    async with control(app) as c:
        code = (await c.post("/_sandbox/authorize", json={"redirect_uri": REDIRECT})).json()["code"]
    store = MemoryTokenStore()
    erp = connector(app, store, authorization_code=code, redirect_uri=REDIRECT)
    try:
        assert await erp.find_document("invoice", "WC-1") is None
        assert (await store.load()) is not None
    finally:
        await erp.aclose()
    seeded = MemoryTokenStore()
    initial = (await first_tokens(app)).to_secret_dict()
    erp = connector(app, seeded, initial_tokens=initial)
    try:
        await erp.find_document("invoice", "WC-1")
        assert (await seeded.load()).access_token.get_secret_value() == initial["access_token"]
    finally:
        await erp.aclose()


async def test_expired_access_token_refreshes_once_on_401(app):
    tokens = await first_tokens(app)
    store = MemoryTokenStore(tokens)
    erp = connector(app, store)
    try:
        await erp.find_document("invoice", "WC-1")
        async with control(app) as c:
            await c.post("/_sandbox/expire-tokens")
        await erp.find_document("invoice", "WC-1")
        s = await stats(app)
        assert (s["unauthorized"], s["refreshes"]) == (1, 1)
    finally:
        await erp.aclose()
