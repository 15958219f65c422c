"""When the ledger may vouch that a store order's documents are new to the ERP.

A post whose ledger row is missing creates without looking the document up only if the
order cannot have been booked before this ledger knew the store. The proof is one mark per
connection and worker process: the store's newest order creation time, read (one store
request) when the worker starts, or first sees the connection, or first posts for it,
whichever comes first, and kept for the process's life. An order the store created
strictly after the mark did not exist when the process read it: only ledgers in this
process's store database can have booked it since. An order created at or before the mark
may have been booked by a ledger this one never saw (a connection re-added under a new
name, an empty, lost or restored store database, a backfill), so its documents are looked
up by external reference first. Both times are the store's own clock.

Not vouched, so looked up: no mark readable (the store did not answer; read again at the
next post), an order without a creation time, and every document of a connection with
``always_look_up``: one that shares its store and ERP company with another connection or
with another installation (staging, a copy of the store database), whose ledgers cannot see
each other's rows. A restored backup or a new database is covered once the worker restarts;
one swapped or restored under a running worker is not (its process keeps its marks):
restart the workers after restoring the connection store.
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from weakref import WeakKeyDictionary

import structlog

from activities.runtime import Runtime
from connections.config import Connection

log = structlog.get_logger(__name__)

UNREADABLE = object()


class VouchMarks:
    """The marks of one worker process (one :class:`Runtime`), per connection."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._marks: dict[str, datetime | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._warming: set[str] = set()  # connections whose mark is being read in the background
        self.reads = 0  # store requests spent on marks (one per connection, unless it failed)

    async def vouches_new(self, conn: Connection, created_at: datetime | None) -> bool:
        """True only when the order was created strictly after this process's mark."""
        if conn.always_look_up or created_at is None:
            return False
        mark = await self.mark(conn)
        if mark is UNREADABLE:
            return False
        return mark is None or created_at > mark  # None: the store had no order at all

    def warm(self, conn: Connection) -> None:
        """Start reading ``conn``'s mark in the background unless this process has it. The
        rule is as safe whenever in the process's life the mark is read (a post waits for a
        read under way), and the earlier it is read the fewer orders predate it: the worker
        warms every connection as it starts, so orders placed after that need no look-up."""
        if conn.id in self._marks or conn.always_look_up or conn.id in self._warming:
            return
        self._warming.add(conn.id)
        task = asyncio.get_running_loop().create_task(self.mark(conn))
        task.add_done_callback(lambda _: self._warming.discard(conn.id))

    async def mark(self, conn: Connection) -> datetime | None | object:
        if conn.id in self._marks:
            return self._marks[conn.id]
        async with self._locks.setdefault(conn.id, asyncio.Lock()):  # one read at once
            if conn.id in self._marks:
                return self._marks[conn.id]
            self.reads += 1
            try:
                mark = await self.rt.storefront(conn).newest_order_created_at()
            except Exception as exc:  # no mark: every post looks up until one is read
                log.warning("vouch mark not read; looking documents up",
                            connection=conn.id, error=type(exc).__name__)
                return UNREADABLE
            self._marks[conn.id] = mark
            return mark


_by_runtime: WeakKeyDictionary[Runtime, VouchMarks] = WeakKeyDictionary()


def vouch_marks(runtime: Runtime) -> VouchMarks:
    """The process's marks: one :class:`Runtime` per worker process."""
    marks = _by_runtime.get(runtime)
    if marks is None:
        marks = _by_runtime[runtime] = VouchMarks(runtime)
    return marks
