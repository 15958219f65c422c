"""Receiver decisions that need no workflow service: nothing reaches Temporal on bad input,
and an unreachable Temporal is a 503 (the store retries, the poll catches up)."""
from __future__ import annotations

import json

import httpx
import pytest

from connections.config import WEBHOOK_SECRET, Connection
from connectors.woocommerce import webhook_signature
from starter.receiver import create_receiver

ORDER_HEADERS = {"X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Resource": "order",
                 "X-WC-Webhook-Event": "updated", "X-WC-Webhook-Delivery-ID": "abc"}


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


def signed(body: bytes, secret: str = "s3cret") -> dict:
    return {**ORDER_HEADERS, "X-WC-Webhook-Signature": webhook_signature(body, secret)}


async def test_temporal_unreachable_is_503(receiver):
    client, calls = receiver
    body = json.dumps({"id": 12}).encode()
    resp = await client.post("/webhooks/shop/woocommerce", content=body, headers=signed(body))
    assert resp.status_code == 503 and calls == [1]


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


async def test_ping_and_other_topics_are_acknowledged_without_work(receiver):
    client, calls = receiver
    ping = await client.post("/webhooks/shop/woocommerce", content=b"webhook_id=3")
    body = b'{"id": 5}'
    product = await client.post("/webhooks/shop/woocommerce", content=body, headers={
        **signed(body), "X-WC-Webhook-Topic": "product.updated", "X-WC-Webhook-Resource": "product"})
    assert (ping.status_code, product.status_code, calls) == (200, 200, [])


class RecordingTemporal:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []

    async def start_workflow(self, workflow, arg, *, id, **_):
        self.started.append((workflow, id))


@pytest.fixture
def exact_receiver(store):
    from connections.config import ERP_CREDENTIALS

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


def exact_body(topic: str, secret: str = "exact-hook-secret") -> bytes:
    from connectors.exact_online import webhook_hash

    content = json.dumps({"Topic": topic, "Action": "Update", "Division": 1, "Key": "guid-1",
                          "EventCreatedOn": "2026-12-01T08:00:00"}, separators=(",", ":"))
    return ('{"Content":' + content + ',"HashCode":"' + webhook_hash(content.encode(), secret)
            + '"}').encode()


async def test_exact_notifications_run_the_matching_sync_after_their_hashcode(exact_receiver):
    client, temporal = exact_receiver
    validation = await client.post("/webhooks/nl/exact_online", content=b"")
    accounts = await client.post("/webhooks/nl/exact_online", content=exact_body("Accounts"))
    items = await client.post("/webhooks/nl/exact_online", content=exact_body("Items"))
    forged = await client.post("/webhooks/nl/exact_online", content=exact_body("Items", "guess"))
    other = await client.post("/webhooks/nl/exact_online", content=exact_body("Documents"))
    assert [r.status_code for r in (validation, accounts, items, forged, other)] == [200] * 3 + [401, 200]
    assert temporal.started == [("CustomerSync", "customersync-now/nl"),
                                ("CatalogPush", "catalogpush-now/nl")]
    acumatica = await client.post("/webhooks/nl/acumatica", content=exact_body("Items"))
    assert acumatica.status_code == 404
