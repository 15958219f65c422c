"""The last reconciliation of each connection (store versus ERP, to the cent), kept in the
connection store so ``status``, the metrics and the console show it without Temporal or
either system. One row per connection: a new run replaces the last. The report holds order
ids, external references, ERP numbers and amounts — never a customer's details."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from connections.store import ConnectionStore


def save_reconciliation(store: ConnectionStore, connection_id: str, summary: dict[str, Any],
                        differences: list[dict[str, Any]], *, ran_at: datetime | None = None) -> None:
    """``summary``: the run's counts (``ok``, ``differences``, the range); ``differences``: one
    dict per difference, JSON-ready (amounts as strings, to the cent)."""
    ran = (ran_at or datetime.now(timezone.utc)).isoformat()
    report = json.dumps({"summary": summary, "differences": differences}, default=str)
    store.db.execute(
        "INSERT INTO reconciliations (connection_id, ran_at, ok, differences, report) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection_id) DO UPDATE SET "
        "ran_at = excluded.ran_at, ok = excluded.ok, differences = excluded.differences, "
        "report = excluded.report",
        (connection_id, ran, int(bool(summary.get("ok"))), len(differences), report))


def last_reconciliation(store: ConnectionStore, connection_id: str) -> dict[str, Any] | None:
    """``{"ran_at", "ok", "differences": [...], "summary": {...}}`` of the connection's last
    run, None if it never ran."""
    rows = store.db.query("SELECT ran_at, ok, report FROM reconciliations WHERE connection_id = ?",
                          (connection_id,))
    if not rows:
        return None
    ran_at, ok, report = rows[0]
    body = json.loads(report)
    return {"ran_at": ran_at, "ok": bool(ok), "summary": body["summary"],
            "differences": body["differences"]}
