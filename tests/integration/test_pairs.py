"""The end-to-end contract suite: every store × ERP pair through the same workflows, over
real sockets (a real Temporal dev server, the sandboxes over HTTP/TLS, the receiver, a
worker, a real connection store). Assertions are on the ERP sandbox's books, to the cent."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from activities.messages import OrderEvent
from starter import audit
from starter.sandboxes import ERPS, STORES
from tests.integration.conftest import eventually
from tests.integration.helpers import settled, wait_order_state
from starter.dispatch import signal_order

PAIRS = [(s, e) for s in STORES for e in ERPS]
IDS = [f"{s}-{e}" for s, e in PAIRS]


@pytest.fixture(params=PAIRS, ids=IDS)
async def pair(request, stack_factory):
    store_system, erp_system = request.param
    stack = await stack_factory(store_system=store_system, erp_system=erp_system)
    conn = await stack.add_connection(f"p-{uuid.uuid4().hex[:8]}")
    return stack, conn


@pytest.fixture(params=PAIRS, ids=IDS)
async def pg_pair(request, stack_factory, pg_url):
    """The same pair with the connection store (ledger, tokens, watermarks) in PostgreSQL."""
    store_system, erp_system = request.param
    stack = await stack_factory(store_system=store_system, erp_system=erp_system, db_url=pg_url)
    conn = await stack.add_connection(f"pg-{uuid.uuid4().hex[:8]}")
    return stack, conn


async def erp_docs(stack, external_ref: str | None = None):
    docs = await stack.erp_documents()
    return [d for d in docs if external_ref is None or d.external_ref == external_ref]


async def wait_docs(stack, external_ref: str, count: int = 1, timeout: float = 60):
    async def check():
        docs = await erp_docs(stack, external_ref)
        return docs if len(docs) >= count else None

    return await eventually(check, timeout=timeout)


async def test_order_lifecycle_books_once_to_the_cent(pair):
    """Paid order (webhook delivered twice) → one customer, one invoice, one receipt; a line
    refund and an amount-only refund → one credit document each; all to the cent."""
    stack, conn = pair
    sb, prefix = stack.shop_sandbox, conn.mappings.document_prefix
    await sb.duplicate_next(stack.http, stack.shop.url, 3)
    async with stack.store_client() as admin:
        first = await sb.place_order(admin, quantities=(3, 2), email="guest.one@example.com")
        [invoice] = await wait_docs(stack, f"{prefix}{first.id}")
        assert invoice.amount == first.total and invoice.currency == first.currency
        second = await sb.place_order(admin, quantities=(1,), email="guest.one@example.com")
        await wait_docs(stack, f"{prefix}{second.id}")
        line_refund = await sb.refund(admin, first.id, line_qty=1)
        await wait_docs(stack, f"{prefix}{first.id}-R{line_refund}")
        amount_refund = await sb.refund(admin, first.id, amount=Decimal("4.00"))
        [memo] = await wait_docs(stack, f"{prefix}{first.id}-R{amount_refund}")
        assert memo.kind == "credit_memo" and memo.amount == Decimal("4.00")
    rec = await settled(stack, conn)
    assert (rec.paid_orders, rec.invoices, rec.credit_memos) == (2, 2, 2)
    assert rec.receipts == rec.payments >= 2
    assert rec.duplicates == [] and rec.difference_cents == 0
    customers = await stack.erp_sandbox.customers(stack.http, stack.erp_server.url)
    assert len(customers) == 1  # the same guest twice is one customer


async def test_order_lifecycle_with_the_store_in_postgresql(pg_pair):
    await test_order_lifecycle_books_once_to_the_cent(pg_pair)


async def test_429_storm_and_expired_token_delay_but_never_duplicate(pair):
    stack, conn = pair
    await stack.control("erp", "/_sandbox/faults", {"storm_429": 4, "retry_after": 1})
    await stack.erp_sandbox.expire_tokens(stack.http, stack.erp_server.url)
    prefix = conn.mappings.document_prefix
    async with stack.store_client() as admin:
        placed = await stack.shop_sandbox.place_order(admin, quantities=(1, 1))
    [invoice] = await wait_docs(stack, f"{prefix}{placed.id}", timeout=90)
    assert invoice.amount == placed.total
    await settled(stack, conn)
    faults = await stack.control("erp", "/_sandbox/faults")
    assert faults["storm_429"] == 0


async def test_lost_response_after_commit_still_one_document(pair):
    stack, conn = pair
    await stack.control("erp", "/_sandbox/faults", {"lose_next_commits": 1})
    async with stack.store_client() as admin:
        placed = await stack.shop_sandbox.place_order(admin, quantities=(2,))
    await wait_docs(stack, f"{conn.mappings.document_prefix}{placed.id}", timeout=90)
    rec = await settled(stack, conn)
    assert rec.duplicates == []


async def test_unmapped_line_parks_with_resolution_then_posts_after_mapping(pair):
    """An order whose line cannot be booked (an item the ERP lacks, or no GL rule) waits
    parked with a message naming the fix, and posts once the mapping is there."""
    stack, conn = pair
    prefix = conn.mappings.document_prefix
    async with stack.store_client() as admin:
        placed = await stack.shop_sandbox.place_order(admin, quantities=(1,), paid=False)
        order = await stack.runtime.storefront(conn).get_order(placed.id)
        sku = next(ln.sku for ln in order.lines if ln.kind == "product")
        broken = conn.model_copy(deep=True)
        if conn.mappings.line_rules:  # an ERP that books each line to a GL account
            broken.mappings.line_rules = [r for r in conn.mappings.line_rules
                                          if r.kind and r.kind != "product"]
        else:  # an ERP that books items: the SKU points at an item it does not have
            broken.mappings.sku_to_item = {sku: f"NOPE-{sku}"}
        stack.store.save_connection(broken)
        await stack.shop_sandbox.pay(admin, placed.id)

    async def parked():
        row = stack.store.ledger_get(conn.id, "order", placed.id)
        return row if row and row.state == "parked" else None

    row = await eventually(parked, timeout=60)
    assert "Resolution" in (row.last_error or ""), row.last_error
    assert await erp_docs(stack, f"{prefix}{placed.id}") == []
    stack.store.save_connection(conn)  # the operator adds the mapping
    await signal_order(stack.client, conn.id, placed.id, OrderEvent(kind="mapping_changed"),
                       task_queue=stack.task_queue)
    [doc] = await wait_docs(stack, f"{prefix}{placed.id}")
    assert doc.amount == placed.total


@pytest.fixture(params=ERPS)
async def woo_erp(request, stack_factory):
    stack = await stack_factory(store_system="woocommerce", erp_system=request.param)
    return stack, await stack.add_connection(f"g-{uuid.uuid4().hex[:8]}")


def _customer_of(doc) -> str:
    raw = doc.raw
    return str(raw.get("customer") or raw.get("ordered_by") or raw)


async def test_guest_checkouts_book_to_the_connections_guest_account(woo_erp):
    """With a guest customer set, guests cost no customer look-up or creation: every guest's
    invoice and receipt go to that one account, a registered buyer still gets their own, and
    the books reconcile to the cent."""
    stack, conn = woo_erp
    guests = await stack.add_guest_account(conn)
    prefix = conn.mappings.document_prefix
    async with stack.store_client() as admin:
        placed = [await stack.shop_sandbox.place_order(admin, quantities=(1,), email=f"g{i}@example.com")
                  for i in range(2)]
        docs = [(await wait_docs(stack, f"{prefix}{p.id}"))[0] for p in placed]
        buyer = await stack.shop_sandbox.place_order(admin, quantities=(1,), registered=True,
                                                     email="reg@example.com")
        [own] = await wait_docs(stack, f"{prefix}{buyer.id}")
    rec = await settled(stack, conn)
    assert rec.invoices == 3 and rec.receipts == rec.payments >= 3 and rec.difference_cents == 0
    assert {_customer_of(d) for d in docs} == {guests.number}
    assert _customer_of(own) != guests.number
    assert len(await stack.erp_sandbox.customers(stack.http, stack.erp_server.url)) == 2
    await wait_order_state(stack, conn.id, placed[0].id)  # its history is complete
    number = placed[0].raw.get("number") or placed[0].id
    timeline = await audit.audit(stack.client, stack.store, conn.id, str(number))
    assert any(e.what == "customer" and "guest account" in e.detail for e in timeline)
