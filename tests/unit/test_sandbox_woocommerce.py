"""The WooCommerce simulator against shared/reference/woocommerce.md: auth, totals, lists,
batch, refunds, webhooks, faults and the traffic generator. In process (ASGI) except one
test that delivers to a receiver on a real socket."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sandbox.server import serving
from sandbox.traffic import generate_day, seed_catalog
from sandbox.woocommerce import create_app

API = "/wp-json/wc/v3/"
KEY, SECRET = "ck_test", "cs_test"
NY_RATES = {"US-NY-STATE-1": {"id": 11, "rate": "4.0000", "label": "NY State Tax", "shipping": True},
            "US-NY-NYC-2": {"id": 12, "rate": "4.8750", "label": "NYC Local Tax", "shipping": True}}
CA_RATE = {"US-CA-TAX-1": {"id": 1, "rate": "8.2500", "label": "Tax", "shipping": True}}
CA_ADDRESS = {"first_name": "Ann", "last_name": "Buyer", "email": "ann@example.com",
              "address_1": "1 Main St", "city": "Oakland", "state": "CA", "postcode": "94607",
              "country": "US"}


def client(app, scheme: str = "https", auth=(KEY, SECRET)) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"{scheme}://shop.test",
                             auth=auth)


class Receiver:
    """A webhook receiver behind an httpx mock transport: records requests, answers ``status``."""

    def __init__(self, status: int = 200, ping_status: int = 200) -> None:
        self.status, self.ping_status = status, ping_status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        is_ping = "x-wc-webhook-topic" not in request.headers
        return httpx.Response(self.ping_status if is_ping else self.status)

    @property
    def deliveries(self) -> list[httpx.Request]:
        return [r for r in self.requests if "x-wc-webhook-topic" in r.headers]

    @property
    def pings(self) -> list[httpx.Request]:
        return [r for r in self.requests if "x-wc-webhook-topic" not in r.headers]


@pytest.fixture
async def app():
    app = create_app(tax_rates=CA_RATE)
    yield app
    await app.state.woo.aclose()


@pytest.fixture
async def shop(app):
    async with client(app) as c:
        yield c


@pytest.fixture
def receiver(app) -> Receiver:
    receiver = Receiver()
    app.state.woo.delivery_transport = httpx.MockTransport(receiver)
    return receiver


def seed(app, *items: tuple[str, str, str]) -> list[dict]:
    return [app.state.woo.add_product(sku, sku.title(), price, tax_class=tax_class)
            for sku, price, tax_class in items]


def order_body(*lines: tuple[str, int], **extra) -> dict:
    return {"set_paid": True, "billing": CA_ADDRESS,
            "line_items": [{"sku": sku, "quantity": qty} for sku, qty in lines], **extra}


# ---- authentication (§2) -----------------------------------------------------------------

def oauth_params(method: str, url: str, extra: dict, *, secret: str = SECRET, key: str = KEY,
                 signature_method: str = "HMAC-SHA1", timestamp: int | None = None,
                 nonce: str | None = None) -> dict:
    """One-legged OAuth 1.0a as §2.3 describes it, independent of the simulator."""
    params = {"oauth_consumer_key": key, "oauth_timestamp": str(timestamp or int(time.time())),
              "oauth_nonce": nonce or secrets.token_hex(8), "oauth_signature_method": signature_method,
              **extra}
    enc = lambda s: quote(str(s), safe="~")  # noqa: E731
    normalized = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params.items()))
    base = f"{method}&{enc(url)}&{enc(normalized)}"
    digest = hashlib.sha256 if signature_method == "HMAC-SHA256" else hashlib.sha1
    signature = base64.b64encode(hmac.new(f"{secret}&".encode(), base.encode(), digest).digest()).decode()
    return {**params, "oauth_signature": signature}


async def test_basic_over_https_and_ignored_over_http(app):
    async with client(app) as https, client(app, "http") as http:
        ok = await https.get(API + "orders")
        plain = await http.get(API + "orders")
    assert ok.status_code == 200 and ok.json() == []
    assert plain.status_code == 401
    assert plain.json() == {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.",
                            "data": {"status": 401}}


async def test_wrong_secret_unknown_key_and_query_string_precedence(app):
    async with client(app, auth=(KEY, "cs_wrong")) as wrong, client(app, auth=("ck_nobody", "x")) as unknown:
        bad = await wrong.get(API + "orders")
        stranger = await unknown.get(API + "orders")
        query_wins = await wrong.get(API + "orders", params={"consumer_key": KEY, "consumer_secret": SECRET})
        created = await unknown.post(API + "orders", json={})
    assert bad.status_code == 401 and bad.json()["code"] == "woocommerce_rest_authentication_error"
    assert bad.json()["message"] == "Consumer secret is invalid."
    assert bad.headers["www-authenticate"].startswith('Basic realm="WooCommerce API')
    assert stranger.status_code == 401 and stranger.json()["code"] == "woocommerce_rest_cannot_view"
    assert created.status_code == 401 and created.json()["code"] == "woocommerce_rest_cannot_create"
    assert query_wins.status_code == 200


async def test_stripped_authorization_header_needs_query_string(app):
    async with client(app) as shop, client(app, auth=None) as anonymous:
        assert (await shop.get(API + "orders")).status_code == 200
        setting = await anonymous.post("/_sandbox/settings", json={"strip_authorization": True})
        assert setting.json()["strip_authorization"] is True
        basic = await shop.get(API + "orders")
        query = await anonymous.get(API + "orders", params={"consumer_key": KEY, "consumer_secret": SECRET})
    assert basic.status_code == 401 and basic.json()["code"] == "woocommerce_rest_cannot_view"
    assert query.status_code == 200


async def test_key_permissions_are_enforced(app):
    app.state.woo.add_key("ck_read", "cs_read", "read")
    async with client(app, auth=("ck_read", "cs_read")) as reader:
        listed = await reader.get(API + "orders")
        written = await reader.post(API + "orders", json={})
    assert listed.status_code == 200
    assert written.status_code == 401
    assert written.json()["message"] == "The API key provided does not have write permissions."


async def test_oauth1_query_string_and_header_over_http(app):
    url = "http://shop.test/wp-json/wc/v3/orders"
    async with client(app, "http", auth=None) as http:
        sha1 = await http.get(API + "orders", params=oauth_params("GET", url, {"per_page": "5"}))
        signed = oauth_params("POST", url, {}, signature_method="HMAC-SHA256")
        header = "OAuth " + ", ".join(f'{k}="{quote(v, safe="~")}"' for k, v in signed.items())
        sha256 = await http.post(API + "orders", json={}, headers={"Authorization": header})
    assert sha1.status_code == 200, sha1.text
    assert sha256.status_code == 201, sha256.text


async def test_oauth1_rejections(app):
    url = "http://shop.test/wp-json/wc/v3/orders"
    async with client(app, "http", auth=None) as http:
        async def get(params: dict) -> dict:
            resp = await http.get(API + "orders", params=params)
            assert resp.status_code == 401
            return resp.json()

        tampered = oauth_params("GET", url, {"per_page": "5"}) | {"per_page": "6"}
        stale = oauth_params("GET", url, {}, timestamp=int(time.time()) - 16 * 60)
        fresh = oauth_params("GET", url, {}, nonce="once")
        assert (await http.get(API + "orders", params=fresh)).status_code == 200
        replay = oauth_params("GET", url, {}, nonce="once")
        wrong_method = oauth_params("GET", url, {}, signature_method="PLAINTEXT")
        partial = {"oauth_consumer_key": KEY, "oauth_nonce": "n"}
        assert (await get(tampered))["message"] == "Invalid signature - provided signature does not match."
        assert (await get(stale))["message"] == "Invalid timestamp."
        assert (await get(replay))["message"] == "Invalid nonce - nonce has already been used."
        assert (await get(wrong_method))["message"] == "Invalid signature - signature method is invalid."
        missing = await get(partial)
    assert missing["code"] == "woocommerce_rest_authentication_missing_parameter"
    assert "oauth_signature" in missing["message"]


async def test_unknown_route_is_rest_no_route(shop):
    resp = await shop.get(API + "nothing-here")
    assert resp.status_code == 404 and resp.json()["code"] == "rest_no_route"
    assert (await shop.delete(API + "orders")).json()["code"] == "rest_no_route"


# ---- orders and totals (§4) ---------------------------------------------------------------

async def test_totals_with_percent_coupon_shipping_fee_and_two_tax_rates():
    app = create_app(tax_rates=NY_RATES)
    woo = app.state.woo
    woo.add_product("TSHIRT-ORG", "Organic Cotton T-Shirt", "", variations=[
        {"sku": "TSHIRT-BLU-L", "regular_price": "25.00", "attributes": {"Color": "Blue", "Size": "L"}}])
    woo.add_product("MUG-CER-01", "Ceramic Mug", "12.00")
    woo.add_coupon("save10", "percent", "10")
    body = order_body(("TSHIRT-BLU-L", 2), ("MUG-CER-01", 3), coupon_lines=[{"code": "SAVE10"}],
                      fee_lines=[{"name": "Gift wrapping", "total": "5"}],
                      shipping_lines=[{"method_id": "flat_rate", "method_title": "Flat rate", "total": "8.00"}])
    async with client(app) as shop:
        resp = await shop.post(API + "orders", json=body)
    order = resp.json()
    assert resp.status_code == 201 and resp.headers["location"].endswith(f"/orders/{order['id']}")
    totals = {k: order[k] for k in ("discount_total", "discount_tax", "shipping_total", "shipping_tax",
                                    "cart_tax", "total_tax", "total")}
    assert totals == {"discount_total": "8.60", "discount_tax": "0.77", "shipping_total": "8.00",
                      "shipping_tax": "0.71", "cart_tax": "7.31", "total_tax": "8.02", "total": "98.42"}
    shirt, mug = order["line_items"]
    assert shirt["name"] == "Organic Cotton T-Shirt - Blue, L" and shirt["variation_id"] > 0
    assert (shirt["subtotal"], shirt["total"], shirt["price"]) == ("50.00", "45.00", 22.5)
    assert (shirt["subtotal_tax"], shirt["total_tax"]) == ("4.44", "3.99")
    assert shirt["taxes"] == [{"id": 11, "total": "1.8", "subtotal": "2"},
                              {"id": 12, "total": "2.19", "subtotal": "2.44"}]
    assert (mug["total"], mug["total_tax"], mug["price"]) == ("32.40", "2.88", 10.8)
    assert [(t["rate_code"], t["tax_total"], t["shipping_tax_total"]) for t in order["tax_lines"]] == [
        ("US-NY-STATE-1", "3.30", "0.32"), ("US-NY-NYC-2", "4.01", "0.39")]
    assert order["coupon_lines"][0]["code"] == "save10" and order["coupon_lines"][0]["discount"] == "8.60"
    assert order["fee_lines"][0]["total_tax"] == "0.44" and order["shipping_lines"][0]["total_tax"] == "0.71"
    assert Decimal(order["total"]) == sum(Decimal(order[k]) for k in ("shipping_total", "total_tax")) + sum(
        Decimal(i["total"]) for i in order["line_items"]) + Decimal(order["fee_lines"][0]["total"])


async def test_fee_with_reduced_rate_line_keeps_every_rate_code():
    app = create_app()  # default rates: standard and reduced (class reduced-rate)
    woo = app.state.woo
    woo.add_product("BOOK-1", "Book", "20.00", tax_class="reduced-rate")
    woo.add_product("PEN-1", "Pen", "3.00")
    body = order_body(("BOOK-1", 1), ("PEN-1", 1), fee_lines=[{"name": "Handling", "total": "2"}])
    async with client(app) as shop:
        order = (await shop.post(API + "orders", json=body)).json()
    assert sorted(t["rate_code"] for t in order["tax_lines"]) == ["US-CA-REDUCED-1", "US-CA-TAX-1"]
    await woo.aclose()


async def test_fixed_cart_coupon_is_split_in_cents_like_core(app, shop):
    seed(app, ("A", "12.00", ""), ("B", "7.99", ""))
    app.state.woo.add_coupon("save5", "fixed_cart", "5")
    body = order_body(("A", 1), ("B", 2), coupon_lines=[{"code": "save5"}])
    order = (await shop.post(API + "orders", json=body)).json()
    a, b = order["line_items"]
    assert (a["total"], b["total"]) == ("10.34", "12.64")  # 1.66 + 3.34: remainder cents go to B
    assert (a["total_tax"], b["total_tax"]) == ("0.85", "1.04")
    assert (order["discount_total"], order["total"]) == ("5.00", "24.87")


async def test_prices_including_tax_derive_line_amounts_excluding_tax():
    app = create_app(tax_rates=CA_RATE, prices_include_tax=True)
    seed(app, ("GROSS", "10.00", ""))
    body = order_body(("GROSS", 3), shipping_lines=[{"method_id": "flat_rate", "total": "5.00"}])
    async with client(app) as shop:
        order = (await shop.post(API + "orders", json=body)).json()
    item = order["line_items"][0]
    assert order["prices_include_tax"] is True
    assert (item["subtotal"], item["total"], item["total_tax"]) == ("27.71", "27.71", "2.29")
    assert (order["shipping_tax"], order["total"]) == ("0.41", "35.41")


async def test_order_fields_dates_guest_and_currency(app, shop):
    seed(app, ("A", "10.00", "reduced-rate"))
    order = (await shop.post(API + "orders", json=order_body(("A", 1), currency="EUR",
                                                            transaction_id="ch_1"))).json()
    assert order["number"] == str(order["id"]) and order["customer_id"] == 0
    assert order["billing"]["email"] == "ann@example.com" and order["currency"] == "EUR"
    assert (order["status"], order["transaction_id"]) == ("processing", "ch_1")
    assert order["total_tax"] == "0.00"  # no reduced-rate rate configured
    local, gmt = order["date_paid"], order["date_paid_gmt"]
    assert len(gmt) == 19 and not gmt.endswith("Z")
    assert datetime.fromisoformat(local) - datetime.fromisoformat(gmt) == timedelta(hours=2)
    unpaid = (await shop.post(API + "orders", json={"line_items": [{"sku": "A", "quantity": 1}]})).json()
    assert unpaid["status"] == "pending" and unpaid["date_paid"] is None and unpaid["needs_payment"] is True


async def test_edit_quantities_removes_zero_lines_and_recomputes(app, shop):
    seed(app, ("A", "10.00", ""), ("B", "5.00", ""))
    order = (await shop.post(API + "orders", json=order_body(("A", 1), ("B", 1)))).json()
    a, b = order["line_items"]
    resp = await shop.put(f"{API}orders/{order['id']}", json={"line_items": [
        {"id": a["id"], "quantity": 3}, {"id": b["id"], "quantity": 0}]})
    edited = resp.json()
    assert resp.status_code == 200
    assert [(i["sku"], i["quantity"], i["total"]) for i in edited["line_items"]] == [("A", 3, "30.00")]
    assert edited["total"] == "32.48" and edited["date_modified_gmt"] >= order["date_modified_gmt"]
    missing = await shop.put(f"{API}orders/999999", json={"status": "completed"})
    assert missing.status_code == 400 and missing.json()["code"] == "woocommerce_rest_shop_order_invalid_id"
    assert (await shop.get(f"{API}orders/999999")).status_code == 404


# ---- lists (§3.1) and batch (§3.4) --------------------------------------------------------

async def test_paging_headers_links_and_per_page_bounds(app, shop):
    seed(app, ("A", "1.00", ""))
    for _ in range(25):
        app.state.woo.create_order(order_body(("A", 1)))
    page2 = await shop.get(API + "orders", params={"per_page": 10, "page": 2, "status": "processing"})
    assert page2.headers["x-wp-total"] == "25" and page2.headers["x-wp-totalpages"] == "3"
    links = page2.headers["link"]
    assert 'rel="prev"' in links and 'rel="next"' in links and 'rel="first"' not in links
    assert "page=1" in links.split(",")[0] and "page=3" in links.split(",")[1] and "status=processing" in links
    ids = [o["id"] for o in page2.json()]
    assert len(ids) == 10 and ids == sorted(ids, reverse=True)
    last = await shop.get(API + "orders", params={"per_page": 10, "page": 3, "order": "asc", "orderby": "id"})
    assert "next" not in last.headers["link"] and len(last.json()) == 5
    beyond = await shop.get(API + "orders", params={"page": 9})
    assert beyond.json() == [] and beyond.headers["x-wp-total"] == "25"
    too_many = await shop.get(API + "orders", params={"per_page": 101})
    assert too_many.status_code == 400 and too_many.json()["code"] == "rest_invalid_param"
    assert "per_page" in too_many.json()["data"]["params"]


async def test_modified_after_honours_dates_are_gmt(app, shop):
    woo = app.state.woo
    seed(app, ("A", "1.00", ""))
    old = woo.create_order(order_body(("A", 1)))
    woo.advance_clock(3600)
    new = woo.create_order(order_body(("A", 1)))
    gmt_cut, local_cut = old["date_modified_gmt"], old["date_modified"]
    by_gmt = await shop.get(API + "orders", params={"modified_after": gmt_cut, "dates_are_gmt": "true"})
    by_local = await shop.get(API + "orders", params={"modified_after": local_cut})
    gmt_as_local = await shop.get(API + "orders", params={"modified_after": gmt_cut})
    assert [o["id"] for o in by_gmt.json()] == [new["id"]]
    assert [o["id"] for o in by_local.json()] == [new["id"]]
    assert len(gmt_as_local.json()) == 2  # a UTC value read as local time reaches two hours back


async def test_batch_cap_and_per_item_errors(app, shop):
    seed(app, ("A", "1.00", ""))
    too_big = await shop.post(API + "products/batch", json={"update": [{"id": n} for n in range(101)]})
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "woocommerce_rest_request_entity_too_large"
    order = app.state.woo.create_order(order_body(("A", 1)))
    resp = await shop.post(API + "orders/batch", json={
        "create": [{"line_items": [{"sku": "A", "quantity": 2}]}, {"line_items": [{"sku": "NOPE", "quantity": 1}]}],
        "update": [{"id": order["id"], "status": "completed"}, {"id": 424242, "status": "completed"}]})
    body = resp.json()
    assert resp.status_code == 200
    assert body["create"][0]["total"] == "2.17" and body["create"][1]["id"] == 0
    assert body["create"][1]["error"]["code"] == "woocommerce_rest_invalid_product_id"
    assert body["update"][0]["status"] == "completed"
    assert body["update"][1]["error"]["code"] == "woocommerce_rest_shop_order_invalid_id"


async def test_products_sku_filter_and_variations(app, shop):
    app.state.woo.add_product("TEE", "Tee", "", variations=[
        {"sku": "TEE-S", "regular_price": "9.00", "attributes": {"Size": "S"}}])
    seed(app, ("A", "1.00", ""), ("B", "2.00", ""))
    found = (await shop.get(API + "products", params={"sku": "A,B,TEE-S"})).json()
    assert sorted(p["sku"] for p in found) == ["A", "B"]
    tee = (await shop.get(API + "products", params={"sku": "TEE"})).json()[0]
    variations = (await shop.get(f"{API}products/{tee['id']}/variations")).json()
    assert [v["sku"] for v in variations] == ["TEE-S"] and tee["variations"] == [variations[0]["id"]]
    dup = await shop.post(API + "products", json={"name": "Other", "sku": "A"})
    assert dup.status_code == 400 and dup.json()["code"] == "product_invalid_sku"


# ---- refunds (§5) -------------------------------------------------------------------------

async def test_refund_by_line_computes_amount_and_negative_lines(app, shop):
    seed(app, ("A", "10.00", ""))
    order = (await shop.post(API + "orders", json=order_body(("A", 2), payment_method="stripe"))).json()
    item = order["line_items"][0]
    resp = await shop.post(f"{API}orders/{order['id']}/refunds", json={
        "reason": "broken", "line_items": [{"id": item["id"], "quantity": 1, "refund_total": "10.00",
                                            "refund_tax": [{"id": 1, "refund_total": "0.83"}]}]})
    refund = resp.json()
    assert resp.status_code == 201 and refund["amount"] == "10.83" and refund["refunded_payment"] is True
    line = refund["line_items"][0]
    assert (line["quantity"], line["total"], line["total_tax"], line["price"]) == (-1, "-10.00", "-0.83", -10.0)
    assert line["taxes"] == [{"id": 1, "total": "-0.83", "subtotal": "-0.83"}]
    assert {"key": "_refunded_item_id", "value": str(item["id"])}.items() <= line["meta_data"][-1].items()
    assert refund["tax_lines"][0]["tax_total"] == "-0.83"
    again = (await shop.get(f"{API}orders/{order['id']}")).json()
    assert again["refunds"] == [{"id": refund["id"], "reason": "broken", "total": "-10.83"}]
    assert again["status"] == "processing"


async def test_over_refund_negative_amount_gateway_and_full_refund(app, shop):
    seed(app, ("A", "10.00", ""))
    order = (await shop.post(API + "orders", json=order_body(("A", 1), payment_method="bacs"))).json()
    path = f"{API}orders/{order['id']}/refunds"
    over = await shop.post(path, json={"amount": "10.84", "api_refund": False})
    negative = await shop.post(path, json={"amount": "-1", "api_refund": False})
    gateway = await shop.post(path, json={"amount": "1.00"})
    assert over.status_code == 500 and over.json()["code"] == "woocommerce_rest_cannot_create_order_refund"
    assert negative.status_code == 400 and negative.json()["code"] == "woocommerce_rest_invalid_order_refund"
    assert gateway.status_code == 500 and "does not support automatic refunds" in gateway.json()["message"]
    full = await shop.post(path, json={"amount": "10.83", "api_refund": False})
    assert full.status_code == 201
    after = (await shop.get(f"{API}orders/{order['id']}")).json()
    assert after["status"] == "refunded" and after["refunds"][0]["total"] == "-10.83"
    assert (await shop.post(f"{API}orders/999999/refunds", json={"amount": "1"})).status_code == 404


async def test_status_refunded_creates_the_automatic_refund(app, shop):
    seed(app, ("A", "10.00", ""))
    order = app.state.woo.create_order(order_body(("A", 1)))
    edited = (await shop.put(f"{API}orders/{order['id']}", json={"status": "refunded"})).json()
    refunds = (await shop.get(f"{API}orders/{order['id']}/refunds")).json()
    assert edited["refunds"][0]["total"] == "-10.83"
    assert refunds[0]["amount"] == "10.83" and refunds[0]["refunded_payment"] is False


# ---- webhooks (§8) ------------------------------------------------------------------------

async def make_hook(shop, topic: str = "order.updated", **extra) -> dict:
    resp = await shop.post(API + "webhooks", json={"topic": topic, "delivery_url": "https://hooks.test/in",
                                                   "secret": "s3cret", **extra})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].endswith(f"/webhooks/{resp.json()['id']}")
    return resp.json()


async def test_webhook_create_pings_unsigned_and_starts_active(app, shop, receiver):
    hook = await make_hook(shop, status="paused")
    assert hook["status"] == "active" and "secret" not in hook
    assert hook["hooks"] == ["woocommerce_update_order", "woocommerce_order_refunded"]
    [ping] = receiver.pings
    assert ping.content == f"webhook_id={hook['id']}".encode()
    assert not [h for h in ping.headers if h.lower().startswith("x-wc-webhook")]
    assert ping.headers["user-agent"].startswith("WooCommerce/")
    generated = (await shop.post(API + "webhooks", json={"topic": "order.created",
                                                         "delivery_url": "https://hooks.test/in"})).json()
    secret = app.state.woo.webhooks[generated["id"]].secret
    assert len(secret) == 50
    edit = (await shop.get(f"{API}webhooks/{generated['id']}", params={"context": "edit"})).json()
    assert edit["secret"] == secret
    bad = await shop.post(API + "webhooks", json={"topic": "order.exploded", "delivery_url": "https://x.test"})
    assert bad.json()["code"] == "woocommerce_rest_shop_webhook_invalid_topic"
    ftp = await shop.post(API + "webhooks", json={"topic": "order.created", "delivery_url": "ftp://x.test"})
    assert ftp.json()["code"] == "woocommerce_rest_shop_webhook_invalid_delivery_url"


async def test_ping_succeeds_only_on_exactly_200(app, shop):
    receiver = Receiver(ping_status=201)
    app.state.woo.delivery_transport = httpx.MockTransport(receiver)
    hook = await make_hook(shop)
    assert app.state.woo.webhooks[hook["id"]].pending_delivery is True
    receiver.ping_status = 200
    await shop.put(f"{API}webhooks/{hook['id']}", json={"name": "renamed"})  # saved while active: re-ping
    assert len(receiver.pings) == 2 and app.state.woo.webhooks[hook["id"]].pending_delivery is False


async def test_delivery_is_signed_with_the_exact_headers_and_get_payload(app, shop, receiver):
    seed(app, ("A/B", "10.00", ""))
    await make_hook(shop, topic="order.created")
    order = (await shop.post(API + "orders", json=order_body(("A/B", 1)))).json()
    assert await app.state.woo.wait_idle()
    [delivery] = receiver.deliveries
    body, headers = delivery.content, delivery.headers
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert headers["x-wc-webhook-signature"] == expected and len(expected) == 44
    assert (headers["x-wc-webhook-topic"], headers["x-wc-webhook-resource"], headers["x-wc-webhook-event"]) == (
        "order.created", "order", "created")
    assert headers["x-wc-webhook-source"] == "https://shop.test/"
    assert headers["content-type"] == "application/json"
    assert headers["x-wc-webhook-id"].isdigit() and len(headers["x-wc-webhook-delivery-id"]) == 32
    assert b'"A\\/B"' in body and b'": ' not in body and b", " not in body
    assert json.loads(body) == (await shop.get(f"{API}orders/{order['id']}")).json()


async def test_auto_disable_on_seventh_failure_and_no_reset_on_reenable(app, shop):
    receiver = Receiver(status=500)
    woo = app.state.woo
    woo.delivery_transport = httpx.MockTransport(receiver)
    seed(app, ("A", "1.00", ""))
    hook = await make_hook(shop)
    order = woo.create_order(order_body(("A", 1)))
    for n in range(1, 8):
        woo.edit_order(order["id"], {"customer_note": f"note {n}"})
        assert await woo.wait_idle()
        status = (await shop.get(f"{API}webhooks/{hook['id']}")).json()["status"]
        assert status == ("disabled" if n == 7 else "active"), n
    assert woo.webhooks[hook["id"]].failure_count == 6
    woo.edit_order(order["id"], {"customer_note": "while disabled"})
    assert await woo.wait_idle() and len(receiver.deliveries) == 7  # the create's update coalesced
    await shop.put(f"{API}webhooks/{hook['id']}", json={"status": "active"})
    assert woo.webhooks[hook["id"]].failure_count == 6
    woo.edit_order(order["id"], {"customer_note": "one more failure"})
    assert await woo.wait_idle() and woo.webhooks[hook["id"]].status == "disabled"
    await shop.put(f"{API}webhooks/{hook['id']}", json={"status": "active"})
    receiver.status = 302
    woo.edit_order(order["id"], {"customer_note": "redirect counts as success"})
    assert await woo.wait_idle() and woo.webhooks[hook["id"]].failure_count == 0


async def test_pending_deliveries_coalesce_and_carry_the_latest_state(app, shop, receiver):
    woo = app.state.woo
    seed(app, ("A", "1.00", ""))
    await make_hook(shop)
    first, second = woo.create_order(order_body(("A", 1))), woo.create_order(order_body(("A", 1)))
    for n in range(3):
        woo.edit_order(first["id"], {"customer_note": f"edit {n}"})
    assert await woo.wait_idle()
    payloads = [json.loads(r.content) for r in receiver.deliveries]
    assert sorted(p["id"] for p in payloads) == sorted([first["id"], second["id"]])
    assert next(p for p in payloads if p["id"] == first["id"])["customer_note"] == "edit 2"
    refund = woo.create_refund(second["id"], {"amount": "0.50", "api_refund": False})
    assert await woo.wait_idle()
    assert json.loads(receiver.deliveries[-1].content)["refunds"][0]["id"] == refund["id"]


async def test_outage_and_duplicate_controls(app, shop, receiver):
    woo = app.state.woo
    seed(app, ("A", "1.00", ""))
    hook = await make_hook(shop, topic="order.created")
    await shop.post("/_sandbox/webhooks/outage", json={"fail_next": 2})
    for _ in range(2):
        woo.create_order(order_body(("A", 1)))
    assert (await shop.post("/_sandbox/webhooks/wait-idle", json={"timeout": 5})).json() == {"idle": True}
    assert woo.webhooks[hook["id"]].failure_count == 2 and receiver.deliveries == []
    await shop.post("/_sandbox/webhooks/duplicate", json={"next": 1})
    woo.create_order(order_body(("A", 1)))
    await woo.wait_idle()
    first, second = receiver.deliveries
    assert first.headers["x-wc-webhook-delivery-id"] == second.headers["x-wc-webhook-delivery-id"]
    assert first.content == second.content and woo.webhooks[hook["id"]].failure_count == 0
    log = (await shop.get("/_sandbox/webhooks/deliveries")).json()
    kinds = [(e["kind"], e["status"], e["duplicate"]) for e in log]
    assert kinds == [("ping", 200, False), ("delivery", None, False), ("delivery", None, False),
                     ("delivery", 200, False), ("delivery", 200, True)]
    assert log[1]["error"].startswith("cURL error 7") and log[3]["topic"] == "order.created"


async def test_synchronous_delivery_and_product_and_customer_topics(receiver):
    app = create_app(deliver_async=False)
    app.state.woo.delivery_transport = httpx.MockTransport(receiver)
    async with client(app) as shop:
        await make_hook(shop, topic="product.updated")
        await make_hook(shop, topic="customer.created")
        product = app.state.woo.add_product("A", "A", "1.00")
        await shop.put(f"{API}products/{product['id']}", json={"regular_price": "2.00"})
        assert len(receiver.deliveries) == 1  # delivered before the response
        await shop.post(API + "customers", json={"email": "c@example.com"})
        dup = await shop.post(API + "customers", json={"email": "c@example.com"})
        found = (await shop.get(API + "customers", params={"email": "c@example.com"})).json()
    topics = [r.headers["x-wc-webhook-topic"] for r in receiver.deliveries]
    assert topics == ["product.updated", "customer.created"]
    assert json.loads(receiver.deliveries[0].content)["price"] == "2.00"
    assert dup.status_code == 400 and len(found) == 1


async def test_webhook_delete_needs_force(shop, receiver):
    hook = await make_hook(shop)
    soft = await shop.delete(f"{API}webhooks/{hook['id']}")
    hard = await shop.delete(f"{API}webhooks/{hook['id']}", params={"force": "true"})
    assert soft.status_code == 501 and soft.json()["code"] == "woocommerce_rest_trash_not_supported"
    assert hard.status_code == 200 and (await shop.get(f"{API}webhooks/{hook['id']}")).status_code == 404


async def test_delivery_over_a_real_socket():
    received: list[tuple[dict, bytes]] = []

    async def inbox(request):
        received.append((dict(request.headers), await request.body()))
        return PlainTextResponse("ok")

    app = create_app()
    async with serving(Starlette(routes=[Route("/in", inbox, methods=["POST"])])) as srv:
        async with client(app) as shop:
            await shop.post(API + "webhooks", json={"topic": "order.created", "delivery_url": srv.url + "/in",
                                                    "secret": "k"})
            app.state.woo.add_product("A", "A", "3.00")
            await shop.post(API + "orders", json=order_body(("A", 1)))
            assert await app.state.woo.wait_idle()
    await app.state.woo.aclose()
    (ping_headers, ping), (headers, body) = received
    assert dict(parse_qsl(ping.decode())) == {"webhook_id": "1"}
    assert headers["x-wc-webhook-signature"] == base64.b64encode(
        hmac.new(b"k", body, hashlib.sha256).digest()).decode()


# ---- faults -------------------------------------------------------------------------------

async def test_429_storm_and_lost_commit(app, shop):
    seed(app, ("A", "1.00", ""))
    await shop.post("/_sandbox/faults", json={"storm_429": 1, "retry_after": 2})
    storm = await shop.get(API + "orders")
    assert storm.status_code == 429 and storm.headers["retry-after"] == "2"
    await shop.post("/_sandbox/faults", json={"lose_next_commits": 1})
    lost = await shop.post(API + "orders", json=order_body(("A", 1)))
    assert lost.status_code == 502
    assert (await shop.get("/_sandbox/state")).json()["orders"] == 1
    await shop.post("/_sandbox/reset")
    assert (await shop.get("/_sandbox/state")).json()["orders"] == 0


# ---- traffic generator ---------------------------------------------------------------------

async def test_traffic_generator_places_orders_and_refunds():
    app = create_app()
    progress: list[int] = []
    async with client(app) as shop:
        products = await seed_catalog(shop)
        summary = await generate_day(shop, orders=30, refund_ratio=0.2, seed=5,
                                     on_progress=lambda done, total: progress.append(done))
        orders = (await shop.get(API + "orders", params={"per_page": 100})).json()
    assert len(products) == 30 and any(p["variations"] for p in products)
    assert {v["sku"] for p in products for v in p["variations"]} >= {"TSHIRT-BLU-L"}
    assert len(summary.order_ids) == 30 and len(summary.refund_ids) == 6 and progress[-1] == 30
    by_currency: dict[str, Decimal] = {}
    for order in orders:
        by_currency[order["currency"]] = by_currency.get(order["currency"], Decimal(0)) + Decimal(order["total"])
    assert by_currency == dict(summary.order_totals)
    refunded = sum(-Decimal(r["total"]) for o in orders for r in o["refunds"])
    assert refunded == sum(summary.refund_totals.values())
    assert any(o["customer_id"] for o in orders) and any(not o["customer_id"] for o in orders)
    assert all(o["date_paid"] for o in orders)
