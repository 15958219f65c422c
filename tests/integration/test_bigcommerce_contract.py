"""The BigCommerce connector against the BigCommerce sandbox over TLS on a real socket:
written independently, from the same reference, so a shared misunderstanding cannot hide."""
from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import bigcommerce
from connectors.model import ItemChange
from sandbox import bigcommerce as sandbox
from sandbox import traffic_bigcommerce as traffic
from sandbox.server import LocalCA, serving

HASH, TOKEN = "contract1", "tok-contract"


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def server(ca):
    app = sandbox.create_app(store_hash=HASH, access_token=TOKEN, async_delay_ms=0,
                             sign_deliveries=True, client_secret="whsec-less client secret")
    async with serving(app, tls=ca) as served:
        admin = traffic.admin_client(served.url, verify=str(ca.ca_file), store_hash=HASH, token=TOKEN)
        await traffic.seed_catalog(admin)
        shop = bigcommerce.open_connector(
            {"store_hash": HASH, "base_url": served.url, "ca_bundle": str(ca.ca_file)},
            {"access_token": TOKEN}, tokens=None)
        yield served, app, admin, shop
        await shop.aclose()
        await admin.aclose()
        await app.state.store.aclose()


async def place(admin, *, skus=("MUG-CER-01", "BOOK-COOK-01", "TSHIRT-GRN-L"), qty=(2, 1, 3),
                gateway="braintree", **extra) -> dict:
    catalog = {s.sku: s for s in await traffic.load_catalog(admin)}
    who = {"first_name": "Ann", "last_name": "Buyer", "email": "ann@example.com"}
    where = traffic.address(who, "1 Main St", "Oakland", "California", "94607", "US")
    body = {"customer_id": 0, "status_id": 1, "billing_address": where,
            "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
            "products": [{"product_id": catalog[s].product_id, "variant_id": catalog[s].variant_id,
                          "quantity": q} for s, q in zip(skus, qty)],
            "base_shipping_cost": "6.95", "base_handling_cost": "4.50", **extra}
    return await traffic.place(admin, body, gateway)


async def test_get_order_adds_up_to_the_cent_with_refunds_and_payments(server):
    _, _, admin, shop = server
    placed = await place(admin, coupon_code="welcome10")
    products = await traffic.v2_all(admin, f"v2/orders/{placed['id']}/products")
    addresses = await traffic.v2_all(admin, f"v2/orders/{placed['id']}/shipping_addresses")
    await traffic.refund(admin, placed["id"], [
        {"item_type": "PRODUCT", "item_id": products[2]["id"], "quantity": 2},
        {"item_type": "SHIPPING", "item_id": addresses[0]["id"], "amount": "2.00"}], "damaged")
    await traffic.refund(admin, placed["id"], [{"item_type": "ORDER", "item_id": placed["id"], "amount": "3.10"}])

    order = await shop.get_order(str(placed["id"]))
    assert order.check_totals() == 0 and order.total == D(placed["total_inc_tax"])
    assert order.tax_total == sum(t.amount for t in order.tax_lines) == D(placed["total_tax"])
    assert {ln.kind for ln in order.lines} == {"product", "shipping", "fee"}
    assert order.discount_total == D(placed["coupon_discount"])
    assert order.currency == "USD" and order.customer.is_guest
    (payment,) = order.payments
    assert payment.amount == order.total and payment.method == "braintree" and order.paid_at == payment.paid_at
    by_line, goodwill = order.refunds
    assert by_line.lines_total == by_line.amount and len(by_line.lines) == 2
    assert goodwill.is_amount_only and goodwill.amount == D("3.10")
    assert order.status == "partially_refunded"


async def test_other_currency_and_unpaid(server):
    _, _, admin, shop = server
    catalog = {s.sku: s for s in await traffic.load_catalog(admin)}
    who = {"first_name": "Jonas", "last_name": "Fischer", "email": "jonas@guest.example.com"}
    where = traffic.address(who, "Torstrasse 12", "Berlin", "", "10119", "DE")
    body = {"customer_id": 0, "status_id": 1, "billing_address": where, "default_currency_code": "EUR",
            "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
            "products": [{"product_id": catalog["HOODIE-NVY-L"].product_id,
                          "variant_id": catalog["HOODIE-NVY-L"].variant_id, "quantity": 1}],
            "base_shipping_cost": "4.95"}
    placed = await traffic.place(admin, body, "braintree", capture=False)
    order = await shop.get_order(str(placed["id"]))
    assert order.currency == "EUR" and order.paid_at is None and order.check_totals() == 0
    assert [t.rate_code for t in order.tax_lines] == ["EU-VAT"]


async def test_listing_pages_with_204_oldest_first(server, monkeypatch):
    _, _, admin, shop = server
    since = datetime.now(UTC) - timedelta(seconds=5)
    assert [o async for o in shop.iter_orders_modified(since)] == []  # 204 on the first page
    ids = [str((await place(admin, skus=("MUG-CER-01",), qty=(1,)))["id"]) for _ in range(5)]
    monkeypatch.setattr("connectors.bigcommerce.PAGE_SIZE", 2)
    listed = [o async for o in shop.iter_orders_modified(since, datetime.now(UTC) + timedelta(seconds=2))]
    assert [o.store_id for o in listed] == ids
    assert all(o.is_paid for o in listed)


async def test_catalog_push_batches(server):
    _, app, admin, shop = server
    state = app.state.store
    products = sorted(p.sku for p in state.products.values() if p.inventory_tracking == "product")
    variants = sorted(v.sku for v in state.variants.values() if not v.is_base)
    stamp = datetime(2026, 3, 1, tzinfo=UTC)
    prices = [ItemChange(sku=s, price=D("19.95"), modified_at=stamp) for s in products + variants]
    stock = [ItemChange(sku=s, quantity_available=D("40"), modified_at=stamp) for s in products]
    result = await shop.push_item_changes(prices + [ItemChange(sku="GHOST-1", price=D("1"), modified_at=stamp)])
    assert result.unknown == ["GHOST-1"] and result.failed == {}
    assert result.write_calls == math.ceil(len(products) / 10) + math.ceil(len(variants) / 50)
    assert all(p.price == D("19.95") for p in state.products.values() if p.sku in products)
    result = await shop.push_item_changes(stock)
    assert result.write_calls == math.ceil(len(products) / 2000) and sorted(result.updated) == products
    for _ in range(100):
        if all(p.inventory_level == 40 for p in state.products.values() if p.sku in products):
            break
        await asyncio.sleep(0.01)
    assert all(p.inventory_level == 40 for p in state.products.values() if p.sku in products)


async def test_webhooks_register_deliver_verify_and_disable(server):
    served, app, admin, shop = server
    received: list[tuple[dict, bytes]] = []

    async def receive(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response(status_code=200)

    secret = "connection-webhook-secret"
    async with serving(Starlette(routes=[Route("/hook", receive, methods=["POST"])])) as rx:
        hook = await shop.create_webhook("store/order/created", rx.url + "/hook", secret)
        assert hook.status == "active" and hook.topic == "store/order/created"
        assert [(w.id, w.status) for w in await shop.list_webhooks()] == [(hook.id, "active")]
        placed = await place(admin, skus=("MUG-CER-01",), qty=(1,))
        await app.state.store.wait_idle()
    (headers, body), = received
    # the sandbox signs with its client secret: the connection secret does not verify that one
    assert not bigcommerce.verify_webhook(headers, body, secret)
    unsigned = {k: v for k, v in headers.items() if not k.startswith("webhook-")}
    assert bigcommerce.verify_webhook(unsigned, body, secret)
    event = bigcommerce.parse_webhook(headers, body)
    assert (event.resource, event.event, event.resource_id) == ("order", "created", str(placed["id"]))
    disabled = await shop.update_webhook(hook.id, status="disabled")
    assert disabled.status == "disabled"
    assert (await shop.update_webhook(hook.id, status="active")).status == "active"
    await shop.delete_webhook(hook.id)
    assert await shop.list_webhooks() == []


async def test_signed_deliveries_verify_when_the_secret_is_the_client_secret(server):
    _, app, admin, shop = server
    received: list[tuple[dict, bytes]] = []

    async def receive(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    secret = app.state.store.settings.client_secret
    async with serving(Starlette(routes=[Route("/hook", receive, methods=["POST"])])) as rx:
        await shop.create_webhook("store/order/updated", rx.url + "/hook", secret)
        await place(admin, skus=("MUG-CER-01",), qty=(1,))
        await app.state.store.wait_idle()
    assert received and all(bigcommerce.verify_webhook(h, b, secret) for h, b in received)
