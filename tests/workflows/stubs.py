"""Stub order activities for workflow tests: registered under the real activity names (read
from OrderActivities' definitions, so a renamed activity breaks these tests, not production),
answering from a scripted store order and recording every call they receive."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from temporalio import activity

from activities.messages import (CustomerInput, OrderRef, OrderStateInput, PostAdjustmentInput,
                                 PostCreditMemoInput, PostInvoiceInput, PostReceiptInput,
                                 PostResult)
from activities.orders import OrderActivities, activity_name
from connectors.documents import PostedTotals
from connectors.model import Customer, ErpDocumentRef, Order, OrderLine, Payment, Refund

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)


def store_order(number: str = "1001", *, paid: bool = True, status: str = "processing",
                payments: tuple[str, ...] = ("P1",), refunds: tuple[str, ...] = ()) -> Order:
    """A one-line order of 24.00 EUR; ``payments``/``refunds``: their store ids."""
    total = Decimal("24.00")
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


@dataclass
class StubOrderActivities:
    """``order``: what the store answers now (tests change it between events); ``refuse``: an
    activity name → the error it raises while set; ``refuse_once``: the same, for its next
    call only; ``hold``: an activity name → an event the call waits for (to catch the
    workflow mid-step)."""

    order: Order = field(default_factory=store_order)
    refuse: dict[str, BaseException] = field(default_factory=dict)
    refuse_once: dict[str, BaseException] = field(default_factory=dict)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    async def _enter(self, fn, key: str) -> None:
        name = activity_name(fn)
        if error := self.refuse_once.pop(name, None) or self.refuse.get(name):
            self.calls.append(Call(name, key, ok=False))
            raise error
        if name in self.hold:
            await self.hold[name].wait()
        self.calls.append(Call(name, key))

    def booked(self, name_fn) -> list[str]:
        """The keys of the successful calls of one activity, in order."""
        name = activity_name(name_fn)
        return [c.key for c in self.calls if c.name == name and c.ok]

    def names(self) -> list[str]:
        """The successful calls, in order, without the fetches and state records."""
        skip = {activity_name(OrderActivities.fetch_order),
                activity_name(OrderActivities.record_order_state)}
        return [c.name for c in self.calls if c.ok and c.name not in skip]

    def _ref(self, kind: str, number: str) -> ErpDocumentRef:
        return ErpDocumentRef(system="stub", kind=kind, doc_type=kind.title(), number=number)

    @activity.defn(name=activity_name(OrderActivities.fetch_order))
    async def fetch_order(self, ref: OrderRef) -> Order:
        await self._enter(OrderActivities.fetch_order, ref.order_id)
        return self.order

    @activity.defn(name=activity_name(OrderActivities.upsert_customer))
    async def upsert_customer(self, inp: CustomerInput) -> ErpDocumentRef:
        await self._enter(OrderActivities.upsert_customer, inp.order_id)
        return self._ref("customer", f"C{inp.customer.store_id}")

    @activity.defn(name=activity_name(OrderActivities.post_invoice))
    async def post_invoice(self, inp: PostInvoiceInput) -> PostResult:
        await self._enter(OrderActivities.post_invoice, inp.order.store_id)
        return PostResult(ref=self._ref("invoice", f"INV-{inp.order.number}"),
                          totals=PostedTotals(net=inp.order.total, total=inp.order.total))

    @activity.defn(name=activity_name(OrderActivities.post_credit_memo))
    async def post_credit_memo(self, inp: PostCreditMemoInput) -> PostResult:
        await self._enter(OrderActivities.post_credit_memo, f"{inp.refund_id}>{inp.invoice.number}")
        return PostResult(ref=self._ref("credit_memo", f"CM-{inp.refund_id}"),
                          totals=PostedTotals())

    @activity.defn(name=activity_name(OrderActivities.post_receipt))
    async def post_receipt(self, inp: PostReceiptInput) -> PostResult | None:
        await self._enter(OrderActivities.post_receipt, f"{inp.payment_id}>{inp.invoice.number}")
        return PostResult(ref=self._ref("receipt", f"RC-{inp.payment_id}"), totals=PostedTotals())

    @activity.defn(name=activity_name(OrderActivities.post_adjustment))
    async def post_adjustment(self, inp: PostAdjustmentInput) -> PostResult | None:
        await self._enter(OrderActivities.post_adjustment, str(inp.seq))
        return None  # the stub order is never edited after posting

    @activity.defn(name=activity_name(OrderActivities.record_order_state))
    async def record_order_state(self, inp: OrderStateInput) -> None:
        await self._enter(OrderActivities.record_order_state, inp.state)

    def all(self) -> list:
        return [self.fetch_order, self.upsert_customer, self.post_invoice, self.post_credit_memo,
                self.post_receipt, self.post_adjustment, self.record_order_state]
