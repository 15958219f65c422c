"""``ml-connector dev``'s Temporal UI decodes history only for an operator who signed in
with a link dev printed, whether the browser opens it at 127.0.0.1 or at localhost (two
origins to a browser), and the start-up text says where to open it. A real dev server (its
UI on an internal port, started as dev starts it) behind the gateway on a real socket: an
anonymous client scrapes everything it can fetch and fails to decode with any of it."""
from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from sandbox.server import free_port, serving
from starter.dev import PORTS, banner, ui_origins
from starter.stack import start_temporal_server
from starter.temporal import data_converter
from starter.ui_gateway import COOKIE, Sessions, create_ui_gateway, sign_in_links

UI_PORT = 8233
ORDER = {"order_id": "42", "email": "ann.buyer@example.com"}
MARKER = b"ann.buyer@example.com"


@pytest.fixture(scope="module")
async def dev_ui(keyring, tmp_path_factory):
    """(gateway URL, its origins, sessions, the dev server's own UI URL, its process)."""
    home = tmp_path_factory.mktemp("dev")
    upstream_port, port = free_port(), free_port()
    server = await start_temporal_server(home, port=free_port(), ui_port=upstream_port)
    upstream = f"http://127.0.0.1:{upstream_port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:  # the UI answers a little after the frontend
            for _ in range(100):
                try:
                    if (await http.get(f"{upstream}/api/v1/settings")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        sessions, origins = Sessions(), ui_origins(port)
        gateway = create_ui_gateway(keyring, upstream=upstream, origins=origins, sessions=sessions)
        async with serving(gateway, port=port, name="ui-gateway") as served:
            yield served.url, origins, sessions, upstream, server
        await gateway.state.aclose()
    finally:
        server.terminate()
        server.wait(10)


async def encrypted_body(keyring) -> str:
    encoded = await data_converter(keyring).encode([ORDER])
    assert MARKER not in encoded[0].SerializeToString()
    return json_format.MessageToJson(Payloads(payloads=encoded))


def as_host(origin: str) -> dict[str, str]:
    """Headers of a browser that opened ``origin`` (the socket is 127.0.0.1 either way)."""
    return {"Host": origin.removeprefix("http://"), "Origin": origin}


def test_dev_allows_both_ways_of_opening_the_ui():
    assert ui_origins(UI_PORT) == ["http://127.0.0.1:8233", "http://localhost:8233"]


async def test_nothing_an_anonymous_client_can_fetch_decodes(dev_ui, keyring):
    url, origins, _, upstream, server = dev_ui
    body = await encrypted_body(keyring)
    scraped: list[str] = []
    async with httpx.AsyncClient(timeout=10) as http:
        for origin in origins:  # the gateway, as either host: a sign-in page, nothing else
            for path in ("/", "/api/v1/settings", "/namespaces/default/workflows", "/_app/version.json"):
                resp = await http.get(url + path, headers=as_host(origin))
                assert resp.status_code == 401 and "sign-in link" in resp.text
                scraped.append(resp.text)
        # the dev server's own UI, which anyone on the machine can reach: index, its scripts, settings
        index = (await http.get(upstream + "/")).text
        settings = (await http.get(upstream + "/api/v1/settings")).json()
        assert settings["Codec"]["Endpoint"] == ""
        scraped += [index, json.dumps(settings)]
        for script in sorted(set(re.findall(r'(?:src|href)="(/_app/[^"]+\.js)"', index)))[:40]:
            scraped.append((await http.get(upstream + script)).text)
        # every local URL any of it names, and every place a codec could be, tried as a codec
        named = {u.rstrip("/.,") for text in scraped
                 for u in re.findall(r"https?://(?:127\.0\.0\.1|localhost)(?::\d+)?[^\s\"'<>`)]*", text)}
        candidates = named | {f"{base}{path}" for base in (url, upstream, "http://127.0.0.1:8001")
                              for path in ("/codec", "", "/api/v1")}
        assert len(scraped) > 10 and len(candidates) >= 9
        for candidate in sorted(candidates):
            for op_url in (candidate.rstrip("/") + "/decode", candidate):
                for origin in origins:
                    try:
                        resp = await http.post(op_url, content=body, headers={
                            "Content-Type": "application/json", "Origin": origin,
                            **({"Host": origin.removeprefix("http://")} if op_url.startswith(url) else {})})
                    except httpx.HTTPError:
                        continue
                    assert MARKER not in resp.content, op_url
    # nor is anything in the dev server's command line enough
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert not any(b"codec" in arg for arg in cmdline)


@pytest.mark.parametrize("which", [0, 1])
async def test_a_signed_in_browser_decodes_at_either_origin(dev_ui, keyring, which):
    url, origins, sessions, _, _ = dev_ui
    origin, link = origins[which], sign_in_links(origins, sessions)[which]
    assert link.startswith(origin + "/_signin/")
    async with httpx.AsyncClient(base_url=url, headers=as_host(origin), timeout=10) as browser:
        signed = await browser.get(link.removeprefix(origin))
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        settings = (await browser.get("/api/v1/settings")).json()
        assert settings["Codec"]["Endpoint"] == f"{origin}/codec"  # the origin it was opened at
        assert (await browser.get("/")).text.lstrip().lower().startswith("<!doctype html>")
        decoded = await browser.post("/codec/decode?namespace=default", content=await encrypted_body(keyring),
                                     headers={"Content-Type": "application/json"})
        assert decoded.status_code == 200, decoded.text
        plain = json_format.Parse(decoded.content, Payloads()).payloads[0]
        assert json.loads(plain.data) == ORDER
        # the link is spent: a second use (another browser) signs nothing in
        browser.cookies.clear()
        again = await browser.get(link.removeprefix(origin))
        assert again.status_code == 403 and "set-cookie" not in again.headers


async def test_forged_sessions_foreign_origins_and_other_hosts_are_refused(dev_ui, keyring):
    url, origins, sessions, _, _ = dev_ui
    body = await encrypted_body(keyring)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        forged = await http.post("/codec/decode", content=body, headers={
            **as_host(origins[0]), "Cookie": f"{COOKIE}=forged", "Content-Type": "application/json"})
        assert forged.status_code == 401
        signed = await http.get(sign_in_links(origins, sessions)[0].removeprefix(origins[0]),
                                headers=as_host(origins[0]))
        session = signed.cookies[COOKIE]
        for origin in ("http://evil.example", "http://localhost:8234", "null"):
            refused = await http.post("/codec/decode", content=body, headers={
                "Host": origins[0].removeprefix("http://"), "Origin": origin,
                "Cookie": f"{COOKIE}={session}", "Content-Type": "application/json"})
            assert refused.status_code == 403 and MARKER not in refused.content
        rebound = await http.get("/api/v1/settings", headers={"Host": "evil.example",
                                                              "Cookie": f"{COOKIE}={session}"})
        assert rebound.status_code == 400  # a DNS-rebinding page cannot borrow the session


def test_the_start_up_text_says_where_to_sign_in():
    sessions = Sessions()
    links = sign_in_links(ui_origins(UI_PORT), sessions)
    text = banner(UI_PORT, {"receiver": "http://127.0.0.1:8000"}, sign_in=links)
    first = text.splitlines()[0]
    assert links[0] in first and links[1] in first
    assert links[0].startswith("http://127.0.0.1:8233/_signin/")
    assert links[1].startswith("http://localhost:8233/_signin/")
    assert "receiver     http://127.0.0.1:8000" in text and text.endswith("Ctrl-C stops.")
    assert "codec" not in PORTS  # no codec port of its own: the gateway serves it


def test_the_start_up_text_says_how_to_reach_the_stack_and_place_orders(tmp_path):
    from starter.dev import cli_path, operator_env, order_command

    operator = operator_env(tmp_path / "dev", "127.0.0.1:7233")
    orders = order_command("https://127.0.0.1:8441", "/x/ca.pem")
    text = banner(UI_PORT, {"store": "https://127.0.0.1:8441"}, operator=operator, orders=orders)
    assert f"export ML_CONNECTOR_HOME={tmp_path / 'dev'} TEMPORAL_ADDRESS=127.0.0.1:7233" in text
    assert f"{cli_path()} status demo" in text and cli_path().endswith("ml-connector")
    # dev's own store keys (starter/sandboxes/woocommerce.py), not the traffic script's defaults
    assert "--consumer-key ck_sandbox --consumer-secret cs_sandbox --ca-file /x/ca.pem" in orders
    assert orders in text and "begins empty" in text and text.endswith("Ctrl-C stops.")


def test_a_start_resets_history_and_ledger_together_and_keeps_the_key(tmp_path):
    from starter.dev import reset_state

    for name in ("temporal.db", "temporal.db-wal", "connector.db", "connector.db-shm", "keys.json"):
        (tmp_path / name).write_text("x")
    reset_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]
