"""Two worker processes on one Exact Online connection, a refresh under pressure (the
fixtures: test_two_workers.py):

* the token expires while both have a backlog of ERP requests waiting at the licensed rate
  on the connection's quota queue: the rotating refresh-token chain moves exactly once;
* a worker killed (SIGKILL) after Exact answered a refresh but before it saved the new token
  set costs no consent inside Exact's grace window for a just-used refresh token; where there
  is no grace (the sandbox's strict mode), the connection says it needs consent at once, in
  ``ml-connector status`` and on the metrics endpoint.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import uuid

import httpx

from activities.runtime import Runtime, StoreTokenStore
from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault
from sandbox.server import free_port
from starter.dispatch import erp_queue
from starter.metrics import NEEDS_CONSENT, metrics_runtime, parse_exposition, record_freshness
from starter.stack import Stack
from tests.conftest import HISTORY_KEYS
from tests.integration.conftest import eventually
from tests.integration.helpers import settled
from tests.integration.test_status_and_errors_cli import cli_for, only
from tests.integration.test_two_workers import RPM, _place, two_workers  # noqa: F401 (fixture)

BACKLOG_ORDERS = 3  # at RPM, over a minute of ERP requests (~25 an order) queued behind each other


async def test_a_quota_backlog_while_the_token_expires_costs_one_refresh(stack_factory,
                                                                         two_workers):
    """The licensed rate of the connection (and of the sandbox) is the real 60 a minute; the
    access token dies while both workers have ERP requests waiting for their slots. The chain
    (strict: a refresh token presented twice is refused) moves exactly once."""
    stack = await stack_factory(erp_system="exact_online", run_worker=False)
    await stack.control("erp", "/_sandbox/settings",
                        {"minutely_limit": RPM, "refresh_grace_seconds": 0})
    conn = await stack.add_connection(f"backlog-{uuid.uuid4().hex[:6]}",
                                      erp_requests_per_minute=RPM)
    await two_workers(stack, erp_queue(stack.task_queue, conn.id, RPM))

    placed = await _place(stack, BACKLOG_ORDERS, "backlog")

    async def booking() -> bool:
        return (await stack.control("erp", "/_sandbox/stats"))["api_requests"] >= 6

    await eventually(booking, timeout=90, interval=0.3)
    await stack.erp_sandbox.expire_tokens(stack.http, stack.erp_server.url)
    rec = await settled(stack, conn, timeout=300, order_ids=placed)
    assert rec.invoices == rec.paid_orders == BACKLOG_ORDERS
    assert rec.duplicates == [] and rec.difference_cents == 0
    stats = await stack.control("erp", "/_sandbox/stats")
    print(f"backlog: {stats['api_requests']} ERP requests, {stats['by_grant']}, "
          f"{stats['unauthorized']} answered 401")
    assert stats["by_grant"] == {"authorization_code": 1, "refresh_token": 1}, stats
    assert stats["refreshes"] == 1 and stats["refresh_reused"] == 0
    assert stack.store.connection_health(conn.id)["state"] == "ok"


async def _refresh_then_hang(db_url: str, connection_id: str, answered) -> None:
    async def killed_here(self, tokens) -> None:  # Exact answered; the save never happens
        answered.set()
        await asyncio.sleep(3600)

    StoreTokenStore.save = killed_here
    store = ConnectionStore(Database(db_url), Vault(Keyring.load(HISTORY_KEYS)))
    erp = Runtime(store).erp(store.get_connection(connection_id))
    await erp.find_document("invoice", "WC-0")


def refresh_then_hang(db_url: str, connection_id: str, answered) -> None:
    asyncio.run(_refresh_then_hang(db_url, connection_id, answered))


async def _killed_after_the_token_answer(stack: Stack, conn) -> None:
    """A worker process's ERP call meets the expired token, Exact answers its refresh, and
    the process is SIGKILLed before it saves the new token set (holding the refresh lease)."""
    await stack.runtime.erp(conn).find_document("invoice", "WC-0")  # the consent's first set
    await stack.erp_sandbox.expire_tokens(stack.http, stack.erp_server.url)
    ctx = multiprocessing.get_context("spawn")
    answered = ctx.Event()
    proc = ctx.Process(target=refresh_then_hang, args=(stack.store.db.url, conn.id, answered))
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, answered.wait, 60), "no refresh was answered"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await loop.run_in_executor(None, proc.join, 30)
    assert (await stack.control("erp", "/_sandbox/stats"))["refreshes"] == 1


async def test_a_worker_killed_before_saving_a_refresh_costs_no_consent(stack_factory,
                                                                        two_workers):
    """Exact keeps a just-used refresh token usable for a grace window (the sandbox's default):
    the next worker presents the stored (spent) one again, gets a new set and books."""
    stack = await stack_factory(erp_system="exact_online", run_worker=False)
    conn = await stack.add_connection(f"killed-{uuid.uuid4().hex[:6]}")
    await _killed_after_the_token_answer(stack, conn)
    await two_workers(stack)

    await _place(stack, 2, "killed")
    rec = await settled(stack, conn, timeout=120)
    assert rec.invoices == rec.paid_orders == 2
    assert stack.store.connection_health(conn.id)["state"] == "ok"
    stats = await stack.control("erp", "/_sandbox/stats")
    assert stats["refresh_grace_used"] == 1 and stats["refresh_reused"] == 0, stats
    assert stats["by_grant"]["authorization_code"] == 1  # the spent code was never tried again


async def test_without_a_grace_window_a_lost_refresh_says_needs_consent_at_once(
        stack_factory, two_workers, temporal, tmp_path):
    """Strict mode (no grace): the chain is lost with the killed worker's answer. The next
    worker's refused refresh marks the connection at once: `ml-connector status` (a
    subprocess) says it needs consent, the metrics endpoint shows it, and no worker spends
    more token requests (nor the consent's used code)."""
    stack = await stack_factory(erp_system="exact_online", run_worker=False)
    await stack.control("erp", "/_sandbox/settings", {"refresh_grace_seconds": 0})
    conn = await stack.add_connection(f"strict-{uuid.uuid4().hex[:6]}")
    await _killed_after_the_token_answer(stack, conn)
    await two_workers(stack)

    await _place(stack, 1, "strict")

    async def marked() -> bool:
        return stack.store.connection_health(conn.id)["state"] == StoreTokenStore.NEEDS_CONSENT

    await eventually(marked, timeout=90, interval=0.3)
    done = await cli_for(stack, temporal, tmp_path)("status", conn.id, "--json")
    assert done.returncode == 1, done.stdout + done.stderr  # needs attention
    health = only(done.json(), conn.id)["health"]
    assert health["state"] == "needs_consent" and "refused" in health["message"]
    text = (await cli_for(stack, temporal, tmp_path)("status", conn.id)).stdout
    assert "needs consent" in text or "needs_consent" in text

    address = f"127.0.0.1:{free_port()}"
    record_freshness(metrics_runtime(address).metric_meter, stack.store)
    async with httpx.AsyncClient() as c:
        samples = parse_exposition((await c.get(f"http://{address}/metrics")).text)
    [flag] = [x for x in samples if x.name == NEEDS_CONSENT and x.labels["connection"] == conn.id]
    assert flag.value == 1

    stats = await stack.control("erp", "/_sandbox/stats")
    assert stats["by_grant"] == {"authorization_code": 1, "refresh_token": 2}, stats
