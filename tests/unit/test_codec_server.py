"""The codec endpoint over a real socket, as the Temporal UI calls it: a payload the worker's
data converter wrote decodes to the plain JSON; other origins and tokens are refused."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import structlog
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from connections.vault import Keyring, new_key
from sandbox.server import serving
from starter.codec_server import ALLOWED_HEADERS, codec_endpoint_url, create_codec_server, new_token
from starter.temporal import data_converter

UI = "http://127.0.0.1:8233"
TOKEN = new_token()
ORDER = {"connection_id": "shop", "order_id": "42", "email": "ann.buyer@example.com"}


@pytest.fixture(scope="module")
async def endpoint(keyring):
    async with serving(create_codec_server(keyring, token=TOKEN, ui_origin=UI), name="codec") as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            yield http


def _body(payloads) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def _payloads(resp: httpx.Response):
    return json_format.Parse(resp.content, Payloads()).payloads


async def _decode(http, payloads, **headers) -> httpx.Response:
    return await http.post(f"/{TOKEN}/decode?namespace=default", content=_body(payloads),
                           headers={"Origin": UI, "Content-Type": "application/json",
                                    "X-Namespace": "default", **headers})


async def test_worker_payload_decodes_to_plain_json(endpoint, keyring):
    encoded = await data_converter(keyring).encode([ORDER])
    assert b"ann.buyer" not in encoded[0].SerializeToString()
    resp = await _decode(endpoint, encoded)
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == UI
    [plain] = _payloads(resp)
    assert plain.metadata["encoding"] == b"json/plain" and json.loads(plain.data) == ORDER


async def test_encoded_failure_message_decodes(endpoint, keyring):
    failure = Failure()
    await data_converter(keyring).encode_failure(ApplicationError("customer ann@example.com refused"), failure)
    assert "ann@example.com" not in failure.SerializeToString().decode("latin-1")
    [attrs] = _payloads(await _decode(endpoint, [failure.encoded_attributes]))
    assert json.loads(attrs.data)["message"] == "customer ann@example.com refused"


async def test_encode_then_worker_decodes(endpoint, keyring):
    [plain] = data_converter(keyring).payload_converter.to_payloads([ORDER])
    resp = await endpoint.post("/encode", content=_body([plain]),
                               headers={"Authorization": f"Bearer {TOKEN}"})
    [encrypted] = _payloads(resp)
    assert encrypted.metadata["encoding"] == b"binary/encrypted"
    assert await data_converter(keyring).decode([encrypted], [dict]) == [ORDER]


async def test_bearer_token_is_an_alternative_to_the_path(endpoint, keyring):
    encoded = await data_converter(keyring).encode([ORDER])
    ok = await endpoint.post("/decode", content=_body(encoded), headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and json.loads(_payloads(ok)[0].data) == ORDER
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        assert (await endpoint.post("/decode", content=_body(encoded), headers=headers)).status_code == 403


@pytest.mark.parametrize("path", ["/wrong-token-wrong-token/decode", f"/{TOKEN[:-1]}/decode",
                                  f"/{TOKEN}x/decode", f"/{TOKEN}/other", f"/{TOKEN}"],
                         ids=["wrong", "short", "long", "other-op", "no-op"])  # the token is random
async def test_wrong_token_or_path_is_refused(endpoint, keyring, path):
    encoded = await data_converter(keyring).encode([ORDER])
    with structlog.testing.capture_logs() as logs:
        resp = await endpoint.post(path, content=_body(encoded), headers={"Origin": UI})
    assert resp.status_code in (403, 404) and b"ann.buyer" not in resp.content
    assert TOKEN not in resp.text and TOKEN not in repr(logs)


async def test_preflight_answers_only_the_ui_origin(endpoint):
    request = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type,x-namespace"}
    ok = await endpoint.options(f"/{TOKEN}/decode?namespace=default", headers={"Origin": UI, **request})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == UI != "*"
    assert ok.headers["access-control-allow-headers"] == ALLOWED_HEADERS
    assert "POST" in ok.headers["access-control-allow-methods"]
    bearer = await endpoint.options("/decode", headers={"Origin": UI, **request})
    assert bearer.status_code == 204
    for path in (f"/{TOKEN}/decode", "/decode"):
        evil = await endpoint.options(path, headers={"Origin": "http://evil.example", **request})
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    lookalike = await endpoint.options(f"/{TOKEN}/decode", headers={"Origin": UI + ".evil.example", **request})
    assert lookalike.status_code == 403
    assert (await endpoint.options("/bad-token-bad-token/decode", headers={"Origin": UI, **request})).status_code == 404


async def test_post_from_another_origin_is_refused(endpoint, keyring):
    encoded = await data_converter(keyring).encode([ORDER])
    resp = await _decode(endpoint, encoded, Origin="http://localhost:9999")
    assert resp.status_code == 403 and "access-control-allow-origin" not in resp.headers


async def test_bad_bodies_and_unknown_keys(endpoint):
    bad = await endpoint.post(f"/{TOKEN}/decode", content=b"{not json", headers={"Origin": UI})
    assert bad.status_code == 400
    stranger = await data_converter(Keyring([new_key("stranger")])).encode([ORDER])
    unknown = await _decode(endpoint, stranger)
    assert unknown.status_code == 422 and "stranger" in unknown.json()["message"]
    assert unknown.headers["access-control-allow-origin"] == UI  # so the UI can show the reason


@pytest.mark.parametrize("data", [b"", b"short", b"x" * 27])
async def test_a_payload_shorter_than_its_nonce_is_400(endpoint, data):
    payload = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"k"}, data=data)
    resp = await _decode(endpoint, [payload])
    assert resp.status_code == 400 and "nonce" in resp.json()["message"]
    assert resp.headers["access-control-allow-origin"] == UI


@pytest.mark.parametrize("body", [b'{"payloads": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  b"[" * 100_000, b'{"payloads": [{"data": 5}]}', b"\xff\xfe"])
async def test_malformed_bodies_are_400_and_the_connection_stays(endpoint, body):
    resp = await endpoint.post(f"/{TOKEN}/decode", content=body, headers={"Origin": UI})
    assert resp.status_code == 400 and "payloads" in resp.json()["message"]
    after = await _decode(endpoint, await data_converter(Keyring([new_key("x")])).encode([ORDER]))
    assert after.status_code == 422  # same client, still answered


async def test_unknown_key_messages_name_no_server_path(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_CONNECTOR_MASTER_KEYS", raising=False)
    (tmp_path / "secret-dir").mkdir()
    ring = Keyring.load(tmp_path / "secret-dir" / "keys.json")
    stranger = await data_converter(Keyring([new_key("stranger")])).encode([ORDER])
    async with serving(create_codec_server(ring, token=TOKEN, ui_origin=UI), name="codec") as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
            resp = await _decode(http, stranger)
    assert resp.status_code == 422 and "stranger" in resp.json()["message"]
    assert str(tmp_path) not in resp.text and "secret-dir" not in resp.text and "/" not in resp.json()["message"]


async def test_a_slow_body_is_408(keyring):
    app = create_codec_server(keyring, token=TOKEN, ui_origin=UI, body_timeout=0.3)
    body = _body(await data_converter(keyring).encode([ORDER])).encode()

    async def trickle():
        for i in range(0, len(body), 50):
            await asyncio.sleep(0.1)
            yield body[i:i + 50]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as http:
        resp = await http.post(f"/{TOKEN}/decode", content=trickle(), headers={"Origin": UI})
    assert resp.status_code == 408 and resp.headers["connection"] == "close"


def test_endpoint_url_and_token_rules(keyring):
    assert codec_endpoint_url("127.0.0.1", 8001, "abc") == "http://127.0.0.1:8001/abc"
    with pytest.raises(ValueError):
        create_codec_server(keyring, token="short", ui_origin=UI)
