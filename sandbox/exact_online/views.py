"""Records as the API returns them (``$select``), and request bodies coerced to the entity's types."""
from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sandbox.exact_online.entities import B, D, ENTITIES, G, I, T
from sandbox.exact_online.query import parse_datetime_text
from sandbox.exact_online.wire import BadRequest, ms_date

if TYPE_CHECKING:
    from sandbox.exact_online.entities import EntityDef


# --------------------------------------------------------------------------- rendering

def render_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == T:
        return ms_date(value)
    return value


def render(entity: EntityDef, record: dict, base: str, select: list[str] | None,
           expand: set[str]) -> dict:
    key = record[entity.key]
    key_text = f"guid'{key}'" if entity.fields.get(entity.key) == G else str(key)
    uri = f"{base}/{entity.path}({key_text})"
    out: dict[str, Any] = {"__metadata": {"uri": uri, "type": entity.type_name}}
    names = select if select is not None else [*entity.fields, *([entity.lines] if entity.lines else [])]
    for name in names:
        if entity.lines and name == entity.lines:
            if name in expand:
                line_def = ENTITIES[entity.line_entity.lower()]
                out[name] = {"results": [render(line_def, ln, base, None, set()) for ln in record[name]]}
            else:
                out[name] = {"__deferred": {"uri": f"{uri}/{name}"}}
        else:
            out[name] = render_value(record.get(name), entity.fields[name])
    return out


def parse_select(text: str | None, entity: EntityDef) -> tuple[list[str] | None, set[str]]:
    """Top-level selected fields, and the line collections named by ``Lines/Field``."""
    if text is None:
        return None, set()
    if text.strip() == "*":
        return None, set()
    names, nested = [], set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        top = part.split("/")[0]
        if top == entity.lines:
            nested.add(top)
        elif top not in entity.fields:
            raise BadRequest(f"No property '{top}' exists in type '{entity.type_name}'.")
        if top not in names:
            names.append(top)
    return names, nested


# --------------------------------------------------------------------------- request bodies

def coerce(kind: str, value: Any, name: str) -> Any:
    if value is None:
        return None
    try:
        if kind == D:
            if isinstance(value, bool):
                raise TypeError
            return Decimal(str(value))
        if kind == I:
            number = Decimal(str(value))
            if number != number.to_integral_value():
                raise ValueError
            return int(number)
        if kind == G:
            return str(uuid.UUID(str(value)))
        if kind == B:
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind == T:
            m = re.match(r"^/Date\((-?\d+)\)/$", str(value))
            return int(m.group(1)) / 1000 if m else parse_datetime_text(str(value))
        if isinstance(value, (dict, list)):
            raise TypeError
        return str(value)
    except (ValueError, TypeError, InvalidOperation):
        raise BadRequest(f"Error converting value {value!r} of '{name}' to {kind}.") from None


def fields_of(entity: EntityDef, body: Any, where: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"The body of '{where}' must be a JSON object.")
    out = {}
    for name, value in body.items():
        if name == "__metadata":
            continue
        if name not in entity.fields and name != entity.lines:
            raise BadRequest(f"The property '{name}' does not exist on type '{entity.type_name}'.")
        if name not in entity.writable:
            continue  # read-only properties are ignored
        out[name] = value if name == entity.lines else coerce(entity.fields[name], value, name)
    return out
