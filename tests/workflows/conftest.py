"""Workflow tests in the SDK's own style: OrderSync on a tiny worker with stub activities, a
fresh task queue per test, on the session's dev server (tests/conftest.py ``temporal``)."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter.stack import temporal_binary
from starter.temporal import data_converter
from tests.plaintext import REGISTRY
from tests.workflows.stubs import StubOrderActivities
from workflows.order import OrderSync
from workflows.search_attributes import SEARCH_ATTRIBUTES

# Events in one run's history after which the server suggests continue-as-new (4Ki by default):
# small enough that a few events force it, large enough that a carried-over run's first pass
# stays below it.
EAGER_CAN_EVENTS = 40


@pytest.fixture
def stubs() -> StubOrderActivities:
    return StubOrderActivities()


@pytest.fixture
def order_worker():
    """``async with order_worker(client, stubs) as task_queue``: OrderSync and the stubs on a
    fresh task queue, for the block's duration."""

    @asynccontextmanager
    async def run(client: Client, stubs: StubOrderActivities) -> AsyncIterator[str]:
        task_queue = f"wf-{uuid.uuid4().hex[:10]}"
        async with Worker(client, task_queue=task_queue, workflows=[OrderSync],
                          activities=stubs.all()):
            yield task_queue

    return run


@pytest.fixture(scope="session")
async def eager_can_temporal(keyring) -> AsyncIterator[WorkflowEnvironment]:
    """A second dev server (≈0.3 s to start) whose only difference is that it suggests
    continue-as-new after EAGER_CAN_EVENTS history events: a server-wide setting, so it stays
    off the shared server."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(keyring), dev_server_log_level="error", ui=False,
        dev_server_extra_args=["--dynamic-config-value",
                               f"limit.historyCount.suggestContinueAsNew={EAGER_CAN_EVENTS}"])
    try:
        yield env
    finally:
        await REGISTRY.scan_temporal(env.client)  # the same plain-text check as the shared one
        await env.shutdown()
