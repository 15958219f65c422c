"""Reading the JSON records systems send: a required field, an amount, text, an id for a URL
path, each failing with a ValueError that names what was malformed (the activity layer
turns it into a non-retryable refusal with a Resolution)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.model import to_decimal


def field(obj: Any, key: str, what: str) -> Any:
    """A required field, or a ValueError naming what is malformed."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise ValueError(f"{what}: missing '{key}'")
    return obj[key]


def amount(value: Any, what: str) -> Decimal:
    try:
        return to_decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{what}: not an amount: {value!r}") from None


def text(value: Any) -> str:
    return "" if value is None else str(value)


def path_id(value: Any, system: str) -> int:
    """A record id of ``system``; anything else would change the URL path."""
    try:
        number = int(str(value))
    except ValueError:
        raise ValueError(f"not a {system} id: {value!r}") from None
    if number <= 0:
        raise ValueError(f"not a {system} id: {value!r}")
    return number


def chunks(items: list, size: int) -> Iterator[list]:
    """``items`` in lists of at most ``size`` (an API's batch or URL limit)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
