"""BigCommerce webhook reading: the hook's secret header (constant time), Standard Webhooks
signatures when present (tolerance, bad/missing), and the stub payloads of the reference."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors import bigcommerce as bc

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bigcommerce" / "webhooks"
SECRET = "s3cret-of-the-connection"
NOW = 1_760_000_000


def body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def header() -> dict[str, str]:
    return {bc.SECRET_HEADER: bc.secret_header_value(SECRET)}


def signed(raw: bytes, *, secret: str = SECRET, stamp: int = NOW, wid: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": wid, "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + bc.standard_signature(secret, wid, str(stamp), raw)}


def test_secret_header_is_derived_and_checked():
    raw = body("store_order_created")
    assert bc.secret_header_value(SECRET) != SECRET  # the secret itself never leaves
    assert bc.verify_webhook(header(), raw, SECRET)
    assert bc.verify_webhook({k.lower(): v for k, v in header().items()}, raw, SECRET)


@pytest.mark.parametrize("headers", [{}, {bc.SECRET_HEADER: "wrong"}, {bc.SECRET_HEADER: ""}])
def test_missing_or_wrong_secret_header_fails(headers):
    assert not bc.verify_webhook(headers, body("store_order_created"), SECRET)


def test_no_connection_secret_fails():
    assert not bc.verify_webhook(header(), body("store_order_created"), "")


def test_standard_webhooks_signature_when_present():
    raw = body("store_order_updated")
    assert bc.verify_webhook({**header(), **signed(raw)}, raw, SECRET, now=NOW + 299)


def test_present_but_bad_signature_fails():
    raw = body("store_order_updated")
    forged = {**header(), **signed(raw, secret="someone-else")}
    assert not bc.verify_webhook(forged, raw, SECRET, now=NOW)
    tampered = raw.replace(b"250", b"251")
    assert not bc.verify_webhook({**header(), **signed(raw)}, tampered, SECRET, now=NOW)


def test_signature_outside_tolerance_fails():
    raw = body("store_order_updated")
    assert not bc.verify_webhook({**header(), **signed(raw)}, raw, SECRET, now=NOW + 301)
    assert not bc.verify_webhook({**header(), **signed(raw)}, raw, SECRET, now=NOW - 301)


def test_incomplete_signature_headers_fail():
    raw = body("store_order_updated")
    partial = {**header(), "webhook-id": "msg_1"}
    assert not bc.verify_webhook(partial, raw, SECRET, now=NOW)


def test_signature_list_and_whsec_key():
    raw = body("store_order_created")
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    good = signed(raw, secret=secret)["webhook-signature"]
    headers = {**signed(raw, secret=secret), "webhook-signature": f"v1,bm90LWl0 {good}"}
    assert bc.verify_standard_webhook(headers, raw, secret, now=NOW)
    assert not bc.verify_standard_webhook({**headers, "webhook-signature": "v2," + good[3:]},
                                          raw, secret, now=NOW)


def test_no_ping():
    assert not bc.is_ping({}, body("store_order_created"))


@pytest.mark.parametrize("name, event", [("store_order_created", "created"),
                                         ("store_order_updated", "updated"),
                                         ("store_order_statusUpdated", "status_updated"),
                                         ("store_order_refund_created", "refunded")])
def test_order_stubs(name, event):
    raw = body(name)
    parsed = bc.parse_webhook(header(), raw)
    assert (parsed.resource, parsed.event, parsed.resource_id) == ("order", event, "250")
    assert parsed.topic == json.loads(raw)["scope"]
    assert parsed.delivery_id == json.loads(raw)["hash"]  # identical across duplicates


def test_transaction_stub_names_the_order():
    raw = json.dumps({"scope": "store/order/transaction/created", "store_id": "1", "hash": "h",
                      "data": {"type": "transaction", "order_id": "250", "transaction_id": 7},
                      "created_at": 1, "producer": "stores/abc"}).encode()
    parsed = bc.parse_webhook({}, raw)
    assert (parsed.resource, parsed.event, parsed.resource_id) == ("order", "transaction_created", "250")


def test_sku_stub_is_not_an_order():
    parsed = bc.parse_webhook({}, body("store_sku_inventory_updated"))
    assert parsed.resource == "sku" and parsed.event == "inventory/updated"


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"), (b"[]", "no scope"), (b'{"scope": "store/order/created"}', "no data"),
    (b'{"scope": "store/order/created", "data": {"type": "order"}}', "no record id"),
    (b'{"scope": "order", "data": {"id": 1}}', "not a store")])
def test_malformed_deliveries(raw, message):
    with pytest.raises(ValueError, match=message):
        bc.parse_webhook({}, raw)
