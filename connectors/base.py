"""The two contracts. A store connector and an ERP connector speak canonical models only.

Every connector module (``connectors/<system>.py``) also exposes ``SYSTEM`` and
``open_connector(settings, credentials, *, tokens, transport=None, on_settings_change=None)``
(see :class:`ConnectorFactory`), which is how the worker builds one from a stored connection.
A store module adds the receiver's three pure functions of :class:`WebhookReader`.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from connectors.auth import TokenStore
from connectors.documents import (CustomerMatch, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument)
from connectors.model import Customer, DocumentKind, ErpDocumentRef, ItemChange, Order, Shipment


class Webhook(BaseModel):
    id: str
    topic: str
    delivery_url: str
    status: str  # "active", "paused", "disabled"


class WebhookEvent(BaseModel):
    """What a delivery announces. Only the resource id is taken from a body: the record
    itself is always re-fetched."""

    topic: str  # the store's own topic, e.g. "order.updated", "store/order/statusUpdated"
    resource: str  # "order", "customer", "product", ...
    event: str  # "created", "updated", "refunded", ...
    resource_id: str
    delivery_id: str = ""
    webhook_id: str = ""


class WebhookReader(Protocol):
    """The receiver's view of a store module (all pure, all on the raw bytes)."""

    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        """A creation/validation ping to answer 200 without a signature."""

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> bool:
        """Constant-time authenticity check with the connection's webhook secret."""

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
        """The event, None for a ping; ValueError with a clear message when malformed."""


class SignatureCheck(Protocol):
    """A delivery's signature computed while its body arrives, so a large body is verified
    without being held. A store module may add ``signature_check(headers, secret, **options)
    -> SignatureCheck`` (same options as its ``verify_webhook``); the receiver then takes
    bodies up to its streaming cap and parses only their skeleton (starter.webhook_body)."""

    def update(self, chunk: bytes) -> None:
        """Feed the next raw bytes of the body, in order."""

    def verify(self) -> bool:
        """After the last chunk: whether the delivery is authentic (constant-time)."""


class ConnectorFactory(Protocol):
    def __call__(self, settings: Mapping[str, Any], credentials: Mapping[str, Any], *,
                 tokens: TokenStore, transport: httpx.AsyncBaseTransport | None = None,
                 on_settings_change: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """``settings``: the connection's non-secret settings of this side; ``credentials``:
        its decrypted secrets; ``tokens``: where OAuth tokens persist (encrypted, shared by
        every worker); ``on_settings_change``: saves what the connector learned about the
        connection (an auth mode, a discovered division) into its settings."""


class CatalogPushResult(BaseModel):
    updated: list[str] = []  # SKUs written (their price or stock differed)
    in_sync: list[str] = []  # SKUs the store already had right (no write spent on them)
    unknown: list[str] = []  # SKUs the store does not have (reported, never created)
    failed: dict[str, str] = {}  # SKU -> store's message
    write_calls: int = 0
    read_calls: int = 0

    def add(self, other: "CatalogPushResult") -> "CatalogPushResult":
        return CatalogPushResult(
            updated=self.updated + other.updated, in_sync=self.in_sync + other.in_sync,
            unknown=self.unknown + other.unknown, failed={**self.failed, **other.failed},
            write_calls=self.write_calls + other.write_calls,
            read_calls=self.read_calls + other.read_calls)


@runtime_checkable
class Storefront(Protocol):
    system: str

    async def get_order(self, order_id: str) -> Order:
        """The full order, refunds included (a webhook body is never trusted as the record)."""

    def iter_orders_modified(self, since: datetime,
                             until: datetime | None = None) -> AsyncIterator[Order]:
        """Every order modified in [since, until), all pages, oldest first."""

    async def push_item_changes(self, changes: list[ItemChange]) -> CatalogPushResult: ...

    # Optional, for pairs that align customer masters (see workflows/customers.py):
    # ``get_customer(id) -> Customer``, ``iter_customers() -> AsyncIterator[Customer]`` and
    # ``update_customer(id, customer) -> Customer`` (the record as saved).

    async def mark_shipped(self, order_id: str, shipment: Shipment) -> None:
        """Show the buyer the order shipped: status completed/shipped, tracking attached.
        Idempotent: marking the same shipment twice changes nothing more."""

    async def list_webhooks(self) -> list[Webhook]: ...

    async def create_webhook(self, topic: str, delivery_url: str, secret: str) -> Webhook: ...

    async def update_webhook(self, webhook_id: str, **fields: str) -> Webhook: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Erp(Protocol):
    system: str

    async def upsert_customer(self, customer: Customer, external_id: str, *,
                              aliases: Sequence[str] = (),
                              match: CustomerMatch = "own") -> ErpDocumentRef:
        """The buyer's ERP customer, idempotently. A customer ml-connector created (proven by
        the ERP's own record: its id or reference derived from ``external_id`` or one of
        ``aliases``, the buyer's other ids) is updated from ``customer``; with ``match``
        "email", else an existing customer with the e-mail (case-insensitively) is returned
        untouched; else one is created under ``external_id``. A customer ml-connector did not
        create is never written to."""

    async def find_document(self, kind: DocumentKind, external_ref: str) -> ErpDocumentRef | None:
        """The document previously posted under ``external_ref``, if the ERP has it."""

    async def create_document(self, doc: ErpDocument) -> ErpDocumentRef:
        """Create without looking up first (callers use :func:`post_document`)."""

    async def create_receipt(self, receipt: ReceiptDocument) -> ErpDocumentRef:
        """Create a cash receipt applied to ``receipt.applies_to`` (or, where the ERP cannot
        apply it through its API, left for its matching with the remittance reference)."""

    async def ping(self) -> dict[str, Any]:
        """A cheap authenticated read that proves the connection works (``connections test``)."""

    def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]: ...

    # Optional: ERPs that book a refund's cash-back expose
    # ``create_refund_payment(doc: RefundPaymentDocument) -> ErpDocumentRef`` (the money paid
    # back, applied to the refund's credit memo), and find it by ``find_document("refund_payment",
    # external_ref)``.
    # Optional: ERPs that confirm shipments expose
    # ``iter_shipments(since) -> AsyncIterator[Shipment]`` (modified after ``since``).
    # Optional, for reconciliation (connectors/reconciliation.py):
    # ``iter_documents(prefix, since: date) -> AsyncIterator[ErpDocumentRef]`` — every invoice,
    # credit memo and receipt booked under an external reference starting with ``prefix`` and
    # dated ``since`` or later (totals positive).
    # Optional, for customer alignment: ``get_customer(external_id) -> Customer | None`` (the
    # ERP's record in canonical form) and, for two-way sync,
    # ``iter_customers_modified(since) -> AsyncIterator[tuple[str, Customer, datetime]]``
    # (external id, record, modified at) of records that carry an external id.

    async def aclose(self) -> None: ...


async def ensure_webhooks(store: Storefront, topics: tuple[str, ...], delivery_url: str,
                          secret: str) -> list[str]:
    """Make the store's hooks for ``delivery_url`` exactly ``topics``, each active: re-enable
    what the store disabled (re-keyed with ``secret``), create what is missing. Returns what
    was repaired ([] when everything was healthy)."""
    ours = [h for h in await store.list_webhooks() if h.delivery_url == delivery_url]
    repairs = []
    for topic in topics:
        hook = next((h for h in ours if h.topic == topic), None)
        if hook is None:
            await store.create_webhook(topic, delivery_url, secret)
            repairs.append(f"created {topic}")
        elif hook.status != "active":
            await store.update_webhook(hook.id, status="active", secret=secret)
            repairs.append(f"re-enabled {topic} (was {hook.status})")
    return repairs


async def post_document(erp: Erp, doc: ErpDocument | ReceiptDocument | RefundPaymentDocument, *,
                        look_up_first: bool = True) -> ErpDocumentRef:
    """Idempotent post: return the document already in the ERP under the same external
    reference (a retry after a lost response), else create it."""
    if look_up_first:
        existing = await erp.find_document(doc.kind, doc.external_ref)
        if existing is not None:
            return existing.model_copy(update={"created": False})
    if isinstance(doc, ReceiptDocument):
        return await erp.create_receipt(doc)
    if isinstance(doc, RefundPaymentDocument):
        return await erp.create_refund_payment(doc)  # type: ignore[attr-defined]
    return await erp.create_document(doc)
