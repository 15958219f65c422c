"""Settings, grants, long-running operations and the small record helpers every rule uses."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.configure import set_fields

from sandbox.acumatica.values import _to_bool


# --------------------------------------------------------------------------- state

@dataclass
class Settings:
    requests_per_minute: int = 0
    send_retry_after: bool = True
    token_lifetime: int = 3600
    action_polls: int = 1
    action_ms: int = 0

    def configure(self, values: dict) -> None:
        set_fields(self, values, convert=lambda current, value: (
            _to_bool(value) if isinstance(current, bool) else int(value)))


@dataclass
class Grant:
    client_id: str
    username: str
    scopes: tuple[str, ...]
    chain_expires: float


@dataclass
class Operation:
    id: str
    doc_id: str
    polls_left: int
    entity: str = "SalesInvoice"
    asked_at: float = 0.0  # the state's clock when the action was asked for
    ready_at: float = 0.0  # ... and when the operation has run its course
    done: bool = False
    error: str | None = None


class Errors(dict):
    """Validation errors keyed by record path; ``path + ("",)`` is an entity-level error."""

    def add(self, path: tuple, message: str) -> None:
        self.setdefault(path, message)


def _bump(counter: dict, key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _key_tuple(values: Any) -> tuple:
    return tuple(v.casefold() if isinstance(v, str) else v for v in values)


def _same_key(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, str) and isinstance(wanted, str):
        return stored.casefold() == wanted.casefold()
    return stored == wanted


def new_id() -> str:
    return str(uuid.uuid4())


def new_record() -> dict:
    return {"id": new_id(), "note": ""}
