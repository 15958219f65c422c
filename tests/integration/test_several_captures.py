"""BigCommerce orders paid by several transactions, end to end on each ERP (real sockets): a
split tender (gift certificate + card, two ``purchase`` transactions at checkout), store credit
+ bank deposit (a ``purchase`` and a ``settled`` transaction, the spec's own split-tender
example) and an authorization captured in three parts (two partial captures, then the rest
through the v3 capture). Each transaction is one ERP receipt at its own amount, booked once
although every webhook is delivered twice; a refund of part of two of them (the split one back
to the card and the gift certificate) is a credit memo and its cash-back; the books reconcile
to the cent, and a replay of every order books nothing twice."""
from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from activities.messages import OrderEvent
from sandbox import traffic_bigcommerce as traffic
from starter.dispatch import signal_order
from starter.sandboxes import ERPS
from tests.integration.conftest import eventually
from tests.integration.helpers import settled
from workflows.order import order_workflow_id

SALES = ("purchase", "capture", "settled")


@pytest.fixture(params=ERPS)
async def bc_erp(request, stack_factory):
    stack = await stack_factory(store_system="bigcommerce", erp_system=request.param)
    conn = await stack.add_connection(f"sc-{uuid.uuid4().hex[:8]}")
    return stack, conn


async def unpaid_order(admin, registered: bool = False) -> dict:
    """An order as v2 creates it: no payment taken yet (the checkout's tenders follow)."""
    products = await traffic.v3_all(admin, "v3/catalog/products", {"include": "variants"})
    simple = [p for p in sorted(products, key=lambda p: p["id"])
              if p.get("sku") and p.get("inventory_tracking") != "variant"]
    person = {"first_name": "Ann", "last_name": "Buyer", "email": "ann.buyer@example.com"}
    where = traffic.address(person, "1 Main St", "Oakland", "CA", "94607", "US")
    customer = await traffic.customer_id(admin, person) if registered else 0
    return traffic.ok(await admin.post("v2/orders", json={
        "customer_id": customer, "status_id": 1, "billing_address": where,
        "shipping_addresses": [{**where, "shipping_method": "Flat Rate"}],
        "products": [{"product_id": simple[0]["id"], "quantity": 3},
                     {"product_id": simple[1]["id"], "quantity": 1}],
        "base_shipping_cost": "5.00"}))


async def sales(admin, order_id) -> dict[str, Decimal]:
    """The store's money-taking transactions of the order: id -> amount."""
    txns = await traffic.v3_all(admin, f"v3/orders/{order_id}/transactions")
    return {str(t["id"]): Decimal(str(t["amount"])) for t in txns
            if t["event"] in SALES and t["status"] == "ok"}


async def capture(stack, admin, order_id, amount: str, count: int) -> None:
    """A partial capture (control panel); returns once its transaction landed."""
    await stack.control("bigcommerce", f"/_sandbox/orders/{order_id}/capture", {"amount": amount})

    async def landed():
        return len(await sales(admin, order_id)) >= count

    await eventually(landed, timeout=10, interval=0.05)


async def books_of(stack, ref: str) -> list[tuple[str, str, Decimal]]:
    docs = [d for d in await stack.erp_documents()
            if d.external_ref == ref or d.external_ref.startswith(ref + "-")]
    return sorted((d.kind, d.external_ref, d.amount) for d in docs)


async def test_each_capture_is_one_receipt_to_the_cent_and_books_once(bc_erp):
    stack, conn = bc_erp
    sb, prefix = stack.shop_sandbox, conn.mappings.document_prefix
    await sb.duplicate_next(stack.http, stack.shop.url, 100)  # every webhook delivered twice
    async with stack.store_client() as admin:
        # split tender: a gift certificate and the card for the rest, both at checkout
        split = await unpaid_order(admin)
        await stack.control("bigcommerce", f"/_sandbox/orders/{split['id']}/payments",
                            [{"gateway": "giftcertificate", "amount": "10.00", "code": "GC-10"},
                             {"gateway": "braintree"}])
        # store credit and a bank deposit for the rest (offline: "settled", no capture)
        credit = await unpaid_order(admin, registered=True)
        await stack.control("bigcommerce", f"/_sandbox/orders/{credit['id']}/payments",
                            [{"gateway": "storecredit", "amount": "15.00"},
                             {"gateway": "bankdeposit"}])
        # an authorization captured in three parts, the first booked before the others
        parts = await sb.place_order(admin, quantities=(2, 1), paid=False)
        await capture(stack, admin, parts.id, "12.34", 1)
        [first] = await sales(admin, parts.id)

        async def booked(key):
            row = stack.store.ledger_get(conn.id, "receipt", key)
            return row if row is not None and row.state == "posted" else None

        await eventually(lambda: booked(f"{parts.id}-P{first}"), timeout=60)
        await capture(stack, admin, parts.id, "7.01", 2)
        await sb.pay(admin, parts.id)  # the v3 capture: all the rest
        paid = {str(o["id"]): await sales(admin, o["id"]) for o in (split, credit)}
        paid[parts.id] = await sales(admin, parts.id)
        totals = {str(o["id"]): Decimal(o["total_inc_tax"]) for o in (split, credit)}
        totals[parts.id] = parts.total
        assert [len(paid[o]) for o in paid] == [2, 2, 3]
        assert all(sum(paid[o].values()) == totals[o] for o in paid)
        assert {Decimal("12.34"), Decimal("7.01")} <= set(paid[parts.id].values())
        # refunds of part of two of them: the split one needs the card's and the certificate's
        back = {str(split["id"]): totals[str(split["id"])] - Decimal("4.00"),
                parts.id: Decimal("7.00")}
        refunds = {o: await sb.refund(admin, o, amount=back[o]) for o in back}
        made = await traffic.v3_all(admin, f"v3/orders/{split['id']}/payment_actions/refunds")
        assert sorted(p["provider_id"] for p in made[0]["payments"]) == [
            "braintree", "giftcertificate"]

    async def paid_back():
        rows = [stack.store.ledger_get(conn.id, "refund_payment", r) for r in refunds.values()]
        return all(r is not None and r.state == "posted" for r in rows)

    await eventually(paid_back, timeout=90)
    rec = await settled(stack, conn)
    assert (rec.invoices, rec.credit_memos, rec.payments, rec.receipts) == (3, 2, 7, 7)
    assert rec.duplicates == [] and rec.difference_cents == 0
    expected = {}
    for order_id, payments in paid.items():
        ref, rid = f"{prefix}{order_id}", refunds.get(order_id)
        docs = [("invoice", ref, totals[order_id])]
        docs += [("receipt", f"{ref}-P{tid}", amount) for tid, amount in payments.items()]
        if rid:
            docs += [("credit_memo", f"{ref}-R{rid}", back[order_id]),
                     ("refund_payment", f"{ref}-R{rid}-P", back[order_id])]
        expected[order_id] = sorted(docs)
        assert await books_of(stack, ref) == expected[order_id]  # each receipt as its capture
    # a replay of every order books nothing twice
    for order_id in paid:
        handle = stack.client.get_workflow_handle(order_workflow_id(conn.id, order_id))
        await signal_order(stack.client, conn.id, order_id, OrderEvent(kind="replay"),
                           task_queue=stack.task_queue)
        await asyncio.wait_for(handle.result(), 60)
        assert await books_of(stack, f"{prefix}{order_id}") == expected[order_id]
    assert stack.store.ledger_get(conn.id, "order", parts.id).state == "posted"
