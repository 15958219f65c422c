"""WooCommerce authentication as real stores behave, over real sockets: Basic over TLS, the
query string where a host strips the Authorization header (only when the merchant chose it),
and OAuth 1.0a over plain HTTP (a local server, explicitly allowed)."""
from __future__ import annotations

import uuid
from decimal import Decimal

from tests.integration.helpers import place_order, wait_documents


async def test_stripped_header_is_reported_and_query_string_only_when_chosen(stack_factory):
    stack = await stack_factory(store_options={"strip_authorization": True})
    conn = await stack.add_connection(f"strip-{uuid.uuid4().hex[:6]}", register_webhooks=False)
    assert stack.store.get_connection(conn.id).store["auth_mode"] == "auto"
    report = await stack.runtime.storefront(conn).ping()
    assert not report["ok"] and report["auth_mode"] == "basic"
    assert "auth_mode=query_string" in report["error"]  # what to do, not done behind our back
    assert stack.store.get_connection(conn.id).store["auth_mode"] == "auto"
    chosen = await stack.add_connection(f"qs-{uuid.uuid4().hex[:6]}",
                                        store={"auth_mode": "query_string"})
    assert stack.store.get_connection(chosen.id).store["auth_mode"] == "query_string"
    await stack.control("woocommerce", "/_sandbox/settings", {"strip_authorization": False})
    order = await place_order(stack)  # the shopper's side (the sandbox admin uses Basic)
    [doc] = await wait_documents(stack, f"WC-{order['id']}")
    assert Decimal(str(doc["amount"])) == Decimal(order["total"])


async def test_oauth1_over_plain_http_posts_the_order(stack_factory):
    stack = await stack_factory()
    conn = await stack.add_connection(f"oauth-{uuid.uuid4().hex[:6]}", store={"auth_mode": "oauth1"})
    assert stack.store.get_connection(conn.id).store["base_url"].startswith("http://")
    order = await place_order(stack)
    [doc] = await wait_documents(stack, f"WC-{order['id']}")
    assert Decimal(str(doc["amount"])) == Decimal(order["total"])
