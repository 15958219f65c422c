"""Benchmark 3: ERP calls per order in a realistic mix, at steady state.

The store sandbox delivers its own webhooks (``order.created`` + ``order.updated`` per order,
``order.updated`` per refund). A warm-up gives every returning customer one order, so their
ERP customer records exist; then N orders (70% returning customers, 30% first-time guests)
and refunds of 10% of them. The ERP sandbox's request log over the measured part, divided by
N, is the figure; it is broken down by method, entity and route so the calls can be cut.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from bench.common import Bench, Row, Shop, add_connection, erp_state, verdict, wait_until

TARGET = 1.3
WRITES = {"PUT", "POST", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Size:
    orders: int
    pool: int
    refund_ratio: float = 0.10
    returning_ratio: float = 0.70
    quiet: float = 2.0  # seconds without an ERP request that mean the orders are done
    action_polls: int | None = None  # the sandbox's default: a release answers 202 once


TINY, REDUCED, FULL = Size(5, 2, quiet=0.5, action_polls=0), Size(100, 20), Size(500, 60)


def route(entry: dict) -> str:
    """``GET Customer ?$filter``, ``POST SalesInvoice/ReleaseSalesInvoice``, ... of a logged request."""
    method, entity = entry["method"], entry.get("entity") or "-"
    parts = entry["path"].split("/")
    rest = parts[parts.index(entity) + 1:] if entity in parts else []
    if "status" in rest:
        return f"{method} {entity}/{rest[0]}/status"
    if rest and method == "POST":
        return f"{method} {entity}/{rest[0]}"
    if rest:
        return f"{method} {entity} by key"
    if method == "GET":
        return f"{method} {entity} ?$filter" if "filter" in (entry.get("query") or "") else f"{method} {entity} list"
    return f"{method} {entity}"


def ledger_count(stack, conn, kind: str) -> int:
    return len(stack.store.ledger_rows(conn.id, kind=kind, state="posted"))


async def _settled(stack, conn, invoices: int, memos: int, timeout: float, quiet: float) -> None:
    """Every invoice and credit memo in the ledger, then two quiet seconds at the ERP."""
    await wait_until(lambda: ledger_count(stack, conn, "invoice") >= invoices
                     and ledger_count(stack, conn, "credit_memo") >= memos,
                     timeout=timeout, interval=0.1, what=f"{invoices} invoices and {memos} credit memos")
    log = erp_state(stack).request_log
    last, quiet_since = len(log), time.monotonic()
    while time.monotonic() - quiet_since < quiet:
        await asyncio.sleep(0.1)
        if len(log) != last:
            last, quiet_since = len(log), time.monotonic()


async def run(bench: Bench, size: Size = REDUCED) -> Row:
    stack = await bench.stack()
    if size.action_polls is not None:
        await stack.control("erp", "/_sandbox/settings", {"action_polls": size.action_polls})
    conn = await add_connection(stack, "calls", register_webhooks=True)
    shop = await Shop.open(stack, seed=23, pool=size.pool)
    timeout = 120 + size.orders * 2.0
    for person in shop.pool:  # warm-up: each returning customer exists in the ERP
        shop.place(person)
    await _settled(stack, conn, len(shop.pool), 0, timeout, size.quiet)
    state = erp_state(stack)
    start_log, start_tokens = len(state.request_log), state.stats["token_requests"]

    orders = [shop.place(returning_ratio=size.returning_ratio) for _ in range(size.orders)]
    refunds = [shop.refund(o) for o in shop.rng.sample(orders, round(size.orders * size.refund_ratio))]
    await _settled(stack, conn, len(shop.pool) + size.orders, len(refunds), timeout, size.quiet)

    log = state.request_log[start_log:]
    tokens = state.stats["token_requests"] - start_tokens
    await bench.close(stack)
    n = size.orders
    writes = sum(1 for e in log if e["method"] in WRITES)
    reads = len(log) - writes
    by_route = Counter(route(e) for e in log)
    breakdown = ", ".join(f"{r} {c / n:.2f}" for r, c in by_route.most_common())
    guests = sum(1 for o in orders if not o.get("customer_id"))
    per_order = (reads + writes) / n
    return Row(
        "3 ERP calls per order (70% returning, 10% refunds)",
        f"{n} orders ({guests} new guests), {len(refunds)} refunds",
        {"reads/order": f"{reads / n:.2f}", "writes/order": f"{writes / n:.2f}",
         "total/order": f"{per_order:.2f}", "token requests": str(tokens),
         "by route (per order)": breakdown},
        target=f"<= {TARGET} calls/order", verdict=verdict(per_order <= TARGET),
        detail={"by_route": dict(by_route), "orders": n, "refunds": len(refunds),
                "statuses": dict(Counter(str(e["status"]) for e in log))})
