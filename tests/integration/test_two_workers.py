"""Two worker processes (``python -m worker``, separate OS processes on one connection store
and one Temporal) serve one connection, as on two hosts:

* they share the ERP's licensed quota: the Acumatica sandbox allows R requests a minute and
  the connection says so (``erp_requests_per_minute``), so its ERP calls run on a queue the
  Temporal server rate-limits for both workers at once, and each request waits for its slot
  in one schedule in the connection store -- every order is booked once and 429s stay at or
  under 1% of the ERP's requests;
* they refresh the same Exact Online connection's tokens (a lifetime of seconds, so nearly
  every call refreshes) without ever breaking the rotating refresh-token chain.

A refresh under pressure (a quota backlog, a worker killed mid-refresh) is in
test_two_workers_refresh.py: a file of its own, so the test workers (pytest-xdist) run the
two files side by side.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue, TaskQueueVersionSelection
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from connections.config import Environment
from starter.dispatch import erp_queue
from starter.stack import Stack
from starter.worker_process import WorkerProcess
from tests.conftest import HISTORY_KEYS
from tests.integration.conftest import eventually
from tests.integration.helpers import settled

RPM = 60  # the ERP quota of the first scenario, requests a minute (binding: N orders need more)
QUOTA_ORDERS = 12  # about 6.5 ERP requests each: more than a minute's quota, placed at once
EXACT_ORDERS = 6


def _environment(stack: Stack, temporal) -> Environment:
    return Environment(home=stack.home, db_url=stack.store.db.url,
                       temporal_address=temporal.client.service_client.config.target_host,
                       task_queue=stack.task_queue)


async def _pollers(client, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    """Every partition's pollers (the enhanced mode): the plain mode shows the root
    partition's only, and a poll that lands on another can stay unseen for most of a minute."""
    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
        versions=TaskQueueVersionSelection(unversioned=True), task_queue_types=[kind],
        report_pollers=True))
    return {p.identity for version in resp.versions_info.values()
            for kinds in version.types_info.values() for p in kinds.pollers}


@pytest.fixture
async def two_workers(temporal):
    """Start two worker processes for a stack (after its connection exists, so each worker
    starts the connection's ERP quota worker at once); both are stopped after the test."""
    started: list[WorkerProcess] = []

    async def start(stack: Stack, *queues: str) -> list[WorkerProcess]:
        env = _environment(stack, temporal)
        workers = [WorkerProcess(env, stack.home / "logs", name=f"worker{i}", key_file=HISTORY_KEYS)
                   for i in (1, 2)]
        for w in workers:
            w.start()
            started.append(w)

        async def both_polling() -> bool:
            assert all(w.alive for w in workers), "a worker process exited"
            for queue in (stack.task_queue, *queues):
                if len(await _pollers(temporal.client, queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)) < 2:
                    return False
            return True

        await eventually(both_polling, timeout=60, interval=0.3)
        return workers

    yield start
    await asyncio.gather(*(w.stop() for w in started))


async def _place(stack: Stack, count: int, tag: str) -> list[str]:
    ids = []
    async with stack.store_client() as admin:
        for i in range(count):
            placed = await stack.shop_sandbox.place_order(
                admin, quantities=(1 + i % 3, 1), email=f"{tag}.{i % 4}@example.com")
            ids.append(placed.id)
    return ids


async def test_two_workers_share_one_erp_quota(stack_factory, two_workers, temporal):
    stack = await stack_factory(erp_system="acumatica", run_worker=False)
    await stack.control("erp", "/_sandbox/settings", {"requests_per_minute": RPM})
    conn = await stack.add_connection(f"quota-{uuid.uuid4().hex[:6]}", erp_requests_per_minute=RPM)
    queue = erp_queue(stack.task_queue, conn.id, RPM)
    await two_workers(stack, queue)
    # The store's creation times are whole seconds: orders placed a second after the workers
    # read their vouch marks (activities/vouch.py) are new to them, so nothing is looked up.
    await asyncio.sleep(1.1)

    placed = await _place(stack, QUOTA_ORDERS, "quota")
    # Over a minute of ERP requests at the licensed rate; the reconciliation's reads take
    # slots of the same quota (activities/reconcile.py), so it reads once all are posted.
    rec = await settled(stack, conn, timeout=240, order_ids=placed)
    assert rec.invoices == rec.paid_orders == QUOTA_ORDERS
    assert rec.duplicates == [] and rec.missing == [] and rec.difference_cents == 0

    stats = await stack.control("erp", "/_sandbox/stats")
    ratio = stats["throttled"] / stats["total"]
    print(f"quota: {stats['total']} ERP requests, {stats['throttled']} answered 429 ({ratio:.2%})")
    assert stats["total"] > RPM  # binding: ungated, the first minute would have overrun it
    # No 429 storm: both workers' requests take slots of one schedule under the licence
    # (bench/quota.py measures how close to the licensed rate it rides).
    assert ratio <= 0.01, (f"{stats['throttled']} of {stats['total']} ERP requests were 429 "
                           f"({ratio:.1%}) at {RPM}/min shared by two workers")


async def test_two_workers_never_break_the_exact_token_chain(stack_factory, two_workers):
    stack = await stack_factory(erp_system="exact_online", run_worker=False)
    # Tokens live 4 s and may be refreshed at once: with the connector's refresh margin,
    # nearly every call of either worker wants a refresh, and each refresh rotates the
    # refresh token (a reused one is refused and the chain is broken for good).
    await stack.control("erp", "/_sandbox/settings", {"token_lifetime": 4, "refresh_not_before": 0})
    conn = await stack.add_connection(f"chain-{uuid.uuid4().hex[:6]}")
    await two_workers(stack)

    await _place(stack, EXACT_ORDERS, "chain")
    rec = await settled(stack, conn, timeout=120)
    assert rec.invoices == rec.paid_orders == EXACT_ORDERS
    assert rec.duplicates == [] and rec.difference_cents == 0
    assert stack.store.connection_health(conn.id)["state"] == "ok"
    stats = await stack.control("erp", "/_sandbox/stats")
    assert stats["refresh_reused"] == 0  # no refresh token was ever presented twice
    assert stats["refreshes"] >= 2, stats  # the chain really moved while both worked
