"""ShipmentSync: ERP shipment confirmations → the store order shows shipped with tracking
(scheduled)."""
from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import ConnectionInput, ShipmentReport
    from activities.shipments import ShipmentActivities
    from workflows import policies


@workflow.defn(name="ShipmentSync")
class ShipmentSync:
    @workflow.run
    async def run(self, inp: ConnectionInput) -> ShipmentReport:
        return await workflow.execute_activity_method(
            ShipmentActivities.sync_shipments, inp, **policies.ERP_WRITE)
