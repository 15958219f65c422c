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
REFUND_PAYMENT = activity_name(OrderActivities.post_refund_payment)
RECORD = activity_name(OrderActivities.record_order_state)
PARKING = "MappingMissing"
assert PARKING in PARKING_KINDS


def refusal(message: str) -> ApplicationError:
    return ApplicationError(message, type=PARKING, non_retryable=True)


async def start(client: Client, task_queue: str, event: str = "created", *,
                idle_timeout_seconds: float = 60, conn: str | None = None) -> WorkflowHandle:
    """Signal-with-start, as the receiver and the poll do; a fresh connection per test unless
    ``conn`` names one (a later event of the same order: a new run once the last completed)."""
    conn = conn or f"wf-{uuid.uuid4().hex[:8]}"
    wf_id = await signal_order(client, conn, "1001", OrderEvent(kind=event),
                               task_queue=task_queue, idle_timeout_seconds=idle_timeout_seconds)
    return client.get_workflow_handle_for(OrderSync.run, wf_id)


def connection_of(handle: WorkflowHandle) -> str:
    return handle.id.split("/")[1]


async def completed(handle: WorkflowHandle) -> OrderSyncState:
    result = await asyncio.wait_for(handle.result(), 15)
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    return result


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


async def test_booked_order_completes_with_its_state(temporal, stubs, order_worker):
    """Everything the order knows is booked in one pass (customer, invoice, receipt, once
    each): the run completes at once, returning what it booked; Running means in flight,
    parked or retrying, never "posted and idle"."""
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        result = await completed(await start(client, tq))
    assert (result.state, result.passes) == ("posted", 1)
    assert result.invoice.number == "INV-1001" and result.receipts["P1"].number == "RC-P1"
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT]
    assert stubs.booked(OrderActivities.fetch_order) == ["1001"]
    assert stubs.booked(OrderActivities.load_order_state) == ["1001"]
    assert recorded_states(stubs) == ["posted"]


async def test_a_later_event_starts_a_run_that_finds_the_ledger(temporal, stubs, order_worker):
    """After completion, the next event (signal-with-start) starts a new run: it rebuilds its
    state from the ledger and posts only what is new, here a second capture and a refund (with
    its cash-back), never the invoice or the first receipt again."""
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        first = await start(client, tq)
        await completed(first)
        first_run = (await first.describe()).run_id
        stubs.order = store_order(payments=("P1", "P2"), refunds=("R1",))
        second = await start(client, tq, "updated", conn=connection_of(first))
        result = await completed(second)
        assert (await second.describe()).run_id != first_run
    assert not stubs.repeats()  # the new run asked the ledger, not the posts
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, RECEIPT, CREDIT_MEMO, REFUND_PAYMENT]
    assert stubs.booked(OrderActivities.post_receipt) == ["P1>INV-1001", "P2>INV-1001"]
    assert stubs.booked(OrderActivities.post_refund_payment) == ["R1>CM-R1"]
    assert result.refund_payments["R1"].number == "RP-R1" and result.passes == 1
    assert sorted(result.receipts) == ["P1", "P2"] and result.invoice.number == "INV-1001"


async def test_signal_arriving_while_completing_gets_its_pass(temporal, stubs, order_worker):
    """An event that arrives while the run records its final state is not lost: the run looks
    at the order again before it completes."""
    stubs.hold[RECORD] = asyncio.Event()
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        await eventually(lambda: asyncio.sleep(0, RECORD in stubs.held), timeout=15,
                         interval=0.05)
        stubs.order = store_order(refunds=("R1",))
        await signal(handle, "refunded")
        stubs.hold[RECORD].set()
        result = await completed(handle)
    # The event joins this run (no second run), which looks at the order again; had the
    # server refused a completion for it, the ledger would answer for what was booked.
    assert list(result.credit_memos) == ["R1"] and result.refund_payments["R1"]
    assert len(stubs.booked(OrderActivities.fetch_order)) >= 2
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, CREDIT_MEMO, REFUND_PAYMENT]


async def test_continue_as_new_carries_the_booked_state(eager_can_temporal, stubs, order_worker):
    """A parked order waits for events; with enough of them the server suggests
    continue-as-new (EAGER_CAN_EVENTS): the next run starts from the carried state, so it
    re-posts nothing and keeps counting passes; the handle's result follows the run chain."""
    stubs.refuse[RECEIPT] = refusal("payment method 'stripe' has no ERP payment method")
    client = eager_can_temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq, idle_timeout_seconds=3)
        first_run = (await handle.describe()).run_id
        await state_when(handle, lambda s: s.passes == 1)
        for passes in range(2, 30):
            await signal(handle, "replay")
            # The query reaches the newest run: after continue-as-new, the successor's answer.
            await state_when(handle, lambda s: s.passes >= passes)
            if (await handle.describe()).run_id != first_run:
                break
        else:
            pytest.fail("the server never suggested continue-as-new")
        await state_when(handle, lambda s: s.passes >= passes + 1)  # the successor's own pass
        del stubs.refuse[RECEIPT]
        await signal(handle, "replay")
        result = await completed(handle)  # follows runs
        old = await client.get_workflow_handle(handle.id, run_id=first_run).describe()
    assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert (result.state, result.invoice.number) == ("posted", "INV-1001")
    assert list(result.receipts) == ["P1"]
    assert stubs.booked(OrderActivities.post_invoice) == ["1001"]  # never posted twice
    assert stubs.booked(OrderActivities.post_receipt) == ["P1>INV-1001"]
    assert stubs.booked(OrderActivities.load_order_state) == ["1001"]  # carried, not reloaded


async def test_parked_step_posts_after_a_replay_signal(temporal, stubs, order_worker):
    """A refusal of a parking kind parks the order with its resolution message (the workflow
    stays open; the receipt and refund behind the invoice wait, and the message says so); a
    replay event after the fix posts them."""
    message = "SKU MUG has no item: Resolution: map SKU MUG to an Acumatica InventoryID"
    stubs.refuse[INVOICE] = refusal(message)
    stubs.order = store_order(refunds=("R1",))
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        parked = await state_when(handle, lambda s: s.state == "parked")
        assert parked.message == (f"invoice: {message} — waiting behind it: "
                                  f"receipt P1, credit memo R1")
        assert parked.invoice is None
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert stubs.names() == [CUSTOMER]  # the refused invoice, and nothing behind it
        del stubs.refuse[INVOICE]  # the mapping is added
        await signal(handle, "replay")
        posted = await completed(handle)
    assert posted.invoice.number == "INV-1001" and posted.passes == 2
    assert stubs.booked(OrderActivities.post_invoice) == ["1001"]
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, CREDIT_MEMO, REFUND_PAYMENT]
    assert recorded_states(stubs) == ["parked", "posted"]


async def test_parked_receipt_does_not_block_a_refund(temporal, stubs, order_worker):
    """A receipt that parks (a currency without a cash account) stops only itself: the
    refund's credit memo and cash-back are booked, and the parked message names the receipt."""
    message = "no cash account in CHF: Resolution: add a CHF cash account"
    stubs.refuse[RECEIPT] = refusal(message)
    stubs.order = store_order(refunds=("R1",))
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        parked = await state_when(handle, lambda s: s.state == "parked")
        assert parked.message == f"receipt P1: {message}" and "P1" not in parked.receipts
        assert parked.credit_memos["R1"].number == "CM-R1"
        assert parked.refund_payments["R1"].number == "RP-R1"
        del stubs.refuse[RECEIPT]
        await signal(handle, "replay")
        done = await completed(handle)
    assert stubs.names() == [CUSTOMER, INVOICE, CREDIT_MEMO, REFUND_PAYMENT, RECEIPT]
    assert done.state == "posted" and done.receipts["P1"].number == "RC-P1"


async def test_parked_credit_memo_names_its_cash_back_and_other_parked_steps(
        temporal, stubs, order_worker):
    """Two parked steps and one waiting: the message lists them all."""
    stubs.refuse[RECEIPT] = refusal("no CHF cash account")
    stubs.refuse[CREDIT_MEMO] = refusal("tax rate CH-VAT has no ERP tax id")
    stubs.order = store_order(refunds=("R1",))
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        parked = await state_when(handle, lambda s: s.state == "parked")
    assert parked.message == ("receipt P1: no CHF cash account; credit memo R1: tax rate "
                              "CH-VAT has no ERP tax id — waiting behind it: cash-back of refund R1")


async def test_paid_then_cancelled_is_booked_and_needs_attention(temporal, stubs, order_worker):
    """Cancelled in the store after the payment was captured, with nothing refunded: the sale
    and its payment are booked all the same, and the order is shown as needing attention."""
    stubs.order = store_order(status="cancelled")
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        result = await completed(await start(client, tq))
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT]
    assert result.state == "needs_attention"
    assert "24.00 EUR of the payment was kept" in result.message
    assert "Resolution: refund the buyer in the store" in result.message


async def test_paid_then_cancelled_and_refunded_is_posted(temporal, stubs, order_worker):
    """Cancelled and fully refunded (two refunds of 12.00): invoice, receipt, a credit memo and
    its cash-back per refund; nothing needs attention."""
    stubs.order = store_order(status="cancelled", refunds=("R1", "R2"))
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        result = await completed(await start(client, tq))
    assert result.state == "posted"
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, CREDIT_MEMO, REFUND_PAYMENT,
                             CREDIT_MEMO, REFUND_PAYMENT]


async def test_cancelled_before_payment_books_nothing(temporal, stubs, order_worker):
    stubs.order = store_order(paid=False, status="cancelled", payments=())
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        result = await completed(await start(client, tq))
    assert result.state == "not_billable" and stubs.names() == []


async def test_zero_total_books_the_invoice_and_no_receipt(temporal, stubs, order_worker):
    stubs.order = store_order(total="0.00")
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        result = await completed(await start(client, tq))
    assert stubs.names() == [CUSTOMER, INVOICE]
    assert result.state == "posted" and result.receipts == {"P1": None}


async def test_refund_before_the_payment(temporal, stubs, order_worker):
    """A refund the store records before any captured payment: the invoice and the credit memo
    are booked; the payment, captured later, is booked once in a later run."""
    stubs.order = store_order(paid=False, payments=(), refunds=("R1",))
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        first = await start(client, tq)
        await completed(first)
        assert stubs.names() == [CUSTOMER, INVOICE, CREDIT_MEMO, REFUND_PAYMENT]
        stubs.order = store_order(refunds=("R1",))
        result = await completed(await start(client, tq, "updated", conn=connection_of(first)))
    assert stubs.names() == [CUSTOMER, INVOICE, CREDIT_MEMO, REFUND_PAYMENT, RECEIPT]
    assert result.state == "posted"


async def test_refund_before_the_payment_is_paid_back_from_the_receipt(temporal, stubs,
                                                                        order_worker):
    """The refund's memo settled the unpaid invoice, so its cash-back found nothing to pay back;
    the payment comes in the same run: once its receipt is booked, the cash-back is tried again
    against that receipt (whose unapplied balance the refund left), and booked once."""
    stubs.refunded_before_payment = True
    stubs.order = store_order(paid=False, payments=(), refunds=("R1",))
    stubs.hold[RECORD] = asyncio.Event()
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        await eventually(lambda: asyncio.sleep(0, RECORD in stubs.held), timeout=15,
                         interval=0.05)
        assert stubs.names() == [CUSTOMER, INVOICE, CREDIT_MEMO]  # the cash-back: nothing back
        stubs.order = store_order(refunds=("R1",))
        await signal(handle, "updated")
        stubs.hold[RECORD].set()
        result = await completed(handle)
    assert stubs.names() == [CUSTOMER, INVOICE, CREDIT_MEMO, RECEIPT, REFUND_PAYMENT]
    assert stubs.booked(OrderActivities.post_refund_payment) == ["R1>CM-R1", "R1>RC-P1"]
    assert result.state == "posted" and result.refund_payments["R1"].number == "RP-R1"


async def test_refund_before_the_payment_needs_attention_where_paid_back_by_hand(
        temporal, stubs, order_worker):
    """Where the ERP's API books no cash-back against a receipt, the order needs attention with
    the step's message once the receipt is booked, in that run and every later one (the
    cash-back stays unbooked, so each run asks the ERP again)."""
    stubs.refunded_before_payment = True
    stubs.receipt_refund_by_hand = "5.00 EUR of receipt RC-P1 is unapplied. Resolution: refund it"
    stubs.order = store_order(paid=False, payments=(), refunds=("R1",))
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        first = await start(client, tq)
        assert (await completed(first)).state == "posted"
        stubs.order = store_order(refunds=("R1",))
        paid = await completed(await start(client, tq, "updated", conn=connection_of(first)))
        again = await completed(await start(client, tq, "replay", conn=connection_of(first)))
    assert (paid.state, paid.message) == ("needs_attention", stubs.receipt_refund_by_hand)
    assert (again.state, again.message) == ("needs_attention", stubs.receipt_refund_by_hand)
    assert "R1" not in again.refund_payments
    assert stubs.names() == [CUSTOMER, INVOICE, CREDIT_MEMO, RECEIPT]  # nothing booked twice
    assert recorded_states(stubs) == ["posted", "needs_attention", "needs_attention"]


async def test_refund_event_before_the_invoice(temporal, stubs, order_worker):
    """An order first seen unpaid completes awaiting payment, posting nothing; the refund
    event starts a new run whose fetch finds it paid and refunded: invoice, then its receipt,
    then the credit memo against that invoice and its cash-back."""
    stubs.order = store_order(paid=False, status="pending", payments=())
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        first = await start(client, tq)
        waiting = await completed(first)
        assert waiting.state == "awaiting_payment" and stubs.names() == []
        stubs.order = store_order(refunds=("R1",))
        done = await completed(await start(client, tq, "refunded", conn=connection_of(first)))
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, CREDIT_MEMO, REFUND_PAYMENT]
    assert stubs.booked(OrderActivities.post_credit_memo) == ["R1>INV-1001"]
    assert done.credit_memos["R1"].number == "CM-R1" and done.invoice.number == "INV-1001"
    assert recorded_states(stubs) == ["awaiting_payment", "posted"]


async def test_order_changed_under_a_post_is_decided_again(temporal, stubs, order_worker):
    """A post refuses a snapshot the store no longer has (ORDER_CHANGED): the workflow fetches
    again and decides from the new order, booking the invoice once."""
    stubs.hold[CUSTOMER] = asyncio.Event()
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        await eventually(lambda: asyncio.sleep(0, CUSTOMER in stubs.held), timeout=15,
                         interval=0.05)
        stubs.order = store_order(refunds=("R1",))
        stubs.hold[CUSTOMER].set()
        result = await completed(handle)
    assert result.passes == 2 and len(stubs.booked(OrderActivities.fetch_order)) == 2
    assert stubs.names() == [CUSTOMER, INVOICE, RECEIPT, CREDIT_MEMO, REFUND_PAYMENT]


async def test_cancel_while_parked_closes_cancelled_and_records_nothing(temporal, stubs,
                                                                        order_worker):
    """Cancelled while waiting parked (where an open order spends its life), the workflow ends
    CANCELED; the booked state stands and nothing more is recorded or posted."""
    stubs.refuse[RECEIPT] = refusal("no cash account")
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        await state_when(handle, lambda s: s.state == "parked")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), 15)
        assert isinstance(err.value.cause, CancelledError)
        desc = await handle.describe()
        final = await handle.query(OrderSync.state)  # a closed run still answers, by replay
    assert desc.status == WorkflowExecutionStatus.CANCELED
    assert desc.typed_search_attributes.get(SA_STATE) == "parked"
    assert (final.state, final.invoice.number) == ("parked", "INV-1001")
    assert stubs.names() == [CUSTOMER, INVOICE]
    assert recorded_states(stubs) == ["parked"]


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


async def test_a_failed_order_carries_a_one_line_summary_and_no_stack(temporal, stubs,
                                                                      order_worker):
    """A refusal that is not the order's to fix fails the workflow. What history shows in the
    clear is one line naming the kind of error, at every level of the failure, and no Python
    stack; the message itself is encrypted, and decodes for whoever holds the key."""
    stubs.refuse[INVOICE] = ApplicationError("the Acumatica endpoint 9.9 is not served",
                                             type="ConfigurationError", non_retryable=True)
    client = temporal.client
    async with order_worker(client, stubs) as tq:
        handle = await start(client, tq)
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), 15)
        history = await handle.fetch_history()
    assert "the Acumatica endpoint 9.9 is not served" in str(err.value.cause)  # decoded
    [closed] = [e for e in history.events
                if e.HasField("workflow_execution_failed_event_attributes")]
    failure, levels = closed.workflow_execution_failed_event_attributes.failure, 0
    while failure.ByteSize():
        levels += 1
        assert failure.stack_trace == "" and "\n" not in failure.message
        assert "9.9" not in failure.message and "details encrypted" in failure.message
        failure = failure.cause
    assert levels >= 2
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
