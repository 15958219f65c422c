"""The two contracts. A store connector and an ERP connector speak canonical models only."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from connectors.documents import ErpDocument
from connectors.model import Customer, DocumentKind, ErpDocumentRef, ItemChange, Order


class Webhook(BaseModel):
    id: str
    topic: str
    delivery_url: str
    status: str  # "active", "paused", "disabled"


class CatalogPushResult(BaseModel):
    updated: list[str] = []  # SKUs written
    unknown: list[str] = []  # SKUs the store does not have (reported, never created)
    failed: dict[str, str] = {}  # SKU -> store's message
    write_calls: int = 0


@runtime_checkable
class Storefront(Protocol):
    system: str

    async def get_order(self, order_id: str) -> Order:
        """The full order, refunds included (a webhook body is never trusted as the record)."""

    def iter_orders_modified(self, since: datetime,
                             until: datetime | None = None) -> AsyncIterator[Order]:
        """Every order modified in [since, until), all pages, oldest first."""

    async def push_item_changes(self, changes: list[ItemChange]) -> CatalogPushResult: ...

    async def list_webhooks(self) -> list[Webhook]: ...

    async def create_webhook(self, topic: str, delivery_url: str, secret: str) -> Webhook: ...

    async def update_webhook(self, webhook_id: str, **fields: str) -> Webhook: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Erp(Protocol):
    system: str

    async def upsert_customer(self, customer: Customer, external_id: str) -> ErpDocumentRef:
        """Match by external id, then e-mail; update the match or create one. Idempotent."""

    async def find_document(self, kind: DocumentKind, external_ref: str) -> ErpDocumentRef | None:
        """The document previously posted under ``external_ref``, if the ERP has it."""

    async def create_document(self, doc: ErpDocument) -> ErpDocumentRef:
        """Create without looking up first (callers use :func:`post_document`)."""

    def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]: ...

    async def aclose(self) -> None: ...


async def post_document(erp: Erp, doc: ErpDocument, *, look_up_first: bool = True) -> ErpDocumentRef:
    """Idempotent post: return the document already in the ERP under the same external
    reference (a retry after a lost response), else create it."""
    if look_up_first:
        existing = await erp.find_document(doc.kind, doc.external_ref)
        if existing is not None:
            return existing.model_copy(update={"created": False})
    return await erp.create_document(doc)
