"""The plain-text scan: after the whole suite, no secret, token or customer e-mail of the run
may be readable in a connection-store file, in the logs, or in any workflow history.

What is looked for (the needles):
- every secret the run's stores held, decrypted at the end (``harvest`` before a store
  closes, and every SQLite store file under the session's tmp dirs, decrypted with the
  session keyring), plus the sandboxes' fixed credentials;
- customer e-mails: every sandbox makes its customers under ``example.com`` (RFC 2606), so
  any address in that domain is a hit; ``add_email`` registers others.
Where: the raw bytes of every SQLite store file (with its WAL), the rows of PostgreSQL
stores (read at ``harvest``, their schemas are dropped after the test), the session log file
(every line the run logged, through starter/logs.py), and the raw bytes of every history in
the session's Temporal dev server (``scan_temporal``, before the server stops).
A hit names the place and what kind of value it was, never the value.
"""
from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.history.v1 import History

MIN_LENGTH = 8  # shorter values ("admin", "secret") would match ordinary words
SANDBOX_CREDENTIALS = ("ck_sandbox", "cs_sandbox", "exact-sandbox-secret",
                       "exact-sandbox-webhook-secret", "client-secret")
_CREDENTIAL_KEY = re.compile(r"secret|password|token|key|signature|code", re.IGNORECASE)
_NOT_CREDENTIAL = {"token_type", "key_id"}
# anchored on "@" so the regex engine skips ahead fast through binary data
CUSTOMER_EMAIL = re.compile(rb"@(?:[\w-]+\.)*example\.(?:com|net|org)\b")


@dataclass
class Registry:
    needles: dict[bytes, str] = field(default_factory=dict)  # value -> what it is
    store_files: set[Path] = field(default_factory=set)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)  # (where, content)
    log_files: list[Path] = field(default_factory=list)
    histories: int = 0

    def __post_init__(self) -> None:
        for value in SANDBOX_CREDENTIALS:
            self.add_secret(value, "a sandbox credential")

    # needles ---------------------------------------------------------------------------
    def add_secret(self, value: str, what: str = "a secret") -> None:
        if len(value) >= MIN_LENGTH:
            self.needles.setdefault(value.encode(), what)

    def add_email(self, value: str) -> None:
        self.add_secret(value, "a customer e-mail")

    def add_stored(self, connection_id: str, name: str, plain: str) -> None:
        """A decrypted secret: the whole value, or the credential fields of a JSON one."""
        what = f"secret {name!r} of connection {connection_id!r}"
        try:
            data = json.loads(plain)
        except ValueError:
            data = plain
        if not isinstance(data, dict):
            self.add_secret(plain, what)
            return
        for key, value in _leaves(data):
            if isinstance(value, str) and _CREDENTIAL_KEY.search(key) and key not in _NOT_CREDENTIAL:
                self.add_secret(value, f"{what} ({key})")

    # sources ---------------------------------------------------------------------------
    def harvest(self, store) -> None:
        """Call before a store closes: its secrets become needles; its file (SQLite) or its
        rows (PostgreSQL) are scanned at the end."""
        if not store.db.is_postgres:
            self.store_files.add(Path(store.db.url.removeprefix("sqlite:///")))
        try:
            rows = store.db.query("SELECT connection_id, name, ciphertext FROM secrets")
            if store.db.is_postgres:
                schema = re.search(r"search_path%3D(\w+)", store.db.url)
                self.blobs.append((f"PostgreSQL store (schema {schema[1] if schema else 'public'})",
                                   _pg_rows(store.db)))
        except Exception:  # its schema was dropped already (a fixture torn down before)
            return
        for cid, name, token in rows:
            try:
                self.add_stored(cid, name, store.vault.decrypt(token))
            except Exception:  # a store made with another keyring: its file is still scanned
                pass

    async def scan_temporal(self, client, *, concurrency: int = 16) -> None:
        """Call before the dev server stops: every history's raw bytes (not decoded)."""
        gate = asyncio.Semaphore(concurrency)

        async def fetch(wf) -> tuple[str, bytes]:
            async with gate:
                handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
                events = [e async for e in handle.fetch_history_events()]
            return f"history of workflow {wf.id} (run {wf.run_id})", History(events=events).SerializeToString()

        listed = [wf async for wf in client.list_workflows()]
        self.blobs.extend(await asyncio.gather(*(fetch(wf) for wf in listed)))
        self.histories += len(listed)

    def collect_files(self, root: Path, keyring) -> None:
        """Every SQLite store under ``root``: its secrets (if the keyring opens them) and file."""
        from connections.vault import Vault

        vault = Vault(keyring)
        for path in root.rglob("*.db"):
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                    rows = db.execute("SELECT connection_id, name, ciphertext FROM secrets").fetchall()
            except sqlite3.Error:
                continue  # not a connection store
            self.store_files.add(path)
            for cid, name, token in rows:
                try:
                    self.add_stored(cid, name, vault.decrypt(token))
                except Exception:
                    pass

    # the scan --------------------------------------------------------------------------
    def sources(self):
        for path in sorted(self.store_files):
            for part in (path, path.with_name(path.name + "-wal")):
                if part.exists():
                    yield f"store file {part}", part.read_bytes()
        for path in self.log_files:
            if path.exists():
                yield f"log file {path}", path.read_bytes()
        yield from self.blobs

    def _found(self, blob: bytes) -> set[str]:
        found = {what for value, what in self.needles.items() if value in blob}
        if CUSTOMER_EMAIL.search(blob):
            found.add("a customer e-mail")
        return found

    def scan(self) -> list[str]:
        """One line per place (a log file: per line) naming the kinds of value found."""
        hits = []
        for where, blob in self.sources():
            if not (found := self._found(blob)):
                continue
            if where.startswith("log file"):
                for n, line in enumerate(blob.splitlines(), start=1):
                    if line_found := self._found(line):
                        hits.append(f"{where} line {n}: {', '.join(sorted(line_found))}")
                continue
            hits.append(f"{where}: {', '.join(sorted(found))}")
        return hits

    def summary(self) -> str:
        return (f"plain-text scan: {len(self.needles)} secrets, {len(self.store_files)} store files, "
                f"{len(self.log_files)} log files, {self.histories} histories")


def _leaves(data, prefix: str = ""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, str(key))
    elif isinstance(data, list):
        for value in data:
            yield from _leaves(value, prefix)
    else:
        yield prefix, data


def _pg_rows(db) -> bytes:
    tables = [r[0] for r in db.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    return repr([db.query(f'SELECT * FROM "{t}"') for t in tables]).encode()


REGISTRY = Registry()
