"""What makes a saved connection run: the store's webhooks registered with the receiver and
the connection's Temporal Schedules applied. ``connections add`` (and ``connections set`` of a
setting they depend on) does both, so a connection added with one command books orders;
``schedules apply`` and the WebhookHealth schedule repeat them idempotently."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from activities.runtime import Runtime
from activities.webhooks import webhook_topics
from connections.config import WEBHOOK_SECRET, Connection, Environment
from connections.store import ConnectionStore
from connectors.base import ensure_webhooks
from connectors.errors import ExternalError
from starter.logs import redact_value
from starter.temporal import TemporalUnavailable


@dataclass
class Activation:
    """One line per step done, and one per step that could not be done (with the command
    that finishes it). The connection is saved either way."""

    done: list[str]
    problems: list[str]


async def register_hooks(store: ConnectionStore, conn: Connection) -> list[str]:
    """The same repair WebhookHealth runs: the connection's hooks at the receiver, active."""
    runtime = Runtime(store)
    try:
        return await ensure_webhooks(runtime.storefront(conn), webhook_topics(conn),
                                     conn.delivery_url, store.get_secret(conn.id, WEBHOOK_SECRET) or "")
    finally:
        await runtime.aclose()


async def activate(store: ConnectionStore, env: Environment, conn: Connection, *,
                   hooks: bool = True, schedules: bool = True) -> Activation:
    from starter.schedules import apply_schedules
    from starter.temporal import connect

    out = Activation([], [])
    if hooks and conn.receiver_url:
        try:
            repairs = await register_hooks(store, conn)
            out.done.append(f"webhooks: {', '.join(repairs) if repairs else 'already registered'}"
                            f" → {conn.delivery_url}")
        except (ExternalError, OSError, ValueError) as exc:
            out.problems.append(
                f"webhooks not registered: {_one_line(exc)} (fix it, then `ml-connector "
                f"schedules apply {conn.id}`: its webhooks check registers them within "
                f"{conn.webhook_check_minutes} min)")
    elif hooks:
        out.done.append("webhooks: none (no --receiver-url: the poll alone keeps the books)")
    if schedules:
        try:
            client = await connect(env, store.vault.keyring)
            applied = await apply_schedules(client, conn, env.task_queue)
            out.done.append("schedules: " + ", ".join(f"{sid} {what}" for sid, what in applied.items()))
        except TemporalUnavailable as exc:
            out.problems.append(f"schedules not applied: {exc}; then run `ml-connector schedules "
                                f"apply {conn.id}`")
    return out


def report(activation: Activation, say: Callable[[str], None], warn: Callable[[str], None]) -> int:
    """Print what was done and what was not; 1 when something is left to do."""
    for line in activation.done:
        say(line)
    for line in activation.problems:
        warn(f"WARNING: {line}")
    return 1 if activation.problems else 0


def _one_line(exc: BaseException) -> str:
    return str(redact_value(" ".join(str(exc).split())))[:300]
