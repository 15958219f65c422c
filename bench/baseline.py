"""The throughput baseline: a bare workflow with the shape of OrderSync and none of its work.

Started the way the receiver starts an order (signal-with-start), it runs ``activities``
no-op activities one after the other, then ``local_activities`` no-op local activities (the
last one stamps the order done in this process), then idles on a timer as OrderSync does.
So the Temporal server does the same number of round trips per order and nothing else.
Kept apart from the benchmark code so the workflow sandbox re-imports only this module.
"""
from __future__ import annotations

import time
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import OrderEvent, OrderRef

DONE: dict[str, float] = {}  # workflow id -> when its last local activity ran (monotonic)
IDLE = timedelta(days=7)


class BaselineInput(BaseModel):
    ref: OrderRef
    activities: int
    local_activities: int


@activity.defn(name="bench_noop")
async def noop(ref: OrderRef) -> None:
    return None


@activity.defn(name="bench_done")
async def done(key: str) -> None:
    DONE.setdefault(key, time.monotonic())


@workflow.defn(name="BenchBaseline")
class Baseline:
    def __init__(self) -> None:
        self._events = 0

    @workflow.signal(name="event")
    def event(self, _: OrderEvent) -> None:
        self._events += 1

    @workflow.run
    async def run(self, inp: BaselineInput) -> None:
        seen = self._events
        for _ in range(inp.activities):
            await workflow.execute_activity(noop, inp.ref, start_to_close_timeout=timedelta(seconds=60))
        for n in range(inp.local_activities):
            last = n == inp.local_activities - 1
            await workflow.execute_local_activity(
                done if last else noop, workflow.info().workflow_id if last else inp.ref,
                start_to_close_timeout=timedelta(seconds=30))
        try:
            await workflow.wait_condition(lambda: self._events > seen, timeout=IDLE)
        except TimeoutError:
            return


ACTIVITIES = [noop, done]
WORKFLOWS = [Baseline]
