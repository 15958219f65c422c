"""Per test, the whole stack on real sockets (on the session-wide Temporal dev server of
tests/conftest.py): sandboxes over TLS, receiver, worker on a fresh task queue, a fresh
connection store (SQLite file, or a PostgreSQL schema for tests that ask for both)."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from connections.store import ConnectionStore, Database
from connections.vault import Vault
from starter.stack import Stack
from tests.plaintext import REGISTRY


@pytest.fixture
async def stack_factory(temporal, tmp_path, keyring):
    """Build a seeded stack with the given sandbox options; all are closed after the test."""
    opened: list[Stack] = []

    async def make(*, db_url: str | None = None, seed: bool = True, **options) -> Stack:
        store = ConnectionStore(Database(db_url or f"sqlite:///{tmp_path / 'store.db'}"),
                                Vault(keyring))
        stack = Stack(temporal.client, store, tmp_path / f"stack{len(opened)}",
                      f"tq-{uuid.uuid4().hex[:10]}", **options)  # store/erp_system, *_options
        await stack.__aenter__()
        opened.append(stack)
        if seed:
            await stack.seed()
        return stack

    yield make
    for stack in reversed(opened):
        await stack.__aexit__(None, None, None)
        REGISTRY.harvest(stack.store)
        stack.store.db.close()


@pytest.fixture
def pg_url():
    """A fresh schema in the machine's PostgreSQL: the several-hosts store, same code path."""
    from tests.conftest import pg_schema

    with pg_schema("e2e") as url:
        yield url


@pytest.fixture
async def stack(stack_factory) -> Stack:
    return await stack_factory()


async def eventually(check, *, timeout: float = 60, interval: float = 0.3):
    """Poll ``check`` (async, returns a truthy value when done) until it passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
