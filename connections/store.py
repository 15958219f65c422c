"""Persistence of connections, secrets, tokens, watermarks and the ledger's rows.

One code path for SQLite (the embedded default) and PostgreSQL (several hosts): SQL is
written once with ``?`` placeholders and ``ON CONFLICT`` upserts, which both engines speak.
Secrets are stored only as vault ciphertext.

The ledger (the binder: its states, key scheme and posting protocol) is connections/ledger.py;
this module only keeps its rows, one per (connection, kind, store id) under a unique key.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connections.config import Connection, Environment
from connections.state_files import private_file
from connections.ledger import DocumentState, LedgerRow
from connections.vault import Keyring, Vault

MIGRATIONS: list[str] = [
    """
    CREATE TABLE connections (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE secrets (
        connection_id TEXT NOT NULL,
        name TEXT NOT NULL,
        ciphertext TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (connection_id, name)
    );
    CREATE TABLE ledger (
        connection_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        store_id TEXT NOT NULL,
        order_number TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        erp_ref TEXT,
        totals TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (connection_id, kind, store_id)
    );
    CREATE INDEX ledger_state ON ledger (connection_id, state);
    CREATE TABLE watermarks (
        connection_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (connection_id, name)
    );
    """,
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE TABLE connection_health (
        connection_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE request_slots (
        name TEXT PRIMARY KEY,
        next_ms BIGINT NOT NULL
    );
    """,
    # Error history (connections/error_history.py): episodes and the operator actions that
    # resolved them, ordered by one counter (seq) rather than by two hosts' clocks.
    """
    CREATE TABLE error_history_seq (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    );
    CREATE TABLE error_episodes (
        seq BIGINT PRIMARY KEY,
        connection_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        order_number TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        step TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        opened_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_at TEXT,
        resolution TEXT,
        resolved_by TEXT,
        resolution_detail TEXT,
        outcome TEXT,
        action_seq BIGINT
    );
    CREATE UNIQUE INDEX error_episodes_one_open
        ON error_episodes (connection_id, order_id, kind) WHERE resolved_at IS NULL;
    CREATE INDEX error_episodes_opened ON error_episodes (opened_at);
    CREATE INDEX error_episodes_resolved ON error_episodes (resolved_at);
    CREATE TABLE operator_actions (
        seq BIGINT PRIMARY KEY,
        connection_id TEXT NOT NULL,
        order_id TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE INDEX operator_actions_target ON operator_actions (connection_id, order_id, seq);
    """,
    # The last store-versus-ERP reconciliation of each connection (connections/reconciliations.py).
    """
    CREATE TABLE reconciliations (
        connection_id TEXT PRIMARY KEY,
        ran_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        differences INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    """,
    # The store's modification time of the order snapshot a pass booked (kind "order"): the
    # poll skips an order only when the store's own time says nothing changed since.
    """
    ALTER TABLE ledger ADD COLUMN store_modified_at TEXT;
    """,
    # One-order mapping overrides (connections/order_overrides.py): a SKU, tax rate or
    # payment method mapped for one order only, applied to every document of that order.
    """
    CREATE TABLE order_overrides (
        connection_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        store_value TEXT NOT NULL,
        erp_value TEXT NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        PRIMARY KEY (connection_id, order_id, kind, store_value)
    );
    """,
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class StoreUnavailable(Exception):
    """The store's database cannot be opened or reached: one line for the operator, naming
    the variable to check rather than a server path or the URL (it may hold a password)."""

    @classmethod
    def because(cls, exc: Exception) -> "StoreUnavailable":
        first = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).splitlines()[0]
        reason = first.rsplit(": ", 1)[-1].strip()[:200]
        return cls("the connection store's database (ML_CONNECTOR_DB, default "
                   f"ML_CONNECTOR_HOME/connector.db) cannot be opened: {reason}")


class ConnectionNotFound(KeyError):
    def __str__(self) -> str:
        return f"no connection named {self.args[0]!r}"


class Database:
    """A thin DB-API wrapper: ``?`` placeholders everywhere, translated for psycopg.

    Reads have a connection of their own: a reader never waits behind a writer's commit
    (its disk flush, or PostgreSQL's round trip), and an asyncio worker that reads inline
    while its ledger writes run in threads keeps its event loop moving."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_postgres = url.startswith(("postgresql://", "postgres://"))
        self._path = ""
        if not self.is_postgres:
            self._path = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else url
        self._lock = threading.RLock()
        self._conn = self._connect()
        # An in-memory database exists once per connection: it reads through the writer's.
        shared = self._path == ":memory:"
        self._read_lock = self._lock if shared else threading.RLock()
        self._reader = self._conn if shared else None  # opened on first read, after migrate

    def _connect(self) -> Any:
        """A new DB-API connection; one line (``StoreUnavailable``) when it cannot be had."""
        if self.is_postgres:
            import psycopg

            timeout = {} if "connect_timeout" in self.url else {"connect_timeout": 10}
            try:
                return psycopg.connect(self.url, autocommit=False, **timeout)
            except psycopg.Error as exc:
                raise StoreUnavailable.because(exc) from None
        try:
            if self._path not in ("", ":memory:"):
                private_file(Path(self._path))  # 0600 in a 0700 folder; SQLite's -wal/-shm follow
            conn = sqlite3.connect(self._path, check_same_thread=False, timeout=30,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable.because(exc) from None
        return conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_postgres else sql

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        """SQLite takes the write lock up front for a writing transaction (no deadlock when
        two processes upgrade at once); a read-only one takes none."""
        with self._lock if write else self._read_lock:
            if write:
                conn = self._conn
            else:
                conn = self._reader = self._reader or self._connect()
            cur = conn.cursor()
            if not self.is_postgres:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _Cursor(cur, self._sql)
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.transaction(write=False) as cur:
            return cur.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> None:
        with self.transaction() as cur:
            cur.execute(sql, params)

    def migrate(self) -> int:
        """Apply pending versioned migrations; returns the schema version."""
        with self.transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, script.split(";")):
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            return len(MIGRATIONS)

    def close(self) -> None:
        if self._reader is not None and self._reader is not self._conn:
            self._reader.close()
        self._conn.close()


class _Cursor:
    def __init__(self, cur: Any, translate) -> None:
        self._cur, self._t = cur, translate

    def execute(self, sql: str, params: tuple = ()) -> "_Cursor":
        self._cur.execute(self._t(sql), params)
        return self

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self):
        return self._cur.fetchall()


class ConnectionStore:
    def __init__(self, db: Database, vault: Vault) -> None:
        self.db = db
        self.vault = vault
        db.migrate()

    # connections ---------------------------------------------------------------------------
    def save_connection(self, conn: Connection) -> None:
        now = _now()
        self.db.execute(
            "INSERT INTO connections (id, config, created_at, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            (conn.id, conn.model_dump_json(), now, now))

    def get_connection(self, connection_id: str) -> Connection:
        rows = self.db.query("SELECT config FROM connections WHERE id = ?", (connection_id,))
        if not rows:
            raise ConnectionNotFound(connection_id)
        return Connection.model_validate_json(rows[0][0])

    def list_connections(self) -> list[Connection]:
        rows = self.db.query("SELECT config FROM connections ORDER BY id")
        return [Connection.model_validate_json(r[0]) for r in rows]

    # secrets -------------------------------------------------------------------------------
    def put_secret(self, connection_id: str, name: str, value: str | dict) -> None:
        plain = value if isinstance(value, str) else json.dumps(value)
        self.db.execute(
            "INSERT INTO secrets (connection_id, name, ciphertext, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (connection_id, name) DO UPDATE SET ciphertext = excluded.ciphertext, "
            "updated_at = excluded.updated_at",
            (connection_id, name, self.vault.encrypt(plain), _now()))

    def get_secret(self, connection_id: str, name: str) -> str | None:
        ciphertext = self.secret_stamp(connection_id, name)
        return self.vault.decrypt(ciphertext) if ciphertext else None

    def secret_stamp(self, connection_id: str, name: str) -> str:
        """Changes whenever the secret does (it is the ciphertext); decrypts nothing."""
        rows = self.db.query("SELECT ciphertext FROM secrets WHERE connection_id = ? AND name = ?",
                             (connection_id, name))
        return rows[0][0] if rows else ""

    def get_secret_json(self, connection_id: str, name: str) -> dict | None:
        plain = self.get_secret(connection_id, name)
        return json.loads(plain) if plain is not None else None

    def secret_names(self, connection_id: str) -> list[str]:
        return [r[0] for r in self.db.query(
            "SELECT name FROM secrets WHERE connection_id = ? ORDER BY name", (connection_id,))]

    def rotate_secrets(self) -> int:
        """Re-encrypt every stored secret under the vault's primary key."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT connection_id, name, ciphertext FROM secrets").fetchall()
            for cid, name, token in rows:
                cur.execute("UPDATE secrets SET ciphertext = ? WHERE connection_id = ? AND name = ?",
                            (self.vault.rotate(token), cid, name))
        return len(rows)

    # ledger --------------------------------------------------------------------------------
    # Keys and states arrive as the ledger's StrEnums: stored (and compared) as plain text.
    def ledger_get(self, connection_id: str, kind: str, store_id: str) -> LedgerRow | None:
        rows = self.db.query(
            "SELECT connection_id, kind, store_id, order_number, state, erp_ref, totals, attempts, "
            "last_error, updated_at, store_modified_at FROM ledger "
            "WHERE connection_id = ? AND kind = ? AND store_id = ?",
            (connection_id, str(kind), store_id))
        return _ledger_row(rows[0]) if rows else None

    def ledger_mark(self, connection_id: str, kind: str, store_id: str, state: str, *,
                    order_number: str = "", erp_ref: dict | None = None,
                    totals: dict | None = None, error: str | None = None,
                    count_attempt: bool = False, store_modified_at: str | None = None) -> None:
        """Insert or move a ledger row; a posted document never falls back to posting/error.
        ``store_modified_at`` (the store's time of the snapshot booked) is kept when not given."""
        self.db.execute(
            "INSERT INTO ledger (connection_id, kind, store_id, order_number, state, erp_ref, totals, "
            "attempts, last_error, updated_at, store_modified_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (connection_id, kind, store_id) DO UPDATE SET "
            f"state = CASE WHEN ledger.state = '{DocumentState.POSTED}' AND excluded.state IN "
            f"('{DocumentState.POSTING}', '{DocumentState.ERROR}') "
            "  THEN ledger.state ELSE excluded.state END, "
            "order_number = CASE WHEN excluded.order_number = '' THEN ledger.order_number "
            "  ELSE excluded.order_number END, "
            "erp_ref = COALESCE(excluded.erp_ref, ledger.erp_ref), "
            "totals = COALESCE(excluded.totals, ledger.totals), "
            "attempts = ledger.attempts + excluded.attempts, "
            "last_error = excluded.last_error, updated_at = excluded.updated_at, "
            "store_modified_at = COALESCE(excluded.store_modified_at, ledger.store_modified_at)",
            (connection_id, str(kind), store_id, order_number, str(state),
             json.dumps(erp_ref, default=str) if erp_ref is not None else None,
             json.dumps(totals, default=str) if totals is not None else None,
             1 if count_attempt else 0, error, _now(), store_modified_at))

    def ledger_rows(self, connection_id: str, *, kind: str | None = None,
                    state: str | None = None, order_number: str | None = None) -> list[LedgerRow]:
        sql = ("SELECT connection_id, kind, store_id, order_number, state, erp_ref, totals, "
               "attempts, last_error, updated_at, store_modified_at FROM ledger "
               "WHERE connection_id = ?")
        params: list = [connection_id]
        for column, value in (("kind", kind), ("state", state), ("order_number", order_number)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(str(value))
        return [_ledger_row(r) for r in self.db.query(sql + " ORDER BY updated_at", tuple(params))]

    # watermarks ----------------------------------------------------------------------------
    def get_watermark(self, connection_id: str, name: str) -> str | None:
        rows = self.db.query("SELECT value FROM watermarks WHERE connection_id = ? AND name = ?",
                             (connection_id, name))
        return rows[0][0] if rows else None

    def set_watermark(self, connection_id: str, name: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO watermarks (connection_id, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (connection_id, name) DO UPDATE SET value = excluded.value",
            (connection_id, name, value))

    # leases: one holder at a time across processes and hosts ------------------------------
    def try_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take (or extend) the lease ``name`` for ``owner`` unless another owner holds an
        unexpired one. One atomic upsert, the same on SQLite and PostgreSQL."""
        now_ms = int(time.time() * 1000)
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO leases (name, owner, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_ms = excluded.expires_ms "
                "WHERE leases.expires_ms < ? OR leases.owner = excluded.owner",
                (name, owner, now_ms + int(ttl_seconds * 1000), now_ms))
            row = cur.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
        return bool(row) and row[0] == owner

    def release_lease(self, name: str, owner: str) -> None:
        self.db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # request slots: one licensed request rate shared by every process and host -----------
    def reserve_request(self, name: str, interval_ms: int, burst: int = 1) -> int:
        """Book the next free slot of the schedule ``name`` (one slot each ``interval_ms``) and
        return the milliseconds to wait before sending. An idle schedule banks at most
        ``burst`` slots, so a quota counted in fixed windows is never overrun after a pause.
        One row update, so concurrent callers on any host get distinct slots."""
        now_ms = int(time.time() * 1000)
        floor = now_ms - burst * interval_ms
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO request_slots (name, next_ms) VALUES (?, ?) "
                        "ON CONFLICT (name) DO NOTHING", (name, floor))
            cur.execute("UPDATE request_slots SET next_ms = CASE WHEN next_ms < ? THEN ? "
                        "ELSE next_ms END + ? WHERE name = ?",
                        (floor, floor, interval_ms, name))
            (next_ms,) = cur.execute("SELECT next_ms FROM request_slots WHERE name = ?",
                                     (name,)).fetchone()
        return max(0, next_ms - interval_ms - now_ms)

    # connection health (e.g. "needs_consent" after a refused refresh token) ---------------
    def connection_health(self, connection_id: str) -> dict[str, str]:
        """``{"state": "ok"}`` unless something marked the connection unhealthy."""
        rows = self.db.query(
            "SELECT state, message, updated_at FROM connection_health WHERE connection_id = ?",
            (connection_id,))
        if not rows:
            return {"state": "ok", "message": "", "updated_at": ""}
        return {"state": rows[0][0], "message": rows[0][1], "updated_at": rows[0][2]}

    def set_connection_health(self, connection_id: str, state: str, message: str = "") -> None:
        """Record a state such as ``needs_consent``; ``"ok"`` clears it."""
        if state == "ok":
            self.db.execute("DELETE FROM connection_health WHERE connection_id = ?",
                            (connection_id,))
            return
        self.db.execute(
            "INSERT INTO connection_health (connection_id, state, message, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (connection_id) DO UPDATE SET "
            "state = excluded.state, message = excluded.message, updated_at = excluded.updated_at",
            (connection_id, state, message, _now()))


def open_store(env: Environment) -> ConnectionStore:
    """The connection store of this environment (migrated, with its vault). Keys fail
    closed: a missing key file is replaced by a new key only while the store holds no secret,
    and keys that cannot decrypt a stored secret stop here, before anything is encrypted
    under them (connections/vault.py)."""
    db = Database(env.db_url)
    try:
        db.migrate()
        sample = a_stored_secret(db)
        keyring = Keyring.load(env.key_file, label=env.key_file_label,
                               may_create=lambda: sample is None)
        store = ConnectionStore(db, Vault(keyring))
        if sample is not None:
            store.vault.decrypt(sample)  # VaultError: one line that says how to fix the keys
        return store
    except BaseException:
        db.close()
        raise


def a_stored_secret(db: Database) -> str | None:
    """One stored ciphertext, if any (then a key file must exist, and decrypt it)."""
    rows = db.query("SELECT ciphertext FROM secrets LIMIT 1")
    return rows[0][0] if rows else None


def _ledger_row(r: tuple) -> LedgerRow:
    return LedgerRow(connection_id=r[0], kind=r[1], store_id=r[2], order_number=r[3], state=r[4],
                     erp_ref=json.loads(r[5]) if r[5] else None,
                     totals=json.loads(r[6]) if r[6] else None, attempts=r[7], last_error=r[8],
                     updated_at=r[9], store_modified_at=r[10])
