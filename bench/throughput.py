"""Benchmark 1: end-to-end throughput, webhook received -> ERP documents posted.

Side by side on one Temporal server (state in a file, durability on), alternating rounds:
* ml-connector: N paid orders already in the store sandbox, their signed deliveries POSTed
  to the receiver (20 at a time); done when the ledger says every order is ``posted``
  (invoice and receipt in the ERP). The sandboxes answer at once (no injected latency; the
  ERP's release completes on the first call).
* baseline: N signal-with-starts of :class:`bench.baseline.Baseline` in the naive shape of
  the same order: one no-op activity per step an OrderSync history shows (measured in a
  warm-up), but for the last, a local activity as the ledger write is.
Each worker runs in an OS process of its own (``ml-connector worker`` and ``python -m
bench.baseline``), as it would in production; this process serves the sandboxes and the
receiver and drives both, so the simulators' CPU is not the worker's event loop's.
Reported: orders/s of each (median over rounds), their ratio, and per order the server
round trips (activity tasks + workflow tasks + the signal) and steps read from the histories.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass

from temporalio.common import WorkflowIDReusePolicy

from activities.messages import OrderEvent, OrderRef
from bench import baseline
from bench.common import (Bench, CpuMeter, Row, Shop, add_connection, deliver_all, median,
                          parked_reasons, posted_orders, round_trips, verdict, wait_until)
from starter.dispatch import signal_name
from workflows.order import order_workflow_id

TARGET = 0.8


@dataclass(frozen=True)
class Size:
    orders: int
    rounds: int
    warmup: int = 5
    concurrency: int = 20


TINY, REDUCED, FULL = Size(3, 1, 2), Size(60, 3), Size(200, 5)


async def _ml_round(bench: Bench, stack, conn, shop: Shop, n: int, concurrency: int,
                    timeout: float) -> tuple[float, list[str]]:
    orders = [shop.place() for _ in range(n)]
    before = posted_orders(stack, conn)
    started = time.monotonic()
    await deliver_all(stack, conn, orders, concurrency=concurrency)
    await wait_until(lambda: bench.children_alive() and posted_orders(stack, conn) >= before + n,
                     timeout=timeout, interval=0.05,
                     what=lambda: f"{n} orders posted (not posted: {parked_reasons(stack, conn)})")
    elapsed = time.monotonic() - started
    return n / elapsed, [order_workflow_id(conn.id, str(o["id"])) for o in orders]


async def _baseline_round(bench: Bench, task_queue: str, n: int, shape: dict, concurrency: int,
                          done: baseline.DoneOrders, timeout: float) -> tuple[float, list[str]]:
    prefix = f"bench-baseline/{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}/{i}" for i in range(n)]
    gate = asyncio.Semaphore(concurrency)

    async def start(wf_id: str) -> None:
        inp = baseline.BaselineInput(ref=OrderRef(connection_id="bench", order_id=wf_id), **shape)
        async with gate:
            await bench.client.start_workflow(
                baseline.Baseline.run, inp, id=wf_id, task_queue=task_queue,
                start_signal=signal_name(baseline.Baseline.event),
                start_signal_args=[OrderEvent(kind="created", source="webhook")],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)

    started = time.monotonic()
    await asyncio.gather(*(start(i) for i in ids))
    await wait_until(lambda: bench.children_alive() and all(i in done for i in ids),
                     timeout=timeout, interval=0.05, what=f"{n} baseline workflows done")
    return n / (time.monotonic() - started), ids


def naive_shape(trips: dict) -> dict:
    """One activity per step of the order, but for the last: a local activity."""
    steps = int(trips["activities"] + trips["local_activities"])
    return {"activities": steps - 1, "local_activities": 1}


def _trips(t: dict) -> str:
    return (f"{t['server_round_trips']:.0f} ({t['activities']:.0f} act + "
            f"{t['workflow_tasks']:.0f} wf tasks + {t['signals']:.0f} signal; "
            f"{t['local_activities']:.0f} local)")


async def run(bench: Bench, size: Size = REDUCED) -> Row:
    stack = await bench.stack(run_worker=False)
    # A release answers at once: no polls, no run time (the sandbox defaults to real ones).
    await stack.control("erp", "/_sandbox/settings", {"action_polls": 0, "action_ms": 0})
    conn = await add_connection(stack, "tput")
    shop = await Shop.open(stack, seed=11)
    queue = f"bench-baseline-{uuid.uuid4().hex[:6]}"
    done = baseline.DoneOrders(bench.home / f"{queue}.done")
    workers = [bench.spawn("ml-worker", ["-m", "starter.cli", "worker"], stack.task_queue),
               bench.spawn("baseline-worker", ["-m", "bench.baseline"], queue,
                           {baseline.DONE_FILE: str(done.path)})]
    timeout = 60 + size.orders * 2.0
    ml_rates, base_rates, ml_ids, base_ids = [], [], [], []
    ml_cpu: list[dict] = []
    base_cpu: list[dict] = []
    meter = CpuMeter({"server": bench.server.pid, "sandboxes+receiver": os.getpid(),
                      "ml worker": workers[0].pid, "baseline worker": workers[1].pid})
    try:
        # Warm-up: worker start, connections, tokens, caches; the steps of one OrderSync.
        _, warm_ids = await _ml_round(bench, stack, conn, shop, size.warmup, size.concurrency,
                                      timeout)
        shape = naive_shape(await round_trips(bench.client, warm_ids))
        await _baseline_round(bench, queue, size.warmup, shape, size.concurrency, done,
                              timeout)
        for _ in range(size.rounds):
            meter.start()
            rate, base_ids = await _baseline_round(bench, queue, size.orders, shape,
                                                   size.concurrency, done, timeout)
            base_rates.append(rate)
            base_cpu.append(meter.ms_per(size.orders))
            meter.start()
            rate, ml_ids = await _ml_round(bench, stack, conn, shop, size.orders,
                                           size.concurrency, timeout)
            ml_rates.append(rate)
            ml_cpu.append(meter.ms_per(size.orders))
        ml_trips = await round_trips(bench.client, ml_ids[:5])
        base_trips = await round_trips(bench.client, base_ids[:5])
    finally:
        for worker in workers:
            await bench.stop_child(worker)
    await bench.close(stack)
    ml, base = median(ml_rates), median(base_rates)
    ratio = ml / base
    cpu = {side: {name: round(median([r[name] for r in rounds]), 1) for name in rounds[0]}
           for side, rounds in (("ml", ml_cpu), ("baseline", base_cpu))}
    mc, bc = cpu["ml"], cpu["baseline"]
    return Row(
        "1 throughput (webhook -> posted)", f"{size.rounds}x{size.orders} orders",
        {"ml-connector": f"{ml:.1f} orders/s", "baseline": f"{base:.1f} orders/s",
         "ratio": f"{ratio:.2f}",
         "server round trips/order": f"{_trips(ml_trips)} vs {_trips(base_trips)}",
         "steps/order": f"{ml_trips['steps']:.0f} vs {base_trips['steps']:.0f}",
         "CPU ms/order": f"worker {mc['ml worker']:.0f} vs {bc['baseline worker']:.0f}, "
                         f"server {mc['server']:.0f} vs {bc['server']:.0f}, "
                         f"sandboxes+receiver+driver {mc['sandboxes+receiver']:.0f} vs "
                         f"{bc['sandboxes+receiver']:.0f}"},
        target=f"ratio >= {TARGET}", verdict=verdict(ratio >= TARGET),
        detail={"ml_rates": ml_rates, "baseline_rates": base_rates, "ml_trips": ml_trips,
                "baseline_trips": base_trips, "baseline_shape": shape, "cpu_ms_per_order": cpu})
