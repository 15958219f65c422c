"""Benchmark 1: end-to-end throughput, webhook received -> ERP documents posted.

Side by side on one Temporal server (state in a file, durability on), alternating rounds:
* ml-connector: N paid orders already in the store sandbox, their signed deliveries POSTed
  to the receiver (20 at a time); done when the ledger says every order is ``posted``
  (invoice and receipt in the ERP). The sandboxes answer at once (no injected latency; the
  ERP's release completes on the first call).
* baseline: N signal-with-starts of :class:`bench.baseline.Baseline` with as many no-op
  activities and local activities as an OrderSync history shows (measured in a warm-up).
Reported: orders/s of each (median over rounds), their ratio, and the server round trips per
order (activities + local activities + signals) read from the histories of both.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.worker import Worker

from activities.messages import OrderEvent, OrderRef
from bench import baseline
from bench.common import (Bench, Row, Shop, add_connection, deliver_all, median, parked_reasons,
                          posted_orders, round_trips, verdict, wait_until)
from workflows.order import order_workflow_id

TARGET = 0.8


@dataclass(frozen=True)
class Size:
    orders: int
    rounds: int
    warmup: int = 5
    concurrency: int = 20


TINY, REDUCED, FULL = Size(3, 1, 2), Size(60, 3), Size(200, 5)


async def _ml_round(stack, conn, shop: Shop, n: int, concurrency: int, timeout: float) -> tuple[float, list[str]]:
    orders = [shop.place() for _ in range(n)]
    before = posted_orders(stack, conn)
    started = time.monotonic()
    await deliver_all(stack, conn, orders, concurrency=concurrency)
    await wait_until(lambda: posted_orders(stack, conn) >= before + n, timeout=timeout, interval=0.05,
                     what=lambda: f"{n} orders posted (not posted: {parked_reasons(stack, conn)})")
    elapsed = time.monotonic() - started
    return n / elapsed, [order_workflow_id(conn.id, str(o["id"])) for o in orders]


async def _baseline_round(client: Client, task_queue: str, n: int, shape: dict, concurrency: int,
                          timeout: float) -> tuple[float, list[str]]:
    prefix = f"bench-baseline/{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}/{i}" for i in range(n)]
    gate = asyncio.Semaphore(concurrency)

    async def start(wf_id: str) -> None:
        inp = baseline.BaselineInput(ref=OrderRef(connection_id="bench", order_id=wf_id),
                                     activities=int(shape["activities"]),
                                     local_activities=max(1, int(shape["local_activities"])))
        async with gate:
            await client.start_workflow(
                baseline.Baseline.run, inp, id=wf_id, task_queue=task_queue, start_signal="event",
                start_signal_args=[OrderEvent(kind="created", source="webhook")],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)

    started = time.monotonic()
    await asyncio.gather(*(start(i) for i in ids))
    await wait_until(lambda: all(i in baseline.DONE for i in ids), timeout=timeout, interval=0.05,
                     what=f"{n} baseline workflows done")
    return n / (time.monotonic() - started), ids


async def run(bench: Bench, size: Size = REDUCED) -> Row:
    stack = await bench.stack()
    await stack.control("erp", "/_sandbox/settings", {"action_polls": 0})  # release answers at once
    conn = await add_connection(stack, "tput")
    shop = await Shop.open(stack, seed=11)
    timeout = 60 + size.orders * 2.0
    # Warm-up: connections, tokens, caches; and the shape of one OrderSync history.
    _, warm_ids = await _ml_round(stack, conn, shop, size.warmup, size.concurrency, timeout)
    shape = await round_trips(bench.client, warm_ids)
    queue = f"bench-baseline-{uuid.uuid4().hex[:6]}"
    worker = Worker(bench.client, task_queue=queue, workflows=baseline.WORKFLOWS,
                    activities=baseline.ACTIVITIES, max_concurrent_activities=200)
    ml_rates, base_rates, ml_ids, base_ids = [], [], [], []
    async with worker:
        await _baseline_round(bench.client, queue, size.warmup, shape, size.concurrency, timeout)
        for _ in range(size.rounds):
            rate, base_ids = await _baseline_round(bench.client, queue, size.orders, shape,
                                                   size.concurrency, timeout)
            base_rates.append(rate)
            rate, ml_ids = await _ml_round(stack, conn, shop, size.orders, size.concurrency, timeout)
            ml_rates.append(rate)
        ml_trips = await round_trips(bench.client, ml_ids[:5])
        base_trips = await round_trips(bench.client, base_ids[:5])
    await bench.close(stack)
    ml, base = median(ml_rates), median(base_rates)
    ratio = ml / base
    return Row(
        "1 throughput (webhook -> posted)", f"{size.rounds}x{size.orders} orders",
        {"ml-connector": f"{ml:.1f} orders/s", "baseline": f"{base:.1f} orders/s",
         "ratio": f"{ratio:.2f}",
         "round trips/order": f"{ml_trips['round_trips']:.0f} vs {base_trips['round_trips']:.0f} "
                              f"({ml_trips['activities']:.0f} act + {ml_trips['local_activities']:.0f} "
                              f"local + {ml_trips['signals']:.0f} signal)",
         "workflow tasks/order": f"{ml_trips['workflow_tasks']:.0f} vs {base_trips['workflow_tasks']:.0f}"},
        target=f"ratio >= {TARGET}", verdict=verdict(ratio >= TARGET),
        detail={"ml_rates": ml_rates, "baseline_rates": base_rates, "ml_trips": ml_trips,
                "baseline_trips": base_trips})
