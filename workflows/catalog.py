"""CatalogPush: ERP item changes (price, cost, stock) → store products and variants by SKU.
Scheduled; ``full`` is the nightly reconciliation that compares every item."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.catalog import CatalogActivities
    from activities.messages import CatalogInput, CatalogReport
    from workflows import policies


@workflow.defn(name="CatalogPush")
class CatalogPush:
    @workflow.run
    async def run(self, inp: CatalogInput) -> CatalogReport:
        return await workflow.execute_activity_method(
            CatalogActivities.push_catalog, inp,
            start_to_close_timeout=timedelta(hours=2), heartbeat_timeout=timedelta(minutes=5),
            retry_policy=policies.STORE_READ["retry_policy"])
