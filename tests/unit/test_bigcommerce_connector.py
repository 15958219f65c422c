"""The BigCommerce connector: auth header, rate-limit pacing and 429 mapping, error bodies,
v2 paging with 204, and (through the sandbox app over ASGI) push batches and listings."""
from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import httpx
import pytest

from connectors.bigcommerce import (BigCommerceCredentials, BigCommerceSettings,
                                    BigCommerceStore, open_connector, rate_pacer, read_error)
from connectors.errors import AuthFailed, NotFound, RateLimited, Rejected, Unavailable
from connectors.model import ItemChange
from sandbox import bigcommerce as sandbox
from sandbox import traffic_bigcommerce as traffic

HASH, TOKEN = "abc123", "tok-123"


def store(handler, **settings) -> BigCommerceStore:
    return BigCommerceStore(BigCommerceSettings(store_hash=HASH, base_url="https://bc.test", **settings),
                            BigCommerceCredentials(access_token=TOKEN),
                            transport=httpx.MockTransport(handler))


def rate_headers(left: int, reset_ms: int = 4000, quota: int = 150) -> dict[str, str]:
    return {"X-Rate-Limit-Requests-Left": str(left), "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
            "X-Rate-Limit-Requests-Quota": str(quota), "X-Rate-Limit-Time-Window-Ms": "30000"}


class FakeClock:
    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


async def test_token_goes_in_x_auth_token_on_the_store_hash_url():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    shop = store(handler)
    assert [w async for w in shop._v3_pages("v3/hooks")] == []
    request = seen[0]
    assert request.headers["X-Auth-Token"] == TOKEN and "authorization" not in request.headers
    assert str(request.url).startswith(f"https://bc.test/stores/{HASH}/v3/hooks?")
    await shop.aclose()


async def test_pacer_waits_for_the_reset_before_the_quota_runs_out():
    clock = FakeClock()
    pacer = rate_pacer(reserve=3, clock=clock, sleep=clock.sleep)
    pacer.observe(rate_headers(left=100))
    await pacer.before()
    assert clock.slept == []
    pacer.observe(rate_headers(left=3, reset_ms=2500))
    await pacer.before()
    assert clock.slept == [2.5]
    await pacer.before()  # a new window: no waiting until a response says otherwise
    assert clock.slept == [2.5]


async def test_pacer_spreads_the_last_tenth_of_the_quota():
    clock = FakeClock()
    pacer = rate_pacer(reserve=3, clock=clock, sleep=clock.sleep)
    pacer.observe(rate_headers(left=13, reset_ms=11000, quota=150))
    assert pacer.delay() == pytest.approx(1.0)  # 11 s over the 11 requests above the reserve


async def test_connector_paces_from_response_headers():
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [], "meta": {"pagination": {"total_pages": 1}}},
                              headers=rate_headers(left=1, reset_ms=1200))

    shop = store(handler)
    shop.pacer = rate_pacer(reserve=3, clock=clock, sleep=clock.sleep)
    await shop.list_webhooks()
    await shop.list_webhooks()
    assert clock.slept == [1.2]
    await shop.aclose()


async def test_429_is_rate_limited_with_the_servers_reset():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"status": 429, "title": "Too many requests"},
                              headers=rate_headers(left=0, reset_ms=7500))

    shop = store(handler)
    with pytest.raises(RateLimited) as err:
        await shop.get_order("5")
    assert err.value.retry_after == 7.5 and "Too many requests" in str(err.value)
    assert shop.pacer.left == 0
    await shop.aclose()


async def test_401_is_auth_failed_without_the_token():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"status": 401, "title": sandbox.UNAUTHORIZED})

    shop = store(handler)
    with pytest.raises(AuthFailed) as err:
        await shop.list_webhooks()
    assert TOKEN not in str(err.value) and "Resolution" in str(err.value)
    await shop.aclose()


@pytest.mark.parametrize("status, error", [(404, NotFound), (422, Rejected), (503, Unavailable)])
async def test_status_mapping(status, error):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=[{"status": status, "message": "nope"}])

    shop = store(handler)
    with pytest.raises(error, match="nope"):
        await shop.get_order("7")
    await shop.aclose()


def _resp(body) -> httpx.Response:
    return httpx.Response(422, content=json.dumps(body).encode(),
                          request=httpx.Request("POST", "https://bc.test/x"))


def test_error_bodies_of_v2_v3_refunds_and_batches():
    assert read_error(_resp([{"status": 400, "message": "The field 'zip' is invalid."}]))[0] == \
        "The field 'zip' is invalid."
    text, fields = read_error(_resp({"status": 422, "title": "JSON data is missing or invalid",
                                     "errors": {"destination": "error.path.missing."}}))
    assert "destination: error.path.missing." in text and fields == {"destination": "error.path.missing."}
    assert read_error(_resp({"data": [{"status": 422, "title": "Unable to provide store credit "
                                                                "for a guest customer."}]}))[0] \
        .startswith("Unable to provide store credit")
    assert read_error(_resp({"batch_errors": [{"title": "Variant with id 9 not found"}]}))[0] == \
        "Variant with id 9 not found"


def test_ids_are_checked():
    shop = open_connector({"store_hash": HASH}, {"access_token": TOKEN}, tokens=None)
    assert shop.settings.base_url == "https://api.bigcommerce.com"
    with pytest.raises(ValueError):
        BigCommerceSettings(store_hash="../x")


# --- against the sandbox app (ASGI) -------------------------------------------------------

@pytest.fixture
async def live():
    app = sandbox.create_app(store_hash=HASH, access_token=TOKEN, deliver_async=False)
    transport = httpx.ASGITransport(app=app)
    admin = httpx.AsyncClient(transport=transport, base_url=f"https://bc/stores/{HASH}/",
                              headers={"X-Auth-Token": TOKEN})
    shop = open_connector({"store_hash": HASH, "base_url": "https://bc"}, {"access_token": TOKEN},
                          tokens=None, transport=transport)
    await traffic.seed_catalog(admin)
    yield app, admin, shop
    await shop.aclose()
    await admin.aclose()


async def _order(admin, **extra) -> dict:
    catalog = await traffic.load_catalog(admin)
    person = {"first_name": "Ann", "last_name": "Buyer", "email": "ann@example.com"}
    where = traffic.address(person, "1 Main St", "Oakland", "CA", "94607", "US")
    body = {"customer_id": 0, "billing_address": where, "status_id": 1,
            "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
            "products": [{"product_id": catalog[0].product_id, "quantity": 2}],
            "base_shipping_cost": "5.00", **extra}
    return await traffic.place(admin, body, "braintree")


async def test_get_order_of_a_tax_free_order_skips_taxes(live):
    app, admin, shop = live
    order = await _order(admin, billing_address={"zip": "10119", "country_iso2": "DE", "email": "x@y.z"},
                         shipping_addresses=[], base_shipping_cost="0",
                         products=[{"product_id": (await traffic.load_catalog(admin))[21].product_id,
                                    "quantity": 1}])
    result = await shop.get_order(str(order["id"]))
    assert result.tax_total == 0 and result.tax_lines == [] and result.check_totals() == 0


async def test_listing_pages_through_204_and_restarts_at_the_newest_date(live, monkeypatch):
    app, admin, shop = live
    monkeypatch.setattr("connectors.bigcommerce.PAGE_SIZE", 2)
    ids = [str((await _order(admin))["id"]) for _ in range(5)]
    since = datetime.now(UTC) - timedelta(minutes=5)
    listed = [o.store_id async for o in shop.iter_orders_modified(since, datetime.now(UTC) + timedelta(minutes=1))]
    assert listed == ids
    assert [o async for o in shop.iter_orders_modified(datetime.now(UTC) + timedelta(hours=1))] == []


async def test_push_counts_one_write_per_batch_and_reports_unknown_skus(live):
    app, admin, shop = live
    state = app.state.store
    product_skus = sorted(p.sku for p in state.products.values() if p.inventory_tracking == "product")
    variant_skus = sorted(v.sku for v in state.variants.values() if not v.is_base)
    stamp = datetime(2026, 3, 1, tzinfo=UTC)
    changes = [ItemChange(sku=s, price=D("9.99"), quantity_available=D("12"), modified_at=stamp)
               for s in product_skus + variant_skus + ["NOPE-1"]]
    result = await shop.push_item_changes(changes)
    assert result.unknown == ["NOPE-1"] and result.failed == {}
    assert sorted(result.updated) == sorted(product_skus + variant_skus)
    # products in batches of 10, variants of 50, stock of 2000 (one adjustment for all)
    assert result.write_calls == -(-len(product_skus) // 10) + 1 + 1
    assert {p.price for p in state.products.values() if p.sku in product_skus} == {D("9.99")}
    for _ in range(200):  # inventory adjustments land asynchronously
        if {v.inventory_level for v in state.variants.values() if not v.is_base} == {12}:
            break
        await asyncio.sleep(0.01)
    assert {v.inventory_level for v in state.variants.values() if not v.is_base} == {12}


async def test_ping_and_registered_customers(live):
    app, admin, shop = live
    assert (await shop.ping())["ok"] is True
    cid = await traffic.customer_id(admin, {"first_name": "Ann", "last_name": "Buyer",
                                            "email": "ann.buyer@example.com"})
    customer = await shop.get_customer(str(cid))
    assert (customer.store_id, customer.email, customer.last_name) == (str(cid), "ann.buyer@example.com", "Buyer")
    saved = await shop.update_customer(str(cid), customer.model_copy(update={"company": "Acme"}))
    assert saved.company == "Acme"
    assert [c.store_id async for c in shop.iter_customers()] == [str(cid)]
    assert [c["id"] for c in await shop.find_customers(["ANN.buyer@example.com"])] == [cid]
    with pytest.raises(NotFound):
        await shop.get_customer("999")
    bad = open_connector({"store_hash": HASH, "base_url": "https://bc"}, {"access_token": "wrong"},
                         tokens=None, transport=shop._client._transport)
    report = await bad.ping()
    assert report["ok"] is False and report["error_kind"] == "AuthFailed"
    await bad.aclose()


async def test_mark_shipped_once_per_erp_shipment(live):
    from connectors.model import Shipment

    app, admin, shop = live
    placed = await _order(admin)
    now = datetime.now(UTC)
    shipment = Shipment(shipment_id="SH-1", external_ref=f"BC-{placed['id']}", tracking_numbers=["1Z9", "1Z8"],
                        carrier="UPS", shipped_at=now, modified_at=now)
    await shop.mark_shipped(str(placed["id"]), shipment)
    await shop.mark_shipped(str(placed["id"]), shipment)
    (made,) = (await admin.get(f"v2/orders/{placed['id']}/shipments")).json()
    assert made["tracking_number"] == "1Z9" and "SH-1" in made["comments"] and "1Z8" in made["comments"]
    assert (await admin.get(f"v2/orders/{placed['id']}")).json()["status_id"] == 2


async def test_ensure_webhooks_reactivates_a_deactivated_hook_re_keyed_and_creates_a_missing_one(live):
    from connectors.base import ensure_webhooks
    from connectors.bigcommerce import ORDER_TOPICS, SECRET_HEADER, secret_header_value

    app, admin, shop = live
    url = "https://rx.test/webhooks/c1/bigcommerce"
    assert len(await ensure_webhooks(shop, ORDER_TOPICS, url, "old-secret")) == 3
    created, updated, refunds = ORDER_TOPICS
    hooks = {h.topic: h for h in await shop.list_webhooks()}
    app.state.store.hooks[int(hooks[created].id)].is_active = False  # the retries ran out
    await shop.delete_webhook(hooks[refunds].id)

    repairs = await ensure_webhooks(shop, ORDER_TOPICS, url, "new-secret")
    assert repairs == [f"re-enabled {created} (was disabled)", f"created {refunds}"]
    raw = {h["scope"]: h for h in (await admin.get("v3/hooks")).json()["data"]}
    assert raw[created]["is_active"] is True and raw[refunds]["is_active"] is True
    assert raw[created]["headers"] == {SECRET_HEADER: secret_header_value("new-secret")}
    assert raw[updated]["headers"] == {SECRET_HEADER: secret_header_value("old-secret")}
    assert await ensure_webhooks(shop, ORDER_TOPICS, url, "new-secret") == []


async def test_update_webhook_translates_canonical_fields():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"data": {"id": 7, "scope": "store/order/created",
                                                  "destination": "https://rx", "is_active": False},
                                         "meta": {}})

    shop = store(handler)
    hook = await shop.update_webhook("7", status="disabled", delivery_url="https://rx", secret="s")
    assert hook.status == "disabled"
    [body] = bodies
    assert body["is_active"] is False and body["destination"] == "https://rx"
    assert set(body["headers"]) == {"X-Ml-Connector-Token"} and "s" not in body["headers"].values()
    with pytest.raises(ValueError):
        await shop.update_webhook("7", status="sleeping")
    await shop.aclose()


async def test_newest_order_created_at_is_the_stores_newest_order(live):
    app, admin, shop = live
    assert await shop.newest_order_created_at() is None  # no orders yet: a 204
    ids = [str((await _order(admin))["id"]) for _ in range(2)]
    newest = max([await shop.get_order(i) for i in ids], key=lambda o: (o.created_at, int(o.store_id)))
    assert await shop.newest_order_created_at() == newest.created_at
