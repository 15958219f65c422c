"""Order activities: load the connection, build the document, and book it through the
ledger's posting protocol (connections/ledger.py) with the client's calls.

Each post is idempotent on its own: the ledger answers for a booked document without calling
the ERP, and looks the document up by its external reference before creating it whenever it
cannot vouch that the document is new.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from functools import cache

from temporalio import activity

from activities.errors import classified
from activities.messages import (Attention, CustomerInput, LoadStateInput, OrderRef,
                                 OrderSnapshot, OrderStateInput, OrderSummary, OrderSyncState,
                                 PostAdjustmentInput, PostCreditMemoInput, PostInvoiceInput,
                                 PostReceiptInput, PostRefundPaymentInput, PostResult)
from activities.buyers import buyer_lease, fully_known, known_buyer, record_buyer
from activities.runtime import Runtime
from activities.snapshots import SNAPSHOTS
from activities.vouch import vouch_marks
from connections.config import Connection
from connections import error_history
from connections.order_overrides import mappings_for
from connections.ledger import Ledger, LedgerKey, booked_ref, buyer_ids
from connectors.base import post_document
from connectors.documents import (ErpDocument, PostedTotals, ReceiptDocument, build_adjustment,
                                  build_credit_memo, build_invoice, build_receipt,
                                  build_refund_payment)
from connectors.errors import NotFound
from connectors.model import ZERO, ErpDocumentRef, Order

GUEST_ACCOUNT = "guest account"  # doc_type of the connection's shared account of guests


def guest_account(conn: Connection) -> ErpDocumentRef:
    """The shared account of guest checkouts: named by the connection, so no ERP call."""
    key = conn.mappings.guest_customer
    return ErpDocumentRef(system=conn.erp_system, kind="customer", doc_type=GUEST_ACCOUNT,
                          number=key, id=key, external_ref=key, created=False)


class OrderActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="fetch_order")
    async def fetch_order(self, ref: OrderRef) -> OrderSummary:
        """The order, kept in this process for the posts; the workflow gets its summary."""
        conn = self.rt.connection(ref.connection_id)
        async with classified():
            return SNAPSHOTS.keep(conn.id, await self.rt.storefront(conn).get_order(ref.order_id))

    async def _order(self, conn: Connection, snap: OrderSnapshot) -> Order:
        """The order a post books: the snapshot the workflow decided from (activities/snapshots.py)."""
        async with classified():
            return await SNAPSHOTS.get(conn.id, snap,
                                       lambda: self.rt.storefront(conn).get_order(snap.order_id))

    @activity.defn(name="load_order_state")
    async def load_order_state(self, inp: LoadStateInput) -> OrderSyncState:
        """What the ledger holds for an order: a new run of its workflow starts from it, so it
        makes no ERP call for anything already booked (adjustments included)."""
        conn = self.rt.connection(inp.connection_id)
        ledger, order_id = Ledger(self.rt.store, conn.id), inp.order_id
        st = OrderSyncState()
        row = ledger.get(LedgerKey.invoice(order_id))
        if (invoice := booked_ref(row)) is None:
            return st  # a new order: its customer step runs as for any new order
        if inp.customer.is_guest and conn.mappings.guest_customer:
            st.customer_key = guest_account(conn).number
        elif customer := known_buyer(ledger, buyer_ids(conn, inp.customer)):
            st.customer_key = customer.number
        st.invoice, st.posted = invoice, PostedTotals.model_validate(row.totals or {})
        seq = 1
        while (row := ledger.get(LedgerKey.adjustment(order_id, seq))) and booked_ref(row):
            st.adjustments.append(booked_ref(row))
            st.posted = st.posted.plus(PostedTotals.model_validate(row.totals or {}))
            seq += 1
        for pid in inp.payment_ids:
            if ref := ledger.booked(LedgerKey.receipt(order_id, pid)):
                st.receipts[pid] = ref
        for rid in inp.refund_ids:
            if ref := ledger.booked(LedgerKey.credit_memo(rid)):
                st.credit_memos[rid] = ref
            if ref := ledger.booked(LedgerKey.refund_payment(rid)):
                st.refund_payments[rid] = ref
        return st

    @activity.defn(name="upsert_customer")
    async def upsert_customer(self, inp: CustomerInput) -> ErpDocumentRef:
        conn = self.rt.connection(inp.connection_id)
        if inp.customer.is_guest and conn.mappings.guest_customer:
            return guest_account(conn)
        ids = buyer_ids(conn, inp.customer)
        ledger = Ledger(self.rt.store, conn.id)
        async with classified():
            # A buyer the ledger knows under all its ids needs no lease: it only keeps two
            # creators apart.
            if known := fully_known(ledger, ids):
                return known
            # Two orders of one buyer at once (a guest and a registered buyer with one e-mail
            # too) must not create two customers: the second waits for the first and then
            # finds it in the ledger.
            async with buyer_lease(self.rt.store, conn.id, ids):
                ref = known_buyer(ledger, ids) or await self.rt.erp(conn).upsert_customer(
                    inp.customer, ids[0], aliases=ids[1:], match=conn.mappings.customer_match)
                await record_buyer(ledger, ids, ref)
        return ref

    @activity.defn(name="post_invoice")
    async def post_invoice(self, inp: PostInvoiceInput) -> PostResult:
        conn = self.rt.connection(inp.connection_id)
        order = await self._order(conn, inp.snapshot)
        return await self._post(conn, LedgerKey.invoice(order.store_id), order.number,
                                lambda: build_invoice(order, inp.customer_key, mappings_for(
                                    self.rt.store, conn, order.store_id)),
                                created_at=order.created_at)

    @activity.defn(name="post_credit_memo")
    async def post_credit_memo(self, inp: PostCreditMemoInput) -> PostResult:
        conn = self.rt.connection(inp.connection_id)
        order = await self._order(conn, inp.snapshot)
        refund = next((r for r in order.refunds if r.store_id == inp.refund_id), None)
        if refund is None:
            async with classified():
                raise NotFound(f"refund {inp.refund_id} is not on order {order.number}")

        def build() -> ErpDocument:
            return build_credit_memo(order, refund, inp.customer_key, inp.invoice,
                                     mappings_for(self.rt.store, conn, order.store_id))

        return await self._post(conn, LedgerKey.credit_memo(inp.refund_id), order.number,
                                build, sign=-1, created_at=order.created_at)

    @activity.defn(name="post_receipt")
    async def post_receipt(self, inp: PostReceiptInput) -> PostResult | None:
        """None when the connection does not book the store's payments."""
        conn = self.rt.connection(inp.connection_id)
        if not conn.mappings.post_receipts:
            return None
        order = await self._order(conn, inp.snapshot)
        payment = next((p for p in order.payments if p.store_id == inp.payment_id), None)
        if payment is None:
            async with classified():
                raise NotFound(f"payment {inp.payment_id} is not on order {order.number}")
        return await self._post(
            conn, LedgerKey.receipt(order.store_id, inp.payment_id), order.number,
            lambda: build_receipt(order, payment, inp.customer_key, inp.invoice,
                                  mappings_for(self.rt.store, conn, order.store_id)),
            created_at=order.created_at)

    @activity.defn(name="post_refund_payment")
    async def post_refund_payment(self, inp: PostRefundPaymentInput
                                  ) -> PostResult | Attention | None:
        """The refund's cash-back document applied to its credit memo, for the credit the memo
        still holds: the part of the refund that did not settle an open invoice balance, i.e.
        the money paid back. A memo that settled the invoice before the payment came leaves
        the payment's receipt with that much unapplied: the cash-back pays that back instead
        (Attention where the ERP's API books no such cash-back). None when the connection does
        not book payments, the ERP books the cash-back with the memo, or nothing holds the
        refund's credit (nothing went back, or no receipt yet)."""
        conn = self.rt.connection(inp.connection_id)
        if not conn.mappings.post_receipts or not hasattr(erp := self.rt.erp(conn),
                                                           "create_refund_payment"):
            return None
        order = await self._order(conn, inp.snapshot)
        refund = next((r for r in order.refunds if r.store_id == inp.refund_id), None)
        if refund is None:
            async with classified():
                raise NotFound(f"refund {inp.refund_id} is not on order {order.number}")
        if refund.amount == 0:  # no money went back: nothing to pay out
            return None
        mappings = mappings_for(self.rt.store, conn, order.store_id)
        key, created_at = LedgerKey.refund_payment(inp.refund_id), order.created_at
        paid_back: Decimal | None = None
        receipt: ErpDocumentRef | None = None
        if not Ledger(self.rt.store, conn.id).booked(key) and hasattr(erp, "refund_credit"):
            async with classified():
                paid_back = min(await erp.refund_credit(inp.credit_memo), refund.amount)
                if paid_back <= 0:
                    # A cash-back whose answer was lost has used the credit up: look for it
                    # before concluding that nothing went back.
                    doc = build_refund_payment(order, refund, inp.customer_key,
                                               inp.credit_memo, mappings)
                    found = await erp.find_document("refund_payment", doc.external_ref)
                    if found is not None:
                        paid_back = (min(found.total, refund.amount) if found.total else None)
                        created_at = None  # so the ledger looks it up and records it
                    else:
                        receipt, paid_back = await _unapplied(erp, inp.receipts, refund.amount)
                        if receipt is None:
                            return None
                        if hasattr(erp, "manual_receipt_refund"):
                            return Attention(message=erp.manual_receipt_refund(
                                build_refund_payment(order, refund, inp.customer_key,
                                                     inp.credit_memo, mappings, paid_back,
                                                     receipt)))
        return await self._post(
            conn, key, order.number,
            lambda: build_refund_payment(order, refund, inp.customer_key, inp.credit_memo,
                                         mappings, paid_back, receipt),
            created_at=created_at)

    @activity.defn(name="post_adjustment")
    async def post_adjustment(self, inp: PostAdjustmentInput) -> PostResult | None:
        conn = self.rt.connection(inp.connection_id)
        order = await self._order(conn, inp.snapshot)
        async with classified():
            doc = build_adjustment(order, inp.posted, inp.customer_key, inp.invoice,
                                   mappings_for(self.rt.store, conn, order.store_id), inp.seq)
        if doc is None:
            return None
        return await self._post(conn, LedgerKey.adjustment(order.store_id, inp.seq),
                                order.number, lambda: doc,
                                sign=1 if doc.kind == "adjustment_invoice" else -1,
                                created_at=order.created_at)

    @activity.defn(name="record_order_state")
    async def record_order_state(self, inp: OrderStateInput) -> None:
        await Ledger(self.rt.store, inp.connection_id).write(
            LedgerKey.order(inp.order_id), inp.state, order_number=inp.order_number,
            error=inp.message or None, store_modified_at=inp.store_modified_at)
        # The ledger's row is overwritten; the episode (parked, failed, resolved) is kept.
        await asyncio.to_thread(error_history.order_state_changed, self.rt.store,
                                inp.connection_id, inp.order_id, inp.state,
                                order_number=inp.order_number, message=inp.message)

    async def _post(self, conn: Connection, key: LedgerKey, order_number: str,
                    build: Callable[[], ErpDocument | ReceiptDocument], sign: int = 1, *,
                    created_at: datetime | None = None) -> PostResult:
        """``created_at``: when the store created the order (None: unknown, so the document
        is looked up before it is created; see activities/vouch.py)."""
        erp = cache(lambda: self.rt.erp(conn))  # opened only when the ledger has no answer

        def totals(doc: ErpDocument | ReceiptDocument) -> PostedTotals:
            """What the order's sales documents booked; a receipt moves cash, not the sale."""
            return PostedTotals.of(doc, sign) if isinstance(doc, ErpDocument) else PostedTotals()

        booking = await Ledger(self.rt.store, conn.id).post(
            key, order_number, build=build,
            look_up=lambda doc: erp().find_document(doc.kind, doc.external_ref),
            create=lambda doc: post_document(erp(), doc, look_up_first=False),
            totals=totals, retrying=activity.info().attempt > 1,
            vouch_new=lambda: vouch_marks(self.rt).vouches_new(conn, created_at),
            guard=classified)
        return PostResult(ref=booking.ref, totals=booking.totals, retried=booking.retried)

    def all(self) -> list[Callable[..., Awaitable]]:
        return [self.fetch_order, self.load_order_state, self.upsert_customer, self.post_invoice, self.post_credit_memo,
                self.post_receipt, self.post_refund_payment, self.post_adjustment,
                self.record_order_state]


async def _unapplied(erp: object, receipts: list[ErpDocumentRef],
                     refund: Decimal) -> tuple[ErpDocumentRef | None, Decimal]:
    """The first receipt holding something unapplied, and how much of ``refund`` it pays back
    (read from the ERP, so a cash-back already booked against it is not paid twice)."""
    if not hasattr(erp, "receipt_credit"):
        return None, ZERO
    for receipt in receipts:
        if (credit := await erp.receipt_credit(receipt)) > 0:
            return receipt, min(credit, refund)
    return None, ZERO


def activity_name(fn: Callable) -> str:
    """The activity type an ``@activity.defn`` function is registered and recorded under."""
    return activity._Definition.must_from_callable(fn).name


# The steps that call the ERP on an order's behalf: OrderSync sends only these to a
# connection's ERP quota queue, and the quota queue's worker registers exactly these.
ERP_STEPS = (OrderActivities.upsert_customer, OrderActivities.post_invoice,
             OrderActivities.post_credit_memo, OrderActivities.post_receipt,
             OrderActivities.post_refund_payment, OrderActivities.post_adjustment)
ERP_STEP_NAMES = frozenset(activity_name(fn) for fn in ERP_STEPS)
