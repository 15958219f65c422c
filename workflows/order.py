"""OrderSync: one entity workflow per store order (id ``order/{connection}/{order}``).

Events for one order are serialized here. Each pass re-fetches the order (a summary: the
lines stay in the store, see activities/snapshots.py) and posts only what is not yet booked:
customer, then invoice; edits after posting as adjustments; each captured payment once as a
receipt; each refund once as a credit memo, then its cash-back. Steps that do not depend on
each other go on when one of them parks; the parked message names every step waiting.

The workflow completes once everything it knows is booked (or there is nothing to book yet);
a later event starts a new run, which first reads what the ledger holds for the order. It
stays open only while a step is parked, waiting for an event (a replay, a mapping change).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.messages import (ORDER_CHANGED, Attention, CustomerInput, LoadStateInput,
                                     OrderEvent, OrderRef, OrderState, OrderStateInput,
                                     OrderSummary, OrderSyncInput, OrderSyncState,
                                     PostAdjustmentInput, PostCreditMemoInput, PostInvoiceInput,
                                     PostReceiptInput, PostRefundPaymentInput)
    from activities.orders import ERP_STEPS, OrderActivities
    from connectors.errors import PARKING_KINDS
    from workflows.search_attributes import SA_CONNECTION, SA_ERP_DOCUMENT, SA_ORDER_NUMBER, SA_STATE
    from workflows import policies

CLOSED_STATUSES = ("cancelled", "failed", "trash")
# An order the store keeps changing under its posts is read again at once a few times, then
# after a pause (a merchant editing it), never in a tight loop.
CHANGES_BEFORE_PAUSE = 3
CHANGE_PAUSE = timedelta(seconds=30)
# How long a settled run waits for one more event before it completes.
SETTLE_WAIT = timedelta(seconds=2)
# States after which the run completes: nothing it knows is left to book.
SETTLED = (OrderState.POSTED, OrderState.NEEDS_ATTENTION, OrderState.AWAITING_PAYMENT,
           OrderState.NOT_BILLABLE)


def _cancelled(err: BaseException) -> bool:
    return any(isinstance(e, CancelledError) for e in (err, getattr(err, "cause", None)))


def _application_error(err: BaseException) -> ApplicationError | None:
    """The activity's own error: a local activity's failure arrives unwrapped."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause if isinstance(cause, ApplicationError) else None


def _kind(err: BaseException) -> str | None:
    cause = _application_error(err)
    return cause.type if cause else None


def order_workflow_id(connection_id: str, order_id: str) -> str:
    return f"order/{connection_id}/{order_id}"


class _Parked(Exception):
    """A step's refusal of a parking kind, raised by :meth:`OrderSync._erp_step`."""


def _parked_alone() -> contextlib.suppress:
    """Around a step nothing else depends on: its parking is recorded, the pass goes on."""
    return contextlib.suppress(_Parked)


@workflow.defn(name="OrderSync")
class OrderSync:
    def __init__(self) -> None:
        self._pending: list[OrderEvent] = []
        self._state = OrderSyncState()
        self._erp_queue: str | None = None
        self._loaded = False
        self._parked: list[str] = []  # this pass's parked steps, with their messages
        self._waiting: list[str] = []  # steps this pass could not try: what they wait for
        self._attention: list[str] = []  # manual steps this pass found in the ERP, with amounts
        self._modified_at: datetime | None = None  # the store's, of the snapshot decided from
        self._recorded: tuple | None = None  # what the ledger's order row last received
        self._changes_in_a_row = 0  # passes the store's edits overtook (ORDER_CHANGED)

    @workflow.signal(name="event")
    def event(self, event: OrderEvent) -> None:
        self._pending.append(event)
        self._erp_queue = event.erp_task_queue  # the newest event knows the connection's setting

    async def _erp_step(self, step: Callable[..., Awaitable[Any]], arg: object, *,
                        what: str = "") -> Any:
        """One ERP step (``what`` names it in a parked message). With a licensed quota it
        queues on the connection's ERP task queue, where the server paces it and shows the
        backlog. Without one, its first attempt runs as a local activity inside this workflow
        task (no activity task, no extra workflow task); if it fails, the step goes to an
        activity with the full retry policy, which operators see pending in the UI and which
        retries or refuses as it always has. Either way the step's ledger row makes a second
        attempt look the document up before creating it. Only ERP_STEPS go here: the quota
        queue's worker registers exactly those.

        A refusal of a parking kind parks this step alone (:class:`_Parked`): the caller goes
        on with the steps that do not depend on it."""
        if step not in ERP_STEPS:
            raise TypeError(f"{step.__qualname__} is not one of activities.orders.ERP_STEPS")
        try:
            if self._erp_queue is None:
                try:
                    return await workflow.execute_local_activity_method(
                        step, arg, **policies.ERP_FIRST_TRY)
                except FailureError as err:
                    if _cancelled(err) or _kind(err) == ORDER_CHANGED:
                        raise
            return await workflow.execute_activity_method(step, arg, **policies.ERP_WRITE,
                                                          task_queue=self._erp_queue)
        except (ActivityError, ApplicationError) as err:
            cause = _application_error(err)
            if cause is not None and cause.type in PARKING_KINDS:
                self._parked.append(f"{what}: {cause.message}")
                raise _Parked from err
            raise

    @workflow.query(name="state")
    def state(self) -> OrderSyncState:
        return self._state

    @workflow.run
    async def run(self, inp: OrderSyncInput) -> OrderSyncState:
        if inp.state is not None:
            self._state, self._loaded = inp.state, True
        started_with = workflow.info().typed_search_attributes.get(SA_CONNECTION)
        if started_with != inp.connection_id:  # signal-with-start sets it; other starts may not
            workflow.upsert_search_attributes([SA_CONNECTION.value_set(inp.connection_id)])
        ref = OrderRef(connection_id=inp.connection_id, order_id=inp.order_id)
        while True:
            self._pending.clear()  # this pass re-reads the order, so it covers them all
            # Each pass records the order's state at least once: an event may come from a
            # connection store that lost this order's row (restored, or moved unmigrated).
            self._recorded = None
            await self._sync(ref)
            self._state.passes += 1
            if self._pending:  # an event, or the order changed under a post: look again
                if self._changes_in_a_row >= CHANGES_BEFORE_PAUSE:  # edited while being read
                    await workflow.sleep(CHANGE_PAUSE)
                continue
            if self._state.state in SETTLED:
                # Events often come in pairs (a webhook's created and updated): a moment's wait
                # lets one join this run, and puts the pass's steps in history before the run
                # completes (a completion the server refuses for a new event would run them
                # again). Then complete, unless an event arrived meanwhile.
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(lambda: bool(self._pending),
                                                  timeout=SETTLE_WAIT)
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._pending:
                    return self._state
                continue
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp.model_copy(update={"state": self._state}))
            try:
                await workflow.wait_condition(lambda: bool(self._pending),
                                              timeout=timedelta(seconds=inp.idle_timeout_seconds))
            except asyncio.TimeoutError:
                return self._state

    async def _sync(self, ref: OrderRef) -> None:
        st = self._state
        self._parked, self._waiting, self._attention = [], [], []
        try:
            # Local activities: no activity task, no extra workflow task.
            order = await workflow.execute_local_activity_method(
                OrderActivities.fetch_order, ref, **policies.STORE_READ_LOCAL)
            self._modified_at = order.modified_at
            if order.number != st.order_number:
                st.order_number = order.number
                workflow.upsert_search_attributes([SA_ORDER_NUMBER.value_set(order.number)])
            if not self._loaded:
                await self._load(ref, order)
            if st.invoice is None and not self._billable(order):
                await self._set(ref, OrderState.NOT_BILLABLE if order.status in CLOSED_STATUSES
                                else OrderState.AWAITING_PAYMENT, f"store status {order.status}")
                return
            await self._book(ref, order)
            self._changes_in_a_row = 0
            if self._parked:
                await self._set(ref, OrderState.PARKED, self._parked_message())
            elif self._attention:
                await self._set(ref, OrderState.NEEDS_ATTENTION, "; ".join(self._attention))
            elif (kept := order.captured - order.refunded) > 0 and order.status in CLOSED_STATUSES:
                await self._set(ref, OrderState.NEEDS_ATTENTION, (
                    f"{order.status} in the store, but {kept} {order.currency} of the payment "
                    f"was kept (not refunded): the sale and its payment are booked. Resolution: "
                    f"refund the buyer in the store (the refund is booked as a credit memo), "
                    f"or re-open the order if the sale stands"))
            else:
                await self._set(ref, OrderState.POSTED, self._summary())
        except (ActivityError, ApplicationError) as err:
            cause = _application_error(err)
            if cause is not None and cause.type == ORDER_CHANGED:
                self._changes_in_a_row += 1
                self._pending.append(OrderEvent(kind="changed", source="workflow"))
                return
            if cause is not None and cause.type in PARKING_KINDS:  # the store read refused
                await self._set(ref, OrderState.PARKED, cause.message)
                return
            await self._set(ref, OrderState.FAILED, str(cause or err))
            raise ApplicationError(f"order {st.order_number or ref.order_id}: {cause or err}",
                                   type=getattr(cause, "type", None), non_retryable=True) from err

    @staticmethod
    def _billable(order: OrderSummary) -> bool:
        """The store took money (or paid some back): the sale is booked, whatever the store's
        status says now — a cancelled order keeps its captured payment until it is refunded."""
        return order.paid or bool(order.payments) or bool(order.refunds)

    async def _load(self, ref: OrderRef, order: OrderSummary) -> None:
        """A new run: start from what the ledger holds for the order."""
        booked = await workflow.execute_local_activity_method(
            OrderActivities.load_order_state,
            LoadStateInput(connection_id=ref.connection_id, order_id=ref.order_id,
                           customer=order.customer,
                           payment_ids=[p.store_id for p in order.payments],
                           refund_ids=[r.store_id for r in order.refunds]),
            **policies.LEDGER)
        self._state = booked.model_copy(update={
            "order_number": self._state.order_number, "state": self._state.state,
            "message": self._state.message, "passes": self._state.passes})
        self._loaded = True

    async def _book(self, ref: OrderRef, order: OrderSummary) -> None:
        """Every step not yet booked. The invoice comes first (everything applies to it);
        receipts come before credit memos, so a refund meets a paid invoice as it did in the
        store; a refund's cash-back follows its credit memo. A refund whose cash-back found
        nothing to pay back (its memo settled the unpaid invoice) tries again after a receipt
        is booked: the receipt then holds that much unapplied. A parked step stops only the
        steps that depend on it."""
        st, conn, snap = self._state, ref.connection_id, order.snapshot
        try:
            if not st.customer_key:
                customer = await self._erp_step(
                    OrderActivities.upsert_customer,
                    CustomerInput(connection_id=conn, order_id=order.store_id,
                                  order_number=order.number, customer=order.customer),
                    what="customer")
                st.customer_key = customer.number
            if st.invoice is None:
                await self._post_invoice(ref, order)
            else:
                await self._post_adjustment(ref, order)
        except _Parked:
            self._waiting += self._unbooked(order)
            return
        paid = False  # a receipt booked in this pass
        for payment in order.payments:
            if payment.store_id in st.receipts:
                continue
            if payment.amount == 0:  # nothing to book: no 0.00 receipt (no ERP releases one)
                st.receipts[payment.store_id] = None
                continue
            with _parked_alone():
                result = await self._erp_step(
                    OrderActivities.post_receipt,
                    PostReceiptInput(connection_id=conn, snapshot=snap,
                                     payment_id=payment.store_id, invoice=st.invoice,
                                     customer_key=st.customer_key),
                    what=f"receipt {payment.store_id}")
                st.receipts[payment.store_id] = result.ref if result else None
                paid = paid or result is not None
        for refund in order.refunds:
            if refund.store_id not in st.credit_memos:
                try:
                    result = await self._erp_step(
                        OrderActivities.post_credit_memo,
                        PostCreditMemoInput(connection_id=conn, snapshot=snap,
                                            refund_id=refund.store_id, invoice=st.invoice,
                                            customer_key=st.customer_key),
                        what=f"credit memo {refund.store_id}")
                    st.credit_memos[refund.store_id] = result.ref
                except _Parked:
                    self._waiting.append(f"cash-back of refund {refund.store_id}")
                    continue
            if refund.store_id in st.refund_payments and not (
                    paid and st.refund_payments[refund.store_id] is None):
                continue
            with _parked_alone():
                result = await self._erp_step(
                    OrderActivities.post_refund_payment,
                    PostRefundPaymentInput(connection_id=conn, snapshot=snap,
                                           refund_id=refund.store_id,
                                           credit_memo=st.credit_memos[refund.store_id],
                                           customer_key=st.customer_key,
                                           receipts=[r for r in st.receipts.values() if r]),
                    what=f"cash-back of refund {refund.store_id}")
                if isinstance(result, Attention):  # left unbooked: each pass looks again
                    self._attention.append(result.message)
                else:
                    st.refund_payments[refund.store_id] = result.ref if result else None

    def _unbooked(self, order: OrderSummary) -> list[str]:
        """What waits behind the invoice: every receipt and refund not yet booked."""
        st = self._state
        waiting = [f"receipt {p.store_id}" for p in order.payments
                   if p.store_id not in st.receipts and p.amount != 0]
        waiting += [f"credit memo {r.store_id}" for r in order.refunds
                    if r.store_id not in st.credit_memos]
        return waiting

    def _parked_message(self) -> str:
        """Every parked step with its message, and what waits behind them."""
        message = "; ".join(self._parked)
        if self._waiting:
            message += f" — waiting behind it: {', '.join(self._waiting)}"
        return message

    async def _post_invoice(self, ref: OrderRef, order: OrderSummary) -> None:
        st = self._state
        result = await self._erp_step(
            OrderActivities.post_invoice,
            PostInvoiceInput(connection_id=ref.connection_id, snapshot=order.snapshot,
                             customer_key=st.customer_key),
            what="invoice")
        st.invoice, st.posted = result.ref, result.totals
        workflow.upsert_search_attributes([SA_ERP_DOCUMENT.value_set(result.ref.label)])

    async def _post_adjustment(self, ref: OrderRef, order: OrderSummary) -> None:
        """An edit after posting, booked explicitly (the activity answers None when the order
        still adds up to what is posted)."""
        st = self._state
        seq = len(st.adjustments) + 1
        result = await self._erp_step(
            OrderActivities.post_adjustment,
            PostAdjustmentInput(connection_id=ref.connection_id, snapshot=order.snapshot,
                                posted=st.posted, invoice=st.invoice,
                                customer_key=st.customer_key, seq=seq),
            what=f"adjustment {seq}")
        if result is not None:
            st.adjustments.append(result.ref)
            st.posted = st.posted.plus(result.totals)

    def _summary(self) -> str:
        st = self._state
        parts = [st.invoice.label] if st.invoice else []
        booked = [r for r in st.receipts.values() if r is not None]
        parts += [f"{len(booked)} receipt(s)"] if booked else []
        parts += [f"{len(st.credit_memos)} credit memo(s)"] if st.credit_memos else []
        cash_back = [r for r in st.refund_payments.values() if r is not None]
        parts += [f"{len(cash_back)} refund payment(s)"] if cash_back else []
        parts += [f"{len(st.adjustments)} adjustment(s)"] if st.adjustments else []
        return ", ".join(parts)

    async def _set(self, ref: OrderRef, state: str, message: str = "") -> None:
        st = self._state
        if (state, message, self._modified_at) == self._recorded:
            return
        if st.state != state:
            workflow.upsert_search_attributes([SA_STATE.value_set(state)])
        st.state, st.message = state, message
        self._recorded = (state, message, self._modified_at)
        await workflow.execute_local_activity_method(
            OrderActivities.record_order_state,
            OrderStateInput(connection_id=ref.connection_id, order_id=ref.order_id,
                            order_number=st.order_number, state=state, message=message,
                            store_modified_at=self._modified_at),
            **policies.LEDGER)
