"""The consent flow (``ml-connector connections authorize NAME``) against the Exact sandbox:
pasted code, localhost redirect, token set saved encrypted, re-consent state cleared, and
nothing secret printed."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from activities.runtime import StoreTokenStore
from connections.config import ERP_CREDENTIALS, Connection
from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault
from sandbox import exact_online as sandbox
from sandbox.server import free_port
from starter.authorize import AuthorizationError, authorize, code_from, redirect_uri_for
from tests.conftest import HISTORY_KEYS

CLI = Path(sys.executable).parent / "ml-connector"

CLIENT_ID, SECRET = "9a8b7c6d-0000-4000-8000-000000000001", "sandbox-secret"
HOST = "https://exact.test"


@pytest.fixture
def app():
    return sandbox.create_app(client_id=CLIENT_ID, client_secret=SECRET)


@pytest.fixture
def store(tmp_path, keyring):
    s = ConnectionStore(Database(f"sqlite:///{tmp_path / 'store.db'}"), Vault(keyring))
    s.save_connection(Connection(id="nl", store_system="woocommerce", store={},
                                 erp_system="exact_online",
                                 erp={"base_url": HOST, "redirect_uri": "http://127.0.0.1:8765/callback"}))
    s.put_secret("nl", ERP_CREDENTIALS, {"client_id": CLIENT_ID, "client_secret": SECRET})
    s.set_connection_health("nl", StoreTokenStore.NEEDS_CONSENT, "refresh token refused")
    yield s
    s.db.close()


def assert_no_secret(lines: list[str], *secrets: str) -> None:
    text = "\n".join(lines)
    for secret in secrets:
        assert secret not in text


async def browse(transport, said: list[str]) -> str:
    """What the user's browser is sent to after consenting at the printed address."""
    async with httpx.AsyncClient(transport=transport, base_url=HOST) as exact:
        return (await exact.get(said[0].split()[-1])).headers["location"]


async def test_pasted_code_is_exchanged_saved_and_clears_the_consent_state(app, store):
    transport = httpx.ASGITransport(app=app)
    said: list[str] = []
    await authorize(store, "nl", say=said.append, transport=transport)  # prints the address
    pasted = await browse(transport, said)
    code = parse_qs(urlsplit(pasted).query)["code"][0]
    await authorize(store, "nl", code=pasted, say=said.append, transport=transport)
    tokens = await StoreTokenStore(store, "nl").load()
    assert tokens is not None and store.connection_health("nl")["state"] == "ok"
    assert "/api/oauth2/auth?client_id=" in said[0] and "response_type=code" in said[0]
    assert_no_secret(said, SECRET, code, tokens.access_token.get_secret_value(),
                     tokens.refresh_token.get_secret_value())
    raw = store.db.query("SELECT ciphertext FROM secrets WHERE name = 'erp_tokens'")[0][0]
    assert tokens.refresh_token.get_secret_value() not in raw  # encrypted at rest


async def test_localhost_redirect_is_served_once(app, store):
    transport = httpx.ASGITransport(app=app)
    port = free_port()
    said: list[str] = []

    async def browser() -> None:
        while not any("Waiting" in s for s in said):
            await asyncio.sleep(0.01)
        auth_url = said[0].split()[-1]
        async with httpx.AsyncClient(transport=transport, base_url=HOST) as exact:
            redirect = (await exact.get(auth_url)).headers["location"]
        assert redirect.startswith(f"http://127.0.0.1:{port}/callback?")
        async with httpx.AsyncClient() as local:
            assert (await local.get(redirect.replace("state=", "state=forged"))).status_code == 400
            page = await local.get(redirect)
        assert page.status_code == 200 and "authorized" in page.text

    await asyncio.gather(authorize(store, "nl", redirect_port=port, say=said.append,
                                   transport=transport, callback_timeout=20), browser())
    assert await StoreTokenStore(store, "nl").load() is not None
    assert store.connection_health("nl")["state"] == "ok"


async def test_without_code_or_port_only_the_url_is_printed(store):
    said: list[str] = []
    await authorize(store, "nl", say=said.append)
    assert len(said) == 2 and "--code" in said[1]
    query = parse_qs(urlsplit(said[0].split()[-1]).query)
    assert query["redirect_uri"] == ["http://127.0.0.1:8765/callback"] and "state" in query


async def test_a_pasted_address_of_another_request_is_refused(app, store):
    transport = httpx.ASGITransport(app=app)
    said: list[str] = []
    await authorize(store, "nl", say=said.append, transport=transport)
    forged = (await browse(transport, said)).replace("state=", "state=forged")
    with pytest.raises(AuthorizationError, match="state differs"):
        await authorize(store, "nl", code=forged, say=said.append, transport=transport)
    assert await StoreTokenStore(store, "nl").load() is None
    assert store.connection_health("nl")["state"] == StoreTokenStore.NEEDS_CONSENT
    assert (await stats(app))["token_requests"] == 0  # refused before any code was spent


async def test_a_request_is_answered_once_and_a_code_needs_one(app, store):
    transport = httpx.ASGITransport(app=app)
    with pytest.raises(AuthorizationError, match="first"):  # nothing was started
        await authorize(store, "nl", code="abc", say=lambda _: None, transport=transport)
    said: list[str] = []
    await authorize(store, "nl", say=said.append, transport=transport)
    pasted = await browse(transport, said)
    await authorize(store, "nl", code=pasted, say=said.append, transport=transport)
    with pytest.raises(AuthorizationError, match="first"):  # the same address again
        await authorize(store, "nl", code=pasted, say=said.append, transport=transport)


async def stats(app) -> dict:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as c:
        return (await c.get("/_sandbox/stats")).json()


def test_helpers():
    assert code_from("  abc  ", "s") == "abc"
    assert code_from("http://127.0.0.1:1/cb?code=xyz&state=s", "s") == "xyz"
    with pytest.raises(AuthorizationError):
        code_from("http://127.0.0.1:1/cb?code=xyz&state=other", "s")
    assert redirect_uri_for("http://127.0.0.1:8765/callback", 9999) == "http://127.0.0.1:9999/callback"


async def test_other_erps_have_nothing_to_authorize(store):
    store.save_connection(Connection(id="acu", store_system="woocommerce", store={},
                                     erp_system="acumatica", erp={}))
    with pytest.raises(AuthorizationError, match="nothing to authorize"):
        await authorize(store, "acu", code="x", say=lambda _: None)


def test_the_cli_refuses_a_pasted_address_of_another_request_in_one_line(tmp_path):
    """As a user runs it: the first run prints the address, the second pastes a redirect
    whose state is not that request's and is refused with one line, no traceback."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    s = ConnectionStore(Database(db), Vault(Keyring.load(HISTORY_KEYS)))
    s.save_connection(Connection(id="nl", store_system="woocommerce", store={},
                                 erp_system="exact_online",
                                 erp={"base_url": HOST, "redirect_uri": "http://127.0.0.1:8765/callback"}))
    s.put_secret("nl", ERP_CREDENTIALS, {"client_id": CLIENT_ID, "client_secret": SECRET})
    s.db.close()
    env = {**os.environ, "ML_CONNECTOR_HOME": str(tmp_path), "ML_CONNECTOR_DB": db,
           "ML_CONNECTOR_KEY_FILE": str(HISTORY_KEYS)}
    env.pop("ML_CONNECTOR_MASTER_KEYS", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), "connections", "authorize", "nl", *args],
                              capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=60)

    started = cli()
    assert started.returncode == 0, started.stderr
    url = started.stdout.split()[started.stdout.split().index("access:") + 1]
    assert "state=" in url
    refused = cli("--code", "http://127.0.0.1:8765/callback?code=abc&state=forged")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert "state differs" in refused.stderr
