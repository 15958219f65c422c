"""The ledger: OCA's *binder*, the lasting record of what is booked in the ERP.

One row per booked document under a unique key (connection, kind, store id), with the ERP
reference, state, attempts, last error and what it booked. Temporal forgets closed workflows;
the ledger does not, so an order re-read a year later finds its row and posts nothing.

Everything about the ledger except its SQL lives here (connections/store.py keeps the rows):

- the states: :class:`DocumentState` (a document through the posting protocol) and
  :class:`OrderState` (what OrderSync last recorded for a store order);
- the key scheme: :class:`LedgerKey`, one constructor per kind of row, and
  :func:`customer_external_id`, the key a customer is booked under in the ledger and the ERP;
- the posting protocol: :meth:`Ledger.post`, with the client's calls as arguments.

Pure Python at module level (no database, HTTP or Temporal import), so workflow code may
use the states (through activities/messages.py).
"""
from __future__ import annotations

import hashlib
from asyncio import to_thread
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel

from connectors.documents import PostedTotals
from connectors.model import Customer, ErpDocumentRef

if TYPE_CHECKING:
    from connections.config import Connection


class LedgerKind(StrEnum):
    """What a row books (the ``kind`` column)."""

    ORDER = "order"  # the order's state as OrderSync last recorded it
    CUSTOMER = "customer"
    INVOICE = "invoice"  # the order's sales document (an invoice or a sales order)
    CREDIT_MEMO = "credit_memo"
    RECEIPT = "receipt"
    ADJUSTMENT = "adjustment"
    SHIPMENT = "shipment"  # an ERP shipment shown in the store
    CUSTOMER_SYNC = "customer_sync"  # both sides' fingerprints of an aligned customer


class DocumentState(StrEnum):
    """A document's way through :meth:`Ledger.post`. Posted is final: the store never moves a
    posted row back to posting or error."""

    POSTING = "posting"  # an attempt began: it may have reached the ERP
    POSTED = "posted"
    ERROR = "error"  # the last attempt failed: it too may have reached the ERP


class OrderState(StrEnum):
    """An order's state (kind ``order``), in the order operators read them."""

    POSTED = "posted"
    PARKED = "parked"  # waits for a mapping or a correction; resumes on the next event
    FAILED = "failed"
    AWAITING_PAYMENT = "awaiting_payment"
    NOT_BILLABLE = "not_billable"  # cancelled, failed or trashed in the store before payment
    RECEIVED = "received"  # seen, nothing decided yet


class LedgerKey(NamedTuple):
    """Where a document is booked: ``(kind, store_id)`` under a connection. The formats are
    fixed for ever: existing ledgers are keyed by them."""

    kind: LedgerKind
    store_id: str

    @classmethod
    def order(cls, order_id: str) -> LedgerKey:
        return cls(LedgerKind.ORDER, order_id)

    @classmethod
    def customer(cls, external_id: str) -> LedgerKey:
        """``external_id``: see :func:`customer_external_id`."""
        return cls(LedgerKind.CUSTOMER, external_id)

    @classmethod
    def invoice(cls, order_id: str) -> LedgerKey:
        return cls(LedgerKind.INVOICE, order_id)

    @classmethod
    def credit_memo(cls, refund_id: str) -> LedgerKey:
        """By the store's refund id alone (unique in the store)."""
        return cls(LedgerKind.CREDIT_MEMO, refund_id)

    @classmethod
    def receipt(cls, order_id: str, payment_id: str) -> LedgerKey:
        return cls(LedgerKind.RECEIPT, f"{order_id}-P{payment_id}")

    @classmethod
    def adjustment(cls, order_id: str, seq: int) -> LedgerKey:
        """The ``seq``-th edit of the order after posting."""
        return cls(LedgerKind.ADJUSTMENT, f"{order_id}-A{seq}")

    @classmethod
    def shipment(cls, shipment_id: str) -> LedgerKey:
        return cls(LedgerKind.SHIPMENT, shipment_id)

    @classmethod
    def customer_sync(cls, external_id: str) -> LedgerKey:
        return cls(LedgerKind.CUSTOMER_SYNC, external_id)


def customer_external_id(conn: Connection, customer: Customer) -> str:
    """Stable id of a buyer in the ERP and the ledger: the store's customer id, or the e-mail
    of a guest."""
    prefix = conn.mappings.document_prefix
    if customer.store_id is not None:
        return f"{prefix}C{customer.store_id}"
    digest = hashlib.sha256(customer.email.strip().lower().encode()).hexdigest()[:12].upper()
    return f"{prefix}G{digest}"


class LedgerRow(BaseModel):
    connection_id: str
    kind: str
    store_id: str
    order_number: str = ""
    state: str  # a DocumentState, or an OrderState for kind "order"
    erp_ref: dict | None = None
    totals: dict | None = None
    attempts: int = 0
    last_error: str | None = None
    updated_at: str


def booked_ref(row: LedgerRow | None) -> ErpDocumentRef | None:
    """The ERP document a row says is booked, marked as found rather than created."""
    if row and row.state == DocumentState.POSTED and row.erp_ref:
        return ErpDocumentRef.model_validate(row.erp_ref).model_copy(update={"created": False})
    return None


@dataclass(frozen=True)
class Booking:
    """What :meth:`Ledger.post` answers: the document, what it booked, and whether an
    earlier attempt had begun (a document then found by look-up is that attempt's own)."""

    ref: ErpDocumentRef
    totals: PostedTotals
    retried: bool = False


D = TypeVar("D")


class LedgerStore(Protocol):
    """The row keeping the ledger needs (connections/store.py's ConnectionStore provides it):
    named here so the ledger, which the store imports for its rows and states, imports no store."""

    def ledger_get(self, connection_id: str, kind: str, store_id: str) -> LedgerRow | None: ...

    def ledger_mark(self, connection_id: str, kind: str, store_id: str, state: str, *,
                    order_number: str = "", erp_ref: dict | None = None,
                    totals: dict | None = None, error: str | None = None,
                    count_attempt: bool = False) -> None: ...


class Ledger:
    """One connection's binder over the connection store.

    Reads run inline (the store reads on a connection of its own). Writes from activities
    go through :meth:`write`, in a thread: each commit waits on the disk (or on PostgreSQL's
    round trip) while the worker's event loop runs every other activity and workflow task."""

    def __init__(self, store: LedgerStore, connection_id: str) -> None:
        self.store, self.connection_id = store, connection_id

    def get(self, key: LedgerKey) -> LedgerRow | None:
        return self.store.ledger_get(self.connection_id, key.kind, key.store_id)

    def booked(self, key: LedgerKey) -> ErpDocumentRef | None:
        return booked_ref(self.get(key))

    def is_posted(self, key: LedgerKey) -> bool:
        row = self.get(key)
        return row is not None and row.state == DocumentState.POSTED

    def mark(self, key: LedgerKey, state: DocumentState | OrderState, *,
             order_number: str = "", erp_ref: dict | None = None, totals: dict | None = None,
             error: str | None = None, count_attempt: bool = False) -> None:
        self.store.ledger_mark(self.connection_id, key.kind, key.store_id, state,
                               order_number=order_number, erp_ref=erp_ref, totals=totals,
                               error=error, count_attempt=count_attempt)

    async def write(self, key: LedgerKey, state: DocumentState | OrderState, **fields) -> None:
        """:meth:`mark`, off the event loop."""
        await to_thread(self.mark, key, state, **fields)

    async def post(self, key: LedgerKey, order_number: str, *, build: Callable[[], D],
                   look_up: Callable[[D], Awaitable[ErpDocumentRef | None]],
                   create: Callable[[D], Awaitable[ErpDocumentRef]],
                   totals: Callable[[D], PostedTotals], retrying: bool,
                   guard: Callable[[], AbstractAsyncContextManager] = nullcontext) -> Booking:
        """Book one document exactly once.

        A posted row answers without calling the ERP. Otherwise the row is marked posting,
        and the document is looked up by its external reference first whenever the ledger
        cannot vouch that it is new: a row left posting or error, or a ``retrying`` attempt
        (the row's write may be what was lost). Only a fresh key creates without a look-up.
        Then the row is marked posted with the ERP reference and ``totals(doc)``.

        ``build`` makes the document (it may refuse: a parked order); ``look_up`` and
        ``create`` are the client's calls; ``guard`` wraps them (it classifies errors), and
        whatever escapes it is recorded on the row before it propagates."""
        row = self.get(key)
        if known := booked_ref(row):
            return Booking(known, PostedTotals.model_validate(row.totals or {}))
        may_exist = row is not None or retrying
        try:
            async with guard():
                doc = build()
                await self.write(key, DocumentState.POSTING, order_number=order_number,
                                 count_attempt=True)
                found = await look_up(doc) if may_exist else None
                ref = (found.model_copy(update={"created": False}) if found is not None
                       else await create(doc))
        except Exception as exc:
            await self.write(key, DocumentState.ERROR, order_number=order_number,
                             error=str(exc)[:1000])
            raise
        booked = totals(doc)
        await self.write(key, DocumentState.POSTED, order_number=order_number,
                         erp_ref=ref.model_dump(mode="json"), totals=booked.model_dump(mode="json"))
        return Booking(ref, booked, retried=may_exist)
