"""Shipments back to the store: an ERP shipment confirmation shows the buyer the order
shipped, with tracking. Each shipment is marked once (``LedgerKey.shipment`` in the ledger);
the watermark moves only after every shipment of the window was handled."""
from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity

from activities.catalog import EPOCH
from activities.errors import classified
from activities.messages import ConnectionInput, ShipmentReport
from activities.runtime import Runtime
from connections.ledger import DocumentState, Ledger, LedgerKey

WATERMARK = "shipments_modified"
OVERLAP = timedelta(seconds=60)


class ShipmentActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="sync_shipments")
    async def sync_shipments(self, inp: ConnectionInput) -> ShipmentReport:
        conn = self.rt.connection(inp.connection_id)
        erp, store = self.rt.erp(conn), self.rt.store
        ledger = Ledger(store, conn.id)
        if not hasattr(erp, "iter_shipments"):
            return ShipmentReport(supported=False)
        mark = store.get_watermark(conn.id, WATERMARK)
        since = datetime.fromisoformat(mark) - OVERLAP if mark else EPOCH
        report, prefix = ShipmentReport(), conn.mappings.document_prefix
        async with classified():
            async for shipment in erp.iter_shipments(since):
                report.seen += 1
                report.watermark = max(report.watermark or shipment.modified_at,
                                       shipment.modified_at)
                if not shipment.external_ref.startswith(prefix):
                    report.unknown.append(shipment.shipment_id)
                    continue
                key = LedgerKey.shipment(shipment.shipment_id)
                if ledger.is_posted(key):
                    continue
                order_id = shipment.external_ref.removeprefix(prefix)
                await self.rt.storefront(conn).mark_shipped(order_id, shipment)
                ledger.mark(key, DocumentState.POSTED, order_number=order_id,
                            erp_ref={"shipment": shipment.shipment_id,
                                     "tracking": shipment.tracking_numbers})
                report.marked += 1
                activity.heartbeat(report.seen)
        if report.watermark and (mark is None or report.watermark.isoformat() > mark):
            store.set_watermark(conn.id, WATERMARK, report.watermark.isoformat())
        return report

    def all(self) -> list:
        return [self.sync_shipments]
