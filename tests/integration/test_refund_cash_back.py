"""A refund of a paid order, end to end (WooCommerce store, each ERP, real sockets): the credit
document and the money paid back applied to it, so the customer's balance in the ERP ends at
zero — no credit memo left open (Acumatica), no on-account credit (Oracle), no credit note
outstanding (Exact) — and store and ERP agree to the cent. Driven by OrderSync itself
(receipt, credit memo, then the refund's cash-back). The cash-back books only the credit the
memo still holds: none for a refund before the payment (until the payment's receipt holds the
refund unapplied: then it pays that back), the rest of a refund larger than the invoice's open
balance; a cash-back whose answer was lost is found on retry. And a zero-total order leaves no
unreleased document behind."""
from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import date
from decimal import Decimal

import pytest
from temporalio.testing import ActivityEnvironment

from activities.messages import (Attention, CustomerInput, OrderEvent, OrderRef,
                                 PostCreditMemoInput, PostInvoiceInput, PostReceiptInput,
                                 PostRefundPaymentInput)
from activities.orders import OrderActivities
from connectors.documents import ReceiptDocument
from connectors.model import ErpDocumentRef
from starter.dispatch import signal_order
from starter.sandboxes import ERPS
from tests.integration.conftest import eventually
from tests.integration.helpers import place_order, refund, update_order, wait_order_state
from tests.integration.test_money_edges import place
from workflows.order import order_workflow_id


@pytest.fixture(params=ERPS)
async def shop(request, stack_factory):
    stack = await stack_factory(store_system="woocommerce", erp_system=request.param)
    conn = await stack.add_connection(f"cb-{uuid.uuid4().hex[:8]}")
    return stack, conn


async def balances(stack) -> list[Decimal]:
    """Every customer's open balance as the ERP itself adds it up."""
    if stack.erp_system == "exact_online":
        rows = await stack.control("erp", "/_sandbox/balances")
    else:
        rows = await stack.control("erp", "/_sandbox/customers")
    return [Decimal(str(r["balance"])) for r in rows]


async def test_refund_of_a_paid_order_is_paid_back_and_the_customer_owes_nothing(shop):
    stack, conn = shop
    order = await place_order(stack)
    await wait_order_state(stack, conn.id, order["id"], "posted", timeout=90)
    ref = f"{conn.mappings.document_prefix}{order['id']}"
    back = await refund(stack, order, amount="10.00")
    cash_back_ref = f"{ref}-R{back['id']}-P"

    async def paid_back():  # booked: created, applied and released
        row = stack.store.ledger_get(conn.id, "refund_payment", str(back["id"]))
        return row if row is not None and row.state == "posted" else None

    await eventually(paid_back, timeout=90)
    docs = {d.external_ref: d for d in await stack.erp_documents()
            if d.external_ref.startswith(ref)}
    assert len(docs) == 4, sorted(docs)  # invoice, receipt, credit memo, cash-back: no more
    total = Decimal(order["total"])
    assert docs[ref].amount == total and docs[f"{ref}-R{back['id']}"].amount == Decimal("10.00")
    [receipt] = [d for d in docs.values() if d.kind == "receipt"]
    assert receipt.amount == total
    out = docs[cash_back_ref]
    assert (out.kind, out.amount, out.currency) == ("refund_payment", Decimal("10.00"),
                                                    docs[ref].currency)
    assert all(b == 0 for b in await balances(stack)), await balances(stack)
    memo = docs[f"{ref}-R{back['id']}"].raw
    if "balance" in memo:  # Acumatica and Oracle read out the memo's open credit
        assert Decimal(str(memo["balance"])) == 0, memo
    else:  # Exact: what is still outstanding on the credit note
        assert Decimal(str(memo["open"])) == 0, memo


async def test_zero_total_order_leaves_nothing_unreleased_in_acumatica(stack_factory):
    """A 100% coupon with free shipping: the 0.00 invoice is booked and released, no 0.00
    payment is ever sent (Acumatica would keep it unreleased), and the order is posted."""
    stack = await stack_factory(store_system="woocommerce", erp_system="acumatica")
    conn = await stack.add_connection(f"z-{uuid.uuid4().hex[:8]}")
    await stack.control("woocommerce", "/_sandbox/coupons",
                        [{"code": "FREE100", "discount_type": "percent", "amount": "100",
                          "free_shipping": True}])
    order = await place(stack, currency="USD", items=[("MUG-CER-01", 1)], shipping="0.00",
                        coupon="FREE100")
    assert Decimal(order["total"]) == 0, order["total"]
    await wait_order_state(stack, conn.id, order["id"], "posted", timeout=90)
    docs = await stack.control("erp", "/_sandbox/documents")
    ours = [d for d in docs if str(d["external_ref"]).startswith(
        f"{conn.mappings.document_prefix}{order['id']}")]
    assert [(d["type"], Decimal(str(d["amount"])), d["status"]) for d in ours] == [
        ("Invoice", Decimal(0), "Closed")]
    assert [d for d in docs if d["status"] not in ("Open", "Closed")] == []  # none unreleased


async def settled_after(stack, conn, order_id, kind: str, store_id: str) -> None:
    """``kind``'s ledger row of ``store_id`` posted, then the order's workflow run done."""
    async def posted():
        row = stack.store.ledger_get(conn.id, kind, store_id)
        return row if row is not None and row.state == "posted" else None

    await eventually(posted, timeout=90)
    handle = stack.client.get_workflow_handle(order_workflow_id(conn.id, str(order_id)))
    await asyncio.wait_for(handle.result(), 90)


async def test_refund_before_the_payment_pays_nothing_back_and_parks_nothing(shop):
    """A refund of an order not paid yet: the credit memo settles the open invoice, nothing
    went back to the buyer, so no cash-back is booked (no ERP write, no ledger row) and the
    order is posted, not parked; the customer owes nothing and the books add up."""
    stack, conn = shop
    order = await place_order(stack, paid=False)
    back = await refund(stack, order, amount=order["total"])
    await settled_after(stack, conn, order["id"], "credit_memo", str(back["id"]))
    ref = f"{conn.mappings.document_prefix}{order['id']}"
    docs = {d.external_ref: d for d in await stack.erp_documents()
            if d.external_ref.startswith(ref)}
    total = Decimal(order["total"])
    assert sorted((d.kind, d.amount) for d in docs.values()) == [
        ("credit_memo", total), ("invoice", total)], sorted(docs)
    assert stack.store.ledger_get(conn.id, "refund_payment", str(back["id"])) is None
    row = stack.store.ledger_get(conn.id, "order", str(order["id"]))
    assert row.state == "posted", row.last_error
    assert all(b == 0 for b in await balances(stack)), await balances(stack)


async def test_refund_above_the_open_invoice_balance_pays_back_only_the_rest(shop):
    """An unpaid order refunded 1.00 (no cash-back: the memo settles part of the invoice), on
    which the bookkeeper then booked a part payment by hand leaving 4.00 open, then refunded
    10.00: that memo settles the 4.00 and the cash-back pays back the 6.00 the buyer actually
    got; the customer owes nothing and the books add up to the cent."""
    stack, conn = shop
    order = await place_order(stack, paid=False)
    first = await refund(stack, order, amount="1.00")
    await settled_after(stack, conn, order["id"], "credit_memo", str(first["id"]))
    assert stack.store.ledger_get(conn.id, "refund_payment", str(first["id"])) is None
    invoice = ErpDocumentRef.model_validate(
        stack.store.ledger_get(conn.id, "invoice", str(order["id"])).erp_ref)
    [customer] = stack.store.ledger_rows(conn.id, kind="customer")
    total = Decimal(order["total"])
    await stack.runtime.erp(conn).create_receipt(ReceiptDocument(
        external_ref=f"HAND-{order['id']}", order_number=str(order["id"]),
        store_order_id=str(order["id"]), payment_id="hand", currency=order["currency"],
        date=date.today(), customer_key=customer.erp_ref["number"],
        amount=total - Decimal("5.00"),
        payment_method=conn.mappings.payment_method_for(order["payment_method"]),
        reference="by hand", applies_to=invoice))
    back = await refund(stack, order, amount="10.00")
    await settled_after(stack, conn, order["id"], "refund_payment", str(back["id"]))
    ref = f"{conn.mappings.document_prefix}{order['id']}"
    docs = {d.external_ref: d for d in await stack.erp_documents()
            if d.external_ref.startswith(ref)}
    assert sorted((d.kind, d.amount) for d in docs.values()) == [
        ("credit_memo", Decimal("1.00")), ("credit_memo", Decimal("10.00")), ("invoice", total),
        ("refund_payment", Decimal("6.00"))], sorted(docs)
    memo = docs[f"{ref}-R{back['id']}"].raw
    if "balance" in memo:  # Acumatica and Oracle: the memo's open credit is used up; Exact
        assert Decimal(str(memo["balance"])) == 0, memo  # keeps it outstanding beside the
        # invoice's 4.00 rest (Exact matches neither by itself): they net to zero
    assert stack.store.ledger_get(conn.id, "refund_payment", str(first["id"])) is None
    row = stack.store.ledger_get(conn.id, "order", str(order["id"]))
    assert row.state == "posted", row.last_error
    assert all(b == 0 for b in await balances(stack)), await balances(stack)


async def test_refund_before_the_payment_is_paid_back_from_the_receipt(shop):
    """An unpaid order refunded 5.00 (its memo settles 5.00 of the invoice, nothing went back
    yet), then paid in full: the receipt holds 5.00 unapplied, and the refund's cash-back pays
    that back (Acumatica: a Refund applied to the Payment; Exact: the money paid out, matched
    with the credit note). Invoice, receipt, credit memo and cash-back reconcile to the cent,
    every customer owes nothing, and a replay books nothing twice. Oracle's REST API books no
    refund of a receipt: the order needs attention, naming the 5.00 and the manual step."""
    stack, conn = shop
    order = await place_order(stack, paid=False)
    back = await refund(stack, order, amount="5.00")
    await settled_after(stack, conn, order["id"], "credit_memo", str(back["id"]))
    assert stack.store.ledger_get(conn.id, "refund_payment", str(back["id"])) is None
    await update_order(stack, order["id"], {"set_paid": True})
    ref = f"{conn.mappings.document_prefix}{order['id']}"
    total, five = Decimal(order["total"]), Decimal("5.00")
    handle = stack.client.get_workflow_handle(order_workflow_id(conn.id, str(order["id"])))

    async def books() -> list[tuple[str, Decimal]]:
        return sorted((d.kind, d.amount) for d in await stack.erp_documents()
                      if d.external_ref.startswith(ref))

    if stack.erp_system == "oracle_fusion":
        row = await wait_order_state(stack, conn.id, order["id"], "needs_attention", timeout=90)
        await asyncio.wait_for(handle.result(), 90)
        assert f"{five} {order['currency']} of receipt" in row.last_error, row.last_error
        assert "Manage Receipts" in row.last_error and "Resolution" in row.last_error
        expected = [("credit_memo", five), ("invoice", total), ("receipt", total)]
        owed = [-five]  # the receipt's unapplied 5.00: a credit until refunded by hand
    else:
        await settled_after(stack, conn, order["id"], "refund_payment", str(back["id"]))
        row = stack.store.ledger_get(conn.id, "order", str(order["id"]))
        assert row.state == "posted", row.last_error
        expected = [("credit_memo", five), ("invoice", total), ("receipt", total),
                    ("refund_payment", five)]
        owed = []
    assert await books() == expected
    assert [b for b in await balances(stack) if b != 0] == owed, await balances(stack)
    await signal_order(stack.client, conn.id, str(order["id"]), OrderEvent(kind="replay"),
                       task_queue=stack.task_queue)
    await asyncio.wait_for(handle.result(), 90)
    assert await books() == expected  # nothing booked twice
    assert [b for b in await balances(stack) if b != 0] == owed, await balances(stack)
    assert stack.store.ledger_get(conn.id, "order", str(order["id"])).state == row.state


@pytest.fixture(params=ERPS)
async def quiet_shop(request, stack_factory):
    """A connection without webhooks: the test runs the order's steps itself."""
    stack = await stack_factory(store_system="woocommerce", erp_system=request.param)
    conn = await stack.add_connection(f"lr-{uuid.uuid4().hex[:8]}", register_webhooks=False)
    return stack, conn


async def _lost_then_found_on_retry(stack, conn, acts: OrderActivities,
                                   cash_back: PostRefundPaymentInput):
    """The cash-back commits in the ERP but its answer is lost; the retry (attempt 2) finds it
    by its reference instead of paying back again, and the ledger records it."""
    await stack.control("erp", "/_sandbox/faults", {"lose_next_commits": 1})
    with pytest.raises(Exception):
        await ActivityEnvironment().run(acts.post_refund_payment, cash_back)
    assert (await stack.control("erp", "/_sandbox/faults"))["lose_next_commits"] == 0
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    result = await retry.run(acts.post_refund_payment, cash_back)
    assert result is not None and result.ref.created is False and result.retried
    row = stack.store.ledger_get(conn.id, "refund_payment", cash_back.refund_id)
    assert row.state == "posted"
    return result


async def test_a_cash_back_whose_answer_was_lost_is_found_on_retry_not_skipped(quiet_shop):
    """The cash-back commits but its answer is lost: the memo's credit is used up then, and
    the retry must find the cash-back (and record it) rather than conclude that nothing is
    left to pay back — one cash-back in the ERP, booked in the ledger, the customer at zero."""
    stack, conn = quiet_shop
    order = await place_order(stack)
    back = await refund(stack, order, amount="10.00")
    acts, env = OrderActivities(stack.runtime), ActivityEnvironment()
    summary = await env.run(acts.fetch_order, OrderRef(connection_id=conn.id,
                                                       order_id=str(order["id"])))
    snap = summary.snapshot
    customer = await env.run(acts.upsert_customer, CustomerInput(
        connection_id=conn.id, order_id=summary.store_id, order_number=summary.number,
        customer=summary.customer))
    invoice = (await env.run(acts.post_invoice, PostInvoiceInput(
        connection_id=conn.id, snapshot=snap, customer_key=customer.number))).ref
    [payment] = summary.payments
    await env.run(acts.post_receipt, PostReceiptInput(
        connection_id=conn.id, snapshot=snap, payment_id=payment.store_id, invoice=invoice,
        customer_key=customer.number))
    memo = (await env.run(acts.post_credit_memo, PostCreditMemoInput(
        connection_id=conn.id, snapshot=snap, refund_id=str(back["id"]), invoice=invoice,
        customer_key=customer.number))).ref
    cash_back = PostRefundPaymentInput(connection_id=conn.id, snapshot=snap,
                                       refund_id=str(back["id"]), credit_memo=memo,
                                       customer_key=customer.number)
    await _lost_then_found_on_retry(stack, conn, acts, cash_back)
    ref = f"{conn.mappings.document_prefix}{order['id']}"
    paid_back = [d for d in await stack.erp_documents()
                 if d.external_ref.startswith(ref) and d.kind == "refund_payment"]
    assert [(d.external_ref, d.amount) for d in paid_back] == [
        (f"{ref}-R{back['id']}-P", Decimal("10.00"))]
    assert all(b == 0 for b in await balances(stack)), await balances(stack)


async def test_a_cash_back_from_the_receipt_whose_answer_was_lost_is_found_on_retry(quiet_shop):
    """A refund booked before the payment, then the payment's receipt (5.00 of it unapplied):
    the cash-back against the receipt commits but its answer is lost; the retry finds it (by
    its reference) rather than pay the receipt's rest back again — one cash-back, booked in
    the ledger, the customer at zero. Oracle answers the manual step instead, booking nothing."""
    stack, conn = quiet_shop
    order = await place_order(stack, paid=False)
    back = await refund(stack, order, amount="5.00")
    acts, env = OrderActivities(stack.runtime), ActivityEnvironment()
    ref_of = OrderRef(connection_id=conn.id, order_id=str(order["id"]))
    summary = await env.run(acts.fetch_order, ref_of)
    customer = await env.run(acts.upsert_customer, CustomerInput(
        connection_id=conn.id, order_id=summary.store_id, order_number=summary.number,
        customer=summary.customer))
    invoice = (await env.run(acts.post_invoice, PostInvoiceInput(
        connection_id=conn.id, snapshot=summary.snapshot, customer_key=customer.number))).ref
    memo = (await env.run(acts.post_credit_memo, PostCreditMemoInput(
        connection_id=conn.id, snapshot=summary.snapshot, refund_id=str(back["id"]),
        invoice=invoice, customer_key=customer.number))).ref
    cash_back = PostRefundPaymentInput(connection_id=conn.id, snapshot=summary.snapshot,
                                       refund_id=str(back["id"]), credit_memo=memo,
                                       customer_key=customer.number)
    assert await env.run(acts.post_refund_payment, cash_back) is None  # nothing went back yet
    await update_order(stack, order["id"], {"set_paid": True})
    summary = await env.run(acts.fetch_order, ref_of)
    [payment] = summary.payments
    receipt = (await env.run(acts.post_receipt, PostReceiptInput(
        connection_id=conn.id, snapshot=summary.snapshot, payment_id=payment.store_id,
        invoice=invoice, customer_key=customer.number))).ref
    cash_back = cash_back.model_copy(update={"snapshot": summary.snapshot, "receipts": [receipt]})
    if stack.erp_system == "oracle_fusion":
        answer = await env.run(acts.post_refund_payment, cash_back)
        assert isinstance(answer, Attention) and receipt.number in answer.message
        assert stack.store.ledger_get(conn.id, "refund_payment", str(back["id"])) is None
        return
    result = await _lost_then_found_on_retry(stack, conn, acts, cash_back)
    again = await ActivityEnvironment().run(acts.post_refund_payment, cash_back)
    assert again.ref == result.ref  # the ledger answers
    ref = f"{conn.mappings.document_prefix}{order['id']}"
    paid_back = [d for d in await stack.erp_documents()
                 if d.external_ref.startswith(ref) and d.kind == "refund_payment"]
    assert [(d.external_ref, d.amount) for d in paid_back] == [
        (f"{ref}-R{back['id']}-P", Decimal("5.00"))]
    assert all(b == 0 for b in await balances(stack)), await balances(stack)
