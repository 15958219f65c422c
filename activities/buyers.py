"""One ERP customer per buyer identity, for the order flow and the customer sync alike.

A buyer is booked under every id :func:`connections.ledger.buyer_ids` gives it (a registered
buyer's ``C{id}`` and its e-mail's ``G{hash}``), so whichever comes first — a guest checkout
or a registered buyer with that e-mail — the other finds the same customer. Ledgers written
before are keyed by the same formats, so a buyer booked under ``C{id}`` is still found there.
"""
from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from activities.runtime import customer_lease
from connections.ledger import DocumentState, Ledger, LedgerKey
from connections.store import ConnectionStore
from connectors.model import ErpDocumentRef


def known_buyer(ledger: Ledger, ids: list[str]) -> ErpDocumentRef | None:
    """The customer the ledger books the buyer to, found under its first id that has one."""
    return next((ref for i in ids if (ref := ledger.booked(LedgerKey.customer(i)))), None)


def fully_known(ledger: Ledger, ids: list[str]) -> ErpDocumentRef | None:
    """The buyer's customer when the ledger has it under every id (no lease needed then)."""
    refs = [ledger.booked(LedgerKey.customer(i)) for i in ids]
    return refs[0] if all(refs) else None


async def record_buyer(ledger: Ledger, ids: list[str], ref: ErpDocumentRef) -> None:
    """Book ``ref`` under each of the buyer's ids the ledger does not book yet (an id already
    booked keeps its customer: two customers made for one person before stay as they are)."""
    for i in ids:
        if ledger.booked(LedgerKey.customer(i)) is None:
            await ledger.write(LedgerKey.customer(i), DocumentState.POSTED,
                               erp_ref=ref.model_dump(mode="json"))


def buyer_lease(store: ConnectionStore, connection_id: str,
                ids: list[str]) -> AbstractAsyncContextManager[None]:
    """The one lock of a buyer identity (its e-mail's id), so a guest and a registered buyer
    with one e-mail never create two customers at once."""
    return customer_lease(store, connection_id, ids[-1])
