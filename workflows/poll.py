"""OrderPoll: the scheduled catch-up (webhooks are hints; the poll is the guarantee)."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import PollInput, PollResult
    from activities.poll import PollActivities
    from workflows import policies


@workflow.defn(name="OrderPoll")
class OrderPoll:
    @workflow.run
    async def run(self, inp: PollInput) -> PollResult:
        return await workflow.execute_activity_method(
            PollActivities.poll_orders, inp,
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2),
            retry_policy=policies.STORE_READ["retry_policy"])
