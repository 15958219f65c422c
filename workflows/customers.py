"""CustomerSync: customer master alignment where the pair needs it (scheduled pass both
ways), and StoreCustomerChanged: one store ``customer.*`` webhook → the ERP."""
from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import ConnectionInput, CustomerSyncInput, CustomerSyncReport
    from workflows import policies


@workflow.defn(name="CustomerSync")
class CustomerSync:
    @workflow.run
    async def run(self, inp: ConnectionInput) -> CustomerSyncReport:
        return await workflow.execute_activity(
            "sync_customers", inp, result_type=CustomerSyncReport, **policies.ERP_WRITE)


@workflow.defn(name="StoreCustomerChanged")
class StoreCustomerChanged:
    @workflow.run
    async def run(self, inp: CustomerSyncInput) -> CustomerSyncReport:
        return await workflow.execute_activity(
            "sync_store_customer", inp, result_type=CustomerSyncReport, **policies.ERP_WRITE)
