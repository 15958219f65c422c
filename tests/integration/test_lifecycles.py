"""Real order lifecycles end to end (WooCommerce → Acumatica over real sockets: a real Temporal
server, the sandboxes over TLS, the receiver and a worker). Assertions are on the ERP's books:
every captured payment is booked, refunds as credit memos, a parked step blocks only what
depends on it, and a 10,000-line order keeps every history event small."""
from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from activities.messages import OrderEvent
from starter.dispatch import signal_order
from tests.integration.conftest import eventually
from tests.integration.helpers import (API, get_order, place_order, products, refund,
                                       update_order, wait_order_state)
from tests.integration.test_cli_commands import cli_for  # noqa: F401 (a fixture)
from workflows.order import order_workflow_id

MAX_HISTORY_EVENT = 512 * 1024


def unique_id() -> str:
    return f"lc-{uuid.uuid4().hex[:8]}"


async def books(stack, order_id) -> dict[str, list]:
    """The order's ERP documents by kind (``WC-{id}`` and its suffixed references)."""
    prefix = f"WC-{order_id}"
    out: dict[str, list] = {}
    for doc in await stack.erp_documents():
        if doc.external_ref == prefix or doc.external_ref.startswith(prefix + "-"):
            out.setdefault(doc.kind, []).append(doc)
    return out


async def settled_books(stack, conn, order_id, state: str, *, timeout: float = 90) -> dict:
    """The books once the order's workflow recorded ``state`` and completed (nothing in flight)."""
    row = await wait_order_state(stack, conn.id, order_id, state, timeout=timeout)
    handle = stack.client.get_workflow_handle(order_workflow_id(conn.id, str(order_id)))
    await asyncio.wait_for(handle.result(), timeout)
    return row, await books(stack, order_id)


def amounts(docs) -> list[Decimal]:
    return sorted(d.amount for d in docs)


async def test_paid_then_cancelled_without_refund_is_booked_and_needs_attention(stack, cli_for):
    """Paid, then cancelled before ml-connector saw it (the connector was down): the captured
    payment is booked all the same — invoice and receipt — and the order needs attention,
    with a message saying what to do, where `ml-connector status` lists it (exit code 1)."""
    conn = await stack.add_connection(unique_id())
    await stack.stop_worker()
    order = await place_order(stack)
    cancelled = await update_order(stack, order["id"], {"status": "cancelled"})
    assert cancelled["date_paid"] and cancelled["status"] == "cancelled"
    stack.start_worker()
    row, docs = await settled_books(stack, conn, order["id"], "needs_attention")
    total = Decimal(order["total"])
    assert amounts(docs["invoice"]) == [total] and amounts(docs["receipt"]) == [total]
    assert "credit_memo" not in docs
    assert f"{total} {order['currency']} of the payment was kept" in row.last_error
    assert "Resolution: refund the buyer in the store" in row.last_error
    done = await cli_for(stack)("status", conn.id, "--json")
    assert done.returncode == 1, done.stderr
    [status] = [s for s in _statuses(json.loads(done.stdout)) if s["connection"] == conn.id]
    assert [r["order"] for r in status["needs_attention"]] == [order["number"]]
    assert "Resolution: refund the buyer" in status["needs_attention"][0]["message"]


def _statuses(document) -> list[dict]:
    """The per-connection status objects of ``status --json`` (one or a list)."""
    if isinstance(document, list):
        return document
    return document.get("connections", [document]) if isinstance(document, dict) else []


async def test_paid_then_cancelled_with_full_refund_is_posted(stack):
    """Paid, booked, then refunded in full and cancelled: invoice, receipt and a credit memo
    for the refund; nothing needs attention."""
    conn = await stack.add_connection(unique_id())
    order = await place_order(stack)
    await settled_books(stack, conn, order["id"], "posted")
    r = await refund(stack, await get_order(stack, order["id"]), amount=order["total"])
    await update_order(stack, order["id"], {"status": "cancelled"})

    async def memo_booked():
        row = stack.store.ledger_get(conn.id, "credit_memo", str(r["id"]))
        return row if row and row.state == "posted" else None

    await eventually(memo_booked, timeout=90)
    _, docs = await settled_books(stack, conn, order["id"], "posted")
    total = Decimal(order["total"])
    assert amounts(docs["invoice"]) == [total] and amounts(docs["receipt"]) == [total]
    assert amounts(docs["credit_memo"]) == [total]


async def test_paid_then_cancelled_with_partial_refund_needs_attention(stack):
    conn = await stack.add_connection(unique_id())
    await stack.stop_worker()
    order = await place_order(stack)
    await refund(stack, await get_order(stack, order["id"]), amount="5.00")
    await update_order(stack, order["id"], {"status": "cancelled"})
    stack.start_worker()
    row, docs = await settled_books(stack, conn, order["id"], "needs_attention")
    kept = Decimal(order["total"]) - Decimal("5.00")
    assert f"{kept} {order['currency']} of the payment was kept" in row.last_error
    assert amounts(docs["credit_memo"]) == [Decimal("5.00")]
    assert len(docs["invoice"]) == 1 and len(docs["receipt"]) == 1


async def test_zero_total_books_the_invoice_and_no_receipt(stack):
    """A 100% coupon with free shipping: the 0.00 invoice, no 0.00 receipt."""
    conn = await stack.add_connection(unique_id())
    await stack.control("woocommerce", "/_sandbox/coupons",
                        [{"code": "FREE100", "discount_type": "percent", "amount": "100",
                          "free_shipping": True}])
    catalog = await products(stack)
    async with stack.store_client() as shop:
        resp = await shop.post(API + "orders", json={
            "set_paid": True, "payment_method": "stripe", "coupon_lines": [{"code": "FREE100"}],
            "line_items": [{"product_id": catalog[0]["id"], "quantity": 1}],
            "billing": {"first_name": "Zed", "email": "zed@example.com", "country": "US"},
            "shipping_lines": [{"method_id": "free_shipping", "method_title": "Free",
                                "total": "0.00"}]})
        assert resp.status_code == 201, resp.text
        order = resp.json()
    assert Decimal(order["total"]) == 0, order["total"]
    _, docs = await settled_books(stack, conn, order["id"], "posted")
    assert amounts(docs["invoice"]) == [Decimal("0")] and "receipt" not in docs


async def test_refund_before_the_payment_books_each_once(stack):
    """The store records a refund on an order whose payment it has not recorded yet, then the
    payment: invoice and credit memo first, then the receipt, each once (where the ERP books
    the refund's cash-back against the payment, that waits for the receipt)."""
    conn = await stack.add_connection(unique_id())
    order = await place_order(stack, paid=False)
    r = await refund(stack, order, amount="5.00")

    async def memo_booked():
        row = stack.store.ledger_get(conn.id, "credit_memo", str(r["id"]))
        return row if row and row.state == "posted" else None

    await eventually(memo_booked, timeout=90)
    docs = await books(stack, order["id"])
    assert amounts(docs["credit_memo"]) == [Decimal("5.00")] and "receipt" not in docs
    await update_order(stack, order["id"], {"set_paid": True})

    async def receipt_booked():
        row = stack.store.ledger_get(conn.id, "receipt", f"{order['id']}-P{order['id']}")
        return row if row and row.state == "posted" else None

    await eventually(receipt_booked, timeout=90)
    docs = await books(stack, order["id"])
    total = Decimal(order["total"])
    assert amounts(docs["invoice"]) == [total] and amounts(docs["receipt"]) == [total]
    assert [d.external_ref for d in docs["credit_memo"]] == [f"WC-{order['id']}-R{r['id']}"]
    # The refund's cash-back is the ERP's to decide (a memo applied to an unpaid invoice holds
    # no credit to pay back): booked, or parked naming itself, never silently left out.
    row = stack.store.ledger_get(conn.id, "order", str(order["id"]))
    assert row.state == "posted" or (row.state == "parked" and "Resolution" in row.last_error
                                     and f"-R{r['id']}" in row.last_error)


async def test_parked_receipt_does_not_block_a_refund(stack):
    """A CHF order where Acumatica has no CHF cash account: the receipt parks naming the fix,
    and a later refund's credit memo is booked all the same; the order stays parked."""
    conn = await stack.add_connection(unique_id())
    order = await place_order(stack, currency="CHF")
    row = await wait_order_state(stack, conn.id, order["id"], "parked", timeout=90)
    assert "cash" in row.last_error.lower() and "Resolution" in row.last_error
    r = await refund(stack, await get_order(stack, order["id"]), amount="5.00")

    async def memo_booked():
        row = stack.store.ledger_get(conn.id, "credit_memo", str(r["id"]))
        return row if row and row.state == "posted" else None

    await eventually(memo_booked, timeout=90)
    docs = await books(stack, order["id"])
    assert amounts(docs["credit_memo"]) == [Decimal("5.00")]
    assert len(docs["invoice"]) == 1 and "receipt" not in docs
    row = await wait_order_state(stack, conn.id, order["id"], "parked")
    assert "receipt" in row.last_error.lower()


async def test_ten_thousand_lines_post_with_small_history_events(stack):
    """A 10,000-line order, handed over as the poll does (its webhooks are over the receiver's
    body limit), is booked to the cent, and no event of its workflow history is over 512 KB:
    the workflow keeps a summary; the posts re-read the order."""
    conn = await stack.add_connection(unique_id(), register_webhooks=False)
    catalog = await products(stack)
    lines = [{"product_id": catalog[i % len(catalog)]["id"], "quantity": 1}
             for i in range(10_000)]
    order = await place_order(stack, quantities=(), extra_lines=lines)
    assert len(order["line_items"]) == 10_000
    await signal_order(stack.client, conn.id, str(order["id"]), OrderEvent(kind="poll"),
                       task_queue=stack.task_queue)
    _, docs = await settled_books(stack, conn, order["id"], "posted", timeout=300)
    assert amounts(docs["invoice"]) == [Decimal(order["total"])]
    history = await stack.client.get_workflow_handle(
        order_workflow_id(conn.id, str(order["id"]))).fetch_history()
    biggest = max(e.ByteSize() for e in history.events)
    print(f"10,000-line order: {len(history.events)} history events, largest {biggest} bytes")
    assert biggest < MAX_HISTORY_EVENT, biggest
