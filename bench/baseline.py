"""The throughput baseline: a bare workflow with the naive shape of OrderSync and none of its work.

Started the way the receiver starts an order (signal-with-start), it runs ``activities``
no-op activities one after the other, then ``local_activities`` no-op local activities (the
last one notes the order done), then idles on a timer as OrderSync does. The benchmark gives
it one activity for every step of an order but the last, which is a local activity as the
ledger write is: each step a server round trip, nothing else.

``python -m bench.baseline`` runs its worker in a process of its own, as ml-connector's
worker runs in its own; done orders are appended, one workflow id a line, to the file named
by ``BENCH_BASELINE_DONE``. Kept apart from the benchmark code so the workflow sandbox
re-imports only this module.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import OrderEvent, OrderRef

DONE_FILE = "BENCH_BASELINE_DONE"
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
    with open(os.environ[DONE_FILE], "a") as out:  # one short write: whole lines
        out.write(key + "\n")


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


class DoneOrders:
    """The ids the baseline worker has noted done, read on as the file grows."""

    def __init__(self, path: Path) -> None:
        self.path, self._offset, self.ids = path, 0, set()
        path.touch()

    def __contains__(self, wf_id: str) -> bool:
        if wf_id not in self.ids:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            whole = data[:data.rfind(b"\n") + 1]
            self._offset += len(whole)
            self.ids.update(whole.decode().split())
        return wf_id in self.ids


async def serve() -> None:
    """The baseline's worker, on the task queue and Temporal of the environment (what the
    ml-connector worker reads), with the same encrypted data converter and concurrency."""
    from temporalio.worker import Worker

    from connections.config import Environment
    from connections.store import open_store
    from starter.temporal import connect

    env = Environment()
    client = await connect(env, open_store(env).vault.keyring)
    await Worker(client, task_queue=env.task_queue, workflows=WORKFLOWS, activities=ACTIVITIES,
                 max_concurrent_activities=200).run()


if __name__ == "__main__":
    import logging

    from bench import baseline  # the importable module, not __main__: the sandbox re-imports it
    from starter import eventloop
    from starter.logs import configure

    configure(logging.INFO)  # as ``ml-connector worker`` logs and on its event loop
    eventloop.run(baseline.serve())
