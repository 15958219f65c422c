"""OrderSync's behaviours one by one: a worker with stub activities on a fresh task queue,
assertions on the workflow's ``state`` query and on the calls the stubs received."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.messages import OrderEvent, OrderSyncState
from activities.orders import OrderActivities, activity_name
from connectors.errors import PARKING_KINDS
from starter.dispatch import signal_order
from tests.integration.conftest import eventually
from tests.workflows.stubs import store_order
from workflows.order import OrderSync
from workflows.search_attributes import SA_STATE

INVOICE = activity_name(OrderActivities.post_invoice)
CUSTOMER = activity_name(OrderActivities.upsert_customer)
RECEIPT = activity_name(OrderActivities.post_receipt)
CREDIT_MEMO = activity_name(OrderActivities.post_credit_memo)


async def start(client: Client, task_queue: str, event: str = "created", *,
                idle_timeout_seconds: float = 60) -> WorkflowHandle:
    """Signal-with-start, as the receiver and the poll do; a fresh connection per test."""
    conn = f"wf-{uuid.uuid4().hex[:8]}"
    wf_id = await signal_order(client, conn, "1001", OrderEvent(kind=event),
                               task_queue=task_queue, idle_timeout_seconds=idle_timeout_seconds)
    return client.get_workflow_handle_for(OrderSync.run, wf_id)


async def signal(handle: WorkflowHandle, kind: str) -> None:
    await handle.signal(OrderSync.event, OrderEvent(kind=kind))


async def state_when(handle: WorkflowHandle, check, timeout: float = 15) -> OrderSyncState:
    """The ``state`` query's answer once ``check(state)`` holds."""
    async def ready():
        st = await handle.query(OrderSync.state)
        return st if check(st) else None

    return await eventually(ready, timeout=timeout, interval=0.1)


def recorded_states(stubs) -> list[str]:
    return stubs.booked(OrderActivities.record_order_state)


async def test_idle_order_closes_with_its_state(temporal, stubs, order_worker):
    """After ``idle_timeout_seconds`` without an event the workflow completes, returning what it
    booked; one pass posted customer, invoice and receipt once each."""
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq, idle_timeout_seconds=1)
        result = await asyncio.wait_for(handle.result(), 15)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert (result.state, result.passes) == ("posted", 1)
    assert result.invoice.number == "INV-1001" and result.receipts["P1"].number == "RC-P1"
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT]
    assert stubs.booked(OrderActivities.fetch_order) == ["1001"]
    assert recorded_states(stubs) == ["posted"]


async def test_continue_as_new_carries_the_booked_state(eager_can_temporal, stubs, order_worker):
    """Events until the server suggests continue-as-new (EAGER_CAN_EVENTS): the next run starts
    from the carried state, so it re-posts nothing and keeps counting passes; the handle's
    result follows the run chain to the last run."""
    client = eager_can_temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq, idle_timeout_seconds=3)
        first_run = (await handle.describe()).run_id
        await state_when(handle, lambda s: s.passes == 1)
        for passes in range(2, 30):
            await signal(handle, "updated")
            # The query reaches the newest run: after continue-as-new, the successor's answer.
            await state_when(handle, lambda s: s.passes >= passes)
            if (await handle.describe()).run_id != first_run:
                break
        else:
            pytest.fail("the server never suggested continue-as-new")
        result = await asyncio.wait_for(handle.result(), 15)  # follows runs
        old = await client.get_workflow_handle(handle.id, run_id=first_run).describe()
        last = await handle.describe()
    assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert last.status == WorkflowExecutionStatus.COMPLETED and last.run_id != first_run
    # The first run's passes plus the successor's own (it re-reads the order once on start).
    assert result.passes == passes + 1
    assert (result.state, result.invoice.number) == ("posted", "INV-1001")
    assert list(result.receipts) == ["P1"]
    assert stubs.booked(OrderActivities.post_invoice) == ["1001"]  # never posted twice
    assert stubs.booked(OrderActivities.post_receipt) == ["P1>INV-1001"]
    assert len(stubs.booked(OrderActivities.fetch_order)) == passes + 1


async def test_parked_step_posts_after_a_replay_signal(temporal, stubs, order_worker):
    """A refusal of a parking kind parks the order with its resolution message (the workflow
    stays open, nothing behind the invoice is posted); a replay event after the fix posts it."""
    kind = "MappingMissing"
    assert kind in PARKING_KINDS
    message = "SKU MUG has no item: Resolution: map SKU MUG to an Acumatica InventoryID"
    stubs.refuse[INVOICE] = ApplicationError(message, type=kind, non_retryable=True)
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        parked = await state_when(handle, lambda s: s.state == "parked")
        assert parked.message == message and parked.invoice is None
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert stubs.names() == [CUSTOMER]  # the refused invoice, and no receipt behind it
        del stubs.refuse[INVOICE]  # the mapping is added
        await signal(handle, "replay")
        posted = await state_when(handle, lambda s: s.state == "posted")
    assert posted.invoice.number == "INV-1001" and posted.passes == 2
    assert stubs.booked(OrderActivities.post_invoice) == ["1001"]
    assert stubs.names() == [CUSTOMER, CUSTOMER, INVOICE, RECEIPT]
    assert recorded_states(stubs) == ["parked", "posted"]


async def test_refund_event_before_the_invoice(temporal, stubs, order_worker):
    """An order first seen unpaid waits, posting nothing; the refund event's re-fetch finds it
    paid and refunded: invoice, then its receipt, then the credit memo against that invoice."""
    stubs.order = store_order(paid=False, status="pending", payments=())
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        waiting = await state_when(handle, lambda s: s.state == "awaiting_payment")
        assert waiting.invoice is None and stubs.names() == []
        stubs.order = store_order(refunds=("R1",))
        await signal(handle, "refunded")
        done = await state_when(handle, lambda s: s.state == "posted")
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, CREDIT_MEMO]
    assert stubs.booked(OrderActivities.post_credit_memo) == ["R1>INV-1001"]
    assert done.credit_memos["R1"].number == "CM-R1" and done.invoice.number == "INV-1001"
    assert recorded_states(stubs) == ["awaiting_payment", "posted"]


async def test_cancel_while_waiting_closes_cancelled_and_records_nothing(temporal, stubs,
                                                                         order_worker):
    """Cancelled between events (where an order spends its life), the workflow ends CANCELED;
    the booked state stands and nothing more is recorded or posted."""
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        await state_when(handle, lambda s: s.state == "posted")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), 15)
        assert isinstance(err.value.cause, CancelledError)
        desc = await handle.describe()
        final = await handle.query(OrderSync.state)  # a closed run still answers, by replay
    assert desc.status == WorkflowExecutionStatus.CANCELED
    assert desc.typed_search_attributes.get(SA_STATE) == "posted"
    assert (final.state, final.invoice.number) == ("posted", "INV-1001")
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT]
    assert recorded_states(stubs) == ["posted"]


async def test_cancel_mid_step_abandons_it_and_records_failed(temporal, stubs, order_worker):
    """Cancelled while an ERP step is in flight (here the invoice's activity, after its local
    first try failed), the workflow abandons the step: an answer arriving later is refused by
    the server and never reaches the workflow's state (the activity's own ledger row is what
    would know of it). What the workflow records today is a failure: ledger state and
    MlState "failed" with the cancellation as message, and the run FAILED (not CANCELED),
    since ``_sync`` handles the cancelled activity like any other failure."""
    stubs.refuse_once[INVOICE] = ApplicationError("ERP timed out", type="Unavailable")
    stubs.hold[INVOICE] = asyncio.Event()  # the activity attempt waits
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)

        async def invoice_in_flight():
            desc = await handle.describe()
            return desc.raw_description.pending_activities

        await eventually(invoice_in_flight, timeout=15, interval=0.1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), 15)
        desc = await handle.describe()
        stubs.hold[INVOICE].set()  # the attempt ignored the cancel (it does not heartbeat)

        async def late_answer():
            return stubs.booked(OrderActivities.post_invoice)

        await eventually(late_answer)
        final = await handle.query(OrderSync.state)
    assert "cancelled" in str(err.value.cause).lower()
    assert desc.status == WorkflowExecutionStatus.FAILED
    assert desc.typed_search_attributes.get(SA_STATE) == "failed"
    assert (final.state, final.invoice) == ("failed", None)
    assert "cancelled" in final.message.lower()
    assert stubs.names() == [CUSTOMER, INVOICE]  # the late attempt; no receipt after it
    assert recorded_states(stubs) == ["failed"]
