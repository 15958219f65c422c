"""WooCommerce authentication as real stores behave, over real sockets: Basic over TLS, the
query string where a host strips the Authorization header (detected and remembered), and
OAuth 1.0a over plain HTTP."""
from __future__ import annotations

import uuid
from decimal import Decimal

from tests.integration.helpers import place_order, wait_documents


async def test_stripped_header_switches_to_query_string_and_remembers(stack_factory):
    stack = await stack_factory(store_options={"strip_authorization": True})
    conn = await stack.add_connection(f"strip-{uuid.uuid4().hex[:6]}", register_webhooks=False)
    assert stack.store.get_connection(conn.id).store["auth_mode"] == "auto"
    await stack.register_webhooks(conn)
    assert stack.store.get_connection(conn.id).store["auth_mode"] == "query_string"
    await stack.control("woocommerce", "/_sandbox/settings", {"strip_authorization": False})
    order = await place_order(stack)
    [doc] = await wait_documents(stack, f"WC-{order['id']}")
    assert Decimal(str(doc["amount"])) == Decimal(order["total"])


async def test_oauth1_over_plain_http_posts_the_order(stack_factory):
    stack = await stack_factory()
    conn = await stack.add_connection(f"oauth-{uuid.uuid4().hex[:6]}", store={"auth_mode": "oauth1"})
    assert stack.store.get_connection(conn.id).store["base_url"].startswith("http://")
    order = await place_order(stack)
    [doc] = await wait_documents(stack, f"WC-{order['id']}")
    assert Decimal(str(doc["amount"])) == Decimal(order["total"])
