"""Benchmark 5: catalog push of N changed SKUs (Acumatica stock items -> WooCommerce products).

Both sandboxes are seeded in-process with the same N SKUs, every one with a different price
and stock in the ERP, then one ``CatalogPush`` runs through the worker. Reported: store write
calls (must be ceil(N / 100), WooCommerce's batch limit), store and ERP reads, wall time, and
the peak RSS of this process (worker, sandboxes and all) against its RSS before the push.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

from activities.messages import CatalogInput, CatalogReport
from bench.common import Bench, Row, RssSampler, add_connection, erp_state, mib, verdict, woo
from connectors.woocommerce import BATCH_SIZE
from workflows.catalog import CatalogPush


@dataclass(frozen=True)
class Size:
    skus: int


TINY, REDUCED, FULL = Size(250), Size(10_000), Size(10_000)


def seed(stack, n: int) -> list[str]:
    skus = [f"BULK-{i:06d}" for i in range(n)]
    shop, erp = woo(stack), erp_state(stack)
    for sku in skus:
        shop.add_product(sku, sku, "10.00", manage_stock=True, stock_quantity=1)
    for i, sku in enumerate(skus):
        erp.add_stock_item(sku, default_price=f"{11 + i % 7}.50", last_cost="4.00",
                           qty_on_hand=20 + i % 5, warehouse_id="MAIN")
    return skus


async def run(bench: Bench, size: Size = REDUCED) -> Row:
    stack = await bench.stack(seed=False)
    started = time.monotonic()
    seed(stack, size.skus)
    seeded_in = time.monotonic() - started
    conn = await add_connection(stack, "cat")
    erp_before = erp_state(stack).stats["by_method"].get("GET", 0)
    with RssSampler() as rss:
        before = rss.sample()
        started = time.monotonic()
        report = await bench.client.execute_workflow(
            CatalogPush.run, CatalogInput(connection_id=conn.id), id=f"bench-catalog/{uuid.uuid4().hex[:6]}",
            task_queue=stack.task_queue)
        wall = time.monotonic() - started
    erp_reads = erp_state(stack).stats["by_method"].get("GET", 0) - erp_before
    await bench.close(stack)
    bound = math.ceil(size.skus / BATCH_SIZE)
    ok = report.updated == size.skus and report.write_calls == bound
    return Row(
        "5 catalog push", f"{size.skus:,} changed SKUs",
        {"store writes": f"{report.write_calls} (bound {bound})", "store reads": str(report.read_calls),
         "ERP reads": str(erp_reads), "updated": f"{report.updated:,}", "wall": f"{wall:.1f} s",
         "peak RSS": f"{mib(rss.peak)} (before {mib(before)})"},
        target="writes == ceil(N/100)", verdict=verdict(ok),
        detail={"seed_seconds": round(seeded_in, 1), "report": report.model_dump(mode="json")})
