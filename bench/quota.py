"""Benchmark 2: riding an ERP's request quota.

The ERP sandbox allows R requests a minute (Acumatica's ``requests_per_minute``; Exact
Online's ``minutely_limit``, 60 as in production). N orders arrive at once (a promotion
peak: every delivery POSTed to the receiver in a burst); the clock stops when the last one is
posted. The theoretical minimum is the ERP requests the orders really needed (accepted ones,
i.e. N x calls per order) at exactly R a minute; the figures are wall time over that minimum
and 429 answers as a share of all requests. Both ERPs run side by side in one run.

Both sandboxes count quota in fixed 60-second windows opened by the first request, so a
client that bursts can finish a little under the "minimum" when the last window is partly
used; a ratio below 1 means that, not a faster-than-quota client.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.common import (Bench, Row, Shop, add_connection, deliver_all, erp_state, parked_reasons,
                          settled_orders, verdict, wait_until)
from connections.ledger import OrderState

TARGET_RATIO, TARGET_429 = 1.05, 0.01


@dataclass(frozen=True)
class Size:
    acumatica_orders: int
    acumatica_rpm: int
    exact_orders: int
    exact_rpm: int = 60


TINY, REDUCED, FULL = Size(3, 600, 2, 600), Size(40, 240, 15), Size(200, 300, 100)


def _acumatica_counts(stack) -> tuple[int, int]:
    stats = erp_state(stack).stats
    return stats["total"], stats["throttled"]


def _exact_counts(stack) -> tuple[int, int]:
    stats = erp_state(stack).stats
    throttled = int(stats["by_status"].get("429", 0))
    return int(stats["api_requests"]), throttled


async def _ride(bench: Bench, erp: str, orders: int, rpm: int, options: dict) -> dict:
    stack = await bench.stack(erp_system=erp, erp_options=options)
    conn = await add_connection(stack, f"quota-{erp[:3]}")
    conn.erp_requests_per_minute = rpm  # the licensed rate: its own, server-rate-limited queue
    stack.store.save_connection(conn)
    await asyncio.sleep(1.5)  # the stack's worker starts the quota queue's worker
    shop = await Shop.open(stack, seed=31, pool=10)
    placed = [shop.place() for _ in range(orders)]
    counts = _acumatica_counts if erp == "acumatica" else _exact_counts
    started = time.monotonic()
    await deliver_all(stack, conn, placed)
    minimum_guess = orders * 12 / rpm * 60
    await wait_until(lambda: sum(settled_orders(stack, conn).values()) >= orders, interval=0.1,
                     timeout=120 + 4 * minimum_guess, what=f"{orders} orders settled at {rpm}/min")
    wall = time.monotonic() - started
    total, throttled = counts(stack)
    settled, reasons = settled_orders(stack, conn), parked_reasons(stack, conn)
    await bench.close(stack)
    accepted = total - throttled
    minimum = accepted / rpm * 60
    return {"erp": erp, "orders": orders, "rpm": rpm, "wall": wall, "accepted": accepted,
            "throttled": throttled, "total": total, "calls_per_order": accepted / orders,
            "minimum": minimum, "ratio": wall / minimum, "share_429": throttled / max(total, 1),
            "settled": settled, "not_posted": reasons}



async def run(bench: Bench, size: Size = REDUCED) -> Row:
    jobs = [_ride(bench, "acumatica", size.acumatica_orders, size.acumatica_rpm,
                  {"requests_per_minute": size.acumatica_rpm}),
            _ride(bench, "exact_online", size.exact_orders, size.exact_rpm,
                  {"minutely_limit": size.exact_rpm})]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    figures, ok, detail = {}, True, {}
    for name, result in zip(("acumatica", "exact_online"), results):
        if isinstance(result, BaseException):
            figures[name] = f"failed ({type(result).__name__}: {str(result)[:120]})"
            ok = False
            continue
        detail[name] = result
        figures[name] = (f"{result['orders']} orders at {result['rpm']}/min: wall/min "
                         f"{result['ratio']:.2f} ({result['wall']:.0f} s / {result['minimum']:.0f} s), "
                         f"429s {result['share_429']:.1%} ({result['throttled']}/{result['total']}), "
                         f"{result['calls_per_order']:.1f} calls/order")
        posted = result["settled"][OrderState.POSTED]
        if posted < result["orders"]:
            figures[name] += (f"; NOT POSTED {result['orders'] - posted}: "
                              + " | ".join(result["not_posted"]))
        ok &= (result["ratio"] <= TARGET_RATIO and result["share_429"] <= TARGET_429
               and posted == result["orders"])
    return Row("2 quota riding", f"R={size.acumatica_rpm}/min (Acumatica), {size.exact_rpm}/min (Exact)",
               figures, target=f"wall/min <= {TARGET_RATIO}, 429s <= {TARGET_429:.0%}",
               verdict=verdict(ok), detail=detail)
