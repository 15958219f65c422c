"""The operator's CLI commands as a user runs them: `.venv/bin/ml-connector` in a subprocess,
on the stack's connection store, keys and Temporal, with the stack's worker and sandboxes
doing the work. The CLI path is what these test (the workflows have their own tests)."""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import HISTORY_KEYS
from tests.integration.conftest import eventually
from tests.integration.helpers import place_order, wait_documents, wait_order_state

CLI = Path(sys.executable).parent / "ml-connector"
EXIT_CLOSED_PIPE = 141  # starter/cli.py: 128 + SIGPIPE
KINDS = ("poll", "catalog", "catalog-reconcile", "reconcile", "shipments")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_for(temporal, tmp_path):
    """``cli_for(stack)``: run ``ml-connector ARGS`` against that stack's store, keys,
    Temporal and task queue; ``stdout`` may be a file descriptor."""
    command = [str(CLI)] if CLI.exists() else [shutil.which("ml-connector") or "ml-connector"]

    def bind(stack):
        env = {**os.environ, "ML_CONNECTOR_HOME": str(tmp_path / "cli-home"),
               "ML_CONNECTOR_DB": stack.store.db.url, "ML_CONNECTOR_KEY_FILE": str(HISTORY_KEYS),
               "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
               "TEMPORAL_NAMESPACE": temporal.client.namespace,
               "ML_CONNECTOR_TASK_QUEUE": stack.task_queue}
        env.pop("ML_CONNECTOR_MASTER_KEYS", None)  # the key file above is the stack's keyring

        async def run(*args: str, stdout=asyncio.subprocess.PIPE, timeout: float = 120,
                      extra_env: dict | None = None) -> Done:
            # Asynchronous: the stack's worker runs on this test's event loop meanwhile.
            proc = await asyncio.create_subprocess_exec(
                *command, *args, env={**env, **(extra_env or {})},
                stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            return Done(proc.returncode, (out or b"").decode(), err.decode())

        return run

    return bind


@pytest.fixture
def cli(stack, cli_for):
    """``ml-connector ARGS`` against the test's stack."""
    return cli_for(stack)


async def closed_stdout(cli, *args: str) -> Done:
    """Run with stdout a pipe whose reader is already gone (`... | head -1` after head quit):
    the first write the CLI makes meets the closed pipe, every time."""
    read, write = os.pipe()
    os.close(read)
    try:
        return await cli(*args, stdout=write)
    finally:
        os.close(write)


def quiet(done: Done) -> None:
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == EXIT_CLOSED_PIPE, (done.returncode, done.stderr)


async def test_backfill_follows_to_the_end_and_hands_the_orders_over(stack, cli):
    # No webhooks: only the backfill hands these orders over.
    conn = await stack.add_connection(uid("bf"), register_webhooks=False)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    orders = [await place_order(stack, quantities=(1,)) for _ in range(2)]
    until = datetime.now(timezone.utc) + timedelta(minutes=1)
    span = ("--since", since.isoformat(), "--until", until.isoformat())
    done = await cli("backfill", conn.id, *span)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"backfill workflow backfill/{conn.id}/" in done.stdout
    assert "2 orders seen, 2 handed over, 0 already in the books" in done.stdout, done.stdout
    for order in orders:
        await wait_order_state(stack, conn.id, order["id"])
        await wait_documents(stack, f"WC-{order['id']}")

    again = await cli("backfill", conn.id, *span)
    assert again.returncode == 0, again.stderr  # the same range again: a new run, nothing to do
    assert "2 orders seen, 0 handed over, 2 already in the books" in again.stdout, again.stdout


async def test_status_and_audit_json_end_quietly_on_a_closed_pipe(stack, cli):
    conn = await stack.add_connection(uid("pipe"))
    order = await place_order(stack)
    await wait_order_state(stack, conn.id, order["id"])

    shown = await cli("status", conn.id)
    # the exit code is the verdict (0 healthy, 1 needs attention, 3 unknown), never a crash
    assert shown.returncode in (0, 1, 3) and conn.id in shown.stdout, shown.stderr
    quiet(await closed_stdout(cli, "status"))
    quiet(await closed_stdout(cli, "status", "--json"))
    audited = await cli("audit", str(order["number"]), "--connection", conn.id, "--json")
    assert audited.returncode == 0 and audited.stdout.lstrip().startswith("["), audited.stderr
    quiet(await closed_stdout(cli, "audit", str(order["number"]), "--connection", conn.id,
                              "--json"))
    helped = await closed_stdout(cli, "--help")  # argparse swallows the error itself: exit 0
    assert "Traceback" not in helped.stderr and helped.returncode in (0, EXIT_CLOSED_PIPE)


async def test_schedules_list_shows_state_workflow_last_and_next_run(stack, cli):
    conn = await stack.add_connection(uid("sch"), register_webhooks=False)
    applied = await cli("schedules", "apply", conn.id)
    assert applied.returncode == 0, applied.stderr
    ids = [f"{kind}/{conn.id}" for kind in KINDS]
    poll = stack.client.get_schedule_handle(f"poll/{conn.id}")
    try:
        await poll.pause(note="erp maintenance")
        await stack.client.get_schedule_handle(f"shipments/{conn.id}").trigger()

        async def listed() -> dict[str, str] | None:
            done = await cli("schedules", "list", conn.id)
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            rows = {line.split()[0]: line for line in lines[1:]}
            ran = "never" not in rows.get(f"shipments/{conn.id}", "never")
            return (lines, rows) if set(ids) <= set(rows) and ran else None

        lines, rows = await eventually(listed, timeout=30, interval=1)
        assert lines[0].split() == ["SCHEDULE", "STATE", "WORKFLOW", "LAST", "RUN", "NEXT", "RUN"]
        assert all(sid.endswith(f"/{conn.id}") for sid in rows)  # one connection's only
        assert "paused (erp maintenance)" in rows[f"poll/{conn.id}"]
        assert " OrderPoll " in rows[f"poll/{conn.id}"]
        shipments = rows[f"shipments/{conn.id}"]
        assert "active" in shipments and " ShipmentSync " in shipments
        assert " CatalogPush " in rows[f"catalog-reconcile/{conn.id}"]
        assert " Reconcile " in rows[f"reconcile/{conn.id}"]
        today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        assert today in shipments.split("UTC")[0]  # the triggered run
        nightly = rows[f"catalog-reconcile/{conn.id}"]
        assert "never" in nightly and nightly.rstrip().endswith("UTC")  # its next run
    finally:
        for sid in [s async for s in await stack.client.list_schedules()]:
            if sid.id.endswith(f"/{conn.id}"):
                await stack.client.get_schedule_handle(sid.id).delete()
