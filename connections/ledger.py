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
from datetime import datetime, timezone
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
    REFUND_PAYMENT = "refund_payment"  # the cash paid back for a refund, applied to its memo
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
    # Booked, but what the store did needs a person: cancelled while keeping the money.
    NEEDS_ATTENTION = "needs_attention"
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
    def refund_payment(cls, refund_id: str) -> LedgerKey:
        return cls(LedgerKind.REFUND_PAYMENT, refund_id)

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


def buyer_ids(conn: Connection, customer: Customer) -> list[str]:
    """Every external id one buyer is booked under, the buyer's own first: a registered
    buyer's ``C{id}``, then the id of its e-mail (case-insensitive), the one a guest with that
    e-mail has. The last is the buyer's identity: its one lock (a guest and a registered buyer
    with one e-mail are one buyer, so never two customers), and found in the ledger or the ERP
    under either id, a buyer is booked to the customer the other made."""
    own = customer_external_id(conn, customer)
    if customer.store_id is None or not customer.email.strip():
        return [own]
    return [own, customer_external_id(conn, customer.model_copy(update={"store_id": None}))]


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
    updated_at: str  # the worker's clock: when the row was written, never compared with the store's
    store_modified_at: str | None = None  # kind "order": the store's time of the snapshot booked


def nothing_new_since_booked(row: LedgerRow | None, modified_at: datetime) -> bool:
    """The order was posted from a snapshot at least as new as the store's ``modified_at``
    (both the store's own times: no second clock). A row without that time (written before
    it was kept) proves nothing. Caveat: stores keep seconds, so a change within the same
    second as the booked snapshot, and after its fetch, is indistinguishable."""
    if row is None or row.state != OrderState.POSTED or not row.store_modified_at:
        return False
    return _aware(datetime.fromisoformat(row.store_modified_at)) >= _aware(modified_at)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
                    count_attempt: bool = False, store_modified_at: str | None = None) -> None: ...


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
             error: str | None = None, count_attempt: bool = False,
             store_modified_at: datetime | None = None) -> None:
        self.store.ledger_mark(self.connection_id, key.kind, key.store_id, state,
                               order_number=order_number, erp_ref=erp_ref, totals=totals,
                               error=error, count_attempt=count_attempt,
                               store_modified_at=(store_modified_at.isoformat()
                                                  if store_modified_at else None))

    async def write(self, key: LedgerKey, state: DocumentState | OrderState, **fields) -> None:
        """:meth:`mark`, off the event loop."""
        await to_thread(self.mark, key, state, **fields)

    async def post(self, key: LedgerKey, order_number: str, *, build: Callable[[], D],
                   look_up: Callable[[D], Awaitable[ErpDocumentRef | None]],
                   create: Callable[[D], Awaitable[ErpDocumentRef]],
                   totals: Callable[[D], PostedTotals], retrying: bool,
                   vouch_new: Callable[[], Awaitable[bool]] | None = None,
                   guard: Callable[[], AbstractAsyncContextManager] = nullcontext) -> Booking:
        """Book one document exactly once.

        A posted row answers without calling the ERP. Otherwise the row is marked posting,
        and the document is looked up by its external reference first whenever the ledger
        cannot vouch that it is new: a row left posting or error, a ``retrying`` attempt
        (the row's write may be what was lost), or a fresh key that ``vouch_new`` does not
        prove new (the ERP may hold it from before this ledger knew the store: another
        connection, a lost or restored store database; see activities/vouch.py). Only a
        fresh key proven new creates without a look-up. Then the row is marked posted with
        the ERP reference and ``totals(doc)``.

        ``build`` makes the document (it may refuse: a parked order); ``look_up`` and
        ``create`` are the client's calls; ``guard`` wraps them (it classifies errors), and
        whatever escapes it is recorded on the row before it propagates. ``retried`` on the
        answer: an earlier attempt of this ledger had begun (a row, or a retry), so a
        document found by look-up is its own; found without one, it was booked before."""
        row = self.get(key)
        if known := booked_ref(row):
            return Booking(known, PostedTotals.model_validate(row.totals or {}))
        attempted = row is not None or retrying
        try:
            async with guard():
                doc = build()
                look_up_first = attempted or vouch_new is None or not await vouch_new()
                await self.write(key, DocumentState.POSTING, order_number=order_number,
                                 count_attempt=True)
                found = await look_up(doc) if look_up_first else None
                ref = (found.model_copy(update={"created": False}) if found is not None
                       else await create(doc))
        except Exception as exc:
            await self.write(key, DocumentState.ERROR, order_number=order_number,
                             error=str(exc)[:1000])
            raise
        booked = totals(doc)
        await self.write(key, DocumentState.POSTED, order_number=order_number,
                         erp_ref=ref.model_dump(mode="json"), totals=booked.model_dump(mode="json"))
        return Booking(ref, booked, retried=attempted)
