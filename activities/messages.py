"""Inputs and outputs of activities: what workflows and activities exchange (and history
records, encrypted). Pure pydantic, importable from workflow code."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from connections.ledger import OrderState  # re-exported: workflows may not import connections
from connectors.documents import PostedTotals
from connectors.model import Customer, ErpDocumentRef, Order


class OrderRef(BaseModel):
    connection_id: str
    order_id: str


class OrderEvent(BaseModel):
    """Why an order is looked at again. The record itself is always re-fetched."""

    kind: str  # "created", "updated", "deleted", "poll", "replay", "mapping_changed"
    source: str = ""  # "webhook", "poll", "cli"
    delivery_id: str = ""
    received_at: datetime | None = None
    # The task queue of the connection's ERP calls when they share a licensed quota
    # (see workflows/dispatch.erp_queue); None: the main queue.
    erp_task_queue: str | None = None


class CustomerInput(BaseModel):
    connection_id: str
    order_id: str
    order_number: str
    customer: Customer


class PostInvoiceInput(BaseModel):
    connection_id: str
    order: Order
    customer_key: str


class PostCreditMemoInput(BaseModel):
    connection_id: str
    order: Order
    refund_id: str
    invoice: ErpDocumentRef
    customer_key: str


class PostReceiptInput(BaseModel):
    connection_id: str
    order: Order
    payment_id: str
    invoice: ErpDocumentRef
    customer_key: str


class PostAdjustmentInput(BaseModel):
    connection_id: str
    order: Order
    posted: PostedTotals
    invoice: ErpDocumentRef
    customer_key: str
    seq: int


class PostResult(BaseModel):
    ref: ErpDocumentRef
    totals: PostedTotals
    # An earlier attempt of this post had begun (its ledger row was left posting or error):
    # a document found by look-up is its own, committed before the answer was lost.
    retried: bool = False


class OrderStateInput(BaseModel):
    connection_id: str
    order_id: str
    order_number: str = ""
    state: OrderState
    message: str = ""


class PollInput(BaseModel):
    connection_id: str
    task_queue: str
    overlap_seconds: float = 300
    since: datetime | None = None  # overrides the watermark (backfill)
    until: datetime | None = None


class PollResult(BaseModel):
    orders_seen: int = 0
    handed_over: int = 0
    watermark: datetime | None = None


class OrderSyncState(BaseModel):
    """What one order has booked so far; carried across continue-as-new."""

    order_number: str = ""
    state: OrderState = OrderState.RECEIVED
    message: str = ""
    customer_key: str = ""
    invoice: ErpDocumentRef | None = None
    posted: PostedTotals = Field(default_factory=PostedTotals)
    credit_memos: dict[str, ErpDocumentRef] = Field(default_factory=dict)
    receipts: dict[str, ErpDocumentRef | None] = Field(default_factory=dict)  # None: not booked by choice
    adjustments: list[ErpDocumentRef] = Field(default_factory=list)
    passes: int = 0


class OrderSyncInput(BaseModel):
    connection_id: str
    order_id: str
    idle_timeout_seconds: float = 7 * 24 * 3600
    state: OrderSyncState | None = None


class CatalogInput(BaseModel):
    connection_id: str
    full: bool = False  # the nightly reconciliation: every ERP item compared with the store


class CatalogReport(BaseModel):
    """What one catalog push did; lists are capped so the report stays small in history."""

    changes: int = 0
    updated: int = 0
    in_sync: int = 0
    unknown: list[str] = Field(default_factory=list)  # SKUs the store lacks (first 200)
    unknown_count: int = 0
    failed: dict[str, str] = Field(default_factory=dict)  # first 200
    write_calls: int = 0
    read_calls: int = 0
    watermark: datetime | None = None


class ConnectionInput(BaseModel):
    connection_id: str


class WebhookReport(BaseModel):
    checked: bool = False
    repairs: list[str] = Field(default_factory=list)  # what was down and was fixed
    message: str = ""


class CadenceInput(BaseModel):
    connection_id: str
    polling_mode: bool  # a hook was down: poll at the tighter cadence until it proves healthy
    reason: str = ""


class BackfillProgress(BaseModel):
    position: datetime  # everything modified before this was handed over
    windows_done: int = 0
    orders_seen: int = 0
    handed_over: int = 0  # the rest were already in the ledger: no workflow, no ERP call
    done: bool = False


class BackfillInput(BaseModel):
    connection_id: str
    task_queue: str
    since: datetime
    until: datetime
    window_hours: float = 24
    progress: BackfillProgress | None = None  # carried across continue-as-new


class ShipmentReport(BaseModel):
    supported: bool = True  # False: the ERP (or how the connection posts) has no shipments
    seen: int = 0
    marked: int = 0  # orders shown as shipped in the store by this run
    unknown: list[str] = Field(default_factory=list)  # shipments of orders not from this store
    watermark: datetime | None = None


class CustomerSyncInput(BaseModel):
    connection_id: str
    customer_id: str  # the store's customer id


class CustomerSyncReport(BaseModel):
    seen: int = 0
    to_erp: int = 0  # store changes written to the ERP
    to_store: int = 0  # ERP changes written to the store
    echoes: int = 0  # changes ml-connector itself made, recognised and not sent back
    watermark: datetime | None = None
