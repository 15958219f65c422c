"""Request bodies: the ``{"value": ...}`` wrapping, coercion to the contract's field types, money by
currency."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Callable

from sandbox import wire

from sandbox.acumatica.contract import BOOLEAN, DATETIME, DECIMAL, GUID, INT, STRING
from sandbox.acumatica.wire import http_error

if TYPE_CHECKING:
    from sandbox.acumatica.contract import Shape
    from sandbox.acumatica.wire import JSON


# --------------------------------------------------------------------------- request bodies

class BadRequest(Exception):
    """A request the API rejects with 400 before any business logic runs."""

    def __init__(self, message: str, field_path: str | None = None):
        super().__init__(message)
        self.field_path = field_path

    def response(self) -> JSON:
        extra = {"modelState": {self.field_path: [str(self)]}} if self.field_path else {}
        return http_error(400, str(self), **extra)


SYSTEM_KEYS = {"id", "rowNumber", "custom", "_links", "files", "error", "delete"}


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc


def coerce(kind: str, value: Any, where: str) -> Any:
    """Convert a wrapped value the way the API's deserializer would, or reject it with 400."""
    if value is None:
        return None
    try:
        return _COERCE[kind](value)
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise BadRequest(f"Error converting value {value!r} of '{where}' to {kind}.", where) from exc


def _to_string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise TypeError(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise TypeError(value)
    return Decimal(str(value).strip())


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TypeError(value)


def _to_int(value: Any) -> int:
    number = _to_decimal(value)
    if number != number.to_integral_value():
        raise ValueError(value)
    return int(number)


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str) or " " in value.strip():
        raise ValueError(value)
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _to_guid(value: Any) -> str:
    return str(uuid.UUID(str(value)))


_COERCE: dict[str, Callable[[Any], Any]] = {STRING: _to_string, DECIMAL: _to_decimal, BOOLEAN: _to_bool,
                                            INT: _to_int, DATETIME: parse_datetime, GUID: _to_guid}


def unwrap(contract: dict[str, Shape], shape: Shape, body: Any, where: str = "entity") -> dict:
    """Turn a wrapped request entity into plain values, enforcing the ``{"value": ...}`` form."""
    if not isinstance(body, dict):
        raise BadRequest(f"'{where}' must be a JSON object.", where)
    out: dict[str, Any] = {}
    for key, raw in body.items():
        path = f"{where}.{key}"
        if key in SYSTEM_KEYS:
            _system_value(out, key, raw, path)
        elif key in shape.linked:
            out[key] = unwrap(contract, contract[shape.linked[key]], raw, path)
        elif key in shape.details:
            if not isinstance(raw, list):
                raise BadRequest(f"'{key}' is a detail collection and must be a JSON array.", path)
            out[key] = [unwrap(contract, contract[shape.details[key]], line, f"{path}[{i}]")
                        for i, line in enumerate(raw)]
        elif key == "note" or key in shape.fields:
            _check_wrapped(key, raw, path)
            if "value" in raw:
                out[key] = coerce(shape.fields.get(key, STRING), raw["value"], path)
        elif not isinstance(raw, (dict, list)):
            _check_wrapped(key, raw, path)
    return out


def _check_wrapped(key: str, raw: Any, path: str) -> None:
    if not isinstance(raw, dict):
        raise BadRequest(f"The request is invalid: field '{key}' must be sent wrapped, "
                         f"as {{\"value\": ...}}, not as a bare value.", path)


def _system_value(out: dict, key: str, raw: Any, path: str) -> None:
    if key == "id" and raw is not None:
        out["id"] = coerce(GUID, raw, path)
    elif key == "delete":
        out["delete"] = coerce(BOOLEAN, raw, path)


# --------------------------------------------------------------------------- money

def minor_units(currency: str | None) -> int:
    return wire.minor_unit(currency or "")


def money(amount: Decimal, currency: str | None) -> Decimal:
    rounded = Decimal(amount).quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)
    return abs(rounded) if rounded.is_zero() else rounded
