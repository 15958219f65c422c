"""Order activities: load the connection, build the document, and book it through the
ledger's posting protocol (connections/ledger.py) with the client's calls.

Each post is idempotent on its own: the ledger answers for a booked document without calling
the ERP, and looks the document up by its external reference before creating it whenever it
cannot vouch that the document is new.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache

from temporalio import activity

from activities.errors import classified
from activities.messages import (CustomerInput, OrderRef, OrderStateInput, PostAdjustmentInput,
                                 PostCreditMemoInput, PostInvoiceInput, PostReceiptInput,
                                 PostResult)
from activities.runtime import Runtime, customer_lease
from connections.config import Connection
from connections.ledger import DocumentState, Ledger, LedgerKey, customer_external_id
from connectors.base import post_document
from connectors.documents import (ErpDocument, PostedTotals, ReceiptDocument, build_adjustment,
                                  build_credit_memo, build_invoice, build_receipt)
from connectors.errors import NotFound
from connectors.model import ErpDocumentRef, Order

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
    async def fetch_order(self, ref: OrderRef) -> Order:
        conn = self.rt.connection(ref.connection_id)
        async with classified():
            return await self.rt.storefront(conn).get_order(ref.order_id)

    @activity.defn(name="upsert_customer")
    async def upsert_customer(self, inp: CustomerInput) -> ErpDocumentRef:
        conn = self.rt.connection(inp.connection_id)
        if inp.customer.is_guest and conn.mappings.guest_customer:
            return guest_account(conn)
        external_id = customer_external_id(conn, inp.customer)
        ledger, key = Ledger(self.rt.store, conn.id), LedgerKey.customer(external_id)
        async with classified():
            # A buyer already in the ledger needs no lease: it only keeps two creators apart.
            if known := ledger.booked(key):
                return known
            # Two orders of one new buyer at once must not create the customer twice: the
            # second waits for the first and then finds it in the ledger.
            async with customer_lease(self.rt.store, conn.id, external_id):
                if known := ledger.booked(key):
                    return known
                ref = await self.rt.erp(conn).upsert_customer(inp.customer, external_id)
                await ledger.write(key, DocumentState.POSTED, erp_ref=ref.model_dump(mode="json"))
        return ref

    @activity.defn(name="post_invoice")
    async def post_invoice(self, inp: PostInvoiceInput) -> PostResult:
        conn = self.rt.connection(inp.connection_id)
        return await self._post(conn, LedgerKey.invoice(inp.order.store_id), inp.order.number,
                                lambda: build_invoice(inp.order, inp.customer_key, conn.mappings))

    @activity.defn(name="post_credit_memo")
    async def post_credit_memo(self, inp: PostCreditMemoInput) -> PostResult:
        conn = self.rt.connection(inp.connection_id)
        refund = next((r for r in inp.order.refunds if r.store_id == inp.refund_id), None)
        if refund is None:
            async with classified():
                raise NotFound(f"refund {inp.refund_id} is not on order {inp.order.number}")

        def build() -> ErpDocument:
            return build_credit_memo(inp.order, refund, inp.customer_key, inp.invoice,
                                     conn.mappings)

        return await self._post(conn, LedgerKey.credit_memo(inp.refund_id), inp.order.number,
                                build, sign=-1)

    @activity.defn(name="post_receipt")
    async def post_receipt(self, inp: PostReceiptInput) -> PostResult | None:
        """None when the connection does not book the store's payments."""
        conn = self.rt.connection(inp.connection_id)
        if not conn.mappings.post_receipts:
            return None
        payment = next((p for p in inp.order.payments if p.store_id == inp.payment_id), None)
        if payment is None:
            async with classified():
                raise NotFound(f"payment {inp.payment_id} is not on order {inp.order.number}")
        return await self._post(
            conn, LedgerKey.receipt(inp.order.store_id, inp.payment_id), inp.order.number,
            lambda: build_receipt(inp.order, payment, inp.customer_key, inp.invoice,
                                  conn.mappings))

    @activity.defn(name="post_adjustment")
    async def post_adjustment(self, inp: PostAdjustmentInput) -> PostResult | None:
        conn = self.rt.connection(inp.connection_id)
        async with classified():
            doc = build_adjustment(inp.order, inp.posted, inp.customer_key, inp.invoice,
                                   conn.mappings, inp.seq)
        if doc is None:
            return None
        return await self._post(conn, LedgerKey.adjustment(inp.order.store_id, inp.seq),
                                inp.order.number, lambda: doc,
                                sign=1 if doc.kind == "adjustment_invoice" else -1)

    @activity.defn(name="record_order_state")
    async def record_order_state(self, inp: OrderStateInput) -> None:
        await Ledger(self.rt.store, inp.connection_id).write(
            LedgerKey.order(inp.order_id), inp.state, order_number=inp.order_number,
            error=inp.message or None)

    async def _post(self, conn: Connection, key: LedgerKey, order_number: str,
                    build: Callable[[], ErpDocument | ReceiptDocument], sign: int = 1) -> PostResult:
        erp = cache(lambda: self.rt.erp(conn))  # opened only when the ledger has no answer

        def totals(doc: ErpDocument | ReceiptDocument) -> PostedTotals:
            """What the order's sales documents booked; a receipt moves cash, not the sale."""
            return PostedTotals.of(doc, sign) if isinstance(doc, ErpDocument) else PostedTotals()

        booking = await Ledger(self.rt.store, conn.id).post(
            key, order_number, build=build,
            look_up=lambda doc: erp().find_document(doc.kind, doc.external_ref),
            create=lambda doc: post_document(erp(), doc, look_up_first=False),
            totals=totals, retrying=activity.info().attempt > 1, guard=classified)
        return PostResult(ref=booking.ref, totals=booking.totals, retried=booking.retried)

    def all(self) -> list[Callable[..., Awaitable]]:
        return [self.fetch_order, self.upsert_customer, self.post_invoice, self.post_credit_memo,
                self.post_receipt, self.post_adjustment, self.record_order_state]


def activity_name(fn: Callable) -> str:
    """The activity type an ``@activity.defn`` function is registered and recorded under."""
    return activity._Definition.must_from_callable(fn).name


# The steps that call the ERP on an order's behalf: OrderSync sends only these to a
# connection's ERP quota queue, and the quota queue's worker registers exactly these.
ERP_STEPS = (OrderActivities.upsert_customer, OrderActivities.post_invoice,
             OrderActivities.post_credit_memo, OrderActivities.post_receipt,
             OrderActivities.post_adjustment)
ERP_STEP_NAMES = frozenset(activity_name(fn) for fn in ERP_STEPS)
