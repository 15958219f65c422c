"""Replays recorded workflow histories against today's workflow code (determinism check), and
shows that the check bites: a changed OrderSync fails to replay a recorded order."""
from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from activities.messages import OrderRef, OrderSyncInput, OrderSyncState
from activities.orders import OrderActivities
from starter.temporal import data_converter
from starter.workers import WORKFLOWS
from workflows import policies
from workflows.order import OrderSync

HERE = Path(__file__).parent / "histories"
HISTORIES = sorted(h for h in HERE.glob("*.json") if h.name != "test-keys.json")
PLAIN_ORDER = HERE / "plain.json"


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


@pytest.mark.skipif(not HISTORIES, reason="no recorded histories yet")
@pytest.mark.parametrize("path", HISTORIES, ids=[h.stem for h in HISTORIES])
async def test_recorded_history_replays(path: Path, keyring):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(keyring))
    await replayer.replay_workflow(load(path))


# Defined here, out of the sandbox: the sandbox would re-import this test module.
@workflow.defn(name="OrderSync", sandboxed=False)
class ExtraReadOrderSync(OrderSync):
    """OrderSync changed without a patch: one more store read, as an activity, before its
    first pass (the kind of change ``workflow.patched`` exists for)."""

    @workflow.run
    async def run(self, inp: OrderSyncInput) -> OrderSyncState:
        await workflow.execute_activity_method(
            OrderActivities.fetch_order,
            OrderRef(connection_id=inp.connection_id, order_id=inp.order_id), **policies.STORE_READ)
        return await super().run(inp)


async def test_changed_order_sync_fails_replay(keyring):
    """The negative case: the recorded plain order replays under OrderSync and fails under the
    same workflow with one extra activity, with the SDK's nondeterminism error."""
    history = load(PLAIN_ORDER)
    converter = data_converter(keyring)
    await Replayer(workflows=[OrderSync], data_converter=converter).replay_workflow(history)
    changed = Replayer(workflows=[ExtraReadOrderSync], data_converter=converter)
    with pytest.raises(workflow.NondeterminismError, match=r"TMPRL1100\] Nondeterminism error"):
        await changed.replay_workflow(history)
