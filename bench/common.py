"""What every benchmark shares: one file-backed Temporal dev server per run, fresh stacks on
it, in-process access to the sandboxes (for seeding and counting), signed webhook
deliveries, realistic orders, RSS sampling, medians and the table row each benchmark prints.

The machines these run on are shared and noisy, so no figure is a single timing: each one
is a median of repeats or a ratio of two measurements taken side by side in the same run.
"""
from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable

import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from connections.config import WEBHOOK_SECRET, Connection, Environment
from connections.ledger import LedgerKind, OrderState
from connections.store import ConnectionStore, open_store
from sandbox import traffic
from sandbox.server import free_port
from sandbox.woocommerce import sign_payload
from starter.stack import Stack, _die_with_parent, start_temporal_server
from starter.temporal import connect

API = "wp-json/wc/v3/"


# --------------------------------------------------------------------------- results

@dataclass
class Row:
    """One benchmark's line in the table: figures as already-formatted strings."""

    bench: str
    size: str
    figures: dict[str, str]
    target: str = ""
    verdict: str = ""  # "met", "missed", "n/a"
    detail: dict[str, Any] = field(default_factory=dict)  # extra read-outs (JSON, not printed)

    def line(self) -> str:
        figures = "; ".join(f"{k} {v}" for k, v in self.figures.items())
        return f"| {self.bench} | {self.size} | {figures} | {self.target} | {self.verdict} |"


TABLE_HEADER = "| benchmark | size | figures | target | verdict |\n|---|---|---|---|---|"


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> str:
    freq = psutil.cpu_freq()
    mhz = f" @ {freq.max or freq.current:.0f} MHz" if freq else ""
    return (f"{platform.node()}: {psutil.cpu_count()} CPUs{mhz}, "
            f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, {platform.platform()}, "
            f"Python {platform.python_version()}")


# --------------------------------------------------------------------------- memory

class RssSampler:
    """Samples a process's resident set size in the background (the peak and a trace)."""

    def __init__(self, pid: int | None = None, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task | None = None
        self._t0 = time.monotonic()

    def sample(self) -> int:
        try:
            rss = self.process.memory_info().rss
        except psutil.Error:
            return 0
        self.samples.append((time.monotonic() - self._t0, rss))
        return rss

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self._t0 = time.monotonic()
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sample()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


class CpuMeter:
    """CPU seconds spent by named processes between ``start`` and ``stop``, per unit of work."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._t0: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = 0.0
        return out

    def start(self) -> None:
        self._t0 = self._now()

    def ms_per(self, units: int) -> dict[str, float]:
        now = self._now()
        return {name: (now[name] - self._t0[name]) * 1000 / units for name in now}


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- the run

class Bench:
    """A Temporal dev server keeping its state in a file (WAL, synchronous=off: what
    ``make demo`` runs), one connection store and key file, and the stacks built on them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._stacks: list[Stack] = []
        self._children: list[subprocess.Popen] = []
        self._made = 0

    async def __aenter__(self) -> "Bench":
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.server = await start_temporal_server(self.home / "temporal", port=self.port,
                                                  ui_port=free_port())
        self.env = Environment(home=self.home, db_url=f"sqlite:///{self.home / 'connector.db'}",
                               temporal_address=f"127.0.0.1:{self.port}")
        self.store: ConnectionStore = open_store(self.env)
        self.client: Client = await connect(self.env, self.store.vault.keyring)
        return self

    async def __aexit__(self, *exc) -> None:
        for child in reversed(self._children):
            await self.stop_child(child)
        for stack in reversed(self._stacks):
            await self.close(stack)
        self.store.db.close()
        self.server.terminate()
        try:
            self.server.wait(10)
        except Exception:  # noqa: BLE001 - a stuck server is killed, never waited on forever
            self.server.kill()

    def child_env(self, task_queue: str) -> dict[str, str]:
        """The environment an ``ml-connector`` process needs to join this run."""
        return {**os.environ, "ML_CONNECTOR_HOME": str(self.home), "ML_CONNECTOR_DB": self.env.db_url,
                "TEMPORAL_ADDRESS": self.env.temporal_address, "TEMPORAL_NAMESPACE": "default",
                "ML_CONNECTOR_TASK_QUEUE": task_queue}

    def spawn(self, name: str, args: list[str], task_queue: str,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """``python <args>`` joined to this run on ``task_queue``: its own OS process (its own
        event loop and core), dying with this one, logging to ``logs/<name>.log``."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**self.child_env(task_queue), **(extra_env or {})}
        # Byte-compiled as an installed package is: the workflow sandbox re-imports each
        # workflow's module for every new run, and without bytecode it compiles it each time.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.home / "pycache")
        with open(logs / f"{name}.log", "ab") as log:
            child = subprocess.Popen([sys.executable, *args], cwd=Path(__file__).parents[1],
                                     env=env, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        self._children.append(child)
        return child

    def children_alive(self) -> bool:
        """True, or why a child of this run is gone (a wait on its work would only time out)."""
        for child in self._children:
            if child.poll() is not None:
                raise RuntimeError(f"{' '.join(child.args[1:])} exited ({child.returncode}); "
                                   f"see {self.home / 'logs'}")
        return True

    async def stop_child(self, child: subprocess.Popen, timeout: float = 10) -> None:
        if child in self._children:
            self._children.remove(child)
        if child.poll() is None:
            child.terminate()
        deadline = time.monotonic() + timeout
        while child.poll() is None:
            if time.monotonic() > deadline:
                child.kill()
                deadline = float("inf")
            await asyncio.sleep(0.05)

    async def stack(self, *, seed: bool = True, **options: Any) -> Stack:
        self._made += 1  # before any await: stacks may be built concurrently
        stack = Stack(self.client, self.store, self.home / f"stack{self._made}",
                      f"bench-{uuid.uuid4().hex[:8]}", **options)
        await stack.__aenter__()
        self._stacks.append(stack)
        if seed:
            await stack.seed()
            complete_seed(stack)
        return stack

    async def close(self, stack: Stack) -> None:
        if stack in self._stacks:
            self._stacks.remove(stack)
            await stack.__aexit__(None, None, None)


def complete_seed(stack: Stack) -> None:
    """What the stack's seed leaves out and receipts need: the Acumatica adapter seeds its
    payment methods without a cash account, so every receipt would park."""
    if stack.erp_system == "acumatica":
        state = erp_state(stack)
        state.add_cash_account("10200", currency="USD")
        for method in stack.erp_sandbox.payment_methods:
            state.add_payment_method(method, cash_account="10200")


async def add_connection(stack: Stack, prefix: str, **kwargs: Any) -> Connection:
    """A connection of the stack's pair, webhooks not registered unless asked."""
    kwargs.setdefault("register_webhooks", False)
    return await stack.add_connection(new_id(prefix), **kwargs)


def app_of(served) -> Any:
    """The ASGI app behind a served sandbox (its state is ``app.state.<system>``)."""
    return served.server.config.app


def woo(stack: Stack):
    return app_of(stack.shop).state.woo


# Where each ERP sandbox keeps its in-memory state on its app (``app.state.<name>``).
ERP_STATES = {"acumatica": "acumatica", "exact_online": "exact", "oracle_fusion": "oracle"}


def erp_state(stack: Stack):
    """The ERP sandbox's in-memory state (its ``request_log`` and ``stats``)."""
    return getattr(app_of(stack.erp_server).state, ERP_STATES[stack.erp_system])


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def wait_until(check: Callable[[], Awaitable[Any] | Any], *, timeout: float,
                     interval: float = 0.1, what: str | Callable[[], str] = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what() if callable(what) else what} not reached within {timeout:.0f} s")
        await asyncio.sleep(interval)


def posted_orders(stack: Stack, conn: Connection) -> int:
    """Counted in SQL: polled every few milliseconds, it must cost the run next to nothing."""
    [(n,)] = stack.store.db.query("SELECT COUNT(*) FROM ledger WHERE connection_id = ? AND "
                                  f"kind = '{LedgerKind.ORDER}' AND state = '{OrderState.POSTED}'",
                                  (conn.id,))
    return int(n)


def settled_orders(stack: Stack, conn: Connection) -> dict[str, int]:
    """Orders by final ledger state: posted, parked (waiting for a fix) or failed."""
    return {state.value: len(stack.store.ledger_rows(conn.id, kind=LedgerKind.ORDER, state=state))
            for state in (OrderState.POSTED, OrderState.PARKED, OrderState.FAILED)}


def parked_reasons(stack: Stack, conn: Connection, limit: int = 3) -> list[str]:
    rows = [r for state in (OrderState.PARKED, OrderState.FAILED)
            for r in stack.store.ledger_rows(conn.id, kind=LedgerKind.ORDER, state=state)]
    return sorted({(r.last_error or "")[:160] for r in rows})[:limit]


# --------------------------------------------------------------------------- webhooks

def delivery(stack: Stack, conn: Connection, order: dict, topic: str = "order.created"
             ) -> tuple[str, bytes, dict[str, str]]:
    """A WooCommerce delivery of ``order`` as the store signs it (§8.3/§8.4 headers)."""
    import json

    body = json.dumps(order, separators=(",", ":")).encode()
    secret = stack.store.get_secret(conn.id, WEBHOOK_SECRET)
    resource, _, event = topic.partition(".")
    headers = {"Content-Type": "application/json", "X-WC-Webhook-Source": "https://shop.test/",
               "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": resource,
               "X-WC-Webhook-Event": event, "X-WC-Webhook-ID": "1",
               "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
               "X-WC-Webhook-Signature": sign_payload(body, secret)}
    return stack.webhook_url(conn.id), body, headers


async def deliver_all(stack: Stack, conn: Connection, orders: list[dict], *,
                      concurrency: int = 20) -> None:
    """Hand ``orders`` to the receiver as signed deliveries, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(order: dict) -> None:
        url, body, headers = delivery(stack, conn, order)
        async with gate:
            resp = await stack.http.post(url, content=body, headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(f"receiver answered {resp.status_code}: {resp.text[:200]}")

    await asyncio.gather(*(one(o) for o in orders))


# --------------------------------------------------------------------------- orders

class Shop:
    """Realistic orders placed straight into the store sandbox's state (no HTTP, so seeding
    costs the benchmark nothing): people, carts, payments and refunds from sandbox/traffic."""

    def __init__(self, stack: Stack, catalog: list[traffic.Sellable], *, seed: int = 7,
                 pool: int = 30) -> None:
        self.state = woo(stack)
        self.rng = random.Random(seed)
        self.shopper = traffic.Shopper(self.rng, catalog, pool * 3)
        self.customer_ids: dict[str, int] = {}

    @classmethod
    async def open(cls, stack: Stack, **kwargs: Any) -> "Shop":
        async with stack.store_client() as admin:
            catalog = await traffic.load_catalog(admin)
        return cls(stack, catalog, **kwargs)

    @property
    def pool(self) -> list[dict]:
        return self.shopper.pool

    def customer_id(self, person: dict) -> int:
        if person["email"] not in self.customer_ids:
            made = self.state.add_customer(person["email"], first_name=person["first_name"],
                                           last_name=person["last_name"],
                                           billing={"email": person["email"]})
            self.customer_ids[person["email"]] = made["id"]
        return self.customer_ids[person["email"]]

    def place(self, person: dict | None = None, *, returning_ratio: float = 0.7) -> dict:
        """A paid order: of ``person``, else a returning customer with ``returning_ratio``
        probability, else a guest never seen before."""
        if person is None:
            person = (self.rng.choice(self.pool) if self.rng.random() < returning_ratio
                      else self.shopper.guest() | {"guest": True})
        customer_id = 0 if person.get("guest") else self.customer_id(person)
        body = self.shopper.order_body(person, customer_id)
        body.pop("currency", None)  # one currency keeps the books simple to count
        return self.state.create_order(body)

    def refund(self, order: dict) -> dict:
        kind = self.rng.choice(["full", "line", "line", "amount"])
        body = {"full": lambda: traffic.full_refund_body(order),
                "line": lambda: traffic.line_refund_body(order, self.rng),
                "amount": lambda: traffic.amount_refund_body(order, self.rng)}[kind]()
        body |= {"reason": "benchmark", "api_refund": False, "api_restock": kind != "amount"}
        return self.state.create_refund(order["id"], body)


# --------------------------------------------------------------------------- Temporal

ROUND_TRIP_EVENTS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals",
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upserts",
}
# A marker is a local activity's result or a ``workflow.patched`` note: neither is a task.
MARKERS = {"core_local_activity": "local_activities", "core_patch": "patches"}


async def round_trips(client: Client, workflow_ids: list[str]) -> dict[str, float]:
    """Per workflow, from its history (medians over ``workflow_ids``): activities, local
    activities, patch markers, signals, workflow tasks and search-attribute upserts;
    ``steps``: the order's pieces of work (activities + local activities + signals);
    ``server_round_trips``: what the server hands out and takes back (activity tasks +
    workflow tasks + signals); local activities run inside a workflow task and cost none."""
    names = [*ROUND_TRIP_EVENTS.values(), *MARKERS.values()]
    counts: dict[str, list[int]] = {name: [] for name in names}
    for wf_id in workflow_ids:
        seen = dict.fromkeys(counts, 0)
        async for event in client.get_workflow_handle(wf_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                name = MARKERS.get(event.marker_recorded_event_attributes.marker_name)
            else:
                name = ROUND_TRIP_EVENTS.get(event.event_type)
            if name:
                seen[name] += 1
        for name, n in seen.items():
            counts[name].append(n)
    out = {name: median(values) for name, values in counts.items()}
    out["steps"] = out["activities"] + out["local_activities"] + out["signals"]
    out["server_round_trips"] = out["activities"] + out["workflow_tasks"] + out["signals"]
    return out


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def money(value: Decimal) -> str:
    return f"{value:.2f}"
