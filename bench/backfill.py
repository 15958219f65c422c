"""Benchmark 6: backfill of N orders, with the worker in its own process.

The store sandbox is seeded in-process (its REST API would take longer than the benchmark)
with N paid orders spread over N/1000 past days, so each 24-hour window of the ``Backfill``
workflow reads about 1,000 orders (10 pages). The worker is a separate ``ml-connector
worker`` process so its RSS is its own (psutil, sampled every half second). Each order is
handed to its OrderSync by signal-with-start on a task queue no worker polls: this measures
the backfill itself (store reads, ledger checks, hand-over); what an OrderSync then costs is
benchmark 1's figure.
"""
from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from activities.messages import BackfillInput
from bench.common import Bench, Row, RssSampler, Shop, add_connection, mib, now_utc, verdict
from workflows.backfill import Backfill

TARGET_MB = 300
PER_DAY = 1000


@dataclass(frozen=True)
class Size:
    orders: int


TINY, REDUCED, FULL = Size(100), Size(10_000), Size(100_000)


def seed(shop: Shop, n: int) -> int:
    """``n`` orders, ``PER_DAY`` a day, ending a day ago; returns the number of days."""
    state, days = shop.state, max(1, -(-n // PER_DAY))
    try:
        for i in range(n):
            day, slot = divmod(i, PER_DAY)
            state.clock_offset = -((days - day) * 86400) + slot * (86400 / PER_DAY) - 86400
            shop.place(returning_ratio=0.0)
    finally:
        state.clock_offset = 0.0
    return days


def _worker_command() -> list[str]:
    script = Path(sys.executable).with_name("ml-connector")
    return [str(script), "worker"] if script.exists() else [shutil.which("ml-connector") or "ml-connector", "worker"]


async def _polled(bench: Bench, task_queue: str, timeout: float = 60) -> None:
    request = DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=task_queue),
                                       task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await bench.client.workflow_service.describe_task_queue(request)).pollers:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no worker polls {task_queue}")


async def run(bench: Bench, size: Size = REDUCED) -> Row:
    stack = await bench.stack(run_worker=False)
    conn = await add_connection(stack, "bf")
    shop = await Shop.open(stack, seed=53, pool=50)
    started = time.monotonic()
    days = seed(shop, size.orders)
    seeded_in = time.monotonic() - started
    log = open(bench.home / "worker.log", "ab")
    proc = await asyncio.create_subprocess_exec(
        *_worker_command(), env=bench.child_env(stack.task_queue), stdout=log, stderr=log)
    trace: list[tuple[int, int]] = []  # (orders seen, worker RSS)
    try:
        await _polled(bench, stack.task_queue)
        until = now_utc()
        inp = BackfillInput(connection_id=conn.id, task_queue=f"bench-parked-{uuid.uuid4().hex[:6]}",
                            since=until - timedelta(days=days + 2), until=until, window_hours=24)
        with RssSampler(proc.pid, interval=0.5) as rss:
            idle = rss.sample()
            started = time.monotonic()
            handle = await bench.client.start_workflow(
                Backfill.run, inp, id=f"bench-backfill/{uuid.uuid4().hex[:6]}", task_queue=stack.task_queue)
            result = None
            while result is None:
                try:
                    result = await asyncio.wait_for(handle.result(), 1.0)
                except asyncio.TimeoutError:
                    progress = await handle.query(Backfill.progress)
                    if progress is not None:
                        trace.append((progress.orders_seen, rss.sample()))
            wall = time.monotonic() - started
            trace.append((result.orders_seen, rss.sample()))
    finally:
        proc.terminate()
        await proc.wait()
        log.close()
        await bench.close(stack)
    checkpoints = _checkpoints(trace, size.orders)
    peak = rss.peak
    ok = result.done and result.orders_seen == size.orders and peak <= TARGET_MB * 2**20
    magnitude = f"10^{len(str(size.orders)) - 1}"
    return Row(
        "6 backfill", f"{size.orders:,} orders ({magnitude}), {days} daily windows",
        {"time per 1,000 orders": f"{wall / size.orders * 1000:.2f} s",
         "worker peak RSS": f"{mib(peak)} (idle {mib(idle)})",
         "worker RSS by orders seen": ", ".join(f"{n:,}: {mib(r)}" for n, r in checkpoints),
         "seen/handed over": f"{result.orders_seen:,}/{result.handed_over:,}", "wall": f"{wall:.0f} s"},
        target=f"peak RSS <= {TARGET_MB} MB, flat", verdict=verdict(ok),
        detail={"seed_seconds": round(seeded_in, 1), "trace": trace[-200:], "idle_rss": idle})


def _checkpoints(trace: list[tuple[int, int]], total: int, parts: int = 5) -> list[tuple[int, int]]:
    """The RSS sample closest after each 1/parts of the orders (flat means these agree)."""
    out = []
    for k in range(1, parts + 1):
        mark = total * k // parts
        after = [t for t in trace if t[0] >= mark] or trace[-1:]
        if after and (not out or after[0] != out[-1]):
            out.append(after[0])
    return out
