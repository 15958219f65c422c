"""The ``q=`` query language of Oracle's REST resources, compiled to a record predicate."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from sandbox.oracle_fusion.wire import ApiError


# --------------------------------------------------------------------------- the q filter

class QueryError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, f"URL request parameter q is not valid: {message}", path="q")


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>>=|<=|!=|<>|=|<|>|\(|\)|,)"
                    r"|(?P<word>[^\s'=<>!(),]+))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"unexpected text at '{text[pos:pos + 20]}'")
        kind = m.lastgroup or ""
        value = m.group(kind)
        out.append((kind, value[1:-1].replace("''", "'") if kind == "str" else value))
        pos = m.end()
    return out


Predicate = Callable[[dict], bool]


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None:
        return False
    if isinstance(left, Decimal) or isinstance(left, int) and not isinstance(left, bool):
        try:
            left, right = Decimal(str(left)), Decimal(str(right))
        except InvalidOperation:
            return False
    else:
        left, right = str(left), str(right)
    return {"=": left == right, "!=": left != right, "<>": left != right, "<": left < right,
            ">": left > right, "<=": left <= right, ">=": left >= right}[op]


class _Parser:
    """v2+ expression syntax."""

    def __init__(self, text: str, attributes: set[str]) -> None:
        if ";" in re.sub(r"'(?:[^']|'')*'", "", text):
            raise QueryError("';' is query-by-example syntax (framework version 1)")
        self.toks, self.i, self.attributes = _tokens(text), 0, attributes

    def peek(self, n: int = 0) -> tuple[str, str]:
        return self.toks[self.i + n] if self.i + n < len(self.toks) else ("", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.i != len(self.toks):
            raise QueryError(f"unexpected '{self.peek()[1]}'")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.atom()]
        while self.keyword("and"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def value(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value
        if kind == "word":
            try:
                return Decimal(value)
            except InvalidOperation:
                raise QueryError(f"the literal {value} must be quoted") from None
        raise QueryError(f"a value was expected, not '{value}'")

    def atom(self) -> Predicate:
        if self.peek() == ("op", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("op", ")"):
                raise QueryError("')' expected")
            return inner
        get = self.attribute()
        if self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("null"):
                raise QueryError("NULL expected")
            return lambda r: (get(r) in (None, "")) != negate
        if self.keyword("like"):
            pattern = re.compile("^" + ".*".join(re.escape(p) for p in str(self.value()).split("%")) + "$")
            return lambda r: get(r) is not None and bool(pattern.match(str(get(r))))
        if self.keyword("in"):
            if self.take() != ("op", "("):
                raise QueryError("'(' expected after IN")
            values = [self.value()]
            while self.peek() == ("op", ","):
                self.take()
                values.append(self.value())
            if self.take() != ("op", ")"):
                raise QueryError("')' expected")
            return lambda r: any(_compare(get(r), "=", v) for v in values)
        if self.keyword("between"):
            low = self.value()
            if not self.keyword("and"):
                raise QueryError("AND expected in BETWEEN")
            high = self.value()
            return lambda r: _compare(get(r), ">=", low) and _compare(get(r), "<=", high)
        okind, op = self.take()
        if okind != "op" or op in "(),":
            raise QueryError(f"an operator was expected after {get.__name__}")
        right = self.value()
        return lambda r: _compare(get(r), op, right)

    def attribute(self) -> Callable[[dict], Any]:
        """An attribute, or ``UPPER(attribute)`` (the case-insensitive comparison Oracle's
        filters offer: text is compared as stored otherwise)."""
        kind, name = self.take()
        upper = kind == "word" and name.upper() == "UPPER" and self.peek() == ("op", "(")
        if upper:
            self.take()
            kind, name = self.take()
        if kind != "word":
            raise QueryError(f"an attribute was expected, not '{name}'")
        if name not in self.attributes:
            raise QueryError(f"the attribute {name} is not valid")
        if upper and self.take() != ("op", ")"):
            raise QueryError("')' expected")

        def get(r: dict) -> Any:
            value = r.get(name)
            return str(value).upper() if upper and value is not None else value
        get.__name__ = name
        return get


def parse_q(text: str, version: int, attributes: set[str]) -> Predicate:
    if version >= 2:
        return _Parser(text, attributes).parse()
    preds: list[Predicate] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        m = re.match(r"^(\w+)\s*(>=|<=|!=|=|>|<)\s*(.*)$", part)
        if not m or m.group(1) not in attributes:
            raise QueryError(f"'{part}' is not a valid condition")
        name, op, value = m.groups()
        preds.append(lambda r, n=name, o=op, v=value: _compare(r.get(n), o, v))
    return lambda r: all(p(r) for p in preds)
