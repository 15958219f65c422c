"""Error history: every parked, failed or retrying episode of an order, kept with when it
opened, its message, and when and how it was resolved.

The ledger keeps one row per order and overwrites it; this module keeps the episodes in a
table of their own (``error_episodes``) beside the operator actions that resolve them
(``operator_actions``). Who writes what:

- OrderSync's state changes (activities/orders.py ``record_order_state``) call
  :func:`order_state_changed`: parked or failed opens an episode of that kind; posted (or an
  order no longer billable or awaiting payment) closes every open episode of the order.
- The activity interceptor (activities/interceptors.py) calls :func:`step_failed` when an
  order step's attempt fails and will be retried (a *retrying* episode), and
  :func:`step_succeeded` when a later attempt gets through.
- ``ml-connector replay``, ``connections map`` and the operations console call
  :func:`record_action` (who, what, when, which connection and order).

How an episode was resolved is the newest operator action on its order, or on its whole
connection, recorded after it opened (``mapping``, ``replay``, ``manual``…); without one it
is ``automatic retry`` (the system retried and got through), ``escalated`` (a retrying
episode ended in a parked or failed one, kept as its own episode) or ``store`` (the order
changed in the store: cancelled, unpaid, edited into another problem). "After it opened" is
decided by one counter in the database (``seq``), never by comparing two hosts' clocks;
the timestamps are for people.

Messages are the ones the ledger already keeps (the ERP's or the mapping's own words);
nothing else about the order is stored. SQL is the connection store's dialect: ``?``
placeholders, ``ON CONFLICT`` upserts, the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connections.store import ConnectionStore

MESSAGE_LIMIT = 1000  # as the ledger's last_error


class EpisodeKind(StrEnum):
    PARKED = "parked"  # waits for a mapping or a correction
    FAILED = "failed"  # the order's workflow failed: nothing retries it on its own
    RETRYING = "retrying"  # a step failed and Temporal retries it (an outage, a 5xx, a 429)


class Resolution(StrEnum):
    """How an episode ended. Operator actions name theirs (the first three are the CLI's
    and the console's); the last three are what the system says without one."""

    MAPPING = "mapping"  # `connections map` (or the console) added the missing mapping
    REPLAY = "replay"  # `replay` (or the console) handed the order to its workflow again
    MANUAL = "manual"  # an operator fixed it by hand and said so
    AUTOMATIC_RETRY = "automatic retry"
    ESCALATED = "escalated"  # a retrying episode ended in a parked or failed one
    STORE = "store"  # the order changed in the store


# Order states (connections/ledger.py OrderState values) that open an episode, and those
# that close every open one.
OPENING_STATES = {"parked": EpisodeKind.PARKED, "failed": EpisodeKind.FAILED}
CLOSING_STATES = {"posted", "needs_attention", "awaiting_payment", "not_billable"}
STEP_DONE = "completed"  # the outcome of a retrying episode whose step got through

_COLUMNS = ("seq, connection_id, order_id, order_number, kind, step, message, attempts, "
            "opened_at, updated_at, resolved_at, resolution, resolved_by, resolution_detail, "
            "outcome")


@dataclass(frozen=True)
class Episode:
    id: int
    connection_id: str
    order_id: str
    order_number: str
    kind: str
    step: str
    message: str
    attempts: int  # failed attempts seen (retrying episodes)
    opened_at: str
    updated_at: str
    resolved_at: str | None
    resolution: str | None
    resolved_by: str | None  # the operator whose action resolved it
    resolution_detail: str | None  # what that action was
    outcome: str | None  # the order state (or "completed") it ended in

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def duration_seconds(self, now: datetime | None = None) -> float:
        """How long it stayed (or has been) open."""
        end = datetime.fromisoformat(self.resolved_at) if self.resolved_at else (
            now or datetime.now(timezone.utc))
        return max(0.0, (end - datetime.fromisoformat(self.opened_at)).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open": self.is_open,
                "duration_seconds": round(self.duration_seconds(), 1)}


@dataclass(frozen=True)
class Action:
    id: int
    connection_id: str
    order_id: str  # "" for the whole connection
    action: str
    actor: str
    detail: str
    at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _moment(value: datetime | str) -> str:
    """An ISO UTC text comparable with the stored ones."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


ACTOR_ENV = "ML_CONNECTOR_ACTOR"


def default_actor() -> str:
    """Who runs the command: ``ML_CONNECTOR_ACTOR`` (a shared account's operator names
    themself), else the operating-system user."""
    if named := os.environ.get(ACTOR_ENV, "").strip():
        return named[:200]
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (a bare container)
        return "unknown"


def _next_seq(cur) -> int:
    """The next number of the one counter actions and episodes share: a row update, so
    concurrent writers on any host get distinct, increasing numbers."""
    cur.execute("INSERT INTO error_history_seq (name, value) VALUES ('seq', 0) "
                "ON CONFLICT (name) DO NOTHING")
    cur.execute("UPDATE error_history_seq SET value = value + 1 WHERE name = 'seq'")
    return int(cur.execute("SELECT value FROM error_history_seq WHERE name = 'seq'").fetchone()[0])


# --- writing ----------------------------------------------------------------------------------

def record_action(store: ConnectionStore, connection_id: str, action: str, *,
                  order_ids: Iterable[str] = (), actor: str | None = None,
                  detail: str = "") -> list[int]:
    """An operator's action (``mapping``, ``replay``, ``manual``, or the console's own
    word): on the given orders, or on the whole connection when ``order_ids`` is empty. It
    becomes the resolution of each episode of those orders that closes after it. ``actor``
    defaults to the OS user; ``detail`` says what was done (no personal data)."""
    if not action.strip():
        raise ValueError("an action needs a name, e.g. 'replay'")
    actor = (actor or "").strip() or default_actor()
    at, ids = _now(), []
    with store.db.transaction() as cur:
        for order_id in list(order_ids) or [""]:
            seq = _next_seq(cur)
            cur.execute("INSERT INTO operator_actions (seq, connection_id, order_id, action, "
                        "actor, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (seq, connection_id, str(order_id), action.strip(), actor,
                         detail[:MESSAGE_LIMIT], at))
            ids.append(seq)
    return ids


def order_state_changed(store: ConnectionStore, connection_id: str, order_id: str, state: str,
                        *, order_number: str = "", message: str = "") -> None:
    """Open or close the order's episodes for the state OrderSync just recorded."""
    state, message = str(state), (message or "")[:MESSAGE_LIMIT]
    if state not in OPENING_STATES and state not in CLOSING_STATES:
        return
    if state in CLOSING_STATES and not store.db.query(
            "SELECT 1 FROM error_episodes WHERE connection_id = ? AND order_id = ? "
            "AND resolved_at IS NULL", (connection_id, order_id)):
        return  # the common case, a clean post: a read, no write transaction
    now = _now()
    with store.db.transaction() as cur:
        open_ = _open_episodes(cur, connection_id, order_id)
        if state in CLOSING_STATES:
            for episode in open_:
                _close(cur, episode, state, now)
            return
        kind = OPENING_STATES[state]
        same = [e for e in open_ if e.kind == kind and e.message == message]
        for episode in open_:
            if episode not in same:  # retrying, the other kind, or another problem now
                _close(cur, episode, state, now)
        if same:  # parked again for the same reason (a replay that changed nothing)
            cur.execute("UPDATE error_episodes SET updated_at = ? WHERE seq = ?",
                        (now, same[0].id))
            return
        _open(cur, connection_id, order_id, kind, now, order_number=order_number,
              message=message)


def step_failed(store: ConnectionStore, connection_id: str, order_id: str, *, step: str,
                message: str, order_number: str = "") -> None:
    """An order step's attempt failed and will be retried: open the order's retrying
    episode, or count the attempt on the open one (its message is the newest error)."""
    now, message = _now(), (message or "")[:MESSAGE_LIMIT]
    with store.db.transaction() as cur:
        open_ = next((e for e in _open_episodes(cur, connection_id, order_id)
                      if e.kind == EpisodeKind.RETRYING), None)
        if open_ is not None:
            cur.execute("UPDATE error_episodes SET attempts = attempts + 1, message = ?, step = ?, "
                        "updated_at = ?, order_number = CASE WHEN ? = '' THEN order_number "
                        "ELSE ? END WHERE seq = ?",
                        (message, step, now, order_number, order_number, open_.id))
            return
        _open(cur, connection_id, order_id, EpisodeKind.RETRYING, now, order_number=order_number,
              message=message, step=step, attempts=1)


def has_open_retry(store: ConnectionStore, connection_id: str, order_id: str) -> bool:
    """A read, so a step that succeeds writes only when it closes something."""
    return bool(store.db.query(
        "SELECT 1 FROM error_episodes WHERE connection_id = ? AND order_id = ? AND kind = ? "
        "AND resolved_at IS NULL", (connection_id, order_id, str(EpisodeKind.RETRYING))))


def step_succeeded(store: ConnectionStore, connection_id: str, order_id: str) -> None:
    """A step of the order got through: its retrying episode (if any) is over."""
    now = _now()
    with store.db.transaction() as cur:
        for episode in _open_episodes(cur, connection_id, order_id):
            if episode.kind == EpisodeKind.RETRYING:
                _close(cur, episode, STEP_DONE, now)


def resolve_manually(store: ConnectionStore, episode_id: int, *, actor: str | None = None,
                     detail: str = "") -> Episode:
    """An operator closes an episode by hand (the document was booked in the ERP directly,
    the order is not to be booked): a ``manual`` action, and the episode closed by it."""
    episode = _episode(store, episode_id)
    if not episode.is_open:
        return episode
    record_action(store, episode.connection_id, Resolution.MANUAL, order_ids=[episode.order_id],
                  actor=actor, detail=detail)
    with store.db.transaction() as cur:
        [current] = [e for e in _open_episodes(cur, episode.connection_id, episode.order_id)
                     if e.id == episode_id] or [None]
        if current is not None:
            _close(cur, current, "resolved manually", _now())
    return _episode(store, episode_id)


def _open(cur, connection_id: str, order_id: str, kind: str, now: str, *, order_number: str,
          message: str, step: str = "", attempts: int = 0) -> None:
    cur.execute("INSERT INTO error_episodes (seq, connection_id, order_id, order_number, kind, "
                "step, message, attempts, opened_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_next_seq(cur), connection_id, order_id, order_number, str(kind), step, message,
                 attempts, now, now))


def _close(cur, episode: Episode, outcome: str, now: str) -> None:
    action = cur.execute(
        "SELECT seq, action, actor, detail FROM operator_actions WHERE connection_id = ? "
        "AND order_id IN (?, '') AND seq > ? ORDER BY seq DESC LIMIT 1",
        (episode.connection_id, episode.order_id, episode.id)).fetchone()
    if action is not None:
        action_seq, how, who, detail = action
    else:
        action_seq, who, detail = None, None, None
        if outcome in (STEP_DONE, "posted"):
            how = Resolution.AUTOMATIC_RETRY
        elif episode.kind == EpisodeKind.RETRYING and outcome in OPENING_STATES:
            how = Resolution.ESCALATED
        else:
            how = Resolution.STORE
    cur.execute("UPDATE error_episodes SET resolved_at = ?, updated_at = ?, resolution = ?, "
                "resolved_by = ?, resolution_detail = ?, outcome = ?, action_seq = ? "
                "WHERE seq = ? AND resolved_at IS NULL",
                (now, now, str(how), who, detail, outcome, action_seq, episode.id))


def _open_episodes(cur, connection_id: str, order_id: str) -> list[Episode]:
    rows = cur.execute(f"SELECT {_COLUMNS} FROM error_episodes WHERE connection_id = ? "
                       "AND order_id = ? AND resolved_at IS NULL ORDER BY seq",
                       (connection_id, order_id)).fetchall()
    return [Episode(*r) for r in rows]


def _episode(store: ConnectionStore, episode_id: int) -> Episode:
    rows = store.db.query(f"SELECT {_COLUMNS} FROM error_episodes WHERE seq = ?", (episode_id,))
    if not rows:
        raise KeyError(f"no error episode {episode_id}")
    return Episode(*rows[0])


# --- reading ----------------------------------------------------------------------------------

def episodes(store: ConnectionStore, connection_id: str | None = None, *,
             open: bool | None = None, since: datetime | str | None = None,
             kind: str | None = None, order_id: str | None = None) -> list[Episode]:
    """Episodes, oldest first. ``open``: True only open ones, False only resolved ones,
    None both. ``since`` is compared with when they were resolved when only resolved ones
    are asked for, else with when they opened."""
    sql, params = f"SELECT {_COLUMNS} FROM error_episodes WHERE 1 = 1", []
    for column, value in (("connection_id", connection_id), ("kind", kind),
                          ("order_id", order_id)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(str(value))
    if open is not None:
        sql += " AND resolved_at IS NULL" if open else " AND resolved_at IS NOT NULL"
    if since is not None:
        sql += " AND resolved_at >= ?" if open is False else " AND opened_at >= ?"
        params.append(_moment(since))
    return [Episode(*r) for r in store.db.query(sql + " ORDER BY seq", tuple(params))]


def actions(store: ConnectionStore, connection_id: str | None = None, *,
            since: datetime | str | None = None) -> list[Action]:
    """Operator actions, oldest first."""
    sql, params = ("SELECT seq, connection_id, order_id, action, actor, detail, at "
                   "FROM operator_actions WHERE 1 = 1"), []
    if connection_id is not None:
        sql += " AND connection_id = ?"
        params.append(connection_id)
    if since is not None:
        sql += " AND at >= ?"
        params.append(_moment(since))
    return [Action(*r) for r in store.db.query(sql + " ORDER BY seq", tuple(params))]


@dataclass(frozen=True)
class OpenSummary:
    count: int
    oldest_opened_at: str


def open_summary(store: ConnectionStore) -> dict[tuple[str, str], OpenSummary]:
    """Open episodes per (connection, kind): how many, and since when the oldest."""
    rows = store.db.query("SELECT connection_id, kind, COUNT(*), MIN(opened_at) FROM "
                          "error_episodes WHERE resolved_at IS NULL GROUP BY connection_id, kind")
    return {(c, k): OpenSummary(int(n), oldest) for c, k, n, oldest in rows}


def resolved_counts(store: ConnectionStore) -> dict[tuple[str, str, str], int]:
    """Resolved episodes ever, per (connection, kind, resolution)."""
    rows = store.db.query("SELECT connection_id, kind, resolution, COUNT(*) FROM error_episodes "
                          "WHERE resolved_at IS NOT NULL GROUP BY connection_id, kind, resolution")
    return {(c, k, r or ""): int(n) for c, k, r, n in rows}
