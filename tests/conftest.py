"""Shared fixtures: a store on both engines. Integration fixtures live in integration/."""
from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault

PG_URL = os.environ.get("ML_CONNECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _sigterm_to_interrupt(*_):  # lets fixtures stop the servers they started
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


HISTORY_KEYS = Path(__file__).parent / "histories" / "test-keys.json"


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    """Fixed test-only keys, so recorded workflow histories can be replayed later."""
    return Keyring.load(HISTORY_KEYS)


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database on each engine: a file for SQLite, a new schema for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(db_url, keyring) -> ConnectionStore:
    s = ConnectionStore(Database(db_url), Vault(keyring))
    yield s
    s.db.close()
