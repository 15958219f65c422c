"""OAuth2Auth against a fake token endpoint and API (httpx.MockTransport)."""
from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import httpx
import pytest

from connectors import http
from connectors.auth import MemoryTokenStore, OAuth2Auth, TokenSet
from connectors.errors import AuthFailed

TOKEN_URL = "https://erp.test/identity/connect/token"
SECRET = "s3cret-client"
PASSWORD = "pa55word"


class FakeIdentity:
    """Issues rotating tokens, accepts only the newest ones, and logs what happened."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.grants: list[str] = []
        self.api_calls: list[str] = []  # the bearer token of each API request
        self.events: list[str] = []
        self.password_ok = True
        self.echo_secrets = False
        self.reject_api = False

    def issue(self) -> dict:
        n = next(self.counter)
        access, refresh = f"access-{n}", f"refresh-{n}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                "token_type": "Bearer", "scope": "api offline_access"}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return await self.token(parse_qs(request.content.decode()))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.api_calls.append(token)
        self.events.append(f"api:{token}")
        await asyncio.sleep(0)
        if self.reject_api or token not in self.valid_access:
            return httpx.Response(401, json={"message": "You are not logged in."})
        return httpx.Response(200, json={"ok": True})

    async def token(self, form: dict) -> httpx.Response:
        grant = form["grant_type"][0]
        self.grants.append(grant)
        await asyncio.sleep(0.01)  # a slow server makes concurrent callers overlap
        if form.get("client_secret") != [SECRET]:
            return httpx.Response(401, json={"error": "invalid_client"})
        if grant == "refresh_token":
            if form["refresh_token"][0] not in self.valid_refresh:
                return httpx.Response(400, json={"error": "invalid_grant",
                                                 "error_description": "refresh token expired"})
            self.valid_refresh.discard(form["refresh_token"][0])  # rotation
            self.valid_access.clear()
            return httpx.Response(200, json=self.issue())
        if grant == "password" and self.password_ok and form["password"] == [PASSWORD]:
            return httpx.Response(200, json=self.issue())
        description = f"bad password {form['password'][0]} for {SECRET}" if self.echo_secrets \
            else "invalid_username_or_password"
        return httpx.Response(400, json={"error": "invalid_grant",
                                         "error_description": description})


class RecordingStore(MemoryTokenStore):
    def __init__(self, events: list[str], tokens: TokenSet | None = None) -> None:
        super().__init__(tokens)
        self.events = events
        self.saved: list[TokenSet] = []

    async def save(self, tokens: TokenSet) -> None:
        self.events.append(f"save:{tokens.access_token.get_secret_value()}")
        self.saved.append(tokens)
        await super().save(tokens)


def tokens(access: str, refresh: str | None, expires_in: float = 3600) -> TokenSet:
    return TokenSet(access_token=access, refresh_token=refresh, scope="api",
                    expires_at=datetime.now(timezone.utc) + timedelta(seconds=expires_in))


def make(idp: FakeIdentity, store: MemoryTokenStore) -> tuple[httpx.AsyncClient, OAuth2Auth]:
    transport = httpx.MockTransport(idp.handler)
    auth = OAuth2Auth(TOKEN_URL, "client@Tenant", SECRET, store, transport=transport,
                      grant={"grant_type": "password", "username": "admin", "password": PASSWORD,
                             "scope": "api offline_access"})
    return httpx.AsyncClient(base_url="https://erp.test/entity/", auth=auth,
                             transport=transport), auth


async def test_token_obtained_once_for_concurrent_requests() -> None:
    idp = FakeIdentity()
    store = RecordingStore(idp.events)
    client, auth = make(idp, store)
    responses = await asyncio.gather(*(client.get("Customer") for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert idp.grants == ["password"]
    assert set(idp.api_calls) == {"access-1"}
    assert len(store.saved) == 1


async def test_401_refreshes_once_and_retries_once() -> None:
    idp = FakeIdentity()
    store = RecordingStore(idp.events, tokens("revoked", "refresh-0"))
    idp.valid_refresh.add("refresh-0")
    client, _ = make(idp, store)
    resp = await client.get("Customer")
    assert resp.status_code == 200
    assert idp.grants == ["refresh_token"]
    assert idp.api_calls == ["revoked", "access-1"]


async def test_persistent_401_is_returned_after_one_retry() -> None:
    idp = FakeIdentity()
    idp.reject_api = True
    client, _ = make(idp, RecordingStore(idp.events))
    resp = await client.get("Customer")
    assert resp.status_code == 401
    assert len(idp.api_calls) == 2
    assert idp.grants == ["password", "refresh_token"]


async def test_rotated_refresh_token_is_saved_before_use() -> None:
    idp = FakeIdentity()
    idp.valid_refresh.add("refresh-0")
    store = RecordingStore(idp.events, tokens("old", "refresh-0", expires_in=30))
    client, _ = make(idp, store)
    await client.get("Customer")
    assert idp.grants == ["refresh_token"]  # proactive: 30 s left is inside the 60 s margin
    assert idp.events == ["save:access-1", "api:access-1"]
    saved = await store.load()
    assert saved.refresh_token.get_secret_value() == "refresh-1"
    assert "refresh-0" not in idp.valid_refresh


async def test_concurrent_401s_share_one_refresh() -> None:
    idp = FakeIdentity()
    idp.valid_refresh.add("refresh-0")
    client, _ = make(idp, RecordingStore(idp.events, tokens("revoked", "refresh-0")))
    responses = await asyncio.gather(*(client.get("Customer") for _ in range(10)))
    assert {r.status_code for r in responses} == {200}
    assert idp.grants == ["refresh_token"]


async def test_invalid_grant_falls_back_to_password() -> None:
    idp = FakeIdentity()
    store = RecordingStore(idp.events, tokens("stale", "refresh-dead", expires_in=-10))
    client, _ = make(idp, store)
    resp = await client.get("Customer")
    assert resp.status_code == 200
    assert idp.grants == ["refresh_token", "password"]
    assert (await store.load()).refresh_token.get_secret_value() == "refresh-1"


@pytest.mark.parametrize("echo", [False, True])
async def test_final_failure_raises_auth_failed_without_secrets(echo: bool) -> None:
    idp = FakeIdentity()
    idp.password_ok = False
    idp.echo_secrets = echo
    client, _ = make(idp, RecordingStore(idp.events, tokens("stale", "refresh-dead", -10)))
    with pytest.raises(AuthFailed) as caught:
        await client.get("Customer")
    text = f"{caught.value} {caught.value!r} {caught.value.details}"
    assert "invalid_grant" in text
    for secret in (SECRET, PASSWORD, "refresh-dead", "stale"):
        assert secret not in text
    assert idp.grants == ["refresh_token", "password"]
    assert idp.api_calls == []


async def test_wrong_client_secret_does_not_retry_with_password() -> None:
    idp = FakeIdentity()
    transport = httpx.MockTransport(idp.handler)
    store = MemoryTokenStore(tokens("stale", "refresh-0", -10))
    auth = OAuth2Auth(TOKEN_URL, "client@Tenant", "wrong", store, transport=transport,
                      grant={"grant_type": "password", "username": "u", "password": PASSWORD})
    async with httpx.AsyncClient(auth=auth, transport=transport) as client:
        with pytest.raises(AuthFailed, match="invalid_client"):
            await client.get("https://erp.test/entity/Customer")
    assert idp.grants == ["refresh_token"]


def test_token_set_round_trips_through_its_secret_dict() -> None:
    original = tokens("access-xyz", "refresh-xyz")
    assert TokenSet.model_validate(original.to_secret_dict()) == original
    assert "-xyz" not in repr(original) and "-xyz" not in str(original)


class LockRecordingStore(RecordingStore):
    """Records when the cross-process refresh lock is taken and handed back."""

    def __init__(self, events: list[str], tokens: TokenSet | None = None) -> None:
        super().__init__(events, tokens)
        self.held = False

    @asynccontextmanager
    async def _recording(self):
        async with self._lock:
            self.held = True
            self.events.append("lock")
            try:
                yield
            finally:
                self.held = False
                self.events.append("unlock")

    def refresh_lock(self):
        return self._recording()


async def test_quota_slot_is_awaited_before_the_refresh_lock_is_taken() -> None:
    """A token request waits for its quota slot like any ERP request, but not while holding
    the refresh lock: however long the backlog ahead of it, the lock (a lease across
    processes) covers only the token request and the save."""
    idp = FakeIdentity()
    idp.valid_refresh.add("refresh-0")
    store = LockRecordingStore(idp.events, tokens("old", "refresh-0", expires_in=30))
    client, _ = make(idp, store)

    async def gate(system: str) -> None:
        assert not store.held, "the refresh lock was held while waiting for a quota slot"
        idp.events.append(f"slot:{system}")
        await asyncio.sleep(0.05)  # a backlog of ERP requests ahead of this one

    token = http.REQUEST_GATE.set(gate)
    try:
        responses = await asyncio.gather(*(client.get("Customer") for _ in range(5)))
    finally:
        http.REQUEST_GATE.reset(token)
    assert {r.status_code for r in responses} == {200}
    assert idp.grants == ["refresh_token"]  # one refresh for all five
    assert idp.events[:4] == ["slot:oauth2", "lock", "save:access-1", "unlock"]
