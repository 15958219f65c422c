"""The BigCommerce simulator behaves as the reference documents (tested through HTTP only)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from decimal import Decimal as D

import httpx
import pytest

from sandbox import bigcommerce as sandbox
from sandbox import traffic_bigcommerce as traffic

HASH, TOKEN = "abc123", "tok"


@pytest.fixture
async def bc():
    app = sandbox.create_app(store_hash=HASH, access_token=TOKEN, async_delay_ms=0)
    received: list[httpx.Request] = []
    status = {"code": 200}

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(status["code"])

    app.state.store.delivery_transport = httpx.MockTransport(receiver)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url=f"http://bc/stores/{HASH}/",
                               headers={"X-Auth-Token": TOKEN})
    await traffic.seed_catalog(client)
    yield app, client, received, status
    await app.state.store.aclose()
    await client.aclose()


def person(email: str = "ann@example.com") -> dict:
    return {"first_name": "Ann", "last_name": "Buyer", "email": email}


async def order(client, *, country="US", state="CA", skus=("MUG-CER-01",), qty=2, gateway="braintree",
                capture=True, **extra) -> dict:
    catalog = {s.sku: s for s in await traffic.load_catalog(client)}
    where = traffic.address(person(), "1 Main St", "Oakland", state, "94607", country)
    body = {"customer_id": 0, "status_id": 1, "billing_address": where,
            "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
            "products": [{"product_id": catalog[s].product_id, "variant_id": catalog[s].variant_id,
                          "quantity": qty} for s in skus], "base_shipping_cost": "5.00", **extra}
    return await traffic.place(client, body, gateway, capture)


async def test_auth_is_x_auth_token_and_bearer_is_ignored(bc):
    app, client, *_ = bc
    bare = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    v2 = await bare.get("v2/orders", headers={"Authorization": f"Bearer {TOKEN}"})
    assert v2.status_code == 401 and v2.json()[0]["status"] == 401
    v3 = await bare.get("v3/hooks")
    assert v3.status_code == 401 and v3.json()["title"] == sandbox.UNAUTHORIZED
    assert "X-Rate-Limit-Requests-Left" in v3.headers
    await bare.aclose()


async def test_empty_lists_are_204_without_body(bc):
    _, client, *_ = bc
    resp = await client.get("v2/orders")
    assert resp.status_code == 204 and resp.content == b""
    placed = await order(client)
    resp = await client.get(f"v2/orders/{placed['id']}/coupons")
    assert resp.status_code == 204 and resp.content == b""
    assert (await client.get("v2/orders", params={"limit": 251})).status_code == 413


async def test_v2_money_and_dates_v3_pagination(bc):
    _, client, *_ = bc
    placed = await order(client)
    assert placed["total_inc_tax"].count(".") == 1 and len(placed["total_inc_tax"].split(".")[1]) == 4
    assert placed["date_created"].endswith("+0000")
    body = (await client.get("v3/catalog/products", params={"limit": 5, "page": 2})).json()
    pagination = body["meta"]["pagination"]
    assert pagination["current_page"] == 2 and pagination["per_page"] == 5 and len(body["data"]) == 5
    assert pagination["links"]["next"] == "?page=3&limit=5"


async def test_tax_follows_class_and_address(bc):
    _, client, *_ = bc
    ca = await order(client, skus=("MUG-CER-01", "BOOK-COOK-01"), qty=1)
    tx = await order(client, state="TX", skus=("MUG-CER-01",), qty=1)
    de = await order(client, country="DE", state="", skus=("MUG-CER-01",), qty=1,
                     default_currency_code="EUR")
    # 12.00 * 8.25 % + 32.00 * 2.5 % + 5.00 shipping * 8.25 %
    assert D(ca["total_tax"]) == D("0.99") + D("0.80") + D("0.41")
    assert D(tx["total_tax"]) == 0
    assert D(de["total_tax"]) == D("2.40") + D("1.00") and de["default_currency_code"] == "EUR"
    taxes = (await client.get(f"v2/orders/{ca['id']}/taxes", params={"details": "true"})).json()
    assert {(t["line_item_type"], t["sales_tax_id"]) for t in taxes} == {
        ("item", "CA-SALES-TAX"), ("item", "CA-REDUCED-RATE"), ("shipping", "CA-SALES-TAX")}
    plain = (await client.get(f"v2/orders/{ca['id']}/taxes")).json()
    assert "line_item_type" not in plain[0] and len(plain) == 2


async def test_coupons_and_unknown_currency(bc):
    _, client, *_ = bc
    placed = await order(client, coupon_code="welcome10")
    assert D(placed["coupon_discount"]) == D("2.40")
    (line,) = (await client.get(f"v2/orders/{placed['id']}/products")).json()
    assert line["applied_discounts"][0]["code"] == "welcome10"
    assert D(line["discounted_total_inc_tax"]) == D("21.60") + D(line["total_tax"])
    free = await order(client, coupon_code="freeship")
    assert D(free["shipping_cost_inc_tax"]) == 0
    with pytest.raises(RuntimeError, match="400"):
        await order(client, default_currency_code="JPY")


async def test_rate_limit_headers_and_429_past_the_quota(bc):
    app, client, *_ = bc
    await client.post("http://bc/_sandbox/settings", json={"rate_limit_quota": 3,
                                                           "rate_limit_window_ms": 60000})
    app.state.store.window_count = 0
    lefts = [(await client.get("v3/hooks")).headers["X-Rate-Limit-Requests-Left"] for _ in range(3)]
    assert lefts == ["2", "1", "0"]
    over = await client.get("v3/hooks")
    assert over.status_code == 429 and over.headers["X-Rate-Limit-Requests-Quota"] == "3"
    assert 0 < int(over.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 60000


async def test_faults_storm_and_lost_commit(bc):
    _, client, *_ = bc
    await client.post("http://bc/_sandbox/faults", json={"storm_429": 1, "retry_after": 2})
    storm = await client.get("v3/hooks")
    assert storm.status_code == 429 and storm.headers["X-Rate-Limit-Time-Reset-Ms"] == "2000"
    await client.post("http://bc/_sandbox/faults", json={"lose_next_commits": 1})
    lost = await client.post("v3/customers", json=[{"email": "z@z.z", "first_name": "Z", "last_name": "Z"}])
    assert lost.status_code == 502
    found = (await client.get("v3/customers", params={"email:in": "z@z.z"})).json()["data"]
    assert len(found) == 1  # committed before the answer was lost


async def test_refund_quote_then_refund_and_status(bc):
    app, client, *_ = bc
    placed = await order(client, qty=2)
    (line,) = (await client.get(f"v2/orders/{placed['id']}/products")).json()
    items = [{"item_type": "PRODUCT", "item_id": line["id"], "quantity": 1}]
    quote = (await client.post(f"v3/orders/{placed['id']}/payment_actions/refund_quotes",
                               json={"items": items})).json()["data"]
    assert quote["total_refund_amount"] == 12.99 and quote["refund_methods"][0][0]["provider_id"] == "braintree"
    wrong = await client.post(f"v3/orders/{placed['id']}/payment_actions/refunds",
                              json={"items": items, "payments": [{"provider_id": "braintree",
                                                                  "amount": 13, "offline": False}]})
    assert wrong.status_code == 422 and wrong.json()["data"][0]["status"] == 422
    made = await traffic.refund(client, placed["id"], items)
    assert made["total_amount"] == 12.99 and made["payments"][0]["transaction_id"]
    after = (await client.get(f"v2/orders/{placed['id']}")).json()
    assert after["status_id"] == 14 and after["payment_status"] == "partially refunded"
    assert after["total_inc_tax"] == placed["total_inc_tax"]  # refunds leave totals alone
    guest_credit = await client.post(f"v3/orders/{placed['id']}/payment_actions/refunds", json={
        "items": [{"item_type": "ORDER", "item_id": placed["id"], "amount": 1}],
        "payments": [{"provider_id": "storecredit", "amount": 1, "offline": False}]})
    assert guest_credit.json()["data"][0]["title"] == "Unable to provide store credit for a guest customer."


async def test_concurrent_refunds_on_one_order_are_rejected(bc):
    app, client, *_ = bc
    await client.post("http://bc/_sandbox/settings", json={"refund_processing_ms": 300})
    placed = await order(client, qty=3)
    (line,) = (await client.get(f"v2/orders/{placed['id']}/products")).json()
    body = {"items": [{"item_type": "PRODUCT", "item_id": line["id"], "quantity": 1}],
            "payments": [{"provider_id": "braintree", "amount": 12.99, "offline": False}]}
    path = f"v3/orders/{placed['id']}/payment_actions/refunds"
    first, second = await asyncio.gather(client.post(path, json=body), client.post(path, json=body))
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    assert (await client.post(path, json=body)).status_code == 201  # sequential is fine


async def test_pay_later_by_capture(bc):
    _, client, *_ = bc
    placed = await order(client, capture=False)
    assert placed["payment_status"] == "authorized" and placed["status_id"] == 7
    assert (await client.post(f"v3/orders/{placed['id']}/payment_actions/capture", json={})).status_code == 201
    for _ in range(100):
        now = (await client.get(f"v2/orders/{placed['id']}")).json()
        if now["payment_status"] == "captured":
            break
        await asyncio.sleep(0.01)
    assert now["status_id"] == 11
    events = [t["event"] for t in (await client.get(f"v3/orders/{placed['id']}/transactions")).json()["data"]]
    assert events == ["authorization", "capture"]


async def test_batch_limits(bc):
    app, client, *_ = bc
    ids = sorted(app.state.store.products)
    over = await client.put("v3/catalog/products", json=[{"id": i, "price": 1} for i in ids[:11]])
    assert over.status_code == 413
    partial = await client.put("v3/catalog/products", json=[{"id": ids[0], "price": 2}, {"id": 1, "price": 2}])
    assert partial.status_code == 207 and len(partial.json()["data"]) == 1
    variants = sorted(app.state.store.variants)
    assert (await client.put("v3/catalog/variants", json=[{"id": variants[0]}] * 51)).status_code == 413
    bad = await client.put("v3/catalog/variants", json=[{"id": 1, "price": 3}])
    assert bad.status_code == 422 and "batch_errors" in bad.json()
    stock = await client.put("v3/inventory/adjustments/absolute",
                             json={"reason": "x", "items": [{"location_id": 1, "sku": "NOPE", "quantity": 1}]})
    assert stock.status_code == 422 and stock.headers["content-type"].startswith("application/problem+json")


async def test_stub_deliveries_carry_the_hooks_headers_and_signature(bc):
    app, client, received, _ = bc
    await client.post("http://bc/_sandbox/settings", json={"sign_deliveries": True})
    hook = (await client.post("v3/hooks", json={"scope": "store/order/*", "destination": "https://rx.test/h",
                                                "is_active": True, "headers": {"X-Secret": "abc"}})).json()["data"]
    placed = await order(client)
    await app.state.store.wait_idle()
    bodies = [json.loads(r.content) for r in received]
    assert {b["scope"] for b in bodies} >= {"store/order/created", "store/order/updated",
                                            "store/order/statusUpdated"}
    created = next(r for r in received if json.loads(r.content)["scope"] == "store/order/created")
    payload = json.loads(created.content)
    assert payload["data"] == {"type": "order", "id": placed["id"]} and payload["store_id"].isdigit()
    assert payload["producer"] == f"stores/{HASH}" and created.headers["X-Secret"] == "abc"
    assert payload["hash"] == hashlib.sha1(json.dumps(payload["data"], separators=(",", ":")).encode()).hexdigest()
    signed = f"{created.headers['webhook-id']}.{created.headers['webhook-timestamp']}.".encode() + created.content
    expected = base64.b64encode(hmac.new(b"sandbox-client-secret", signed, hashlib.sha256).digest()).decode()
    assert created.headers["webhook-signature"] == f"v1,{expected}"
    assert hook["is_active"] is True


async def test_failed_deliveries_retry_then_deactivate_the_hook(bc):
    app, client, received, status = bc
    await client.post("http://bc/_sandbox/settings", json={"retry_schedule": [0, 0], "retry_time_scale": 0})
    hook = (await client.post("v3/hooks", json={"scope": "store/order/created", "destination": "https://rx.test/h",
                                                "is_active": True})).json()["data"]
    status["code"] = 500
    await order(client)
    for _ in range(200):
        got = (await client.get(f"v3/hooks/{hook['id']}")).json()["data"]
        if not got["is_active"]:
            break
        await asyncio.sleep(0.01)
    assert got["is_active"] is False and len(received) == 3  # first try + 2 retries
    log = (await client.get("http://bc/_sandbox/webhooks/deliveries")).json()
    assert log[-1]["kind"] == "deactivated"
    again = await client.put(f"v3/hooks/{hook['id']}", json={"is_active": True})
    assert again.json()["data"]["is_active"] is True


async def test_outage_and_duplicates(bc):
    app, client, received, _ = bc
    await client.post("v3/hooks", json={"scope": "store/order/created", "destination": "https://rx.test/h",
                                        "is_active": True})
    await client.post("http://bc/_sandbox/webhooks/outage", json={"fail_next": 1})
    await order(client)
    await client.post("http://bc/_sandbox/webhooks/duplicate", json={"next": 1})
    await order(client)
    assert (await client.post("http://bc/_sandbox/webhooks/wait-idle", json={})).json() == {"idle": True}
    assert len(received) == 2 and received[0].content == received[1].content
    log = (await client.get("http://bc/_sandbox/webhooks/deliveries")).json()
    assert [d["status"] for d in log] == [None, 200, 200] and log[-1]["duplicate"]


async def test_hook_validation(bc):
    _, client, *_ = bc
    missing = await client.post("v3/hooks", json={"scope": "store/order/created"})
    assert missing.status_code == 422 and missing.json()["errors"] == {"destination": "error.path.missing."}
    assert (await client.get("v3/hooks/42")).json()["title"] == "Webhook with id [42] not found"


async def test_events_for_a_deactivated_hook_are_dropped_and_wait_idle_can_wait_for_retries(bc):
    app, client, received, status = bc
    await client.post("http://bc/_sandbox/settings", json={"retry_schedule": [0.3], "retry_time_scale": 1})
    hook = (await client.post("v3/hooks", json={"scope": "store/order/created", "destination": "https://rx.test/h",
                                                "is_active": True})).json()["data"]
    status["code"] = 500
    await order(client)
    await client.post("http://bc/_sandbox/webhooks/wait-idle", json={})  # the first attempt failed
    assert (await client.get("http://bc/_sandbox/state")).json()["retrying"] == 1
    await client.put(f"v3/hooks/{hook['id']}", json={"is_active": False})  # deactivated meanwhile
    idle = await client.post("http://bc/_sandbox/webhooks/wait-idle", json={"retries": True, "timeout": 5})
    assert idle.json() == {"idle": True}
    assert (await client.get("http://bc/_sandbox/state")).json()["retrying"] == 0
    log = (await client.get("http://bc/_sandbox/webhooks/deliveries")).json()
    assert [d["kind"] for d in log] == ["delivery", "dropped"] and len(received) == 1


async def bare_order(client) -> dict:
    """An order without a payment (the checkout's tenders are the test's)."""
    catalog = {s.sku: s for s in await traffic.load_catalog(client)}
    where = traffic.address(person(), "1 Main St", "Oakland", "CA", "94607", "US")
    return (await client.post("v2/orders", json={
        "customer_id": 0, "status_id": 1, "billing_address": where,
        "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
        "products": [{"product_id": catalog["MUG-CER-01"].product_id, "quantity": 2}],
        "base_shipping_cost": "5.00"})).json()


async def test_split_tender_gift_certificate_and_card(bc):
    _, client, *_ = bc
    placed = await bare_order(client)
    total = D(placed["total_inc_tax"])
    pay = f"http://bc/_sandbox/orders/{placed['id']}/payments"
    too_much = await client.post(pay, json=[{"gateway": "giftcertificate", "amount": str(total + 1)}])
    assert too_much.status_code == 422
    made = (await client.post(pay, json=[{"gateway": "giftcertificate", "amount": "10.00",
                                         "code": "GC-TEN"}, {"gateway": "braintree"}])).json()
    assert [(t["event"], t["method"], t["gateway"], D(str(t["amount"]))) for t in made] == [
        ("purchase", "gift_certificate", "giftcertificate", D("10.00")),
        ("purchase", "credit_card", "braintree", total - 10)]
    assert made[0]["gift_certificate"]["code"] == "GC-TEN" and made[1]["gift_certificate"] is None
    now = (await client.get(f"v2/orders/{placed['id']}")).json()
    assert (now["payment_status"], now["status_id"], now["payment_method"]) == ("captured", 11, "Credit Card")
    assert D(now["gift_certificate_amount"]) == 10 and D(now["total_inc_tax"]) == total
    assert (await client.post(pay, json={"gateway": "braintree"})).status_code == 422  # paid
    # a refund goes back to the card first, then to the gift certificate
    items = [{"item_type": "ORDER", "item_id": placed["id"], "amount": str(total - 5)}]
    quote = (await client.post(f"v3/orders/{placed['id']}/payment_actions/refund_quotes",
                               json={"items": items})).json()["data"]
    assert [(p["provider_id"], D(str(p["amount"]))) for p in quote["refund_methods"][0]] == [
        ("braintree", total - 10), ("giftcertificate", D("5.00"))]
    whole = await client.post(f"v3/orders/{placed['id']}/payment_actions/refunds", json={
        "items": items, "payments": [{"provider_id": "braintree", "amount": str(total - 5)}]})
    assert whole.status_code == 422  # more than the card took
    made = await traffic.refund(client, placed["id"], items)
    assert [p["provider_id"] for p in made["payments"]] == ["braintree", "giftcertificate"]
    events = [(t["event"], t["gateway"]) for t in
              (await client.get(f"v3/orders/{placed['id']}/transactions")).json()["data"]]
    assert events[2:] == [("refund", "braintree"), ("refund", "giftcertificate")]


async def test_partial_captures_then_the_rest(bc):
    _, client, *_ = bc
    placed = await order(client, capture=False)
    total, oid = D(placed["total_inc_tax"]), placed["id"]
    capture = f"http://bc/_sandbox/orders/{oid}/capture"
    assert (await client.post(capture, json={"amount": str(total + 1)})).status_code == 422
    assert (await client.post(capture, json={"amount": "10.00"})).status_code == 201
    assert (await client.post(capture, json={"amount": "5.50"})).status_code == 201
    assert (await client.post(f"v3/orders/{oid}/payment_actions/capture", json={})).status_code == 201
    for _ in range(100):
        now = (await client.get(f"v2/orders/{oid}")).json()
        if now["payment_status"] == "captured":
            break
        await asyncio.sleep(0.01)
    assert now["status_id"] == 11
    txns = (await client.get(f"v3/orders/{oid}/transactions")).json()["data"]
    auth = txns[0]
    assert [(t["event"], D(str(t["amount"])), t["reference_transaction_id"]) for t in txns] == [
        ("authorization", total, None), ("capture", D("10.00"), auth["id"]),
        ("capture", D("5.50"), auth["id"]), ("capture", total - D("15.50"), auth["id"])]
    assert (await client.post(capture, json={})).status_code == 422  # nothing left
