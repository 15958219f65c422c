"""Customer master alignment between store and ERP, both ways, without echo loops.

For every synced customer the ledger (``LedgerKey.customer_sync``, keyed by the customer's
external id) keeps a fingerprint of the record as each side holds it after the last sync.
A change whose fingerprint equals the one recorded for its side is either no change or
ml-connector's own write coming back (the webhook or Modified stamp it caused): it is not
sent to the other side, which is what stops the ping-pong. Mappings may be lossy (Exact
merges name and address into one account), so each side's fingerprint is taken from that
side's own record, read back after the write. An ERP change only fills the store fields it
has: an empty ERP field never blanks a store field.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from temporalio import activity

from activities.catalog import EPOCH
from activities.errors import classified
from activities.messages import ConnectionInput, CustomerSyncInput, CustomerSyncReport
from activities.buyers import buyer_lease, record_buyer
from activities.runtime import Runtime
from connections.config import Connection
from connections.ledger import DocumentState, Ledger, LedgerKey, buyer_ids
from connectors.model import Address, Customer

WATERMARK = "erp_customers_modified"
OVERLAP = timedelta(seconds=60)


def fingerprint(customer: Customer | None) -> str:
    """What both sides can say about a customer, normalised; "" for none."""
    if customer is None:
        return ""
    a = customer.billing
    fields = [customer.email.strip().lower(), customer.display_name.strip(), customer.phone or a.phone,
              a.line1, a.line2, a.city, a.state, a.postcode, a.country]
    return hashlib.sha256(json.dumps([f.strip() for f in fields]).encode()).hexdigest()[:24]


def merged(store: Customer, erp: Customer) -> Customer:
    """The store's record with every non-empty field the ERP has."""
    def pick(ours: str, theirs: str) -> str:
        return theirs or ours

    address = Address(**{k: pick(getattr(store.billing, k), getattr(erp.billing, k))
                         for k in Address.model_fields})
    return store.model_copy(update={
        "email": pick(store.email, erp.email), "company": pick(store.company, erp.company),
        "phone": pick(store.phone, erp.phone), "billing": address,
        "first_name": store.first_name if erp.company and not erp.first_name
        else pick(store.first_name, erp.first_name),
        "last_name": store.last_name if erp.company and not erp.last_name
        else pick(store.last_name, erp.last_name)})


class CustomerActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="sync_store_customer")
    async def sync_store_customer(self, inp: CustomerSyncInput) -> CustomerSyncReport:
        """One store customer (a ``customer.*`` webhook) → the ERP, unless it is an echo."""
        conn = self.rt.connection(inp.connection_id)
        async with classified():
            customer = await self.rt.storefront(conn).get_customer(inp.customer_id)
            return await self._to_erp(conn, customer, CustomerSyncReport(seen=1))

    @activity.defn(name="sync_customers")
    async def sync_customers(self, inp: ConnectionInput) -> CustomerSyncReport:
        """The scheduled pass: every store customer → ERP (what webhooks missed), then ERP
        records modified since the watermark → store."""
        conn = self.rt.connection(inp.connection_id)
        report = CustomerSyncReport()
        shop, erp = self.rt.storefront(conn), self.rt.erp(conn)
        async with classified():
            async for customer in shop.iter_customers():
                report.seen += 1
                await self._to_erp(conn, customer, report)
                activity.heartbeat(report.seen)
            if hasattr(erp, "iter_customers_modified"):
                await self._to_store(conn, report)
        return report

    async def _to_erp(self, conn: Connection, customer: Customer,
                      report: CustomerSyncReport) -> CustomerSyncReport:
        ids = buyer_ids(conn, customer)
        external_id = ids[0]
        ledger = Ledger(self.rt.store, conn.id)
        row = ledger.get(LedgerKey.customer_sync(external_id))
        store_fp = fingerprint(customer)
        if row and (row.totals or {}).get("store") == store_fp:
            report.echoes += 1
            return report
        erp = self.rt.erp(conn)
        # The connector writes only to a customer ml-connector created; one found by e-mail
        # (where the connection's policy links them) is booked to, never changed.
        async with buyer_lease(self.rt.store, conn.id, ids):
            ref = await erp.upsert_customer(customer, external_id, aliases=ids[1:],
                                            match=conn.mappings.customer_match)
            # The order flow finds the same customer without another look-up.
            await record_buyer(ledger, ids, ref)
        erp_view = await erp.get_customer(external_id) if hasattr(erp, "get_customer") else None
        self._record(conn.id, external_id, ref.model_dump(mode="json"), store_fp,
                     fingerprint(erp_view))
        report.to_erp += 1
        return report

    async def _to_store(self, conn: Connection, report: CustomerSyncReport) -> None:
        store, shop, erp = self.rt.store, self.rt.storefront(conn), self.rt.erp(conn)
        ledger = Ledger(store, conn.id)
        mark = store.get_watermark(conn.id, WATERMARK)
        since = datetime.fromisoformat(mark) - OVERLAP if mark else EPOCH
        ours = f"{conn.mappings.document_prefix}C"
        async for external_id, erp_customer, modified in erp.iter_customers_modified(since):
            report.watermark = max(report.watermark or modified, modified)
            if not external_id.startswith(ours):  # guests and ERP-only accounts stay there
                continue
            row = ledger.get(LedgerKey.customer_sync(external_id))
            erp_fp = fingerprint(erp_customer)
            if row and (row.totals or {}).get("erp") == erp_fp:
                report.echoes += 1
                continue
            store_id = external_id.removeprefix(ours)
            wanted = merged(await shop.get_customer(store_id), erp_customer)
            erp_ref = row.erp_ref if row else None
            # Recorded before the write: the store's webhook for it may arrive first.
            self._record(conn.id, external_id, erp_ref, fingerprint(wanted), erp_fp)
            saved = await shop.update_customer(store_id, wanted)
            self._record(conn.id, external_id, erp_ref, fingerprint(saved), erp_fp)
            report.to_store += 1
        if report.watermark and (mark is None or report.watermark.isoformat() > mark):
            store.set_watermark(conn.id, WATERMARK, report.watermark.isoformat())

    def _record(self, connection_id: str, external_id: str, erp_ref: dict | None, store_fp: str,
                erp_fp: str) -> None:
        Ledger(self.rt.store, connection_id).mark(
            LedgerKey.customer_sync(external_id), DocumentState.POSTED, erp_ref=erp_ref,
            totals={"store": store_fp, "erp": erp_fp})

    def all(self) -> list:
        return [self.sync_store_customer, self.sync_customers]
