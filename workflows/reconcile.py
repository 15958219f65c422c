"""Reconcile: the nightly store-versus-ERP check of a connection, to the cent (scheduled).
The activity keeps the run in the connection store, where ``status``, the metrics and the
console read it; the result here is the summary."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities, ReconcileInput, ReconcileResult
    from workflows import policies


@workflow.defn(name="Reconcile")
class Reconcile:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileResult:
        # Reads only, but of every order of the window on both sides: minutes, not seconds.
        return await workflow.execute_activity_method(
            ReconcileActivities.reconcile, inp,
            start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(minutes=2),
            retry_policy=policies.STORE_READ["retry_policy"])
