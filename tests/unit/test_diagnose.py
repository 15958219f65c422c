"""`connections test`: each failure named precisely, from typed errors, ping reports and the
network; no secret in a finding. (Against the sandboxes over sockets: tests/integration.)"""
from __future__ import annotations

import email.utils
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from activities.runtime import Runtime
from connections.config import ERP_CREDENTIALS, STORE_CREDENTIALS, Connection
from connectors.errors import Unavailable
from connectors.woocommerce import open_connector as open_woocommerce
from starter import diagnose
from starter.diagnose import classify, clock_finding, passed, probe, render

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


def test_clock_behind_the_store_is_named_with_the_skew():
    f = clock_finding("store", "woocommerce", "store", "Invalid timestamp.",
                      http_date(NOW + timedelta(minutes=40)), now=NOW)
    assert f.check == "clock" and not f.ok
    assert "2400 s behind" in f.message and "NTP" in f.fix


def test_clock_ahead_of_the_store():
    f = clock_finding("store", "woocommerce", "store", "Invalid timestamp.",
                      http_date(NOW - timedelta(minutes=20)), now=NOW)
    assert "1200 s ahead of" in f.message


def test_agreeing_date_header_points_at_the_php_clock():
    f = clock_finding("store", "woocommerce", "store", "Invalid timestamp.", http_date(NOW),
                      now=NOW)
    assert "PHP" in f.message and "agrees" in f.message


def test_clock_without_a_date_header():
    f = clock_finding("store", "woocommerce", "store", "Invalid timestamp.", None, now=NOW)
    assert "no Date header" in f.message


@pytest.mark.parametrize("system,error,kind,status,check,words", [
    ("woocommerce", "HTTP 401 on GET /wp-json/wc/v3/orders: Consumer key is invalid. "
     "(woocommerce_rest_authentication_error)", "AuthExpired", 401, "credentials",
     ["consumer key"]),
    ("woocommerce", "HTTP 403 on GET /wp-json/wc/v3/orders: Sorry, you cannot list resources. "
     "(woocommerce_rest_cannot_view)", "AuthFailed", 403, "permission", ["Read/Write"]),
    ("acumatica", "token request (password) refused with HTTP 400: invalid_grant: invalid "
     "username or password", "AuthFailed", 400, "credentials", ["user's name or password"]),
    ("acumatica", "token request (password) refused with HTTP 400: invalid_client",
     "AuthFailed", 400, "credentials", ["client id or client secret"]),
    ("exact_online", "token request (refresh_token) refused with HTTP 400: invalid_client",
     "AuthFailed", 400, "credentials", ["region-specific", "region NL"]),
    ("exact_online", "HTTP 403 on GET /api/v1/999/crm/Accounts: Forbidden - WrongDivision",
     "AuthFailed", 403, "division", ["division 999", "system/Divisions"]),
    ("exact_online", "the refresh token was refused: consent again", "ConsentRequired", None,
     "consent", ["connections authorize"]),
    ("woocommerce", "HTTP 404 on GET /wp-json/wc/v3/orders: No route was found (rest_no_route)",
     "NotFound", 404, "api", ["base_url"]),
    ("acumatica", "HTTP 503 on GET /entity: Service Unavailable", "Unavailable", 503, "api",
     ["retry later"]),
    ("acumatica", "timeout on GET /entity: ReadTimeout('')", "Unavailable", None, "timeout", []),
    ("acumatica", "connection error on GET /entity: ConnectError('[SSL: "
     "CERTIFICATE_VERIFY_FAILED] certificate verify failed')", "Unavailable", None, "tls",
     ["set ca_bundle"]),
])
def test_typed_errors_are_classified(system, error, kind, status, check, words):
    settings = type("S", (), {"region": "NL", "division": 999})()
    side = "store" if system == "woocommerce" else "erp"
    f = classify(side, system, "ERP", error, kind, status, {}, settings)
    assert (f.check, f.ok) == (check, False), f
    text = f.message + " " + f.fix
    assert all(w in text for w in words), text


def test_acumatica_report_names_tried_and_served_versions():
    report = {"ok": False, "endpoint": "Default/23.100.001", "endpoint_served": False,
              "served_endpoints": ["Default/23.200.001", "Default/24.200.001"],
              "entity_error": "acumatica: Acumatica endpoint Default/23.100.001 is not served"}
    f = classify("erp", "acumatica", "ERP", report["entity_error"], None, None, report)
    assert f.check == "endpoint"
    assert "Default/23.100.001" in f.message and "Default/24.200.001" in f.message


async def test_probe_names_an_unresolvable_host():
    check, message, _ = await probe("https://no-such-host.invalid/", None, "store")
    assert check == "dns" and "no-such-host.invalid" in message


async def test_probe_names_an_unreadable_ca_bundle(tmp_path):
    check, message, fix = await probe("https://127.0.0.1:1/", str(tmp_path / "missing.pem"), "ERP")
    assert check == "tls" and "ca_bundle" in message and "PEM" in fix


def _woo(handler) -> object:
    return open_woocommerce({"base_url": "https://shop.example/", "auth_mode": "basic"},
                            {"consumer_key": "ck_live_1234567", "consumer_secret": "cs_live_abcdefg"},
                            transport=httpx.MockTransport(handler))


async def test_woocommerce_ping_keeps_the_servers_date_on_refusal():
    served = http_date(NOW)

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"Date": served}, json={
            "code": "woocommerce_rest_authentication_error", "message": "Invalid timestamp.",
            "data": {"status": 401}})

    shop = _woo(refuse)
    report = await shop.ping()
    await shop.aclose()
    assert report["ok"] is False and report["status"] == 401
    assert report["server_date"] == served and "Invalid timestamp" in report["error"]
    assert not shop._client.event_hooks["response"]  # the ping leaves the client as it was


async def test_woocommerce_ping_passes_and_reports_the_auth_mode():
    shop = _woo(lambda request: httpx.Response(200, json=[]))
    report = await shop.ping()
    await shop.aclose()
    assert report["ok"] is True and report["auth_mode"] == "basic"


class _NoPingErp:
    settings = None

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.calls = error, []

    async def find_document(self, kind, ref):
        self.calls.append((kind, ref))
        if self.error:
            raise self.error
        return None

    async def aclose(self) -> None:
        pass


class _Runtime(Runtime):
    def __init__(self, store, erp) -> None:
        super().__init__(store)
        self._erp = erp

    def storefront(self, conn):
        return self._shop

    def erp(self, conn):
        return self._erp


def _connection(store) -> Connection:
    conn = Connection(id="diag", store_system="woocommerce",
                      store={"base_url": "https://shop.example/", "auth_mode": "basic"},
                      erp_system="acumatica", erp={"instance_url": "https://erp.example"})
    store.save_connection(conn)
    store.put_secret(conn.id, STORE_CREDENTIALS, {"consumer_key": "ck_live_1234567",
                                                  "consumer_secret": "cs_live_abcdefg"})
    store.put_secret(conn.id, ERP_CREDENTIALS, {"client_secret": "erp-secret-value-1"})
    return conn


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_connector_without_ping_gets_a_contract_read_and_secrets_are_scrubbed(store,
                                                                                   monkeypatch):
    conn = _connection(store)
    leaking = Unavailable("HTTP 500 on GET /x: echo client_secret erp-secret-value-1 and "
                          "cs_live_abcdefg", system="acumatica", status=500)
    rt = _Runtime(store, _NoPingErp(leaking))
    rt._shop = _woo(lambda request: httpx.Response(200, json=[]))

    async def no_network(*args, **kwargs):
        return None

    monkeypatch.setattr(diagnose, "probe", no_network)
    try:
        findings = await diagnose.test_connection(rt, conn)
    finally:
        await rt._shop.aclose()
    assert rt._erp.calls == [("invoice", "ml-connector-ping")]
    [shop, erp] = findings
    assert shop.ok and not erp.ok and not passed(findings)
    text = render(conn, findings) + json.dumps(diagnose.as_json(findings))
    assert "erp-secret-value-1" not in text and "cs_live_abcdefg" not in text
