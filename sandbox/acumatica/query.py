"""Query options: ``$filter`` (compiled from the shared OData parser), ``$select``/``$expand`` paths,
``$top``/``$skip``."""
from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from sandbox import odata

from sandbox.acumatica.contract import DATETIME, DECIMAL, GUID, INT, STRING
from sandbox.acumatica.values import BadRequest, coerce, parse_datetime

if TYPE_CHECKING:
    from sandbox.acumatica.contract import Shape


# --------------------------------------------------------------------------- query options

_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
            "lt": operator.lt, "le": operator.le}
_FUNCTIONS = {"substringof": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}
Predicate = Callable[[dict], bool]


@dataclass
class Operand:
    kind: str  # a field type, or "literal-<type>" for literals
    get: Callable[[dict], Any]
    literal: Any = None

    @property
    def is_literal(self) -> bool:
        return self.kind.startswith("literal")


def compile_filter(text: str, contract: dict[str, Shape], shape: Shape) -> Predicate:
    """``$filter`` (the OData-3 subset of Contract Version 4) as a record predicate."""
    try:
        tree = odata.parse_filter(text)
    except odata.FilterSyntaxError as exc:
        raise BadRequest(_syntax_message(exc), "$filter") from None
    return odata.predicate(tree, _FilterCompiler(contract, shape).condition)


def _syntax_message(exc: odata.FilterSyntaxError) -> str:
    if exc.near is not None:
        return f"Invalid $filter near '{exc.near}'."
    if exc.expected is not None:
        return f"Expected '{exc.expected}' in $filter."
    if exc.found is not None:
        return f"Unexpected '{exc.found}' in $filter."
    return "Unexpected end of $filter."


class _FilterCompiler:
    def __init__(self, contract: dict[str, Shape], shape: Shape):
        self.contract, self.shape = contract, shape

    def condition(self, node: odata.Compare | odata.Test) -> Predicate:
        if isinstance(node, odata.Test):
            if isinstance(node.operand, odata.Call):
                return self._function(node.operand)
            self._operand(node.operand)  # an unknown field is named first
            raise BadRequest("Unexpected end of $filter.", "$filter")
        if isinstance(node.left, odata.Call):
            return self._bool_comparison(self._function(node.left), node.op, node.right)
        return compare(self._operand(node.left), node.op, self._operand(node.right))

    @staticmethod
    def _bool_comparison(predicate: Predicate, op: str, right: odata.Operand) -> Predicate:
        """``startswith(...) eq true``: a function compared with a boolean."""
        if op not in ("eq", "ne"):
            raise BadRequest(f"Unexpected '{op}' in $filter.", "$filter")
        wanted = isinstance(right, odata.Literal) and right.value is True
        return lambda r: (predicate(r) == wanted) == (op == "eq")

    def _function(self, call: odata.Call) -> Predicate:
        if call.name not in _FUNCTIONS:
            raise BadRequest(f"Unknown function '{call.name}' in $filter.", "$filter")
        if len(call.args) != 2:
            raise BadRequest("Expected ')' in $filter.", "$filter")
        first, second = (self._operand(a) for a in call.args)
        haystack, needle = (second, first) if call.name == "substringof" else (first, second)
        test = _FUNCTIONS[call.name]

        def predicate(record: dict) -> bool:
            value, part = haystack.get(record), needle.get(record)
            return value is not None and part is not None and test(str(value).casefold(), str(part).casefold())
        return predicate

    def _operand(self, node: odata.Operand) -> Operand:
        if isinstance(node, odata.Name):
            return self._field(node.path)
        if isinstance(node, odata.Call):
            raise BadRequest(f"Unexpected '{node.name}' in $filter.", "$filter")
        if node.kind == "string":
            return literal("literal-string", node.value)
        if node.kind == "number":
            return literal("literal-number", node.value)
        if node.kind in ("boolean", "null"):
            return literal("literal-" + node.kind, node.value)
        return typed_literal(node.text)

    def _field(self, path: str) -> Operand:
        shape, steps = self.shape, path.split("/")
        for step in steps[:-1]:
            if step in shape.details:
                raise BadRequest(f"Filtering by fields of the detail entity '{step}' is not supported.", "$filter")
            if step not in shape.linked:
                raise BadRequest(f"Unknown entity '{step}' in $filter path '{path}'.", "$filter")
            shape = self.contract[shape.linked[step]]
        if steps[-1] not in shape.fields:
            raise BadRequest(f"Unknown field '{path}' in $filter.", "$filter")
        return Operand(shape.fields[steps[-1]], lambda record: read_path(record, steps))


def literal(kind: str, value: Any) -> Operand:
    return Operand(kind, lambda record: value, value)


def typed_literal(text: str) -> Operand:
    prefix, _, rest = text.partition("'")
    raw = rest[:-1]
    try:
        if prefix == "guid":
            return literal("literal-string", str(uuid.UUID(raw)))
        if prefix == "date":
            day = datetime.strptime(raw, "%Y-%m-%d")
            return literal("literal-datetime", day.replace(tzinfo=timezone.utc))
        return literal("literal-datetime", parse_datetime(raw))
    except ValueError as exc:
        raise BadRequest(f"Invalid {prefix} literal '{raw}' in $filter (URL-encode '+' as %2B).",
                         "$filter") from exc


def read_path(record: dict, steps: list[str]) -> Any:
    value: Any = record
    for step in steps:
        value = value.get(step) if isinstance(value, dict) else None
    return value


def compare(left: Operand, op: str, right: Operand) -> Predicate:
    field_kind = left.kind if not left.is_literal else right.kind
    left_get, right_get = _comparable(left, field_kind), _comparable(right, field_kind)
    test = _COMPARE[op]

    def predicate(record: dict) -> bool:
        a, b = left_get(record), right_get(record)
        if a is None or b is None:
            return (a is None and b is None) == (op == "eq") if op in ("eq", "ne") else False
        try:
            return test(a, b)
        except TypeError:
            return False
    return predicate


def _comparable(operand: Operand, field_kind: str) -> Callable[[dict], Any]:
    """Values normalised for comparison: strings case-insensitive, literals cast to the field type."""
    if not operand.is_literal:
        return lambda r: _normalise(operand.get(r))
    value = operand.literal
    if value is not None and field_kind in (DECIMAL, INT):
        value = coerce(DECIMAL, value, "$filter")
    elif value is not None and field_kind == DATETIME and not isinstance(value, datetime):
        value = coerce(DATETIME, value, "$filter")
    elif value is not None and field_kind in (STRING, GUID) and not isinstance(value, str):
        value = format(value, "f") if isinstance(value, Decimal) else str(value)
    normalised = _normalise(value)
    return lambda r: normalised


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def parse_paths(text: str | None) -> set[tuple[str, ...]] | None:
    if text is None:
        return None
    return {tuple(p.strip() for p in part.strip().split("/")) for part in text.split(",") if part.strip()}


def expand_paths(text: str | None) -> set[tuple[str, ...]]:
    """Expanded entity paths, including every prefix (``MainContact/Address`` expands ``MainContact``)."""
    paths = parse_paths(text) or set()
    return {path[:i] for path in paths for i in range(1, len(path) + 1)}


def parse_count(params: dict, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"The value of {name} must be a non-negative integer.", name)
    return int(raw)
