"""`ml-connector status` and `ml-connector errors` as an operator (or cron) runs them: the CLI
in a subprocess on the stack's store, keys and Temporal, while the stack's worker and
sandboxes do the work. An ERP answering 503 shows the order in retry and the exit code says
so; a parked order fixed by `connections map` is a resolved episode saying "mapping"; a
connection with an ERP quota shows the calls waiting in its queue."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import HISTORY_KEYS
from tests.integration.conftest import eventually
from tests.integration.helpers import documents, place_order, wait_documents, wait_order_state

CLI = Path(sys.executable).parent / "ml-connector"
ATTENTION, UNKNOWN = 1, 3  # starter/status.py EXIT_CODES


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        assert "Traceback" not in self.stderr, self.stderr
        return json.loads(self.stdout)


@pytest.fixture
def cli(stack, temporal, tmp_path):
    return cli_for(stack, temporal, tmp_path)


def cli_for(stack, temporal, tmp_path):
    """Run ``ml-connector ARGS`` on ``stack``'s store, keys, Temporal and task queue."""
    env = {**os.environ, "ML_CONNECTOR_HOME": str(tmp_path / "cli-home"),
           "ML_CONNECTOR_DB": stack.store.db.url, "ML_CONNECTOR_KEY_FILE": str(HISTORY_KEYS),
           "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
           "TEMPORAL_NAMESPACE": temporal.client.namespace,
           "ML_CONNECTOR_TASK_QUEUE": stack.task_queue, "ML_CONNECTOR_ACTOR": "ops-desk"}
    env.pop("ML_CONNECTOR_MASTER_KEYS", None)
    command = [str(CLI)] if CLI.exists() else [shutil.which("ml-connector") or "ml-connector"]

    async def run(*args: str, extra_env: dict | None = None) -> Done:
        proc = await asyncio.create_subprocess_exec(
            *command, *args, env={**env, **(extra_env or {})}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return Done(proc.returncode, out.decode(), err.decode())

    return run


def only(report: dict, connection_id: str) -> dict:
    [status] = [s for s in report["connections"] if s["connection"] == connection_id]
    return status


async def test_an_order_retrying_against_a_503_erp_is_listed_and_needs_attention(stack, cli):
    await retrying_then_resolved(stack, cli)


async def test_the_retry_episode_on_postgresql(stack_factory, pg_url, temporal, tmp_path):
    pg_stack = await stack_factory(db_url=pg_url)
    await retrying_then_resolved(pg_stack, cli_for(pg_stack, temporal, tmp_path))


async def retrying_then_resolved(stack, cli):
    conn = await stack.add_connection(uid("retry"))
    await stack.control("acumatica", "/_sandbox/faults", {"fail_next": 10_000, "fail_status": 503})
    order = await place_order(stack, quantities=(1,))
    number = str(order["number"])

    async def listed():
        done = await cli("status", conn.id, "--json")
        status = only(done.json(), conn.id)
        return (done, status) if any(r["order"] == number for r in status["retrying"]) else None

    done, status = await eventually(listed, timeout=60, interval=1)
    assert done.returncode == ATTENTION, done.stderr
    report = done.json()
    assert (report["schema"], report["verdict"], report["exit_code"]) == (1, "attention", 1)
    [row] = [r for r in status["retrying"] if r["order"] == number]
    assert row["attempts"] >= 1 and row["since"] and row["step"]
    assert "503" in row["last_error"] or "unavailable" in row["last_error"].lower(), row
    assert any("retrying" in reason for reason in status["attention"])
    # "never checked" is never "ok": nothing has checked this connection's health yet
    assert status["health"]["state"] == "never checked"
    assert status["webhooks"]["state"] == "never checked"
    assert status["temporal"] == {"reachable": True, "error": ""}
    assert status["schedules"] == {}  # and it says so: no schedules, run `schedules apply`
    text = await cli("status", conn.id)
    assert text.returncode == ATTENTION and "Traceback" not in text.stderr
    assert f"retrying order {number} since" in text.stdout and "NEEDS ATTENTION" in text.stdout
    opened = (await cli("errors", "--open", "--connection", conn.id, "--json")).json()
    assert [(e["kind"], e["order_number"], e["open"]) for e in opened] == [
        ("retrying", number, True)]

    await stack.control("acumatica", "/_sandbox/faults", {"fail_next": 0})
    await wait_order_state(stack, conn.id, order["id"], timeout=90)

    async def resolved():
        found = (await cli("errors", "--resolved", "--connection", conn.id, "--json")).json()
        return found or None

    [episode] = await eventually(resolved, timeout=30, interval=1)
    assert (episode["kind"], episode["resolution"], episode["outcome"]) == (
        "retrying", "automatic retry", "completed")
    after = (await cli("status", conn.id, "--json")).json()
    assert only(after, conn.id)["retrying"] == []
    assert only(after, conn.id)["health"]["state"] == "healthy"  # an order posted: evidence


async def test_a_parked_order_fixed_by_connections_map_is_resolved_by_mapping(stack, cli):
    conn = await stack.add_connection(uid("map"))
    await stack.control("woocommerce", "/_sandbox/products",
                        [{"sku": "NEW-GADGET", "name": "New gadget", "regular_price": "12.00"}])
    async with stack.store_client() as shop:
        [new] = (await shop.get("wp-json/wc/v3/products", params={"sku": "NEW-GADGET"})).json()
    other = await place_order(stack, quantities=(1,))
    [doc] = await wait_documents(stack, f"WC-{other['id']}")
    order = await place_order(stack, quantities=(1,),
                              extra_lines=[{"product_id": new["id"], "quantity": 1}])
    await wait_order_state(stack, conn.id, order["id"], state="parked")

    opened = await cli("errors", "--open", "--connection", conn.id)
    assert opened.returncode == 0 and f"order {order['number']}  parked" in opened.stdout
    assert "NEW-GADGET" in opened.stdout, opened.stdout
    status = await cli("status", conn.id, "--json")
    assert status.returncode == ATTENTION
    [parked] = only(status.json(), conn.id)["parked"]
    assert parked["order"] == str(order["number"]) and "NEW-GADGET" in parked["message"]

    item = (await documents(stack))[0]["lines"][0]["inventory_id"]
    mapped = await cli("connections", "map", conn.id, "--sku", f"NEW-GADGET={item}")
    assert mapped.returncode == 0, mapped.stderr
    await wait_documents(stack, f"WC-{order['id']}")
    await wait_order_state(stack, conn.id, order["id"])

    resolved = await cli("errors", "--resolved", "--since", "2020-01-01", "--connection", conn.id,
                         "--json")
    [episode] = [e for e in resolved.json() if e["kind"] == "parked"]
    assert (episode["order_number"], episode["resolution"], episode["resolved_by"],
            episode["outcome"]) == (str(order["number"]), "mapping", "ops-desk", "posted")
    assert f"NEW-GADGET={item}" in episode["resolution_detail"]
    assert episode["resolved_at"] >= episode["opened_at"] and episode["duration_seconds"] >= 0
    text = await cli("errors", "--resolved", "--connection", conn.id)
    assert "resolved: mapping by ops-desk" in text.stdout, text.stdout
    assert (await cli("errors", "--open", "--connection", conn.id, "--json")).json() == []
    later = await cli("errors", "--resolved", "--since", "2999-01-01", "--json")
    assert later.json() == []


async def test_an_erp_quota_backlog_is_shown_from_its_task_queue(stack, cli):
    # No quota worker serves the queue: the ERP calls wait in it, as behind a tight quota.
    stack.quota_task.cancel()
    await asyncio.gather(stack.quota_task, return_exceptions=True)
    conn = await stack.add_connection(uid("quota"), register_webhooks=False)
    conn.erp_requests_per_minute = 60
    stack.store.save_connection(conn)
    order = await place_order(stack, quantities=(1,))
    replayed = await cli("replay", conn.id, "--order", str(order["id"]))
    assert replayed.returncode == 0, replayed.stderr

    async def waiting():
        done = await cli("status", conn.id, "--json")
        backlog = only(done.json(), conn.id)["quota_backlog"]
        return (done, backlog) if backlog and backlog["waiting"] >= 1 else None

    done, backlog = await eventually(waiting, timeout=60, interval=1)
    assert backlog["task_queue"] == f"{stack.task_queue}/erp/{conn.id}"
    assert backlog["requests_per_minute"] == 60 and backlog["oldest_seconds"] >= 0
    [waiting_order] = backlog["orders"]
    assert waiting_order["order"] == str(order["number"]) and waiting_order["since"]
    text = await cli("status", conn.id)
    assert "quota backlog: " in text.stdout and "ERP call(s) waiting" in text.stdout
    assert f"waiting for quota: order {order['number']} (" in text.stdout, text.stdout


async def test_status_without_temporal_says_so_and_needs_attention(stack, cli):
    conn = await stack.add_connection(uid("down"), register_webhooks=False)
    done = await cli("status", conn.id, "--json", extra_env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert done.returncode == ATTENTION, done.stderr
    status = only(done.json(), conn.id)
    assert status["temporal"]["reachable"] is False and "unreachable" in status["temporal"]["error"]
    assert status["schedules"] is None and status["quota_backlog"] is None
    unknown = await cli("status", "--json", extra_env={"ML_CONNECTOR_DB": "sqlite:///" + str(
        Path(stack.home) / "empty.db")})
    assert unknown.returncode == UNKNOWN and unknown.json()["connections"] == []


async def test_schedules_and_a_webhook_check_turn_never_checked_into_healthy(stack, cli):
    conn = await stack.add_connection(uid("sched"))
    before = only((await cli("status", conn.id, "--json")).json(), conn.id)
    assert before["schedules"] == {} and any("schedules apply" in r for r in before["attention"])
    assert before["webhooks"]["state"] == "never checked"
    applied = await cli("schedules", "apply", conn.id)
    assert applied.returncode == 0, applied.stderr
    try:
        await stack.client.get_schedule_handle(f"webhooks/{conn.id}").trigger()

        async def checked():
            status = only((await cli("status", conn.id, "--json")).json(), conn.id)
            return status if status["webhooks"]["state"] == "healthy" else None

        status = await eventually(checked, timeout=30, interval=1)
        assert set(status["schedules"]) == {"poll", "webhooks"}
        assert status["webhooks"]["last_check"] == status["schedules"]["webhooks"]
        assert not any("schedules apply" in r for r in status["attention"])
    finally:
        for sid in [s async for s in await stack.client.list_schedules()]:
            if sid.id.endswith(f"/{conn.id}"):
                await stack.client.get_schedule_handle(sid.id).delete()
