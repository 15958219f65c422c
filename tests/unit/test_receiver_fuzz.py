"""Property-based fuzzing of the webhook receiver (bodies, headers, paths) against a real
connection store and a fake Temporal client that records every start: no 5xx other than
503-when-Temporal-is-down, no workflow without a valid signature, exactly one hand-over for a
valid signed order delivery, bounded memory on huge bodies; and, for signed deliveries of
every source, any nesting depth, any size of number and any pace of body: a 2xx, a 4xx with
a reason (400 too deep or not an id, 408 too slow) or the 503, never a 500."""
from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.service import RPCError, RPCStatusCode

from connections.config import ERP_CREDENTIALS, WEBHOOK_SECRET, Connection
from connections.store import ConnectionStore, Database
from connections.vault import Vault
from connectors.bigcommerce import SECRET_HEADER, secret_header_value
from connectors.woocommerce import webhook_signature
from connectors.bigcommerce import standard_signature
from connectors.exact_online import webhook_hash
from starter.receiver import MAX_BODY, MAX_DEPTH, MAX_ID_DIGITS, create_receiver

WC_SECRET, BC_SECRET = "wc-fuzz-secret-&amp;1", "bc-fuzz-secret"
EXACT_SECRET = "exact-fuzz-secret"
QUICK = 0.3  # the body timeout of the ``quick`` receiver (slow-body properties)
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ALLOWED = {200, 400, 401, 404, 405, 413}


class FakeTemporal:
    """Records every ``start_workflow``; ``down`` makes it fail like an unreachable frontend."""

    def __init__(self) -> None:
        self.started: list[dict] = []
        self.down = False

    async def start_workflow(self, workflow, arg, **kwargs):
        if self.down:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        self.started.append({"workflow": workflow, "arg": arg, **kwargs})


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def env(tmp_path, keyring, loop):
    store = ConnectionStore(Database(f"sqlite:///{tmp_path / 'fuzz.db'}"), Vault(keyring))
    for cid, system, secret in (("shop", "woocommerce", WC_SECRET), ("bc", "bigcommerce", BC_SECRET)):
        store.save_connection(Connection(id=cid, store_system=system, store={}, erp_system="acumatica", erp={}))
        store.put_secret(cid, WEBHOOK_SECRET, secret)
    store.save_connection(Connection(id="nosecret", store_system="woocommerce", store={},
                                     erp_system="acumatica", erp={}))
    store.save_connection(Connection(id="nl", store_system="woocommerce", store={},
                                     erp_system="exact_online", erp={}))
    store.put_secret("nl", ERP_CREDENTIALS, {"client_id": "c", "client_secret": "x",
                                             "webhook_secret": EXACT_SECRET})
    temporal = FakeTemporal()

    async def factory():
        return temporal

    clients = {name: httpx.AsyncClient(transport=httpx.ASGITransport(app=create_receiver(
        store, factory, task_queue="q", **options)), base_url="http://r")
        for name, options in (("default", {}), ("quick", {"body_timeout": QUICK}))}

    def send(method: str, path: str, content=b"", headers=None, *, app: str = "default") -> httpx.Response:
        temporal.started.clear()
        return loop.run_until_complete(clients[app].request(method, path, content=content, headers=headers))

    yield send, temporal
    for client in clients.values():
        loop.run_until_complete(client.aclose())
    store.db.close()


# --- strategies -----------------------------------------------------------------------
WC_HEADERS = ["X-WC-Webhook-Signature", "X-WC-Webhook-Topic", "X-WC-Webhook-Resource",
              "X-WC-Webhook-Event", "X-WC-Webhook-Delivery-ID", "X-WC-Webhook-ID", SECRET_HEADER,
              "webhook-id", "webhook-timestamp", "webhook-signature", "Content-Length",
              "Content-Type", "Transfer-Encoding", "Authorization"]
header_names = st.sampled_from(WC_HEADERS) | st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=20)
header_values = (st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
                 | st.sampled_from([b"order.updated", b"order.created", b"product.updated", b"-1",
                                    b"99999999999999999999", b"0", b"", b"AAAA", b" order.deleted "]))
headers = st.dictionaries(header_names, header_values, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
bodies = (st.binary(max_size=600)
          | json_values.map(lambda v: json.dumps(v).encode())
          | st.builds(lambda i: f"webhook_id={i}".encode(), st.integers(0, 10**6))
          | st.builds(lambda d, i: json.dumps({**d, "id": i}).encode(),
                      st.dictionaries(st.text(max_size=8), json_values, max_size=4), json_values))
segment = st.text(max_size=12).map(lambda s: quote(s, safe=""))
paths = (st.builds(lambda c, s: f"/webhooks/{c}/{s}",
                   st.sampled_from(["shop", "bc", "nosecret"]) | segment,
                   st.sampled_from(["woocommerce", "bigcommerce"]) | segment)
         | st.builds(lambda *p: "/" + "/".join(p), segment, segment, segment)
         | st.sampled_from(["/webhooks/shop", "/webhooks/shop/woocommerce/x", "/healthz", "/"]))
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"])
order_topics = st.sampled_from(["order.created", "order.updated", "order.deleted", "order.restored"])


def wc_signed(body: bytes, extra: dict | None = None, topic: str = "order.updated") -> dict:
    resource, _, event = topic.partition(".")
    return {"X-WC-Webhook-Topic": topic.encode(), "X-WC-Webhook-Resource": resource.encode(),
            "X-WC-Webhook-Event": event.encode(), "X-WC-Webhook-Delivery-ID": "d1",
            **(extra or {}), "X-WC-Webhook-Signature": webhook_signature(body, WC_SECRET)}


# --- properties -----------------------------------------------------------------------
@FUZZ
@given(method=methods, path=paths, headers=headers, body=bodies)
def test_unsigned_requests_never_start_a_workflow(env, method, path, headers, body):
    send, temporal = env
    resp = send(method, path, body, headers)
    assert resp.status_code in ALLOWED, (resp.status_code, resp.text)
    assert temporal.started == []


@FUZZ
@given(body=bodies, extra=headers, tamper=st.sampled_from(["flip", "other_body", "other_secret", "strip"]))
def test_a_wrong_signature_never_starts_a_workflow(env, body, extra, tamper):
    send, temporal = env
    good = wc_signed(body, {k: v for k, v in extra.items() if k.lower() != "x-wc-webhook-signature"})
    signature = good["X-WC-Webhook-Signature"]
    good["X-WC-Webhook-Signature"] = {
        "flip": signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1],
        "other_body": webhook_signature(body + b" ", WC_SECRET),
        "other_secret": webhook_signature(body, WC_SECRET + "x"),
        "strip": "",
    }[tamper]
    for path in ("/webhooks/shop/woocommerce", "/webhooks/nosecret/woocommerce"):
        resp = send("POST", path, body, good)
        assert resp.status_code in {200, 401, 413}, resp.text  # 200 only for the unsigned ping
        assert temporal.started == []


@FUZZ
@given(body=bodies, extra=headers, topic=order_topics | st.text(max_size=20))
def test_signed_deliveries_never_fail_and_start_at_most_once(env, body, extra, topic):
    send, temporal = env
    resp = send("POST", "/webhooks/shop/woocommerce", body, wc_signed(body, extra, topic))
    assert resp.status_code in {200, 400, 401, 413}, resp.text
    accepted = resp.status_code == 200 and resp.json()["message"] == "accepted"
    assert len(temporal.started) == (1 if accepted else 0)
    for start in temporal.started:
        assert start["arg"].order_id.isascii() and start["arg"].order_id.isdigit()


@pytest.mark.parametrize("order_id", ["²", "١٢", "１２"])
def test_only_ascii_digits_name_an_order(env, order_id):
    """str.isdigit() alone accepts these; the property above found it."""
    send, temporal = env
    body = json.dumps({"id": order_id}).encode()
    resp = send("POST", "/webhooks/shop/woocommerce", body, wc_signed(body))
    assert resp.status_code == 400 and temporal.started == []


@FUZZ
@given(order_id=st.integers(1, 10**12), topic=order_topics,
       extra=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "id"), json_values, max_size=5),
       down=st.booleans())
def test_a_valid_signed_order_hands_over_exactly_one_order(env, order_id, topic, extra, down):
    send, temporal = env
    temporal.down = down
    body = json.dumps({**extra, "id": order_id, "order_key": "wc_order_k", "line_items": []}).encode()
    resp = send("POST", "/webhooks/shop/woocommerce", body, wc_signed(body, topic=topic))
    temporal.down = False
    if down:
        assert resp.status_code == 503 and temporal.started == []
        return
    assert resp.status_code == 200 and resp.json()["workflow_id"] == f"order/shop/{order_id}"
    [start] = temporal.started
    assert (start["id"], start["arg"].order_id, start["start_signal"]) == (
        f"order/shop/{order_id}", str(order_id), "event")
    assert start["start_signal_args"][0].kind == topic.split(".")[1]


@FUZZ
@given(order_id=st.integers(1, 10**9), extra=headers, good=st.booleans())
def test_bigcommerce_needs_its_secret_header(env, order_id, extra, good):
    send, temporal = env
    body = json.dumps({"scope": "store/order/updated", "data": {"type": "order", "id": order_id},
                       "hash": "h1"}).encode()
    hdrs = {k: v for k, v in extra.items() if k.lower() not in
            (SECRET_HEADER.lower(), "webhook-id", "webhook-timestamp", "webhook-signature", "content-length")}
    hdrs[SECRET_HEADER] = secret_header_value(BC_SECRET) if good else secret_header_value("guess")
    resp = send("POST", "/webhooks/bc/bigcommerce", body, hdrs)
    assert resp.status_code == (200 if good else 401), resp.text
    assert len(temporal.started) == (1 if good else 0)


# --- nesting, numbers, pace: signed deliveries of every source ------------------------
SOURCES = ("woocommerce", "bigcommerce", "exact_online")
WRAPPING = {"woocommerce": 1, "bigcommerce": 2, "exact_online": 2}  # levels around the field


def signed_delivery(source: str, field: str, order_id: str = "12",
                    stamp: str | None = None) -> tuple[str, bytes, dict]:
    """A delivery ``source`` signs as it does, with the raw JSON ``field`` inside its record
    (and ``order_id`` where the id goes, raw JSON too)."""
    if source == "woocommerce":
        body = (f'{{"id":{order_id},"order_key":"wc_order_k","line_items":[],"x":{field}}}').encode()
        return "/webhooks/shop/woocommerce", body, wc_signed(body)
    if source == "bigcommerce":
        body = (f'{{"scope":"store/order/updated","data":{{"type":"order","id":{order_id},'
                f'"x":{field}}},"hash":"h1"}}').encode()
        headers = {SECRET_HEADER: secret_header_value(BC_SECRET)}
        if stamp is not None:
            headers |= {"webhook-id": "m1", "webhook-timestamp": stamp,
                        "webhook-signature": "v1," + standard_signature(BC_SECRET, "m1", stamp, body)}
        return "/webhooks/bc/bigcommerce", body, headers
    content = f'{{"Topic":"Items","Action":"Update","Division":1,"Key":{order_id},"x":{field}}}'
    body = ('{"Content":' + content + ',"HashCode":"'
            + webhook_hash(content.encode(), EXACT_SECRET) + '"}').encode()
    return "/webhooks/nl/exact_online", body, {}


def no_5xx_but_503(resp: httpx.Response, down: bool) -> None:
    assert resp.status_code < 500 or (down and resp.status_code == 503), (resp.status_code, resp.text)
    assert "Traceback" not in resp.text


@FUZZ
@given(source=st.sampled_from(SOURCES), depth=st.integers(0, 3000) | st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3),
       opener=st.sampled_from(["[", '{"a":']), down=st.booleans())
def test_any_nesting_depth_is_a_400_or_handed_over(env, source, depth, opener, down):
    send, temporal = env
    closer = "]" if opener == "[" else "}"
    path, body, headers = signed_delivery(source, opener * depth + "1" + closer * depth)
    temporal.down = down
    resp = send("POST", path, body, headers)
    temporal.down = False
    no_5xx_but_503(resp, down)
    if depth + WRAPPING[source] > MAX_DEPTH:
        assert resp.status_code == 400 and "nested deeper" in resp.json()["message"]
        assert temporal.started == []
    else:
        assert resp.status_code == (503 if down else 200), resp.text


numbers = (st.integers(1, 6000).map(lambda n: "9" * n)
           | st.text("0123456789", min_size=1, max_size=400)
           | st.builds(lambda m, e: f"{m}e{e}", st.integers(-10**6, 10**6), st.integers(-10**6, 10**6))
           | st.builds(lambda i, f: f"{i}.{f}", st.integers(0, 10**30), st.text("0123456789", min_size=1, max_size=500))
           | st.sampled_from(["-0", "0", "-1", "1.0", "1E400", "-1e-400", "Infinity", "NaN", "true", "null", '"12"']))


@FUZZ
@given(source=st.sampled_from(SOURCES), number=numbers, where=st.sampled_from(["id", "field", "stamp"]),
       down=st.booleans())
def test_any_size_of_number_is_a_4xx_or_handed_over(env, source, number, where, down):
    """Huge integers (past Python's 4,300-digit limit too), huge exponents, long fractions,
    where the id goes, anywhere else, and as BigCommerce's Standard Webhooks timestamp."""
    send, temporal = env
    stamp = number if where == "stamp" and source == "bigcommerce" else None
    path, body, headers = signed_delivery(source, number if where == "field" else "1",
                                          number if where == "id" else "12", stamp=stamp)
    temporal.down = down
    resp = send("POST", path, body, headers)
    temporal.down = False
    no_5xx_but_503(resp, down)
    assert resp.status_code in ({200, 400, 401} | ({503} if down else set())), resp.text
    for start in temporal.started:
        if "arg" in start and hasattr(start["arg"], "order_id"):
            assert start["arg"].order_id.isdigit() and len(start["arg"].order_id) <= MAX_ID_DIGITS
    if where == "id" and source != "exact_online" and not is_store_id(number):
        assert resp.status_code == 400 and temporal.started == []


def is_store_id(number: str) -> bool:
    """What JSON makes of ``number`` names a store record: a non-negative integer of at most
    MAX_ID_DIGITS (or those digits as a string)."""
    try:
        value = json.loads(number)
    except ValueError:
        return False
    if type(value) is str:
        return value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS
    return type(value) is int and 0 <= value < 10**MAX_ID_DIGITS


@settings(FUZZ, max_examples=25)
@given(source=st.sampled_from(SOURCES), pieces=st.integers(1, 6), pause=st.floats(0, 0.2), down=st.booleans())
def test_any_pace_of_body_is_a_408_or_handed_over(env, source, pieces, pause, down):
    """A body trickled in ``pieces`` with ``pause`` seconds before each: refused with 408 once
    it takes longer than the receiver's body timeout, never held open, never a 500."""
    send, temporal = env
    path, body, headers = signed_delivery(source, "1")
    size = -(-len(body) // pieces)

    async def trickle():
        for i in range(0, len(body), size):
            await asyncio.sleep(pause)
            yield body[i:i + size]

    temporal.down = down
    started = time.monotonic()
    resp = send("POST", path, trickle(), headers, app="quick")
    took = time.monotonic() - started
    temporal.down = False
    no_5xx_but_503(resp, down)
    assert took < QUICK + 2  # the sender's pace does not hold the receiver
    if pause * len(range(0, len(body), size)) > QUICK:
        assert resp.status_code == 408 and resp.headers["connection"] == "close"
        assert temporal.started == []
    else:
        assert resp.status_code in ({200, 408} | ({503} if down else set()))


# --- memory ---------------------------------------------------------------------------
CHUNK = 64 * 1024


@pytest.mark.parametrize("declared", [None, "100"])
def test_a_50_mib_streamed_body_is_refused_in_bounded_memory(env, declared):
    """Chunked (no length) and lying Content-Length: the receiver counts what it reads and
    stops at the limit; fresh chunk objects, so buffering everything would show in the peak."""
    send, temporal = env
    sent = 0

    async def stream():
        nonlocal sent
        for i in range(50 * 1024 * 1024 // CHUNK):
            sent += CHUNK
            yield (i % 251).to_bytes(1, "big") * CHUNK

    body = b'{"id": 1}'
    hdrs = wc_signed(body) | ({"Content-Length": declared} if declared else {})
    tracemalloc.start()
    try:
        resp = send("POST", "/webhooks/shop/woocommerce", stream(), hdrs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert resp.status_code == 413 and temporal.started == []
    assert sent <= MAX_BODY + 2 * CHUNK  # it stopped reading at the limit
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_a_declared_huge_length_is_refused_before_reading(env):
    send, temporal = env
    resp = send("POST", "/webhooks/shop/woocommerce", b"{}", {"Content-Length": str(50 * 1024 * 1024)})
    assert resp.status_code == 413 and temporal.started == []
