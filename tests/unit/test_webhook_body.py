"""The streamed reading of large webhook bodies: the skeleton keeps what parse_webhook needs
wherever the chunks split the text, the streaming signature checks agree with the
whole-body ones, and the receiver answers a delivery it reduced to its skeleton exactly as
it answers the same delivery held whole."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connections.config import WEBHOOK_SECRET, Connection
from connections.store import ConnectionStore, Database
from connections.vault import Vault
from connectors import bigcommerce, woocommerce
from starter.receiver import create_receiver
from starter.webhook_body import JsonSkeleton


def skeleton_of(text: bytes, cuts: list[int], limit: int = 1 << 20) -> JsonSkeleton:
    skeleton, start = JsonSkeleton(limit), 0
    for cut in sorted(set(c % (len(text) + 1) for c in cuts)) + [len(text)]:
        skeleton.feed(text[start:cut])
        start = cut
    return skeleton


def emptied(value):
    if isinstance(value, dict):
        return {k: emptied(v) for k, v in value.items()}
    return [] if isinstance(value, list) else value


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{}\u00e9\n', max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet='k"\\[]{', max_size=4), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=json_values, cuts=st.lists(st.integers(0, 10_000), max_size=8), ascii=st.booleans())
def test_the_skeleton_is_the_document_with_its_arrays_emptied(value, cuts, ascii):
    text = json.dumps(value, ensure_ascii=ascii).encode()
    skeleton = skeleton_of(text, cuts)
    assert json.loads(skeleton.text()) == emptied(value)
    assert skeleton.max_depth == depth(value)


def test_a_10000_line_order_keeps_its_id_in_a_few_hundred_bytes():
    order = {"id": 4242, "order_key": "wc_order_x", "status": "processing",
             "line_items": [{"id": i, "name": f"Mug \"{i}\" \\ [x]", "sku": f"SKU-{i}",
                             "meta_data": [{"key": "k", "value": "{"}]} for i in range(10_000)],
             "billing": {"email": "a@example.com"}}
    text = json.dumps(order).encode()
    skeleton = skeleton_of(text, list(range(0, len(text), 65536)))
    assert len(text) > 1_000_000 and len(skeleton.text()) < 200
    assert json.loads(skeleton.text())["id"] == 4242 and skeleton.max_depth == 5


def test_bytes_outside_arrays_past_the_limit_abandon_the_skeleton():
    skeleton = skeleton_of(b'{"note": "' + b"x" * 5000 + b'"}', [1000, 3000], limit=2048)
    assert skeleton.overflow and skeleton.text() == b""


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=5),
       secret=st.sampled_from(["s3cret", "a&amp;b"]), tamper=st.booleans())
def test_streamed_signatures_agree_with_whole_body_ones(body, cuts, secret, tamper):
    signed = body + (b"!" if tamper else b"")
    wc_headers = {"X-WC-Webhook-Signature": woocommerce.webhook_signature(signed, secret)}
    now = int(time.time())
    bc_headers = {bigcommerce.SECRET_HEADER: bigcommerce.secret_header_value(secret),
                  "webhook-id": "m1", "webhook-timestamp": str(now),
                  "webhook-signature": "v1," + bigcommerce.standard_signature("client", "m1", str(now), signed)}
    for module, headers, options in ((woocommerce, wc_headers, {}),
                                     (bigcommerce, bc_headers, {"standard_secret": "client"})):
        check, start = module.signature_check(headers, secret, **options), 0
        for cut in sorted(set(c % (len(body) + 1) for c in cuts)) + [len(body)]:
            check.update(body[start:cut])
            start = cut
        assert check.verify() is (not tamper)
        assert module.verify_webhook(headers, body, secret, **options) is (not tamper)


# --- the receiver: a large body is answered as the same body held whole ---------------
WC_SECRET, BC_SECRET = "wc-body-secret", "bc-body-secret"


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []

    async def start_workflow(self, workflow, arg, **kwargs):
        self.started.append(kwargs.get("id", ""))


@pytest.fixture(scope="module")
def receivers(tmp_path_factory, keyring):
    """Send one delivery to two receivers, one holding every body whole and one that keeps
    only the skeleton of anything over 16 bytes; the body arrives in the given pieces."""
    store = ConnectionStore(Database(f"sqlite:///{tmp_path_factory.mktemp('body') / 'c.db'}"), Vault(keyring))
    for cid, system, secret in (("shop", "woocommerce", WC_SECRET), ("bc", "bigcommerce", BC_SECRET)):
        store.save_connection(Connection(id=cid, store_system=system, store={}, erp_system="acumatica", erp={}))
        store.put_secret(cid, WEBHOOK_SECRET, secret)
    recorder = Recorder()

    async def factory():
        return recorder

    loop = asyncio.new_event_loop()
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=create_receiver(
        store, factory, task_queue="q", **options)), base_url="http://r")
        for options in ({"keep_whole": 1 << 30}, {"keep_whole": 16, "skeleton_limit": 1 << 20})]

    def send(path: str, body: bytes, headers: dict, cuts: list[int]) -> list[tuple[int, list[str]]]:
        answers = []
        for client in clients:
            async def pieces():
                start = 0
                for cut in sorted(set(c % (len(body) + 1) for c in cuts)) + [len(body)]:
                    yield body[start:cut]
                    start = cut
            recorder.started.clear()
            resp = loop.run_until_complete(client.post(path, content=pieces(), headers=headers))
            answers.append((resp.status_code, list(recorder.started)))
        return answers

    yield send
    for client in clients:
        loop.run_until_complete(client.aclose())
    loop.close()
    store.db.close()


record_fields = st.dictionaries(st.sampled_from(["id", "order_key", "line_items", "x", "data", "scope"]),
                                json_values, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(["woocommerce", "bigcommerce"]), fields=record_fields,
       order_id=st.integers(0, 10**6) | st.text("0123456789", min_size=1, max_size=4) | json_values,
       lines=st.lists(json_values, max_size=5), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_a_skeleton_is_answered_as_the_whole_body(receivers, source, fields, order_id, lines, cuts):
    if source == "woocommerce":
        record = {**fields, "id": order_id, "order_key": "wc_order_k", "line_items": lines}
        body = json.dumps(record).encode()
        path = "/webhooks/shop/woocommerce"
        headers = {"X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Resource": "order",
                   "X-WC-Webhook-Event": "updated",
                   "X-WC-Webhook-Signature": woocommerce.webhook_signature(body, WC_SECRET)}
    else:
        body = json.dumps({"scope": "store/order/updated", "hash": "h",
                           "data": {**fields, "type": "order", "id": order_id, "lines": lines}}).encode()
        path = "/webhooks/bc/bigcommerce"
        headers = {bigcommerce.SECRET_HEADER: bigcommerce.secret_header_value(BC_SECRET)}
    whole, skeleton = receivers(path, body, headers, cuts)
    assert whole == skeleton and whole[0] in (200, 400)
