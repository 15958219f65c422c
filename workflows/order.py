"""OrderSync: one entity workflow per store order (id ``order/{connection}/{order}``).

Events for one order are serialized here. Each pass re-fetches the order and posts only
what is not yet booked: customer, then invoice; edits after posting as adjustments; each
captured payment once as a receipt; each refund once as a credit memo. An order that cannot be posted as it is waits "parked" with
a resolution message until an event (a replay, a mapping change, a new webhook) arrives.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.messages import (CustomerInput, OrderEvent, OrderRef, OrderStateInput,
                                     OrderSyncInput, OrderSyncState, PostAdjustmentInput,
                                     PostCreditMemoInput, PostInvoiceInput, PostReceiptInput)
    from activities.messages import OrderState
    from activities.orders import ERP_STEPS, OrderActivities
    from connectors.errors import PARKING_KINDS
    from connectors.documents import receipt_due
    from connectors.model import Order
    from workflows.search_attributes import SA_CONNECTION, SA_ERP_DOCUMENT, SA_ORDER_NUMBER, SA_STATE
    from workflows import policies

CLOSED_STATUSES = ("cancelled", "failed", "trash")


def _cancelled(err: BaseException) -> bool:
    return any(isinstance(e, CancelledError) for e in (err, getattr(err, "cause", None)))


def order_workflow_id(connection_id: str, order_id: str) -> str:
    return f"order/{connection_id}/{order_id}"


@workflow.defn(name="OrderSync")
class OrderSync:
    def __init__(self) -> None:
        self._pending: list[OrderEvent] = []
        self._state = OrderSyncState()
        self._erp_queue: str | None = None

    @workflow.signal(name="event")
    def event(self, event: OrderEvent) -> None:
        self._pending.append(event)
        self._erp_queue = event.erp_task_queue  # the newest event knows the connection's setting

    async def _erp_step(self, step: Callable[..., Awaitable[Any]], arg: object) -> Any:
        """One ERP step. With a licensed quota it queues on the connection's ERP task queue,
        where the server paces it and shows the backlog. Without one, its first attempt runs
        as a local activity inside this workflow task (no activity task, no extra workflow
        task); if it fails, the step goes to an activity with the full retry policy, which
        operators see pending in the UI and which retries or refuses as it always has. Either
        way the step's ledger row makes a second attempt look the document up before
        creating it. Only ERP_STEPS go here: the quota queue's worker registers exactly those."""
        if step not in ERP_STEPS:
            raise TypeError(f"{step.__qualname__} is not one of activities.orders.ERP_STEPS")
        if self._erp_queue is None:
            try:
                return await workflow.execute_local_activity_method(
                    step, arg, **policies.ERP_FIRST_TRY)
            except FailureError as err:
                if _cancelled(err):
                    raise
        return await workflow.execute_activity_method(step, arg, **policies.ERP_WRITE,
                                                      task_queue=self._erp_queue)

    @workflow.query(name="state")
    def state(self) -> OrderSyncState:
        return self._state

    @workflow.run
    async def run(self, inp: OrderSyncInput) -> OrderSyncState:
        if inp.state is not None:
            self._state = inp.state
        started_with = workflow.info().typed_search_attributes.get(SA_CONNECTION)
        if started_with != inp.connection_id:  # signal-with-start sets it; other starts may not
            workflow.upsert_search_attributes([SA_CONNECTION.value_set(inp.connection_id)])
        ref = OrderRef(connection_id=inp.connection_id, order_id=inp.order_id)
        while True:
            self._pending.clear()  # this pass re-reads the order, so it covers them all
            await self._sync(ref)
            self._state.passes += 1
            if workflow.info().is_continue_as_new_suggested() and not self._pending:
                workflow.continue_as_new(inp.model_copy(update={"state": self._state}))
            try:
                await workflow.wait_condition(lambda: bool(self._pending),
                                              timeout=timedelta(seconds=inp.idle_timeout_seconds))
            except asyncio.TimeoutError:
                return self._state

    async def _sync(self, ref: OrderRef) -> None:
        st = self._state
        try:
            # A local activity: no activity task, no extra workflow task.
            order = await workflow.execute_local_activity_method(
                OrderActivities.fetch_order, ref, **policies.STORE_READ_LOCAL)
            if order.number != st.order_number:
                st.order_number = order.number
                workflow.upsert_search_attributes([SA_ORDER_NUMBER.value_set(order.number)])
            if st.invoice is None:
                if not order.is_paid or order.status in CLOSED_STATUSES:
                    await self._set(ref, OrderState.AWAITING_PAYMENT
                                    if order.status not in CLOSED_STATUSES
                                    else OrderState.NOT_BILLABLE, f"store status {order.status}")
                    return
                await self._post_invoice(ref, order)
            else:
                await self._post_adjustment(ref, order)
            await self._post_receipts(ref, order)
            for refund in order.refunds:
                if refund.store_id not in st.credit_memos:
                    result = await self._erp_step(
                        OrderActivities.post_credit_memo,
                        PostCreditMemoInput(connection_id=ref.connection_id, order=order,
                                            refund_id=refund.store_id, invoice=st.invoice,
                                            customer_key=st.customer_key))
                    st.credit_memos[refund.store_id] = result.ref
            await self._set(ref, OrderState.POSTED, self._summary())
        except (ActivityError, ApplicationError) as err:
            # A local activity's failure arrives as the activity's own error, unwrapped.
            cause = err.cause if isinstance(err, ActivityError) else err
            if isinstance(cause, ApplicationError) and cause.type in PARKING_KINDS:
                await self._set(ref, OrderState.PARKED, cause.message)
                return
            await self._set(ref, OrderState.FAILED, str(cause or err))
            raise ApplicationError(f"order {st.order_number or ref.order_id}: {cause or err}",
                                   type=getattr(cause, "type", None), non_retryable=True) from err

    async def _post_invoice(self, ref: OrderRef, order: Order) -> None:
        st = self._state
        customer = await self._erp_step(
            OrderActivities.upsert_customer,
            CustomerInput(connection_id=ref.connection_id, order_id=order.store_id,
                          order_number=order.number, customer=order.customer))
        st.customer_key = customer.number
        result = await self._erp_step(
            OrderActivities.post_invoice,
            PostInvoiceInput(connection_id=ref.connection_id, order=order,
                             customer_key=customer.number))
        st.invoice, st.posted = result.ref, result.totals
        workflow.upsert_search_attributes([SA_ERP_DOCUMENT.value_set(result.ref.label)])

    async def _post_receipts(self, ref: OrderRef, order: Order) -> None:
        """Each captured payment once, as a receipt applied to the invoice (before credit
        memos, so a refund meets a paid invoice as it did in the store)."""
        st = self._state
        for payment in order.payments:
            if payment.store_id in st.receipts:
                continue
            if not receipt_due(order, payment):  # zero amount: nothing to book, no 0.00 receipt
                st.receipts[payment.store_id] = None
                continue
            result = await self._erp_step(
                OrderActivities.post_receipt,
                PostReceiptInput(connection_id=ref.connection_id, order=order,
                                 payment_id=payment.store_id, invoice=st.invoice,
                                 customer_key=st.customer_key))
            st.receipts[payment.store_id] = result.ref if result else None

    async def _post_adjustment(self, ref: OrderRef, order: Order) -> None:
        st = self._state
        result = await self._erp_step(
            OrderActivities.post_adjustment,
            PostAdjustmentInput(connection_id=ref.connection_id, order=order, posted=st.posted,
                                invoice=st.invoice, customer_key=st.customer_key,
                                seq=len(st.adjustments) + 1))
        if result is not None:
            st.adjustments.append(result.ref)
            st.posted = st.posted.plus(result.totals)

    def _summary(self) -> str:
        st = self._state
        parts = [st.invoice.label] if st.invoice else []
        booked = [r for r in st.receipts.values() if r is not None]
        parts += [f"{len(booked)} receipt(s)"] if booked else []
        parts += [f"{len(st.credit_memos)} credit memo(s)"] if st.credit_memos else []
        parts += [f"{len(st.adjustments)} adjustment(s)"] if st.adjustments else []
        return ", ".join(parts)

    async def _set(self, ref: OrderRef, state: str, message: str = "") -> None:
        st = self._state
        if (st.state, st.message) == (state, message):
            return
        st.state, st.message = state, message
        workflow.upsert_search_attributes([SA_STATE.value_set(state)])
        await workflow.execute_local_activity_method(
            OrderActivities.record_order_state,
            OrderStateInput(connection_id=ref.connection_id, order_id=ref.order_id,
                            order_number=st.order_number, state=state, message=message),
            **policies.LEDGER)
