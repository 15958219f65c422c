"""Catch-up: hand every order modified since the watermark to its OrderSync workflow.

The watermark is the newest store modification time the poll has handed over, on the
store's own clock (never the worker's: a store host's clock may run minutes off), and it
advances only after every order of the window was handed over; the overlap window re-reads
the edge, and the ledger keeps the re-read orders from posting twice.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from temporalio import activity

from activities.errors import classified
from activities.messages import OrderEvent, PollInput, PollResult
from activities.runtime import Runtime
from connections.ledger import Ledger, LedgerKey, nothing_new_since_booked

WATERMARK = "orders_modified"  # the newest store modification time handed over (store clock)
POLLED = "orders_polled"  # when the last scheduled poll completed (this host's clock: freshness)
FIRST_POLL_LOOKBACK = timedelta(days=1)
HAND_OVER_AT_ONCE = 20  # signal-with-starts in flight together (a backfill is bound by them)


class PollActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="poll_orders")
    async def poll_orders(self, inp: PollInput) -> PollResult:
        conn = self.rt.connection(inp.connection_id)
        now = datetime.now(timezone.utc)
        # A bound keeps the listing complete (see iter_orders_modified); a store clock ahead
        # of ours only delays its newest orders to the next poll, the watermark loses nothing.
        until = inp.until or now
        since = inp.since or self._since(conn.id, inp.overlap_seconds, now)
        newest: datetime | None = None
        result = PollResult()
        batch: list[str] = []

        async def hand_over() -> None:
            event = OrderEvent(kind="poll", source="poll", received_at=now)
            await asyncio.gather(*(self.rt.signal_order(
                self.rt.client, conn.id, order_id, event, task_queue=inp.task_queue,
                erp_requests_per_minute=conn.erp_requests_per_minute) for order_id in batch))
            result.handed_over += len(batch)
            batch.clear()
            activity.heartbeat(result.orders_seen)

        async with classified():
            async for order in self.rt.storefront(conn).iter_orders_modified(since, until):
                result.orders_seen += 1
                newest = max(newest or order.modified_at, order.modified_at)
                if not self._already_booked(conn.id, order.store_id, order.modified_at):
                    batch.append(order.store_id)
                if len(batch) >= HAND_OVER_AT_ONCE:
                    await hand_over()
            await hand_over()
        if inp.since is None and newest is not None:
            mark = self.rt.store.get_watermark(conn.id, WATERMARK)
            if mark is None or newest > datetime.fromisoformat(mark):
                self.rt.store.set_watermark(conn.id, WATERMARK, newest.isoformat())
            result.watermark = newest
        if inp.since is None:
            self.rt.store.set_watermark(conn.id, POLLED, now.isoformat())
        return result

    def _since(self, connection_id: str, overlap_seconds: float, now: datetime) -> datetime:
        mark = self.rt.store.get_watermark(connection_id, WATERMARK)
        if mark is None:
            return now - FIRST_POLL_LOOKBACK
        return datetime.fromisoformat(mark) - timedelta(seconds=overlap_seconds)

    def _already_booked(self, connection_id: str, order_id: str, modified_at: datetime) -> bool:
        """Posted from a snapshot the store had not modified since: nothing new to book, skip
        the workflow. Decided from the store's own times only (see nothing_new_since_booked):
        a change made after a pass fetched the order is never hidden by when the pass ended."""
        row = Ledger(self.rt.store, connection_id).get(LedgerKey.order(order_id))
        return nothing_new_since_booked(row, modified_at)

    def all(self) -> list:
        return [self.poll_orders]
