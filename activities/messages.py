"""Inputs and outputs of activities: what workflows and activities exchange (and history
records, encrypted). Pure pydantic, importable from workflow code."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from connections.ledger import OrderState  # re-exported: workflows may not import connections
from connectors.documents import PostedTotals
from connectors.model import ZERO, Customer, ErpDocumentRef, Order


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


class MoneyMove(BaseModel):
    """A captured payment or a refund, as OrderSync decides about it: its store id and amount."""

    store_id: str
    amount: Decimal


class OrderSummary(BaseModel):
    """What OrderSync decides from, instead of the whole order: a 10,000-line order would be a
    history event of megabytes, copied into every post. The lines stay in the store; each post
    re-reads the order and refuses (ORDER_CHANGED) unless it still has ``digest``."""

    store_id: str
    number: str
    status: str
    currency: str
    total: Decimal
    created_at: datetime
    paid_at: datetime | None = None  # None: not paid
    modified_at: datetime
    customer: Customer  # the buyer the customer step matches (encrypted in history)
    payments: list[MoneyMove] = Field(default_factory=list)
    refunds: list[MoneyMove] = Field(default_factory=list)
    digest: str  # of the full order this summary was made from

    @classmethod
    def of(cls, order: Order, digest: str) -> OrderSummary:
        return cls(store_id=order.store_id, number=order.number, status=order.status,
                   currency=order.currency, total=order.total,
                   created_at=order.created_at, paid_at=order.paid_at,
                   modified_at=order.modified_at, customer=order.customer, digest=digest,
                   payments=[MoneyMove(store_id=p.store_id, amount=p.amount)
                             for p in order.payments],
                   refunds=[MoneyMove(store_id=r.store_id, amount=r.amount)
                            for r in order.refunds])

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    @property
    def captured(self) -> Decimal:
        """The money the store took: its captured payments, or the total of a paid order
        whose payments the store does not list."""
        if self.payments:
            return sum((p.amount for p in self.payments), ZERO)
        return self.total if self.paid else ZERO

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), ZERO)

    @property
    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot(order_id=self.store_id, number=self.number, digest=self.digest,
                             created_at=self.created_at, paid_at=self.paid_at)


class OrderSnapshot(BaseModel):
    """Which order a post books, and which version of it (the summary's digest)."""

    order_id: str
    number: str
    digest: str
    created_at: datetime | None = None  # when the order was placed and paid in the store:
    paid_at: datetime | None = None  # the posting latency metric starts there


# The type of the refusal a post raises when the store's order is no longer the snapshot the
# workflow decided from: the workflow then fetches again and decides anew.
ORDER_CHANGED = "OrderChanged"


class CustomerInput(BaseModel):
    connection_id: str
    order_id: str
    order_number: str
    customer: Customer


class PostInvoiceInput(BaseModel):
    connection_id: str
    snapshot: OrderSnapshot
    customer_key: str


class PostCreditMemoInput(BaseModel):
    connection_id: str
    snapshot: OrderSnapshot
    refund_id: str
    invoice: ErpDocumentRef
    customer_key: str


class PostReceiptInput(BaseModel):
    connection_id: str
    snapshot: OrderSnapshot
    payment_id: str
    invoice: ErpDocumentRef
    customer_key: str


class PostRefundPaymentInput(BaseModel):
    """The cash-back side of a refund: money paid back to the buyer, applied to the refund's
    credit memo so the customer's balance ends at zero."""

    connection_id: str
    snapshot: OrderSnapshot
    refund_id: str
    credit_memo: ErpDocumentRef
    customer_key: str
    # The order's booked receipts: a refund booked before the payment settled the invoice, so
    # its cash-back pays back what it left unapplied on a receipt.
    receipts: list[ErpDocumentRef] = Field(default_factory=list)


class Attention(BaseModel):
    """A step the ERP's API does not book: the order needs attention; ``message`` names the
    amount and the manual step in that ERP."""

    message: str


class PostAdjustmentInput(BaseModel):
    connection_id: str
    snapshot: OrderSnapshot
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
    # The store's modification time of the snapshot this state was decided from.
    store_modified_at: datetime | None = None


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
    # The cash-back of each refund, applied to its credit memo (or to the receipt a refund
    # before the payment left unapplied); None: nothing to pay back yet, or the ERP or
    # connection does not book it as a document of its own.
    refund_payments: dict[str, ErpDocumentRef | None] = Field(default_factory=dict)
    adjustments: list[ErpDocumentRef] = Field(default_factory=list)
    passes: int = 0


class LoadStateInput(BaseModel):
    """A new run of an order's workflow asks the ledger what is booked: the payment and
    refund ids it knows of, and the buyer (whose ledger key names the ERP customer)."""

    connection_id: str
    order_id: str
    customer: Customer
    payment_ids: list[str] = Field(default_factory=list)
    refund_ids: list[str] = Field(default_factory=list)


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
