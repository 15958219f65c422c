"""``$filter`` (compiled from the shared OData parser) and the values it compares."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from sandbox import odata

from sandbox.exact_online.entities import D, G, I, T
from sandbox.exact_online.wire import BadRequest

if TYPE_CHECKING:
    from sandbox.exact_online.entities import EntityDef


# --------------------------------------------------------------------------- $filter

COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
           "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}
Value = Callable[[dict], Any]


def parse_datetime_text(text: str) -> float:
    value = datetime.fromisoformat(text.strip())
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return aware.timestamp()


def compile_filter(text: str, entity: EntityDef) -> Callable[[dict], bool]:
    """``$filter`` as a record predicate. Keywords are read in any case, and strings compare
    case-insensitively (the SQL Server collation behind the API)."""
    try:
        tree = odata.parse_filter(text, ignore_case=True)
    except odata.FilterSyntaxError as exc:
        if exc.near is not None:
            raise BadRequest(f"Error in $filter near position {exc.position}: '{exc.near}'") from None
        if exc.expected is None and exc.found is not None:
            raise BadRequest(f"Error in $filter: unexpected '{exc.found}'") from None
        raise BadRequest(f"Error in $filter: expected '{exc.expected or 'a value'}'") from None
    return odata.predicate(tree, _FilterCompiler(entity).condition)


class _FilterCompiler:
    def __init__(self, entity: EntityDef):
        self.entity = entity

    def condition(self, node: odata.Compare | odata.Test) -> Callable[[dict], bool]:
        if isinstance(node, odata.Test):
            value = self.value(node.operand)
            return lambda r: bool(value(r))
        left, right, op = self.value(node.left), self.value(node.right), COMPARE[node.op]
        equality = node.op in ("eq", "ne")

        def compare(r: dict) -> bool:
            a, b = left(r), right(r)
            if a is None or b is None:
                return op(a, b) if equality else False
            try:
                return op(_comparable(a), _comparable(b))
            except TypeError:
                return False
        return compare

    def value(self, node: odata.Operand) -> Value:
        if isinstance(node, odata.Call):
            return self._function(node.name.lower(), [self.value(a) for a in node.args])
        if isinstance(node, odata.Name):
            return self._field(node.path)
        return _literal(node)

    def _field(self, name: str) -> Value:
        if "/" in name:
            raise BadRequest(f"Filtering on navigation property '{name}' is not supported.")
        if name not in self.entity.fields:
            raise BadRequest(f"No property '{name}' exists in type '{self.entity.type_name}'.")
        kind = self.entity.fields[name]
        return lambda r: _filter_value(r.get(name), kind)

    @staticmethod
    def _function(name: str, args: list[Value]) -> Value:
        if name == "trim" and len(args) == 1:
            return lambda r: (args[0](r) or "").strip()
        if name == "substringof" and len(args) == 2:
            return lambda r: str(args[0](r) or "").lower() in str(args[1](r) or "").lower()
        if name == "startswith" and len(args) == 2:
            return lambda r: str(args[0](r) or "").lower().startswith(str(args[1](r) or "").lower())
        raise BadRequest(f"Unknown function '{name}' in $filter")


def _literal(node: odata.Literal) -> Value:
    if node.kind == "guid":
        try:
            value: Any = str(uuid.UUID(node.value))
        except ValueError:
            raise BadRequest(f"Error in $filter: invalid guid literal {node.text}") from None
    elif node.kind == "datetime":
        try:
            value = parse_datetime_text(node.value)
        except ValueError:
            raise BadRequest(f"Error in $filter: invalid datetime literal {node.text}") from None
    elif node.kind in ("string", "number", "boolean", "null"):
        value = node.value
    else:
        raise BadRequest(f"Error in $filter: unexpected '{node.text}'")
    return lambda r: value


def _filter_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == D or kind == I:
        return Decimal(str(value))
    if kind == G:
        return str(value).lower()
    if kind == T:
        return int(value * 1000) / 1000  # compared as stored and shown: to the millisecond
    return value


def _comparable(v: Any) -> Any:
    if isinstance(v, str):
        return v.lower()  # SQL Server collation: case-insensitive
    if isinstance(v, bool):
        return int(v)
    return v
