"""Order activities: load the connection, call one connector method, keep the ledger.

Each post is idempotent on its own: a ledger row marked "posted" answers without calling
the ERP; a row left "posting" (an earlier attempt that may have reached the ERP) makes the
post look the document up by its external reference before creating it. A first attempt
with no row creates directly, saving the look-up call.

Ledger writes run in a thread: each commit waits on the disk (or on PostgreSQL's round trip),
and the worker's event loop runs every other activity and workflow task meanwhile.
"""
from __future__ import annotations

import hashlib
from asyncio import to_thread
from collections.abc import Awaitable, Callable

from temporalio import activity

from activities.errors import classified
from activities.messages import (CustomerInput, OrderRef, OrderStateInput, PostAdjustmentInput,
                                 PostCreditMemoInput, PostInvoiceInput, PostReceiptInput,
                                 PostResult)
from activities.runtime import Runtime, customer_lease
from connections.config import Connection
from connections.store import LedgerRow
from connectors.base import post_document
from connectors.documents import (ErpDocument, PostedTotals, ReceiptDocument, build_adjustment,
                                  build_credit_memo, build_invoice, build_receipt)
from connectors.errors import NotFound
from connectors.model import Customer, ErpDocumentRef, Order

POSTED = "posted"
GUEST_ACCOUNT = "guest account"  # doc_type of the connection's shared account of guests


def customer_external_id(conn: Connection, customer: Customer) -> str:
    """Stable id of a buyer in the ERP: the store's customer id, or the e-mail of a guest."""
    prefix = conn.mappings.document_prefix
    if customer.store_id is not None:
        return f"{prefix}C{customer.store_id}"
    digest = hashlib.sha256(customer.email.strip().lower().encode()).hexdigest()[:12].upper()
    return f"{prefix}G{digest}"


def guest_account(conn: Connection) -> ErpDocumentRef:
    """The shared account of guest checkouts: named by the connection, so no ERP call."""
    key = conn.mappings.guest_customer
    return ErpDocumentRef(system=conn.erp_system, kind="customer", doc_type=GUEST_ACCOUNT,
                          number=key, id=key, external_ref=key, created=False)


def _posted_ref(row: LedgerRow | None) -> ErpDocumentRef | None:
    """The ERP document a ledger row says is booked, marked as found rather than created."""
    if row and row.state == POSTED and row.erp_ref:
        return ErpDocumentRef.model_validate(row.erp_ref).model_copy(update={"created": False})
    return None


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
        async with classified():
            # A buyer already in the ledger needs no lease: it only keeps two creators apart.
            if known := self._known_customer(conn.id, external_id):
                return known
            # Two orders of one new buyer at once must not create the customer twice: the
            # second waits for the first and then finds it in the ledger.
            async with customer_lease(self.rt.store, conn.id, external_id):
                if known := self._known_customer(conn.id, external_id):
                    return known
                ref = await self.rt.erp(conn).upsert_customer(inp.customer, external_id)
                await to_thread(self.rt.store.ledger_mark, conn.id, "customer", external_id,
                                POSTED, erp_ref=ref.model_dump(mode="json"))
        return ref

    def _known_customer(self, connection_id: str, external_id: str) -> ErpDocumentRef | None:
        return _posted_ref(self.rt.store.ledger_get(connection_id, "customer", external_id))

    @activity.defn(name="post_invoice")
    async def post_invoice(self, inp: PostInvoiceInput) -> PostResult:
        conn = self.rt.connection(inp.connection_id)
        return await self._post(conn, "invoice", inp.order.store_id, inp.order.number,
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

        return await self._post(conn, "credit_memo", inp.refund_id, inp.order.number, build,
                                sign=-1)

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
            conn, "receipt", f"{inp.order.store_id}-P{inp.payment_id}", inp.order.number,
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
        return await self._post(conn, "adjustment", f"{inp.order.store_id}-A{inp.seq}",
                                inp.order.number, lambda: doc,
                                sign=1 if doc.kind == "adjustment_invoice" else -1)

    @activity.defn(name="record_order_state")
    async def record_order_state(self, inp: OrderStateInput) -> None:
        await to_thread(self.rt.store.ledger_mark, inp.connection_id, "order", inp.order_id,
                        inp.state, order_number=inp.order_number, error=inp.message or None)

    async def _post(self, conn: Connection, kind: str, key: str, order_number: str,
                    build: Callable[[], ErpDocument | ReceiptDocument], sign: int = 1) -> PostResult:
        store = self.rt.store
        row = store.ledger_get(conn.id, kind, key)
        if known := _posted_ref(row):
            return PostResult(ref=known, totals=PostedTotals.model_validate(row.totals or {}))
        try:
            async with classified():
                doc = build()
                await to_thread(store.ledger_mark, conn.id, kind, key, "posting",
                                order_number=order_number, count_attempt=True)
                may_exist = row is not None or activity.info().attempt > 1
                ref = await post_document(self.rt.erp(conn), doc, look_up_first=may_exist)
        except Exception as exc:
            await to_thread(store.ledger_mark, conn.id, kind, key, "error",
                            order_number=order_number, error=str(exc)[:1000])
            raise
        # What the order's sales documents booked; a receipt moves cash, not the sale.
        totals = PostedTotals.of(doc, sign) if isinstance(doc, ErpDocument) else PostedTotals()
        await to_thread(store.ledger_mark, conn.id, kind, key, POSTED, order_number=order_number,
                        erp_ref=ref.model_dump(mode="json"), totals=totals.model_dump(mode="json"))
        return PostResult(ref=ref, totals=totals, retried=may_exist)

    def all(self) -> list[Callable[..., Awaitable]]:
        return [self.fetch_order, self.upsert_customer, self.post_invoice, self.post_credit_memo,
                self.post_receipt, self.post_adjustment, self.record_order_state]
