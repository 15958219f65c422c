"""Records as the endpoint returns them: wrapped values, selected and expanded paths."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.acumatica.values import SYSTEM_KEYS
from sandbox.acumatica.wire import iso

if TYPE_CHECKING:
    from sandbox.acumatica.contract import Shape


# --------------------------------------------------------------------------- rendering

@dataclass
class View:
    """What a response should show: expanded paths, selected paths, and 422 errors by path."""
    expand: set[tuple[str, ...]] = field(default_factory=set)
    select: set[tuple[str, ...]] | None = None
    errors: dict[tuple, str] = field(default_factory=dict)

    def shows(self, path: tuple[str, ...], container: bool = False) -> bool:
        if self.select is None:
            return True
        for chosen in self.select:
            if path[:len(chosen)] == chosen or (container and chosen[:len(path)] == path):
                return True
        return False


def render(contract: dict[str, Shape], shape: Shape, record: dict, view: View,
           path: tuple = (), row: int = 1) -> dict:
    names = tuple(p for p in path if isinstance(p, str))
    out: dict[str, Any] = {"id": record.get("id"), "rowNumber": row, "note": {"value": record.get("note") or ""}}
    for name, kind in shape.fields.items():
        if view.shows(names + (name,)):
            out[name] = wrap_value(record.get(name), view.errors.get(path + (name,)))
    for name, sub in shape.linked.items():
        if names + (name,) in view.expand and view.shows(names + (name,), container=True):
            out[name] = render(contract, contract[sub], record.get(name) or {}, view, path + (name,))
    for name, sub in shape.details.items():
        if names + (name,) in view.expand and view.shows(names + (name,), container=True):
            out[name] = [render(contract, contract[sub], line, view, path + (name, i), i + 1)
                         for i, line in enumerate(record.get(name) or [])]
    out["custom"] = {}
    if path + ("",) in view.errors:
        out["error"] = view.errors[path + ("",)]
    return out


def wrap_value(value: Any, error: str | None = None) -> dict:
    wrapped: dict[str, Any] = {} if value is None else {"value": iso(value) if isinstance(value, datetime) else value}
    if error:
        wrapped["error"] = error
    return wrapped


def sent_paths(body: Any, prefix: tuple = ()) -> set[tuple[str, ...]]:
    """Linked/detail paths present in a request body: a 422 echoes what was sent."""
    found: set[tuple[str, ...]] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, (dict, list)) and key not in SYSTEM_KEYS and not (
                    isinstance(value, dict) and ("value" in value or not value)):
                found.add(prefix + (key,))
                for item in value if isinstance(value, list) else [value]:
                    found |= sent_paths(item, prefix + (key,))
    return found


def plain(value: Any) -> Any:
    """Control-surface form: Decimals as strings, datetimes as ISO strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
