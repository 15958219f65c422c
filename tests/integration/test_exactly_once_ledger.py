"""Exactly once whatever happened to the ledger, and a poll that never skips a change, over
real sockets (a real Temporal dev server, the sandboxes over HTTP/TLS, a worker, a real
connection store). Assertions are on the ERP sandbox's books and request log.

- A connection re-added under a new name, or the same connection on an empty store database
  (moved from SQLite to PostgreSQL without copying it), backfills the store: every document
  is found by external reference, none is created twice, the books still reconcile.
- An order the store created after the worker's vouch mark posts with no look-up.
- A refund made while hooks are down, between the order's fetch and the end of its retried
  steps, is booked by the next poll whichever way the store's clock is off.
"""
from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote_plus

import pytest

from activities.messages import BackfillInput, BackfillProgress, OrderEvent, PollInput, PollResult
from connections.store import ConnectionStore, Database
from connections.vault import Vault
from starter.demo import catch_up
from starter.dispatch import signal_order
from starter.workers import worker_runtime
from tests.integration.conftest import eventually
from tests.integration.helpers import settled, wait_order_state

PAIRS = [("woocommerce", "acumatica"), ("woocommerce", "oracle_fusion"),
         ("woocommerce", "exact_online"), ("bigcommerce", "acumatica")]
IDS = [f"{s}-{e}" for s, e in PAIRS]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def erp_requests(stack) -> list[dict]:
    return await stack.control("erp", "/_sandbox/requests")


def look_ups_of(requests: list[dict], prefix: str, order_ids) -> list[dict]:
    """ERP reads that name one of the orders' external references (``WC-141``, ``WC-141-R7``,
    ...) in their query: the look-ups by external reference."""
    pattern = re.compile("|".join(rf"{re.escape(prefix)}{oid}(?![0-9])" for oid in order_ids))
    return [r for r in requests
            if r["method"] == "GET" and pattern.search(unquote_plus(str(r.get("query") or "")))]


def books(docs) -> list[tuple[str, str, str]]:
    return sorted((d.external_ref, d.kind, str(d.amount)) for d in docs)


async def book_orders(stack, conn, since: datetime) -> list[str]:
    """Three paid orders (one with a line refund) booked by ``conn`` through the poll."""
    sb = stack.shop_sandbox
    async with stack.store_client() as admin:
        placed = [await sb.place_order(admin, quantities=q) for q in ((3, 1), (1,), (2, 2))]
        await sb.refund(admin, placed[0].id, line_qty=1)
    await catch_up(stack, conn.id, since=since)
    for order in placed:
        await wait_order_state(stack, conn.id, order.id, timeout=120)
    rec = await settled(stack, conn)
    assert rec.paid_orders == 3 and rec.duplicates == [] and rec.difference_cents == 0
    return [o.id for o in placed]


async def backfill(stack, conn, since: datetime) -> BackfillProgress:
    return await stack.client.execute_workflow(
        "Backfill", BackfillInput(connection_id=conn.id, task_queue=stack.task_queue, since=since,
                                  until=datetime.now(timezone.utc) + timedelta(minutes=1)),
        id=f"Backfill/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue,
        result_type=BackfillProgress)


async def rebooked_without_duplicates(stack, conn, since, order_ids, before) -> list[dict]:
    """Backfill ``conn`` and wait until it has booked every order: the ERP holds exactly the
    documents it held before, and the books reconcile to the cent. Returns the ERP requests
    the backfill made."""
    start = len(await erp_requests(stack))
    done = await backfill(stack, conn, since)
    assert done.done and done.handed_over == len(order_ids)
    for oid in order_ids:
        await wait_order_state(stack, conn.id, oid, timeout=120)
    assert books(await stack.erp_documents()) == before  # 0 new ERP documents
    rec = await settled(stack, conn)
    assert rec.paid_orders == len(order_ids) and rec.duplicates == [] and rec.difference_cents == 0
    return (await erp_requests(stack))[start:]


async def new_order_posts_without_look_up(stack, conn) -> int:
    """An order the store creates after the worker's mark: booked with no look-up. Returns
    the ERP requests its booking made."""
    await asyncio.sleep(1.1)  # the store's dates are whole seconds: created strictly after
    async with stack.store_client() as admin:
        new = await stack.shop_sandbox.place_order(admin, quantities=(1,))
    start = len(await erp_requests(stack))
    await signal_order(stack.client, conn.id, new.id, OrderEvent(kind="created", source="test"),
                       task_queue=stack.task_queue)
    await wait_order_state(stack, conn.id, new.id, timeout=120)
    spent = (await erp_requests(stack))[start:]
    assert look_ups_of(spent, conn.mappings.document_prefix, [new.id]) == []
    return len(spent)


@pytest.mark.parametrize(("store_system", "erp_system"), PAIRS, ids=IDS)
async def test_a_connection_re_added_under_a_new_name_books_nothing_twice(
        stack_factory, store_system, erp_system):
    stack = await stack_factory(store_system=store_system, erp_system=erp_system)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    first = await stack.add_connection(uid("first"), register_webhooks=False)
    order_ids = await book_orders(stack, first, since)
    before = books(await stack.erp_documents())

    again = await stack.add_connection(uid("again"), register_webhooks=False)  # same store, ERP
    spent = await rebooked_without_duplicates(stack, again, since, order_ids, before)
    prefix = again.mappings.document_prefix
    # Every one of its documents was looked up (its ledger could not vouch for any of them).
    assert {oid for oid in order_ids if look_ups_of(spent, prefix, [oid])} == set(order_ids)

    await new_order_posts_without_look_up(stack, again)


@pytest.mark.parametrize(("store_system", "erp_system"), PAIRS, ids=IDS)
async def test_an_empty_store_database_books_nothing_twice(
        stack_factory, pg_url, keyring, store_system, erp_system):
    """The connection store moved from SQLite to PostgreSQL without copying it: the same
    connection, re-added there, and a worker restarted on it."""
    stack = await stack_factory(store_system=store_system, erp_system=erp_system)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    conn = await stack.add_connection(uid("shop"), register_webhooks=False)
    order_ids = await book_orders(stack, conn, since)
    before = books(await stack.erp_documents())

    await stack.stop_worker()
    await stack.runtime.aclose()
    old = stack.store
    stack.store = ConnectionStore(Database(pg_url), Vault(keyring))
    old.db.close()
    stack.runtime = worker_runtime(stack.store, stack.client)
    stack.start_worker()
    conn = await stack.add_connection(conn.id, register_webhooks=False)
    assert stack.store.ledger_rows(conn.id) == []

    await rebooked_without_duplicates(stack, conn, since, order_ids, before)
    await new_order_posts_without_look_up(stack, conn)


@pytest.mark.parametrize("store_clock_offset", [-300, 300], ids=["store-behind", "store-ahead"])
async def test_a_refund_missed_while_hooks_are_down_is_booked_by_the_poll(
        stack_factory, store_clock_offset):
    """The order is fetched, its ERP steps are retried (a 429 storm), and meanwhile the
    store refunds it with no webhook delivered. The pass ends posted without the refund; the
    poll, deciding from the store's own times, hands the order over and the credit memo is
    booked, whether the store's clock is minutes behind or ahead of the worker's. An order
    with nothing new is still skipped."""
    stack = await stack_factory()
    conn = await stack.add_connection(uid("poll"), register_webhooks=False)  # hooks down
    sb, prefix = stack.shop_sandbox, conn.mappings.document_prefix
    await stack.control("store", "/_sandbox/clock", {"advance": store_clock_offset})
    async with stack.store_client() as admin:
        quiet = await sb.place_order(admin, quantities=(1,))
    await signal_order(stack.client, conn.id, quiet.id, OrderEvent(kind="created", source="test"),
                       task_queue=stack.task_queue)
    await wait_order_state(stack, conn.id, quiet.id)

    async with stack.store_client() as admin:
        order = await sb.place_order(admin, quantities=(3,))
    await stack.control("erp", "/_sandbox/faults", {"storm_seconds": 600, "retry_after": 1})
    throttled = (await stack.control("erp", "/_sandbox/stats"))["throttled"]
    await signal_order(stack.client, conn.id, order.id, OrderEvent(kind="created", source="test"),
                       task_queue=stack.task_queue)

    async def retrying():  # fetched: its ERP steps are being refused
        return (await stack.control("erp", "/_sandbox/stats"))["throttled"] > throttled

    await eventually(retrying)
    await asyncio.sleep(1.1)  # the store's dates are whole seconds: the refund is a later one
    async with stack.store_client() as admin:
        refund_id = await sb.refund(admin, order.id, line_qty=1)
    await stack.control("erp", "/_sandbox/faults", {"storm_seconds": 0})
    await wait_order_state(stack, conn.id, order.id, timeout=120)
    memo_ref = f"{prefix}{order.id}-R{refund_id}"
    assert [d for d in await stack.erp_documents() if d.external_ref == memo_ref] == []

    now = datetime.now(timezone.utc)
    result = await stack.client.execute_workflow(
        "OrderPoll", PollInput(connection_id=conn.id, task_queue=stack.task_queue,
                               since=now - timedelta(hours=1), until=now + timedelta(hours=1)),
        id=f"poll/{conn.id}/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue,
        result_type=PollResult)
    assert (result.orders_seen, result.handed_over) == (2, 1)  # the quiet order was skipped

    async def memo():
        docs = [d for d in await stack.erp_documents() if d.external_ref == memo_ref]
        return docs or None

    [credit] = await eventually(memo, timeout=120)
    assert credit.kind == "credit_memo"
    rec = await settled(stack, conn)
    assert rec.duplicates == [] and rec.difference_cents == 0
