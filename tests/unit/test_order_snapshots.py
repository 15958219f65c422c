"""The per-process order snapshots posts read instead of workflow history."""
from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError

from activities.messages import ORDER_CHANGED
from activities.snapshots import OrderSnapshots, order_digest
from tests.workflows.stubs import store_order


def fetcher(*orders):
    calls = []

    async def fetch():
        calls.append(1)
        return orders[min(len(calls), len(orders)) - 1]

    return fetch, calls


def test_a_kept_order_is_read_without_a_fetch():
    snaps, order = OrderSnapshots(), store_order()
    summary = snaps.keep("c1", order)
    assert summary.digest == order_digest(order) and summary.captured == order.total
    fetch, calls = fetcher(order)
    assert asyncio.run(snaps.get("c1", summary.snapshot, fetch)) is order and calls == []


def test_a_miss_re_reads_the_store_and_accepts_the_same_order():
    summary = OrderSnapshots().keep("c1", store_order())
    fetch, calls = fetcher(store_order())
    found = asyncio.run(OrderSnapshots().get("c1", summary.snapshot, fetch))
    assert found == store_order() and calls == [1]


def test_an_order_changed_since_the_summary_is_refused():
    summary = OrderSnapshots().keep("c1", store_order())
    fetch, _ = fetcher(store_order(refunds=("R1",)))
    with pytest.raises(ApplicationError) as err:
        asyncio.run(OrderSnapshots().get("c1", summary.snapshot, fetch))
    assert err.value.type == ORDER_CHANGED and err.value.non_retryable


def test_the_cache_is_bounded_and_keyed_by_connection():
    snaps = OrderSnapshots(size=2)
    first = snaps.keep("c1", store_order("1"))
    snaps.keep("c1", store_order("2"))
    snaps.keep("c2", store_order("1"))
    fetch, calls = fetcher(store_order("1"))
    asyncio.run(snaps.get("c1", first.snapshot, fetch))
    assert calls == [1]  # the oldest was dropped


def test_the_cache_is_bounded_by_the_orders_size():
    one = len(store_order("1").model_dump_json().encode())
    snaps = OrderSnapshots(budget=2 * one + one // 2)  # room for two orders, not three
    first = snaps.keep("c1", store_order("1"))
    second = snaps.keep("c1", store_order("2"))
    snaps.keep("c1", store_order("3"))
    fetch, calls = fetcher(store_order("2"))
    asyncio.run(snaps.get("c1", second.snapshot, fetch))
    assert calls == []  # still held
    fetch, calls = fetcher(store_order("1"))
    asyncio.run(snaps.get("c1", first.snapshot, fetch))
    assert calls == [1]  # the oldest was dropped for room


def test_the_summary_is_small_for_a_big_order():
    from decimal import Decimal

    from connectors.model import OrderLine

    order = store_order()
    order.lines = [OrderLine(line_id=f"L{i}", sku="MUG", subtotal=Decimal("1.00"),
                             total=Decimal("1.00")) for i in range(10_000)]
    assert len(OrderSnapshots().keep("c1", order).model_dump_json()) < 2_000
