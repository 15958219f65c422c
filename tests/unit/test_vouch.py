"""The vouch mark (activities/vouch.py): which fresh documents may be created without a
look-up, with a plain fake store in place of a storefront."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from activities.vouch import VouchMarks
from connections.config import Connection

MARK = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


class FakeStore:
    def __init__(self, newest: datetime | None = MARK, fail: int = 0) -> None:
        self.newest, self.fail, self.calls = newest, fail, 0

    async def newest_order_created_at(self) -> datetime | None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")
        return self.newest


class FakeRuntime:
    def __init__(self, shop: FakeStore) -> None:
        self.shop = shop

    def storefront(self, conn: Connection) -> FakeStore:
        return self.shop


def conn(id: str = "shop", **fields) -> Connection:
    return Connection(id=id, store_system="woocommerce", store={}, erp_system="acumatica",
                      erp={}, **fields)


async def test_only_orders_created_after_the_mark_are_vouched_new():
    shop = FakeStore()
    marks = VouchMarks(FakeRuntime(shop))
    c = conn()
    answers = await asyncio.gather(*(marks.vouches_new(c, MARK + timedelta(seconds=s))
                                     for s in (-60, 0, 1)))
    assert answers == [False, False, True]  # at the mark: it may have existed, so look up
    assert await marks.vouches_new(c, MARK + timedelta(days=3))
    assert shop.calls == 1 and marks.reads == 1  # one store request for the process's life


async def test_each_connection_has_its_own_mark():
    shop = FakeStore()
    marks = VouchMarks(FakeRuntime(shop))
    await marks.vouches_new(conn("a"), MARK)
    shop.newest = MARK + timedelta(hours=1)  # the connection re-added later, under a new name
    assert not await marks.vouches_new(conn("b"), MARK + timedelta(minutes=5))
    assert await marks.vouches_new(conn("a"), MARK + timedelta(minutes=5))


async def test_no_mark_readable_means_look_up_and_try_again_later():
    shop = FakeStore(fail=1)
    marks = VouchMarks(FakeRuntime(shop))
    assert not await marks.vouches_new(conn(), MARK + timedelta(days=1))
    assert await marks.vouches_new(conn(), MARK + timedelta(days=1))
    assert shop.calls == 2


async def test_an_empty_store_vouches_for_every_order():
    marks = VouchMarks(FakeRuntime(FakeStore(newest=None)))
    assert await marks.vouches_new(conn(), MARK)


async def test_always_look_up_and_unknown_creation_time_never_vouch():
    shop = FakeStore()
    marks = VouchMarks(FakeRuntime(shop))
    assert not await marks.vouches_new(conn(always_look_up=True), MARK + timedelta(days=1))
    assert not await marks.vouches_new(conn(), None)
    assert shop.calls == 0  # nothing to read for either


async def test_warm_reads_the_mark_once_in_the_background_and_a_post_waits_for_it():
    shop = FakeStore()
    marks = VouchMarks(FakeRuntime(shop))
    c = conn()
    marks.warm(c)
    marks.warm(c)  # already under way
    assert await marks.vouches_new(c, MARK + timedelta(seconds=1))
    marks.warm(c)  # already read
    marks.warm(conn("staging", always_look_up=True))  # never vouches: nothing to read
    await asyncio.sleep(0)
    assert shop.calls == 1
