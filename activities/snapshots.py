"""The orders a worker has fetched, kept in memory by (connection, order, digest), so each post
of an order reads it from here instead of from workflow history (which keeps only a summary).

Memory only (orders carry personal data: never written to disk) and bounded. A miss re-reads
the order from the store; if the store's order is no longer the one the workflow decided from,
the post refuses with ORDER_CHANGED and the workflow fetches and decides again.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from temporalio.exceptions import ApplicationError

from activities.messages import ORDER_CHANGED, OrderSnapshot, OrderSummary
from connectors.model import Order


def _encoded(order: Order) -> bytes:
    return order.model_dump_json().encode()


def order_digest(order: Order) -> str:
    """Names one version of an order: any change in the store gives another digest."""
    return hashlib.sha256(_encoded(order)).hexdigest()[:32]


class OrderSnapshots:
    """Bounded by the orders' encoded size (``budget`` bytes) and by ``size`` entries: a busy
    worker keeps every order in flight (an eviction costs a store read, and, if the order was
    edited meanwhile, a fresh decision), while a few 10,000-line orders cannot grow it unbounded."""

    def __init__(self, size: int = 4096, budget: int = 64 * 1024 * 1024) -> None:
        self._orders: OrderedDict[tuple[str, str, str], tuple[Order, int]] = OrderedDict()
        self._size, self._budget, self._bytes = size, budget, 0

    def keep(self, connection_id: str, order: Order) -> OrderSummary:
        """A freshly fetched order: kept, and summarised for the workflow."""
        encoded = _encoded(order)
        digest = hashlib.sha256(encoded).hexdigest()[:32]
        key = (connection_id, order.store_id, digest)
        if (old := self._orders.pop(key, None)) is not None:
            self._bytes -= old[1]
        self._orders[key] = (order, len(encoded))
        self._bytes += len(encoded)
        while len(self._orders) > 1 and (len(self._orders) > self._size
                                         or self._bytes > self._budget):
            self._bytes -= self._orders.popitem(last=False)[1][1]
        return OrderSummary.of(order, digest)

    async def get(self, connection_id: str, snap: OrderSnapshot,
                  fetch: Callable[[], Awaitable[Order]]) -> Order:
        """The order as the workflow saw it; re-read from the store when not held here."""
        key = (connection_id, snap.order_id, snap.digest)
        if (held := self._orders.get(key)) is not None:
            self._orders.move_to_end(key)
            return held[0]
        if self.keep(connection_id, await fetch()).digest != snap.digest:
            raise ApplicationError(
                f"order {snap.number} changed in the store since it was read: read again",
                type=ORDER_CHANGED, non_retryable=True)
        return self._orders[key][0]


# One per process: every worker of the process (the main queue's and each ERP quota queue's)
# reads the orders its workflow tasks fetched.
SNAPSHOTS = OrderSnapshots()
