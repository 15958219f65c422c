"""Replays recorded workflow histories against today's workflow code (determinism check)."""
from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from starter.temporal import data_converter
from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
HISTORIES = [h for h in HISTORIES if h.name != "test-keys.json"]


@pytest.mark.skipif(not HISTORIES, reason="no recorded histories yet")
@pytest.mark.parametrize("path", HISTORIES, ids=[h.stem for h in HISTORIES])
async def test_recorded_history_replays(path: Path, keyring):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(keyring))
    await replayer.replay_workflow(history)
