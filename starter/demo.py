"""``make demo``: a realistic day of store traffic into the ERP for the four pairs merchants
ask for most, side by side, then the books of each.

Starts the embedded stack (Temporal dev server with its state in a file; for each pair a
store sandbox and an ERP sandbox over TLS and a receiver; one worker for all), registers a
connection per pair, drives each day (refunds, duplicate deliveries, one webhook outage),
lets the catch-up poll find what the outage dropped, waits, and prints the reconciliation —
the one ``ml-connector reconcile`` runs, through the connection's connectors (store orders
with their refunds and payments against the ERP's documents). Exit code 0 only if every
pair reconciles to the cent.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from activities.messages import PollInput, PollResult
from connections.config import Connection, Environment
from connections.store import open_store
from activities.reconcile import reconcile_patiently
from connectors.reconciliation import ReconciliationReport, shown
from starter.reconcile import summary_rows
from starter.stack import Stack, start_temporal_server
from starter.temporal import connect
from workflows.poll import OrderPoll

TASK_QUEUE = "ml-connector"
DEMO_PAIRS = (("woocommerce", "acumatica"), ("bigcommerce", "acumatica"),
              ("woocommerce", "oracle_fusion"), ("woocommerce", "exact_online"))
SHORT = {"woocommerce": "woo", "bigcommerce": "bc", "acumatica": "acumatica",
         "oracle_fusion": "oracle", "exact_online": "exact"}
console = Console()


def quiet_runtime() -> Runtime:
    """The SDK core warns on stderr when a busy laptop stretches a workflow task; the demo's
    console is for the books, so only errors come through."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


def connection_id(store_system: str, erp_system: str) -> str:
    return f"{SHORT[store_system]}-{SHORT[erp_system]}"


async def drive_day(stack: Stack, connection_id: str, *, orders: int, refund_ratio: float = 0.10,
                    duplicate_every: int = 20, outage_at: float = 0.5, outage_deliveries: int = 5,
                    seed: int = 7, progress=None) -> None:
    """Orders and refunds through the store's API, with duplicate deliveries and one outage."""
    sb, url = stack.shop_sandbox, stack.shop.url
    outage_order = int(orders * outage_at)

    async def on_progress(done: int, total: int) -> None:
        if duplicate_every and done % duplicate_every == 0:
            await sb.duplicate_next(stack.http, url, 1)
        if done == outage_order:
            await sb.outage(stack.http, url, outage_deliveries)
        if progress:
            progress(done, total)

    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    async with stack.store_client() as shop:
        await sb.generate_day(shop, orders=orders, refund_ratio=refund_ratio, seed=seed,
                              on_progress=on_progress)
    await sb.wait_deliveries(stack.http, url)
    await catch_up(stack, connection_id, since=started)


async def catch_up(stack: Stack, connection_id: str, since: datetime | None = None) -> PollResult:
    return await stack.client.execute_workflow(
        OrderPoll.run, PollInput(connection_id=connection_id, task_queue=stack.task_queue, since=since),
        id=f"poll/{connection_id}/{time.time_ns()}", task_queue=stack.task_queue)


# The sandboxes start empty, so every order they hold is the run's: reconcile them all.
SANDBOX_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


async def books(stack: Stack, conn: Connection, *, keep: bool = False) -> ReconciliationReport:
    """Every order of the sandbox store against the ERP, through the connectors; ``keep``
    saves the run as the connection's last (``status`` shows it)."""
    until = datetime.now(timezone.utc) + timedelta(minutes=1)
    return await reconcile_patiently(stack.runtime, conn, SANDBOX_EPOCH, until, keep=keep)


async def settle(stack: Stack, conn: Connection, *, timeout: float = 600, interval: float = 3.0,
                 on_tick=None) -> ReconciliationReport:
    """Wait until the ERP's books match the store's (or the time runs out); the final run
    is kept as the connection's last."""
    deadline = time.monotonic() + timeout
    while True:
        rec = await books(stack, conn)
        if on_tick:
            on_tick(rec)
        if rec.ok or time.monotonic() > deadline:
            return await books(stack, conn, keep=True)
        await asyncio.sleep(interval)


def print_report(rec: ReconciliationReport, title: str) -> None:
    table = Table(title=f"Reconciliation: {title}")
    for col in ("", "store", "ERP", ""):
        table.add_column(col)
    for row in summary_rows(rec):
        table.add_row(*row)
    console.print(table)
    gap = ", ".join(f"{shown(v, c)} {c}" for c, v in sorted(rec.difference_amount.items())) or "0"
    console.print(f"difference: {gap} — "
                  + ("[green]reconciled[/green]" if rec.ok else "[red]NOT reconciled[/red]"))
    for d in rec.differences[:20]:
        console.print(f"  order {d.order}: {d.message}")


async def run_pair(stack: Stack, conn: Connection, orders: int,
                   bar: Progress) -> ReconciliationReport:
    name = conn.id
    sent = bar.add_task(f"{name}: orders placed", total=orders)
    await drive_day(stack, conn.id, orders=orders,
                    progress=lambda done, total: bar.update(sent, completed=done))
    posted = bar.add_task(f"{name}: invoices posted", total=orders)
    return await settle(stack, conn, on_tick=lambda r: bar.update(
        posted, completed=r.invoices, total=max(r.paid_orders, 1)))


async def run_demo(*, orders: int = 200, home: Path = Path(".ml-connector/demo"),
                   temporal_port: int = 7233, ui_port: int = 8233,
                   pairs: tuple[tuple[str, str], ...] = DEMO_PAIRS) -> int:
    shutil.rmtree(home, ignore_errors=True)  # sandboxes start empty, so the books must too
    console.print(f"starting Temporal dev server (state in {home / 'temporal.db'}) …")
    server = await start_temporal_server(home, port=temporal_port, ui_port=ui_port)
    stacks: list[tuple[Stack, Connection]] = []
    try:
        env = Environment(home=home, temporal_address=f"127.0.0.1:{temporal_port}")
        store = open_store(env)
        client = await connect(env, store.vault.keyring, runtime=quiet_runtime())
        for i, (store_system, erp_system) in enumerate(pairs):
            stack = Stack(client, store, home / f"pair{i}", TASK_QUEUE, store_system=store_system,
                          erp_system=erp_system, run_worker=(i == 0))  # one worker serves all
            await stack.__aenter__()
            await stack.seed()
            conn = await stack.add_connection(connection_id(store_system, erp_system))
            stacks.append((stack, conn))
            console.print(f"{conn.id:16} store {stack.shop.url}  ERP {stack.erp_server.url}  "
                          f"receiver {stack.receiver.url}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            results = await asyncio.gather(*(run_pair(s, c, orders, bar) for s, c in stacks))
        for (stack, conn), rec in zip(stacks, results):
            print_report(rec, f"{conn.id} ({stack.pair})")
        console.print(f"Temporal UI: http://127.0.0.1:{ui_port}  (search: MlConnection=\"{stacks[0][1].id}\")")
        ok = all(r.ok for r in results)
        console.print("[green]every pair reconciles[/green]" if ok else "[red]NOT reconciled[/red]")
        return 0 if ok else 1
    finally:
        for stack, _ in stacks:  # the worker's stack first: its clients hold the others' sockets
            await stack.__aexit__(None, None, None)
        server.terminate()
        server.wait(10)
