"""Stub order activities for workflow tests: registered under the real activity names (read
from OrderActivities' definitions, so a renamed activity breaks these tests, not production),
answering from a scripted store order and recording every call they receive."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.messages import (ORDER_CHANGED, Attention, CustomerInput, LoadStateInput,
                                 OrderRef, OrderSnapshot, OrderStateInput, OrderSummary,
                                 OrderSyncState,
                                 PostAdjustmentInput, PostCreditMemoInput, PostInvoiceInput,
                                 PostReceiptInput, PostRefundPaymentInput, PostResult)
from activities.orders import OrderActivities, activity_name
from activities.snapshots import order_digest
from connectors.documents import PostedTotals
from connectors.model import Customer, ErpDocumentRef, Order, OrderLine, Payment, Refund

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)


def store_order(number: str = "1001", *, paid: bool = True, status: str = "processing",
                payments: tuple[str, ...] = ("P1",), refunds: tuple[str, ...] = (),
                total: str = "24.00") -> Order:
    """A one-line order (24.00 EUR); ``payments``/``refunds``: their store ids (each payment
    for the total, each refund 12.00)."""
    total = Decimal(total)
    return Order(
        store="woocommerce", store_id=number, number=number, status=status, currency="EUR",
        created_at=T0, modified_at=T0, paid_at=T0 if paid else None,
        customer=Customer(store_id="7", email="wf-buyer@example.com", first_name="Ada"),
        lines=[OrderLine(line_id="L1", sku="MUG", quantity=Decimal(2), subtotal=total,
                         total=total)],
        total=total,
        payments=[Payment(store_id=p, amount=total, paid_at=T0) for p in payments],
        refunds=[Refund(store_id=r, created_at=T0, amount=Decimal("12.00")) for r in refunds])


@dataclass
class Call:
    name: str
    key: str  # what the call was about: the order, refund or payment id, or the state
    ok: bool = True
    repeat: bool = False  # answered from the ledger: the document was booked before
    noop: bool = False  # nothing to book (an order that still adds up: no adjustment)


@dataclass
class StubOrderActivities:
    """``order``: what the store answers now (tests change it between events); ``refuse``: an
    activity name → the error it raises while set; ``refuse_once``: the same, for its next
    call only; ``hold``: an activity name → an event the call waits for (to catch the
    workflow mid-step; ``held`` names the calls waiting)."""

    order: Order = field(default_factory=store_order)
    refuse: dict[str, BaseException] = field(default_factory=dict)
    refuse_once: dict[str, BaseException] = field(default_factory=dict)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    held: set[str] = field(default_factory=set)  # the activities waiting in ``hold`` now
    # What the stubs booked, as the ledger would keep it: a new run's load_order_state reads it.
    ledger: OrderSyncState = field(default_factory=OrderSyncState)
    # Refunds booked before the payment: their memo settled the invoice, so a cash-back finds
    # nothing to pay back until a receipt is booked, and then pays back the receipt's unapplied
    # balance — or, with ``receipt_refund_by_hand`` set, answers that manual step (Attention).
    refunded_before_payment: bool = False
    receipt_refund_by_hand: str = ""

    async def _enter(self, fn, key: str) -> None:
        name = activity_name(fn)
        if error := self.refuse_once.pop(name, None) or self.refuse.get(name):
            self.calls.append(Call(name, key, ok=False))
            raise error
        if name in self.hold:
            self.held.add(name)
            await self.hold[name].wait()
            self.held.discard(name)
        self.calls.append(Call(name, key))

    def booked(self, name_fn) -> list[str]:
        """The keys of the successful calls of one activity, in order."""
        name = activity_name(name_fn)
        return [c.key for c in self.calls if c.name == name and c.ok and not c.repeat]

    def names(self) -> list[str]:
        """The successful calls, in order, without the fetches and state records."""
        skip = {activity_name(OrderActivities.fetch_order),
                activity_name(OrderActivities.load_order_state),
                activity_name(OrderActivities.record_order_state)}
        return [c.name for c in self.calls
                if c.ok and not c.repeat and not c.noop and c.name not in skip]

    def repeats(self) -> list[str]:
        """Posts the ledger answered (a workflow task re-run after the server refused its
        completion re-runs its local activities; the real posts find their ledger rows)."""
        return [c.name for c in self.calls if c.repeat]

    def _known(self, fn, key: str, ref: ErpDocumentRef | None) -> PostResult | None:
        if ref is None:
            return None
        self.calls.append(Call(activity_name(fn), key, repeat=True))
        return PostResult(ref=ref, totals=PostedTotals())

    def _ref(self, kind: str, number: str) -> ErpDocumentRef:
        return ErpDocumentRef(system="stub", kind=kind, doc_type=kind.title(), number=number)

    def _current(self, snap: OrderSnapshot) -> Order:
        """The order a post books, refused as the real posts do once the store changed it."""
        if snap.digest != order_digest(self.order):
            raise ApplicationError("order changed", type=ORDER_CHANGED, non_retryable=True)
        return self.order

    @activity.defn(name=activity_name(OrderActivities.fetch_order))
    async def fetch_order(self, ref: OrderRef) -> OrderSummary:
        await self._enter(OrderActivities.fetch_order, ref.order_id)
        return OrderSummary.of(self.order, order_digest(self.order))

    @activity.defn(name=activity_name(OrderActivities.load_order_state))
    async def load_order_state(self, inp: LoadStateInput) -> OrderSyncState:
        await self._enter(OrderActivities.load_order_state, inp.order_id)
        return self.ledger.model_copy(deep=True)

    @activity.defn(name=activity_name(OrderActivities.upsert_customer))
    async def upsert_customer(self, inp: CustomerInput) -> ErpDocumentRef:
        ref = self._ref("customer", f"C{inp.customer.store_id}")
        if self.ledger.customer_key:
            self.calls.append(Call(activity_name(OrderActivities.upsert_customer), inp.order_id,
                                   repeat=True))
            return ref
        await self._enter(OrderActivities.upsert_customer, inp.order_id)
        self.ledger.customer_key = ref.number
        return ref

    @activity.defn(name=activity_name(OrderActivities.post_invoice))
    async def post_invoice(self, inp: PostInvoiceInput) -> PostResult:
        order = self._current(inp.snapshot)
        if known := self._known(OrderActivities.post_invoice, order.store_id, self.ledger.invoice):
            return known.model_copy(update={"totals": self.ledger.posted})
        await self._enter(OrderActivities.post_invoice, order.store_id)
        result = PostResult(ref=self._ref("invoice", f"INV-{order.number}"),
                            totals=PostedTotals(net=order.total, total=order.total))
        self.ledger.invoice, self.ledger.posted = result.ref, result.totals
        return result

    @activity.defn(name=activity_name(OrderActivities.post_credit_memo))
    async def post_credit_memo(self, inp: PostCreditMemoInput) -> PostResult:
        self._current(inp.snapshot)
        key = f"{inp.refund_id}>{inp.invoice.number}"
        if known := self._known(OrderActivities.post_credit_memo, key,
                                self.ledger.credit_memos.get(inp.refund_id)):
            return known
        await self._enter(OrderActivities.post_credit_memo, key)
        result = PostResult(ref=self._ref("credit_memo", f"CM-{inp.refund_id}"),
                            totals=PostedTotals())
        self.ledger.credit_memos[inp.refund_id] = result.ref
        return result

    @activity.defn(name=activity_name(OrderActivities.post_receipt))
    async def post_receipt(self, inp: PostReceiptInput) -> PostResult | None:
        self._current(inp.snapshot)
        key = f"{inp.payment_id}>{inp.invoice.number}"
        if known := self._known(OrderActivities.post_receipt, key,
                                self.ledger.receipts.get(inp.payment_id)):
            return known
        await self._enter(OrderActivities.post_receipt, key)
        result = PostResult(ref=self._ref("receipt", f"RC-{inp.payment_id}"), totals=PostedTotals())
        self.ledger.receipts[inp.payment_id] = result.ref
        return result

    @activity.defn(name=activity_name(OrderActivities.post_refund_payment))
    async def post_refund_payment(self, inp: PostRefundPaymentInput
                                  ) -> PostResult | Attention | None:
        self._current(inp.snapshot)
        against = inp.receipts[0] if self.refunded_before_payment and inp.receipts else None
        key = f"{inp.refund_id}>{(against or inp.credit_memo).number}"
        if known := self._known(OrderActivities.post_refund_payment, key,
                                self.ledger.refund_payments.get(inp.refund_id)):
            return known
        await self._enter(OrderActivities.post_refund_payment, key)
        if self.refunded_before_payment and against is None:
            self.calls[-1].noop = True
            return None  # the memo settled the invoice: nothing went back yet
        if against is not None and self.receipt_refund_by_hand:
            self.calls[-1].noop = True
            return Attention(message=self.receipt_refund_by_hand)
        result = PostResult(ref=self._ref("receipt", f"RP-{inp.refund_id}"), totals=PostedTotals())
        self.ledger.refund_payments[inp.refund_id] = result.ref
        return result

    @activity.defn(name=activity_name(OrderActivities.post_adjustment))
    async def post_adjustment(self, inp: PostAdjustmentInput) -> PostResult | None:
        self._current(inp.snapshot)
        await self._enter(OrderActivities.post_adjustment, str(inp.seq))
        self.calls[-1].noop = True
        return None  # the stub order is never edited after posting

    @activity.defn(name=activity_name(OrderActivities.record_order_state))
    async def record_order_state(self, inp: OrderStateInput) -> None:
        await self._enter(OrderActivities.record_order_state, inp.state)

    def all(self) -> list:
        return [self.fetch_order, self.load_order_state, self.upsert_customer, self.post_invoice,
                self.post_credit_memo, self.post_receipt, self.post_refund_payment,
                self.post_adjustment, self.record_order_state]
