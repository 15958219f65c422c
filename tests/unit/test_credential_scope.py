"""Credentials go only where they were configured, over real sockets: a link or ``Location`` a
vendor answers is followed on the configured scheme, host and port only (a second server
records whether anything reached it), credential-bearing URLs are https:// unless a local
test server is explicitly allowed, and WooCommerce's auto mode keeps the secret out of URLs."""
from __future__ import annotations

import logging
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors import acumatica, exact_online, woocommerce
from connectors.acumatica_mapping import PAYMENT
from connectors.auth import MemoryTokenStore, TokenSet
from connectors.errors import AuthExpired, ConfigurationError
from connectors.http import returned_url
from sandbox.server import LocalCA, serving

TOKEN = "bearer-token-of-the-configured-host"
CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ml-connector"


def fresh_tokens() -> TokenSet:
    return TokenSet(access_token=TOKEN, refresh_token="refresh-1",
                    expires_at=datetime.now(timezone.utc) + timedelta(seconds=500))


class Recording:
    """An app answering every request with ``answer(request)`` and keeping what it saw."""

    def __init__(self, answer=None):
        self.seen: list[dict] = []
        self.answer = answer or (lambda request: JSONResponse({"d": {"results": []}}))
        self.app = Starlette(routes=[Route("/{path:path}", self._handle,
                                           methods=["GET", "POST", "PUT", "DELETE"])])

    async def _handle(self, request: Request) -> Response:
        self.seen.append({"url": str(request.url), "headers": dict(request.headers)})
        return self.answer(request)

    def tokens_seen(self) -> list[str]:
        return [s["headers"].get("authorization", "") for s in self.seen]


@pytest.fixture
def ca(tmp_path) -> LocalCA:
    return LocalCA.create(tmp_path / "tls")


def exact(base_url: str, ca: LocalCA, **settings) -> exact_online.ExactOnlineErp:
    return exact_online.open_connector(
        {"base_url": base_url, "division": 1, "ca_bundle": str(ca.ca_file), **settings},
        {"client_id": "app", "client_secret": "app-secret"}, tokens=MemoryTokenStore(fresh_tokens()))


def next_page_to(link: str):
    """An Exact host whose first page's ``__next`` is ``link``."""
    def answer(request: Request) -> Response:
        if "$skiptoken" in str(request.url):
            return JSONResponse({"d": {"results": []}})
        return JSONResponse({"d": {"results": [], "__next": link}})
    return answer


async def items(erp) -> list:
    return [i async for i in erp.iter_item_changes(datetime(2024, 1, 1, tzinfo=timezone.utc))]


async def test_exact_next_on_the_configured_host_is_followed(ca):
    configured = Recording()
    async with serving(configured.app, tls=ca) as host:
        configured.answer = next_page_to(f"{host.url}/api/v1/1/logistics/Items?$skiptoken=2")
        erp = exact(host.url, ca)
        try:
            assert await items(erp) == []
        finally:
            await erp.aclose()
    assert len(configured.seen) == 2 and all(t == f"Bearer {TOKEN}" for t in configured.tokens_seen())


@pytest.mark.parametrize("elsewhere", ["other_host", "plain_http", "other_port"])
async def test_exact_next_elsewhere_is_refused_and_the_token_never_leaves(ca, elsewhere):
    configured, other, other_plain = Recording(), Recording(), Recording()
    async with serving(configured.app, tls=ca) as host, serving(other.app, tls=ca) as far, \
            serving(other_plain.app) as plain:
        port = far.url.rsplit(":", 1)[1]
        link = {"other_host": f"https://localhost:{host.url.rsplit(':', 1)[1]}/api/v1/1/x",
                "plain_http": f"{plain.url}/api/v1/1/logistics/Items?$skiptoken=2",
                "other_port": f"https://127.0.0.1:{port}/api/v1/1/logistics/Items"}[elsewhere]
        configured.answer = next_page_to(link)
        erp = exact(host.url, ca)
        try:
            with pytest.raises(ConfigurationError) as info:
                await items(erp)
        finally:
            await erp.aclose()
    refused_host = httpx.URL(link).host
    assert refused_host in str(info.value) and TOKEN not in str(info.value)
    assert not info.value.retryable
    assert len(configured.seen) == 1  # the first page, and nothing after it
    assert other.seen == [] and other_plain.seen == []


async def test_acumatica_release_location_on_another_host_is_refused(ca):
    other = Recording()

    async with serving(other.app, tls=ca) as far:
        def answer(request: Request) -> Response:
            return Response(status_code=202, headers={
                "Location": f"{far.url}/entity/Default/24.200.001/Payment/ReleasePayment/status/1"})

        configured = Recording(answer)
        async with serving(configured.app, tls=ca) as host:
            erp = acumatica.AcumaticaErp(
                acumatica.AcumaticaSettings(instance_url=host.url, ca_bundle=str(ca.ca_file)),
                acumatica.AcumaticaCredentials(client_id="id@T", client_secret="s",
                                               username="api", password="pw"),
                MemoryTokenStore(fresh_tokens()))
            try:
                with pytest.raises(ConfigurationError) as info:
                    await erp._release(PAYMENT, {"Type": "Payment", "ReferenceNbr": "000123"})
            finally:
                await erp.aclose()
    assert "127.0.0.1" in str(info.value) and TOKEN not in str(info.value)
    assert configured.tokens_seen() == [f"Bearer {TOKEN}"]  # the release call itself
    assert other.seen == []


def test_returned_url_resolves_relative_links_on_the_configured_origin():
    base = httpx.URL("https://erp.example/entity/Default/24.200.001/")
    assert returned_url(base, "/entity/status/1", system="x") == "https://erp.example/entity/status/1"
    assert returned_url(base, "https://erp.example:443/a", system="x") == "https://erp.example/a"
    for elsewhere in ("//evil.example/a", "http://erp.example/a", "https://erp.example:8443/a",
                      "https://erp.example.evil.example/a"):
        with pytest.raises(ConfigurationError):
            returned_url(base, elsewhere, system="x")


# --- https only, unless explicitly allowed ---------------------------------------------------

async def test_connectors_refuse_plain_http_unless_explicitly_allowed(ca, caplog):
    with pytest.raises(ConfigurationError, match="https://"):
        exact("http://127.0.0.1:1", ca)
    with pytest.raises(ConfigurationError, match="https://"):
        acumatica.open_connector({"instance_url": "http://127.0.0.1:1"},
                                 {"client_id": "id@T", "client_secret": "s", "username": "u",
                                  "password": "p"}, tokens=MemoryTokenStore())
    with pytest.raises(ValueError, match="https://"):
        woocommerce.WooCommerceSettings(base_url="http://127.0.0.1:1/", auth_mode="oauth1")
    with caplog.at_level(logging.WARNING, logger="connectors.http"):
        erp = exact("http://127.0.0.1:1", ca, allow_insecure_http=True)
        await erp.aclose()
    assert any("plain HTTP" in r.getMessage() for r in caplog.records)


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ML_CONNECTOR_HOME": str(tmp_path), "ML_STORE_SECRET": "cs_topsecret",
           "ML_ERP_CLIENT_SECRET": "erp_topsecret", "ML_ERP_PASSWORD": "pw_topsecret"}
    env.pop("ML_CONNECTOR_MASTER_KEYS", None)
    return subprocess.run([str(CLI), "connections", "add", "shop", "--no-schedules", *args],
                          capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)


ADD = ["--store-key", "ck_1", "--erp-client-id", "id@T", "--erp-username", "api"]


@pytest.mark.parametrize("urls,setting", [
    (["--store-url", "http://shop.example/", "--erp-url", "https://erp.example"], "base_url"),
    (["--store-url", "https://shop.example/", "--erp-url", "http://erp.example"], "instance_url"),
])
def test_connections_add_refuses_plain_http_in_one_line(tmp_path, urls, setting):
    out = run_cli(tmp_path, *urls, *ADD)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert setting in out.stderr and "https://" in out.stderr
    assert "topsecret" not in out.stdout + out.stderr


def test_connections_add_with_the_explicit_setting_warns(tmp_path):
    out = run_cli(tmp_path, "--store-url", "https://shop.example/", "--erp-url", "http://erp.example",
                  "--erp-setting", "allow_insecure_http=true", *ADD)
    assert out.returncode == 0, out.stderr
    assert "WARNING" in out.stderr and "plain HTTP" in out.stderr


# --- WooCommerce: the secret stays out of URLs ---------------------------------------------

async def test_woocommerce_auto_after_a_401_never_sends_the_secret_in_a_query_string(ca):
    def stripped(request: Request) -> Response:  # a host that drops Authorization
        return JSONResponse({"code": "woocommerce_rest_cannot_view", "message": "Sorry.",
                             "data": {"status": 401}}, status_code=401)

    shop = Recording(stripped)
    async with serving(shop.app, tls=ca) as host:
        wc = woocommerce.open_connector({"base_url": host.url, "ca_bundle": str(ca.ca_file)},
                                        {"consumer_key": "ck_k", "consumer_secret": "cs_secret"})
        try:
            with pytest.raises(AuthExpired) as info:
                await wc.get_order("1")
            report = await wc.ping()
        finally:
            await wc.aclose()
    assert "auth_mode=query_string" in str(info.value) and "cs_secret" not in str(info.value)
    assert not report["ok"] and report["auth_mode"] == "basic"
    assert shop.seen and not any("cs_secret" in s["url"] or "consumer_secret" in s["url"]
                                 for s in shop.seen)
