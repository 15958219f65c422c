"""``make demo``: a realistic day of WooCommerce traffic into Acumatica, then the books.

Starts the embedded stack (Temporal dev server with its state in a file, the sandboxes over
TLS, worker, receiver), registers a connection, drives the day (refunds, duplicate
deliveries, one webhook outage), lets the catch-up poll find what the outage dropped,
waits, and prints the reconciliation. Exit code 0 only if it reconciles to the cent.
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

from activities.messages import PollInput, PollResult
from connections.config import Environment, open_store
from starter.reconcile import Reconciliation, reconcile, store_orders
from starter.stack import Stack, start_temporal_server
from starter.temporal import connect

TASK_QUEUE = "ml-connector"
console = Console()


async def drive_day(stack: Stack, connection_id: str, *, orders: int, refund_ratio: float = 0.10,
                    duplicate_every: int = 20, outage_at: float = 0.5, outage_deliveries: int = 5,
                    seed: int = 7, progress=None) -> None:
    """Orders and refunds through the store's API, with duplicate deliveries and one outage."""
    from sandbox.traffic import generate_day

    outage_order = int(orders * outage_at)

    async def on_progress(done: int, total: int) -> None:
        if duplicate_every and done % duplicate_every == 0:
            await stack.control("woocommerce", "/_sandbox/webhooks/duplicate", {"next": 1})
        if done == outage_order:
            await stack.control("woocommerce", "/_sandbox/webhooks/outage",
                                {"fail_next": outage_deliveries})
        if progress:
            progress(done, total)

    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    async with stack.store_client() as shop:
        await generate_day(shop, orders=orders, refund_ratio=refund_ratio, seed=seed,
                           on_progress=on_progress)
    await stack.control("woocommerce", "/_sandbox/webhooks/wait-idle", {})
    await catch_up(stack, connection_id, since=started)


async def catch_up(stack: Stack, connection_id: str, since: datetime | None = None) -> PollResult:
    return await stack.client.execute_workflow(
        "OrderPoll", PollInput(connection_id=connection_id, task_queue=stack.task_queue, since=since),
        id=f"poll/{connection_id}/{time.time_ns()}", task_queue=stack.task_queue,
        result_type=PollResult)


async def books(stack: Stack, prefix: str = "WC-") -> Reconciliation:
    async with stack.store_client() as shop:
        orders = await store_orders(shop)
    documents = await stack.control("acumatica", "/_sandbox/documents")
    return reconcile(orders, documents, prefix)


async def settle(stack: Stack, *, timeout: float = 600, on_tick=None) -> Reconciliation:
    """Wait until the ERP's books match the store's (or the time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        rec = await books(stack)
        if on_tick:
            on_tick(rec)
        if rec.ok or time.monotonic() > deadline:
            return rec
        await asyncio.sleep(1.0)


def print_report(rec: Reconciliation, ui: str | None = None) -> None:
    table = Table(title="Reconciliation: WooCommerce → Acumatica")
    for col in ("", "store", "ERP", ""):
        table.add_column(col)
    for row in rec.rows():
        table.add_row(*row)
    console.print(table)
    console.print(f"difference: {rec.difference_cents} cents — "
                  + ("[green]reconciled[/green]" if rec.ok else "[red]NOT reconciled[/red]"))
    if rec.missing:
        console.print(f"missing: {', '.join(rec.missing[:20])}")
    if ui:
        console.print(f"Temporal UI: {ui}  (search: MlConnection=\"demo\")")


async def run_demo(*, orders: int = 200, home: Path = Path(".ml-connector/demo"),
                   temporal_port: int = 7233, ui_port: int = 8233) -> int:
    shutil.rmtree(home, ignore_errors=True)  # sandboxes start empty, so the books must too
    env = Environment(home=home)
    console.print(f"starting Temporal dev server (state in {home / 'temporal.db'}) …")
    server = await start_temporal_server(home, port=temporal_port, ui_port=ui_port)
    try:
        env = Environment(home=home, temporal_address=f"127.0.0.1:{temporal_port}")
        store = open_store(env)
        client = await connect(env, store.vault.keyring)
        async with Stack(client, store, home, TASK_QUEUE) as stack:
            await stack.seed()
            await stack.add_connection("demo")
            console.print(f"store {stack.woo.url}  ERP {stack.acu.url}  receiver {stack.receiver.url}")
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console) as bar:
                sent = bar.add_task("orders placed", total=orders)
                await drive_day(stack, "demo", orders=orders,
                                progress=lambda done, total: bar.update(sent, completed=done))
                posted = bar.add_task("invoices posted", total=orders)
                rec = await settle(stack, on_tick=lambda r: bar.update(
                    posted, completed=r.invoices, total=max(r.paid_orders, 1)))
            print_report(rec, f"http://127.0.0.1:{ui_port}")
            return 0 if rec.ok else 1
    finally:
        server.terminate()
        server.wait(10)
