"""Inputs and outputs of activities: what workflows and activities exchange (and history
records, encrypted). Pure pydantic, importable from workflow code."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

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


class OrderStateInput(BaseModel):
    connection_id: str
    order_id: str
    order_number: str = ""
    state: str
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
    state: str = "received"
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
