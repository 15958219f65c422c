"""CustomerSync: customer master alignment where the pair needs it (scheduled pass both
ways), and StoreCustomerChanged: one store ``customer.*`` webhook → the ERP."""
from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.customers import CustomerActivities
    from activities.messages import ConnectionInput, CustomerSyncInput, CustomerSyncReport
    from workflows import policies


@workflow.defn(name="CustomerSync")
class CustomerSync:
    @workflow.run
    async def run(self, inp: ConnectionInput) -> CustomerSyncReport:
        return await workflow.execute_activity_method(
            CustomerActivities.sync_customers, inp, **policies.ERP_WRITE)


@workflow.defn(name="StoreCustomerChanged")
class StoreCustomerChanged:
    @workflow.run
    async def run(self, inp: CustomerSyncInput) -> CustomerSyncReport:
        return await workflow.execute_activity_method(
            CustomerActivities.sync_store_customer, inp, **policies.ERP_WRITE)
