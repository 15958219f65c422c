"""Receiver decisions that need no workflow service: nothing reaches Temporal on bad input,
malformed input that passes authentication is a 400 with a reason (never a 500), a slow body
is a 408, and an unreachable Temporal is a 503 (the store retries, the poll catches up)."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest

from connections.config import ERP_CREDENTIALS, STORE_CREDENTIALS, WEBHOOK_SECRET, Connection, Environment
from connectors import bigcommerce
from connectors.woocommerce import webhook_signature
from starter.receiver import MAX_DEPTH, create_receiver
from starter.temporal import LazyClient

ORDER_HEADERS = {"X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Resource": "order",
                 "X-WC-Webhook-Event": "updated", "X-WC-Webhook-Delivery-ID": "abc"}
BC_SECRET, BC_CLIENT_SECRET = "bc-hook-secret", "bc-app-client-secret"


def order(order_id=12, **extra) -> bytes:
    """The shape of a WooCommerce order delivery (GET /orders/{id}), as small as it gets."""
    return json.dumps({"id": order_id, "order_key": "wc_order_k", "line_items": [], **extra}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingTemporal:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    async def start_workflow(self, workflow, arg, *, id, **_):
        self.started.append((workflow, id))


@pytest.fixture
def receiver(store):
    store.save_connection(Connection(id="shop", store_system="woocommerce", store={}, erp_system="acumatica", erp={}))
    store.put_secret("shop", WEBHOOK_SECRET, "s3cret")
    calls = []

    async def unreachable():
        calls.append(1)
        raise RuntimeError("Failed client connect: connection refused")

    app = create_receiver(store, unreachable, task_queue="q", max_body=4096)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r")
    return client, calls


@pytest.fixture
def all_sources(store):
    """WooCommerce, BigCommerce (with a Standard Webhooks secret: the app's client secret)
    and Exact Online connections, and a Temporal that records what it is handed."""
    store.save_connection(Connection(id="shop", store_system="woocommerce", store={},
                                     erp_system="exact_online", erp={}, customer_sync=True))
    store.put_secret("shop", WEBHOOK_SECRET, "s3cret")
    store.put_secret("shop", ERP_CREDENTIALS, {"client_id": "c", "client_secret": "x",
                                               "webhook_secret": "exact-hook-secret"})
    store.save_connection(Connection(id="bc", store_system="bigcommerce", store={}, erp_system="acumatica", erp={}))
    store.put_secret("bc", WEBHOOK_SECRET, BC_SECRET)
    store.put_secret("bc", STORE_CREDENTIALS, {"access_token": "t", "client_secret": BC_CLIENT_SECRET})
    temporal = RecordingTemporal()

    async def factory():
        return temporal

    app = create_receiver(store, factory, task_queue="q", body_timeout=0.5)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r"), temporal


def signed(body: bytes, secret: str = "s3cret", **headers: str) -> dict:
    return {**ORDER_HEADERS, **headers, "X-WC-Webhook-Signature": webhook_signature(body, secret)}


def bc_signed(body: bytes, *, stamp: str | None = None, standard: bool = True) -> dict:
    headers = {bigcommerce.SECRET_HEADER: bigcommerce.secret_header_value(BC_SECRET)}
    if standard:
        stamp = stamp or str(int(time.time()))
        headers |= {"webhook-id": "msg_1", "webhook-timestamp": stamp, "webhook-signature": "v1," +
                    bigcommerce.standard_signature(BC_CLIENT_SECRET, "msg_1", stamp, body)}
    return headers


def bc_body(data) -> bytes:
    return json.dumps({"scope": "store/order/updated", "data": data, "hash": "h1"}).encode()


def exact_body(content: str, secret: str = "exact-hook-secret") -> bytes:
    from connectors.exact_online import webhook_hash

    return ('{"Content":' + content + ',"HashCode":"' + webhook_hash(content.encode(), secret)
            + '"}').encode()


async def test_temporal_unreachable_is_503(receiver):
    client, calls = receiver
    body = order()
    resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
    assert resp.status_code == 503 and calls == [1]


async def test_a_temporal_never_reached_is_503_through_the_lazy_client(store):
    """The real client factory against a port nobody listens on: connect() raises
    TemporalUnavailable, which is a 503 (it was a 500)."""
    store.save_connection(Connection(id="shop", store_system="woocommerce", store={}, erp_system="acumatica", erp={}))
    store.put_secret("shop", WEBHOOK_SECRET, "s3cret")
    lazy = LazyClient(Environment(temporal_address=f"127.0.0.1:{free_port()}"), store.vault.keyring)
    app = create_receiver(store, lazy, task_queue="q")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        body = order()
        for _ in range(2):  # the second delivery tries to connect again
            started = time.monotonic()
            resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
            assert resp.status_code == 503 and "unavailable" in resp.json()["message"]
            assert time.monotonic() - started < 5


async def test_a_hand_over_that_hangs_is_503(store):
    store.save_connection(Connection(id="shop", store_system="woocommerce", store={}, erp_system="acumatica", erp={}))
    store.put_secret("shop", WEBHOOK_SECRET, "s3cret")

    async def hangs():
        await asyncio.sleep(30)

    app = create_receiver(store, hangs, task_queue="q", handover_timeout=0.2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        body = order()
        resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
    assert resp.status_code == 503 and resp.headers["retry-after"]


@pytest.mark.parametrize("path,body,headers,status", [
    ("/webhooks/shop/woocommerce", b'{"id": 12}', {"X-WC-Webhook-Signature": "AAAA"}, 401),
    ("/webhooks/shop/woocommerce", b'{"id": 12}', {}, 401),
    ("/webhooks/shop/bigcommerce", b'{"id": 12}', {}, 404),
    ("/webhooks/other/woocommerce", b'{"id": 12}', {}, 404),
    ("/webhooks/shop/woocommerce", b"x" * 5000, {}, 413),
])
async def test_rejections_never_reach_temporal(receiver, path, body, headers, status):
    client, calls = receiver
    resp = await client.post(path, content=body, headers=headers)
    assert resp.status_code == status and resp.json()["status"] == status
    assert calls == []


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'{"id": "12; drop"}', b'{"no_id": 1}'])
async def test_malformed_signed_bodies_are_400(receiver, body):
    client, calls = receiver
    resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
    assert resp.status_code == 400 and calls == []


def _deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


WRONG = [
    # nesting: 1,000+ levels used to raise RecursionError (a 500) in every source
    ("woocommerce", order(nested=json.loads(_deep(MAX_DEPTH)))),
    ("woocommerce", order()[:-1] + b', "x": ' + _deep(5000).encode() + b"}"),
    ("woocommerce", b'{"id": 12, "order_key": "k", "line_items": ' + _deep(100_000).encode() + b"}"),
    # huge numbers and wrong types where the id goes
    ("woocommerce", order(10**30)), ("woocommerce", b'{"id": 1' + b"0" * 5000 + b', "order_key": "k", "line_items": []}'),
    ("woocommerce", order(1e300)), ("woocommerce", b'{"id": 1e999, "order_key": "k", "line_items": []}'),
    ("woocommerce", order(-5)), ("woocommerce", order([12])), ("woocommerce", order({"id": 12})),
    ("woocommerce", order(True)), ("woocommerce", order(None)), ("woocommerce", order("")),
]


@pytest.mark.parametrize("source,body", WRONG + [
    ("bigcommerce", bc_body(json.loads(_deep(MAX_DEPTH)))),
    ("bigcommerce", b'{"scope": "store/order/updated", "data": ' + _deep(5000).encode() + b"}"),
    ("bigcommerce", bc_body({"type": "order", "id": 10**400})),
    ("bigcommerce", bc_body({"type": "order", "id": 2.5})),
    ("bigcommerce", bc_body({"type": "order", "id": {"$gt": 1}})),
    ("bigcommerce", bc_body([1, 2])),
    ("bigcommerce", b'{"scope": 7, "data": {"id": 1}}'),
    ("exact_online", exact_body(_deep(5000))),
    ("exact_online", exact_body('{"Topic": ' + _deep(MAX_DEPTH + 1, '"Items"') + "}")),
    ("exact_online", exact_body('"just a string"')),
    ("exact_online", exact_body('{"Topic": "Items", "Action": "Update"}')),
], ids=lambda v: v if isinstance(v, str) else f"{len(v)}B")
async def test_malformed_input_that_passes_authentication_is_400_with_a_reason(all_sources, source, body):
    client, temporal = all_sources
    path = {"woocommerce": "/webhooks/shop/woocommerce", "bigcommerce": "/webhooks/bc/bigcommerce",
            "exact_online": "/webhooks/shop/exact_online"}[source]
    headers = {"woocommerce": signed(body), "bigcommerce": bc_signed(body), "exact_online": {}}[source]
    resp = await client.post(path, content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"].startswith("malformed webhook: ") and "Traceback" not in resp.text
    assert temporal.started == []


async def test_the_limits_themselves_are_accepted(all_sources):
    client, temporal = all_sources
    body = order(10**19, nested=json.loads(_deep(MAX_DEPTH - 2)))
    resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
    assert resp.status_code == 200 and [i for _, i in temporal.started] == [f"order/shop/{10**19}"]


@pytest.mark.parametrize("headers,body", [
    ({"X-WC-Webhook-Resource": "product"}, order()),  # resource header disagrees with topic
    ({"X-WC-Webhook-Event": "deleted"}, order()),  # event header disagrees with topic
    ({}, json.dumps({"id": 12, "sku": "MUG", "type": "simple"}).encode()),  # a product's body
    ({}, json.dumps({"id": 12, "username": "ann", "role": "customer"}).encode()),  # a customer's
    ({}, b'{"id": 12}'),  # a bare id is a *.deleted body only
    ({"X-WC-Webhook-Topic": "customer.updated", "X-WC-Webhook-Resource": "customer",
      "X-WC-Webhook-Event": "updated"}, order()),  # an order body under a customer topic
])
async def test_woocommerce_topic_headers_must_agree_with_the_body(all_sources, headers, body):
    """The signature covers only the body: a signed body replayed under another topic must
    not start the wrong workflow."""
    client, temporal = all_sources
    resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body, **headers))
    assert resp.status_code == 400 and temporal.started == [], resp.text


async def test_woocommerce_deliveries_that_agree_are_handed_over(all_sources):
    client, temporal = all_sources
    deleted = b'{"id": 7}'
    customer = json.dumps({"id": 8, "username": "ann", "role": "customer"}).encode()
    answers = [
        await client.post("/webhooks/shop/woocommerce", content=order(6), headers=signed(order(6))),
        await client.post("/webhooks/shop/woocommerce", content=deleted, headers=signed(
            deleted, **{"X-WC-Webhook-Topic": "order.deleted", "X-WC-Webhook-Event": "deleted"})),
        await client.post("/webhooks/shop/woocommerce", content=customer, headers=signed(
            customer, **{"X-WC-Webhook-Topic": "customer.updated", "X-WC-Webhook-Resource": "customer"})),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert [wf_id for _, wf_id in temporal.started][:2] == ["order/shop/6", "order/shop/7"]
    assert len(temporal.started) == 3


async def test_bigcommerce_with_a_standard_webhooks_secret_requires_its_signature(all_sources):
    client, temporal = all_sources
    body = bc_body({"type": "order", "id": 250})
    good = await client.post("/webhooks/bc/bigcommerce", content=body, headers=bc_signed(body))
    dropped = await client.post("/webhooks/bc/bigcommerce", content=body, headers=bc_signed(body, standard=False))
    other_key = {**bc_signed(body), "webhook-signature": "v1," + bigcommerce.standard_signature(
        BC_SECRET, "msg_1", str(int(time.time())), body)}
    keyed_with_hook_secret = await client.post("/webhooks/bc/bigcommerce", content=body, headers=other_key)
    huge_stamp = await client.post("/webhooks/bc/bigcommerce", content=body,
                                   headers=bc_signed(body, stamp="9" * 400))
    assert (good.status_code, dropped.status_code, keyed_with_hook_secret.status_code,
            huge_stamp.status_code) == (200, 401, 401, 401)
    assert [wf_id for _, wf_id in temporal.started] == ["order/bc/250"]


async def test_a_400_digit_standard_webhooks_timestamp_is_refused_not_a_500(receiver, store):
    """Without a client secret the signature is checked when present: a timestamp no clock
    can reach is out of tolerance (it overflowed a float before)."""
    store.save_connection(Connection(id="bc2", store_system="bigcommerce", store={}, erp_system="acumatica", erp={}))
    store.put_secret("bc2", WEBHOOK_SECRET, BC_SECRET)
    client, calls = receiver
    body = bc_body({"type": "order", "id": 250})
    stamp = "9" * 400
    headers = {bigcommerce.SECRET_HEADER: bigcommerce.secret_header_value(BC_SECRET), "webhook-id": "m",
               "webhook-timestamp": stamp,
               "webhook-signature": "v1," + bigcommerce.standard_signature(BC_SECRET, "m", stamp, body)}
    resp = await client.post("/webhooks/bc2/bigcommerce", content=body, headers=headers)
    assert resp.status_code == 401 and calls == []


async def test_a_slow_body_is_408_and_the_connection_closed(all_sources):
    client, temporal = all_sources
    body = order()

    async def trickle():
        for i in range(0, len(body), 4):
            await asyncio.sleep(0.2)
            yield body[i:i + 4]

    resp = await client.post("/webhooks/shop/woocommerce", content=trickle(), headers=signed(body))
    assert resp.status_code == 408 and resp.headers["connection"] == "close"
    assert temporal.started == []


async def test_an_unexpected_error_is_a_500_without_a_traceback_escaping(store):
    """Not an input problem (a bug): answered and logged here, not re-raised to the server,
    which would print its own unredacted traceback and drop the connection."""
    store.save_connection(Connection(id="shop", store_system="woocommerce", store={}, erp_system="acumatica", erp={}))
    store.put_secret("shop", WEBHOOK_SECRET, "s3cret")

    async def broken():
        raise ZeroDivisionError("a bug")

    app = create_receiver(store, broken, task_queue="q")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        body = order()
        resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
    assert resp.status_code == 500 and resp.json() == {"status": 500, "message": "internal error"}


async def test_ping_and_other_topics_are_acknowledged_without_work(receiver):
    client, calls = receiver
    ping = await client.post("/webhooks/shop/woocommerce", content=b"webhook_id=3")
    body = b'{"id": 5}'
    product = await client.post("/webhooks/shop/woocommerce", content=body, headers={
        **signed(body), "X-WC-Webhook-Topic": "product.updated", "X-WC-Webhook-Resource": "product"})
    assert (ping.status_code, product.status_code, calls) == (200, 200, [])


@pytest.fixture
def exact_receiver(store):
    store.save_connection(Connection(id="nl", store_system="woocommerce", store={},
                                     erp_system="exact_online", erp={}, customer_sync=True))
    store.put_secret("nl", WEBHOOK_SECRET, "store-secret")
    store.put_secret("nl", ERP_CREDENTIALS, {"client_id": "c", "client_secret": "x",
                                             "webhook_secret": "exact-hook-secret"})
    temporal = RecordingTemporal()

    async def factory():
        return temporal

    app = create_receiver(store, factory, task_queue="q")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r"), temporal


def exact_notification(topic: str, secret: str = "exact-hook-secret") -> bytes:
    return exact_body(json.dumps({"Topic": topic, "Action": "Update", "Division": 1, "Key": "guid-1",
                                  "EventCreatedOn": "2026-12-01T08:00:00"}, separators=(",", ":")), secret)


async def test_exact_notifications_run_the_matching_sync_after_their_hashcode(exact_receiver):
    client, temporal = exact_receiver
    validation = await client.post("/webhooks/nl/exact_online", content=b"")
    accounts = await client.post("/webhooks/nl/exact_online", content=exact_notification("Accounts"))
    items = await client.post("/webhooks/nl/exact_online", content=exact_notification("Items"))
    forged = await client.post("/webhooks/nl/exact_online", content=exact_notification("Items", "guess"))
    other = await client.post("/webhooks/nl/exact_online", content=exact_notification("Documents"))
    assert [r.status_code for r in (validation, accounts, items, forged, other)] == [200] * 3 + [401, 200]
    assert [wf_id for _, wf_id in temporal.started] == ["customersync-now/nl", "catalogpush-now/nl"]
    acumatica = await client.post("/webhooks/nl/acumatica", content=exact_notification("Items"))
    assert acumatica.status_code == 404
