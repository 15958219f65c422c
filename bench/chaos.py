"""The chaos run: at least 1,000 orders across three store -> ERP pairs while everything
that goes wrong in production goes wrong at once, then the books of each pair to the cent.

    python -m bench.chaos [--orders 1000] [--small] [--home DIR] [--seed N]

One Temporal dev server (state in a file), one stack per pair (sandboxes + receiver, no
in-process worker) over one connection store, and the worker as a separate OS process
(``python -m worker``) reading that store, its key file and Temporal from the environment.
While the orders go in:

* the worker is SIGKILLed ``kills`` times (default 3) and restarted;
* every ERP sandbox answers 5xx on 10% of its API calls and commits a write but loses the
  response on 2% (``sandbox/faults.py`` ``fail_ratio`` / ``lose_ratio``, seeded);
* a 429 storm of ``storm_seconds`` (60), and of ``storm_requests`` requests at least, hits
  every ERP at once;
* 20% of the stores' webhook deliveries are delivered twice more (three times in all), in
  the store's own format and signature, and a few orders are refunded before their
  deliveries arrive, the refund's delivery first (out of order);
* one WooCommerce store fails its deliveries until it disables the hooks;
  WebhookHealth re-enables them and the catch-up OrderPoll finds what they missed (both
  started every ``repair_every`` seconds, as the connection's schedules would).

Then it waits until each pair's books reconcile (starter/reconcile.py) and prints one table:
orders sent, documents in the ERP, duplicates, missing, difference in cents, time to drain
(from the last order sent to the books matching), per pair and in total. Pass = 0
duplicates, 0 missing, 0 cents on every pair; the exit code is 0 only on a pass.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.messages import ConnectionInput, PollInput
from connections.config import WEBHOOK_SECRET, Connection, Environment
from connections.ledger import LedgerKind, OrderState
from connections.store import open_store
from connectors import bigcommerce as bc_connector
from connectors import woocommerce as wc_connector
from sandbox.server import free_port
from starter.logs import configure as configure_logs
from starter.demo import books, connection_id, quiet_runtime
from starter.reconcile import Reconciliation
from starter.stack import Stack, start_temporal_server
from starter.temporal import connect
from starter.worker_process import WorkerProcess
from workflows.poll import OrderPoll
from workflows.webhooks import WebhookHealth

PAIRS = (("woocommerce", "acumatica"), ("bigcommerce", "oracle_fusion"),
         ("woocommerce", "exact_online"))
TASK_QUEUE = "ml-connector-chaos"


@dataclass(frozen=True)
class Plan:
    """What goes wrong, and when (``at``: the share of all orders sent so far)."""

    orders: int = 1000
    kills: int = 3
    down_seconds: float = 2.0  # how long the worker stays dead each time
    storm_seconds: float = 60.0
    storm_requests: int = 0  # and at least this many requests answered 429, however few come
    storm_at: float = 0.30
    fail_ratio: float = 0.10
    lose_ratio: float = 0.02
    triple_ratio: float = 0.20
    out_of_order_per_pair: int = 5
    outage_at: float = 0.35
    refund_ratio: float = 0.10
    repair_every: float = 15.0  # WebhookHealth + OrderPoll cadence (the schedules, compressed)
    drain_timeout: float = 1800.0
    quiet_seconds: float = 5.0  # the books must still match this long after they first did
    seed: int = 11

    @classmethod
    def small(cls, orders: int = 60) -> "Plan":
        """The test suite's run: every fault, at an intensity whose retry tail fits in it."""
        # A 4-s storm can fall between requests of 60 quick orders: three 429s at least.
        return cls(orders=orders, kills=1, down_seconds=1.0, storm_seconds=4.0, storm_requests=3,
                   fail_ratio=0.05, out_of_order_per_pair=2, repair_every=3.0,
                   drain_timeout=600.0, quiet_seconds=2.0)

    def kill_points(self) -> list[float]:
        return [0.2 + 0.5 * i / max(1, self.kills - 1) for i in range(self.kills)] if self.kills > 1 \
            else [0.4] * self.kills


@dataclass
class PairFigures:
    pair: str
    connection: str
    orders_sent: int
    documents: int
    duplicates: int
    missing: int
    difference_cents: int
    drain_seconds: float | None  # None: never reconciled within the drain timeout
    rec: Reconciliation | None = None

    @property
    def passed(self) -> bool:
        return self.duplicates == 0 and self.missing == 0 and self.difference_cents == 0 \
            and self.drain_seconds is not None


@dataclass
class ChaosReport:
    plan: Plan
    pairs: list[PairFigures] = field(default_factory=list)
    kills: int = 0
    worker_starts: int = 0
    storm_seconds: float = 0.0
    injected: dict[str, dict[str, int]] = field(default_factory=dict)  # per ERP
    redelivered: int = 0  # extra deliveries posted (two per tripled delivery)
    out_of_order: int = 0  # orders whose refund delivery came before their paid delivery
    hooks_disabled: bool = False
    hooks_repaired: bool = False
    send_seconds: float = 0.0
    drain_seconds: float | None = None
    wall_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.pairs) and all(p.passed for p in self.pairs)

    def table(self) -> str:
        head = ("pair", "orders sent", "ERP documents", "duplicates", "missing", "cents off",
                "time to drain")
        rows = [(p.pair, p.orders_sent, p.documents, p.duplicates, p.missing, p.difference_cents,
                 _secs(p.drain_seconds)) for p in self.pairs]
        rows.append(("total", sum(p.orders_sent for p in self.pairs),
                     sum(p.documents for p in self.pairs), sum(p.duplicates for p in self.pairs),
                     sum(p.missing for p in self.pairs),
                     sum(p.difference_cents for p in self.pairs), _secs(self.drain_seconds)))
        widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
        line = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(head), sep, *map(line, rows)])

    def summary(self) -> str:
        inj = {k: sum(v.get(k, 0) for v in self.injected.values())
               for k in ("failures", "lost_commits", "throttled")}
        return (f"chaos: {self.kills} SIGKILLs ({self.worker_starts} worker starts), "
                f"{inj['failures']} injected 5xx, {inj['lost_commits']} lost responses after "
                f"commit, {inj['throttled']} 429s ({self.storm_seconds:g}s storm), "
                f"{self.redelivered} extra webhook deliveries, {self.out_of_order} refunds "
                f"delivered before payment, hooks disabled: {_yes(self.hooks_disabled)}, "
                f"repaired by WebhookHealth: {_yes(self.hooks_repaired)}; sending took "
                f"{self.send_seconds:.0f}s, the whole run {self.wall_seconds:.0f}s -> "
                + ("PASS" if self.passed else "FAIL"))


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --------------------------------------------------------------------------- one pair

@dataclass
class Pair:
    stack: Stack
    conn: Connection
    orders: int  # realistic orders (sandbox traffic) to place
    out_of_order: int
    sent: int = 0
    done_at: float = 0.0
    seen_deliveries: int = 0

    @property
    def store(self) -> str:
        return self.stack.store_system

    @property
    def secret(self) -> str:
        return self.stack.store.get_secret(self.conn.id, WEBHOOK_SECRET) or ""


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _control(stack: Stack, path: str, body: Any = None) -> Any:
    resp = await (stack.http.post(stack.shop.url + path, json=body) if body is not None
                  else stack.http.get(stack.shop.url + path))
    resp.raise_for_status()
    return resp.json() if resp.content else None


async def _woo_order_json(stack: Stack, order_id: str) -> dict:
    async with stack.store_client() as shop:
        resp = await shop.get(f"wp-json/wc/v3/orders/{order_id}")
        resp.raise_for_status()
        return resp.json()


async def deliver(pair: Pair, order_id: str, topic: str, *, delivery_id: str = "",
                  webhook_id: str = "", extra: dict | None = None) -> int:
    """One delivery to the receiver, as the store itself would send it (its headers, its
    signature over the raw body). Returns the receiver's status."""
    stack = pair.stack
    if pair.store == "woocommerce":
        body = json.dumps(await _woo_order_json(stack, order_id)).encode()
        resource, _, event = topic.partition(".")
        headers = {"Content-Type": "application/json", "User-Agent": "WooCommerce/9.4 Hookshot (WordPress/6.7)",
                   "X-WC-Webhook-Source": stack.shop.url + "/", "X-WC-Webhook-Topic": topic,
                   "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
                   "X-WC-Webhook-Signature": wc_connector.webhook_signature(body, pair.secret),
                   "X-WC-Webhook-ID": webhook_id or "1",
                   "X-WC-Webhook-Delivery-ID": delivery_id or hashlib.md5(os.urandom(8)).hexdigest()}
    else:
        data = {"type": "order", "id": int(order_id), **(extra or {})}
        compact = json.dumps(data, separators=(",", ":")).encode()
        body = json.dumps({"scope": topic, "store_id": "1001", "data": data,
                           "hash": delivery_id or hashlib.sha1(compact).hexdigest(),
                           "created_at": int(time.time()),
                           "producer": "stores/chaos"}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "BigCommerce-Webhooks",
                   bc_connector.SECRET_HEADER: bc_connector.secret_header_value(pair.secret)}
    resp = await stack.http.post(stack.webhook_url(pair.conn.id), content=body, headers=headers)
    return resp.status_code


# --------------------------------------------------------------------------- the run

class Chaos:
    def __init__(self, plan: Plan, home: Path, log=print) -> None:
        self.plan, self.home, self.log = plan, home, log
        self.rng = random.Random(plan.seed)
        self.report = ChaosReport(plan=plan)
        self.pairs: list[Pair] = []
        self.total = 0
        self.background: list[asyncio.Task] = []

    # progress-triggered faults ----------------------------------------------------------
    @property
    def sent_share(self) -> float:
        return sum(p.sent for p in self.pairs) / max(1, self.total)

    @staticmethod
    def _posted(pair: Pair) -> int:
        return len(pair.stack.store.ledger_rows(pair.conn.id, kind=LedgerKind.ORDER,
                                                state=OrderState.POSTED))

    @property
    def booked_share(self) -> float:
        """Orders whose workflow finished a pass with everything posted, of all orders."""
        return sum(self._posted(p) for p in self.pairs) / max(1, self.total)

    async def _when(self, share, at: float) -> None:
        while share() < at:
            await asyncio.sleep(0.25)

    async def conductor(self, worker: WorkerProcess) -> None:
        """Kills and the storm strike while orders are being booked (a share of them
        booked), so they hit work in flight; the outage strikes while orders are sent."""
        plan = self.plan
        events = sorted([(at, "kill") for at in plan.kill_points()] + [(plan.storm_at, "storm")])
        for at, what in events:
            await self._when(lambda: self.booked_share, at)
            self.log(f"  {self.booked_share:5.0%} booked: {what}")
            if what == "kill":
                await worker.kill()
                await asyncio.sleep(plan.down_seconds)
                worker.start()
            else:
                for p in self.pairs:
                    await p.stack.control("erp", "/_sandbox/faults",
                                          {"storm_seconds": plan.storm_seconds,
                                           "storm_429": plan.storm_requests})
                self.report.storm_seconds = plan.storm_seconds

    async def outage_at(self) -> None:
        await self._when(lambda: self.sent_share, self.plan.outage_at)
        await self.outage()

    async def outage(self) -> None:
        """The first WooCommerce store's receiver is unreachable until the store disables
        its hooks; then the network comes back (the hooks stay disabled: WebhookHealth's job)."""
        pair = next(p for p in self.pairs if p.store == "woocommerce")
        shop = pair.stack.runtime.storefront(pair.conn)
        await _control(pair.stack, "/_sandbox/webhooks/outage", {"fail_next": 100_000})
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if any(h.status == "disabled" for h in await shop.list_webhooks()):
                self.report.hooks_disabled = True
                break
            await asyncio.sleep(0.2)
        await _control(pair.stack, "/_sandbox/webhooks/outage", {"fail_next": 0})
        self.log(f"  {self.sent_share:5.0%} sent: the hooks of {pair.conn.id} disabled "
                 f"({_yes(self.report.hooks_disabled)}); deliveries work again")
        self.background.append(asyncio.create_task(self._watch_repair(shop), name="watch-hooks"))

    async def _watch_repair(self, shop) -> None:
        while not self.report.hooks_repaired:
            hooks = await shop.list_webhooks()
            if hooks and all(h.status == "active" for h in hooks):
                self.report.hooks_repaired = True
                self.log(f"  {self.booked_share:5.0%} booked: hooks active again (WebhookHealth)")
                return
            await asyncio.sleep(0.5)

    # traffic ------------------------------------------------------------------------------
    async def drive(self, pair: Pair, index: int) -> None:
        stack, sb = pair.stack, pair.stack.shop_sandbox
        plan = self.plan
        ooo_at = sorted(self.rng.sample(range(1, pair.orders + 1), k=min(pair.out_of_order, pair.orders)))

        async def on_progress(done: int, total: int) -> None:
            pair.sent += 1
            while ooo_at and done >= ooo_at[0]:
                ooo_at.pop(0)
                await self.out_of_order(pair)

        async with stack.store_client() as shop:
            await sb.generate_day(shop, orders=pair.orders, refund_ratio=plan.refund_ratio,
                                  seed=plan.seed + index, on_progress=on_progress)
        for _ in ooo_at:
            await self.out_of_order(pair)
        pair.done_at = time.monotonic()

    async def out_of_order(self, pair: Pair) -> None:
        """An order paid and refunded before any of its news reached the receiver: the
        refund's delivery arrives first, then the payment's, then (from the store) the rest."""
        sb = pair.stack.shop_sandbox
        async with pair.stack.store_client() as shop:
            placed = await sb.place_order(shop, quantities=(2, 1), paid=False,
                                          email=f"late.{self.rng.randrange(10**6)}@example.com")
            await sb.pay(shop, placed.id)
            refund_id = await sb.refund(shop, placed.id, amount=Decimal("3.00"))
        pair.sent += 1
        if pair.store == "woocommerce":
            topics = [("order.updated", {}), ("order.updated", {}), ("order.created", {})]
        else:
            topics = [("store/order/refund/created", {"refund": {"refund_id": int(refund_id)}}),
                      ("store/order/updated", {}), ("store/order/created", {})]
        for topic, extra in topics:
            await deliver(pair, placed.id, topic, extra=extra)
        self.report.out_of_order += 1

    async def redeliver(self, pair: Pair) -> None:
        """20% of the store's own deliveries, posted twice more (the same delivery id)."""
        while True:
            try:
                log = await _control(pair.stack, "/_sandbox/webhooks/deliveries")
            except Exception:  # noqa: BLE001 - the store is closing
                return
            fresh, pair.seen_deliveries = log[pair.seen_deliveries:], len(log)
            for entry in fresh:
                if entry.get("kind") != "delivery" or entry.get("duplicate") or \
                        entry.get("status") != 200 or self.rng.random() >= self.plan.triple_ratio:
                    continue
                topic = entry.get("topic") or entry.get("scope")
                delivery_id = entry.get("delivery_id") or entry.get("hash") or ""
                for _ in range(2):
                    await deliver(pair, str(entry["resource_id"]), topic, delivery_id=delivery_id,
                                  webhook_id=str(entry.get("webhook_id", "")))
                    self.report.redelivered += 1
            await asyncio.sleep(1.0)

    # the schedules, compressed -------------------------------------------------------------
    async def repairs(self, client: Client) -> None:
        """WebhookHealth and OrderPoll per connection every ``repair_every`` seconds; a run
        still going is left alone (the schedules' overlap policy SKIP). The poll's overlap
        shrinks with its cadence, as in production (5 minutes, 300 s): otherwise every poll
        would hand every order still in flight to its workflow again."""
        overlap = max(10.0, self.plan.repair_every)
        while True:
            for p in self.pairs:
                for wf, arg, wid in (
                        (WebhookHealth.run, ConnectionInput(connection_id=p.conn.id), f"chaos-webhooks/{p.conn.id}"),
                        (OrderPoll.run, PollInput(connection_id=p.conn.id, task_queue=TASK_QUEUE,
                                                overlap_seconds=overlap),
                         f"chaos-poll/{p.conn.id}")):
                    try:
                        await client.start_workflow(wf, arg, id=wid, task_queue=TASK_QUEUE)
                    except WorkflowAlreadyStartedError:
                        pass
            await asyncio.sleep(self.plan.repair_every)

    # the books -----------------------------------------------------------------------------
    async def settle(self, pair: Pair) -> PairFigures:
        deadline = pair.done_at + self.plan.drain_timeout
        drained = None
        while True:
            if self._posted(pair) < pair.sent and time.monotonic() < deadline:
                await asyncio.sleep(1.0)  # the ledger is the cheap gate; the books read everything
                continue
            rec = await books(pair.stack, pair.conn)
            if rec.ok and drained is None:
                drained = time.monotonic() - pair.done_at
                await asyncio.sleep(self.plan.quiet_seconds)  # nothing more may arrive
                rec = await books(pair.stack, pair.conn)
                if not rec.ok:
                    drained = None
                    continue
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        docs = [d for d in await pair.stack.erp_documents()
                if d.external_ref.startswith(pair.conn.mappings.document_prefix)]
        return PairFigures(pair=pair.stack.pair, connection=pair.conn.id, orders_sent=pair.sent,
                           documents=len(docs), duplicates=len(rec.duplicates),
                           missing=len(rec.missing), difference_cents=rec.difference_cents,
                           drain_seconds=drained, rec=rec)


async def run_chaos(*, orders: int = 1000, small: bool = False, plan: Plan | None = None,
                    home: Path | None = None, log=print) -> ChaosReport:
    """The whole run; the report says whether it passed (see the module docstring)."""
    plan = plan or (Plan.small(orders if orders != 1000 else 60) if small else Plan(orders=orders))
    own_home = home is None
    home = home or Path(tempfile.mkdtemp(prefix="ml-chaos-"))
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    started = time.monotonic()
    port = free_port()
    server = await start_temporal_server(home / "temporal", port=port, ui_port=free_port())
    env = Environment(home=home, db_url=f"sqlite:///{home / 'connector.db'}",
                      temporal_address=f"127.0.0.1:{port}", task_queue=TASK_QUEUE)
    store = open_store(env)
    chaos = Chaos(plan, home, log)
    stacks: list[Stack] = []
    tasks: list[asyncio.Task] = []
    worker = WorkerProcess(env, home / "logs")
    try:
        client = await connect(env, store.vault.keyring, runtime=quiet_runtime())
        counts = _split(plan.orders, len(PAIRS))
        for i, ((store_system, erp_system), n) in enumerate(zip(PAIRS, counts)):
            stack = Stack(client, store, home / f"pair{i}", TASK_QUEUE, store_system=store_system,
                          erp_system=erp_system, run_worker=False)
            await stack.__aenter__()
            stacks.append(stack)
            await stack.seed()
            conn = await stack.add_connection(connection_id(store_system, erp_system))
            await stack.control("erp", "/_sandbox/faults", {
                "fail_ratio": plan.fail_ratio, "lose_ratio": plan.lose_ratio, "fail_status": 503,
                "seed": plan.seed * 100 + i,
                # at least one lost response per ERP, however the dice fall on a short run
                "lose_next_commits": 1})
            ooo = min(plan.out_of_order_per_pair, n)
            chaos.pairs.append(Pair(stack, conn, orders=n - ooo, out_of_order=ooo))
        chaos.total = sum(p.orders + p.out_of_order for p in chaos.pairs)
        worker.start()
        log(f"chaos: {chaos.total} orders over {', '.join(p.stack.pair for p in chaos.pairs)}; "
            f"state in {home}")
        send_start = time.monotonic()
        tasks = [asyncio.create_task(chaos.repairs(client), name="repairs"),
                 *(asyncio.create_task(chaos.redeliver(p), name=f"redeliver-{p.conn.id}")
                   for p in chaos.pairs)]
        tasks += [asyncio.create_task(chaos.conductor(worker), name="conductor"),
                  asyncio.create_task(chaos.outage_at(), name="outage")]
        await asyncio.gather(*(chaos.drive(p, i) for i, p in enumerate(chaos.pairs)))
        chaos.report.send_seconds = time.monotonic() - send_start
        log(f"  100% sent in {chaos.report.send_seconds:.0f}s; draining …")
        for p in chaos.pairs:
            await p.stack.shop_sandbox.wait_deliveries(p.stack.http, p.stack.shop.url)
        figures = await asyncio.gather(*(chaos.settle(p) for p in chaos.pairs))
        chaos.report.pairs = list(figures)
        drains = [f.drain_seconds for f in figures]
        last_sent = max(p.done_at for p in chaos.pairs)
        chaos.report.drain_seconds = (None if None in drains else
                                      max(p.done_at + d for p, d in zip(chaos.pairs, drains)) - last_sent)
        for p in chaos.pairs:
            chaos.report.injected[p.stack.erp_system] = (
                await p.stack.control("erp", "/_sandbox/faults"))["injected"]
        return chaos.report
    finally:
        tasks += chaos.background
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        chaos.report.kills, chaos.report.worker_starts = worker.kills, worker.starts
        await worker.stop()
        for stack in reversed(stacks):
            await stack.__aexit__(None, None, None)
        store.db.close()
        server.terminate()
        server.wait(10)
        chaos.report.wall_seconds = time.monotonic() - started
        if own_home and chaos.report.passed:
            shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=None, help="orders across the pairs (1000; --small: 60)")
    parser.add_argument("--small", action="store_true", help="the test suite's size: 60 orders, one kill, a 4 s storm, 5%% 5xx")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    configure_logs(logging.WARNING)  # the table is the output; the receiver's lines are noise
    orders = args.orders or (60 if args.small else 1000)
    plan = Plan.small(orders) if args.small else Plan(orders=orders)
    plan = Plan(**{**plan.__dict__, "seed": args.seed})
    report = asyncio.run(run_chaos(plan=plan, home=args.home))
    print(report.table())
    print(report.summary())
    for p in report.pairs:
        if not p.passed and p.rec is not None:
            print(f"{p.pair}: missing {p.rec.missing[:10]} duplicates {p.rec.duplicates[:10]}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    code = main()
    os._exit(code)  # sdk-python issue 300: the exit code must be trustworthy
