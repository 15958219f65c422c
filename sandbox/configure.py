"""Changing a simulator's settings (or its faults) from a JSON body, the one way all of them do."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any


def same_type(current: Any, value: Any) -> Any:
    """A new value in the type of the current one (``"5"`` for an int setting becomes 5)."""
    return type(current)(value)


def set_fields(target: Any, values: dict, *, what: str = "setting",
               convert: Callable[[Any, Any], Any] = same_type) -> None:
    """Set the dataclass fields of ``target`` named in ``values``, each through ``convert``
    (current value, new value). An unknown name is a ValueError that lists the known ones."""
    known = {f.name for f in fields(target)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown {what} {key!r}; known: {', '.join(sorted(known))}")
        setattr(target, key, convert(getattr(target, key), value))
