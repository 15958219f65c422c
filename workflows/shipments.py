"""ShipmentSync: ERP shipment confirmations → the store order shows shipped with tracking
(scheduled)."""
from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import ConnectionInput, ShipmentReport
    from workflows import policies


@workflow.defn(name="ShipmentSync")
class ShipmentSync:
    @workflow.run
    async def run(self, inp: ConnectionInput) -> ShipmentReport:
        return await workflow.execute_activity(
            "sync_shipments", inp, result_type=ShipmentReport, **policies.ERP_WRITE)
