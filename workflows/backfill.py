"""Backfill: every order modified in [since, until) handed to its OrderSync, window by
window, resumable (continue-as-new carries the position). Orders the ledger already has
posted are skipped by the poll activity without a workflow or an ERP call."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import BackfillInput, BackfillProgress, PollInput
    from activities.poll import PollActivities
    from workflows import policies

WINDOWS_PER_RUN = 100


@workflow.defn(name="Backfill")
class Backfill:
    def __init__(self) -> None:
        self._progress: BackfillProgress | None = None

    @workflow.query(name="progress")
    def progress(self) -> BackfillProgress | None:
        return self._progress

    @workflow.run
    async def run(self, inp: BackfillInput) -> BackfillProgress:
        p = self._progress = inp.progress or BackfillProgress(position=inp.since)
        for _ in range(WINDOWS_PER_RUN):
            if p.position >= inp.until:
                p.done = True
                return p
            end = min(p.position + timedelta(hours=inp.window_hours), inp.until)
            page = await workflow.execute_activity_method(
                PollActivities.poll_orders,
                PollInput(connection_id=inp.connection_id, task_queue=inp.task_queue,
                          since=p.position, until=end),
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=policies.STORE_READ["retry_policy"])
            p.orders_seen += page.orders_seen
            p.handed_over += page.handed_over
            p.windows_done += 1
            p.position = end
        workflow.continue_as_new(inp.model_copy(update={"progress": p}))
