"""``ml-connector dev``'s UI decodes whether the browser opens it at 127.0.0.1 or at localhost
(two origins to a browser), and the start-up text says where to open it. The codec server runs
over a real socket, configured as dev configures it."""
from __future__ import annotations

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from sandbox.server import serving
from starter.codec_server import create_codec_server, new_token
from starter.dev import PORTS, banner, ui_origins
from starter.temporal import data_converter

UI_PORT = 8233
TOKEN = new_token()
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type,x-namespace"}


@pytest.fixture(scope="module")
async def dev_codec(keyring):
    app = create_codec_server(keyring, token=TOKEN, ui_origin=ui_origins(UI_PORT))
    async with serving(app, name="codec") as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            yield http


def test_dev_allows_both_ways_of_opening_the_ui():
    assert ui_origins(UI_PORT) == ["http://127.0.0.1:8233", "http://localhost:8233"]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8233", "http://localhost:8233"])
async def test_the_ui_decodes_at_either_origin(dev_codec, keyring, origin):
    ok = await dev_codec.options(f"/{TOKEN}/decode", headers={"Origin": origin, **PREFLIGHT})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == origin
    encoded = await data_converter(keyring).encode([{"order_id": "42"}])
    body = json_format.MessageToJson(Payloads(payloads=[encoded[0]]))
    decoded = await dev_codec.post(f"/{TOKEN}/decode?namespace=default", content=body,
                                   headers={"Origin": origin, "Content-Type": "application/json"})
    assert decoded.status_code == 200 and decoded.headers["access-control-allow-origin"] == origin
    payload = json_format.Parse(decoded.content, Payloads()).payloads[0]
    assert b'"order_id":"42"' in payload.data.replace(b" ", b"")


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:8234",
                                    "https://localhost:8233", "http://localhost:8233.evil.example"])
async def test_other_origins_are_still_refused(dev_codec, origin):
    refused = await dev_codec.options(f"/{TOKEN}/decode", headers={"Origin": origin, **PREFLIGHT})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_the_start_up_text_says_where_to_open_the_ui():
    text = banner(UI_PORT, {"receiver": "http://127.0.0.1:8000",
                            "codec": f"http://127.0.0.1:{PORTS['codec']}"})
    first = text.splitlines()[0]
    assert "http://127.0.0.1:8233" in first and "http://localhost:8233" in first
    assert "receiver     http://127.0.0.1:8000" in text and text.endswith("Ctrl-C stops.")
