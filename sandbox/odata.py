"""The OData ``$filter`` language, as both OData simulators read it (Acumatica's contract-based
API and Exact Online's REST API speak the same OData 3 subset).

:func:`parse_filter` turns the text into a small syntax tree; it knows the grammar only. What
a name or a literal means (field types, paths, which functions exist, how values compare)
differs per system, so each simulator compiles the tree into a record predicate itself.

Grammar (lowest precedence first)::

    filter  := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | "(" filter ")" | operand [op operand]
    operand := literal | name "(" operand ("," operand)* ")" | name
    op      := eq | ne | gt | ge | lt | le

A literal is a string (``'it''s'``), a number (an optional ``m``/``d``/``f``/``l`` suffix),
``true``/``false``/``null``, or a typed literal ``datetimeoffset'…'``, ``datetime'…'``,
``date'…'``, ``guid'…'``. A name may be a path (``MainContact/Email``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from collections.abc import Callable
from typing import Any, Union

OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<typed>(?:datetimeoffset|datetime|date|guid)'[^']*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?[mMdDfFlL]?(?![\w.]))
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
""", re.X)


@dataclass(frozen=True)
class Literal:
    kind: str  # "string", "number", "boolean", "null", or a typed literal's prefix ("guid", ...)
    value: Any  # str, Decimal, bool, None; for a typed literal the text between the quotes
    text: str  # as written


@dataclass(frozen=True)
class Name:
    path: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Test:
    """An operand standing alone as a condition (a function such as ``startswith(...)``)."""
    operand: Operand


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or"
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    inner: Node


Operand = Union[Literal, Name, Call]
Node = Union[Compare, Test, Logical, Not]


class FilterSyntaxError(ValueError):
    """The text is not a filter. ``found`` is the offending token (None at the end of the
    text), ``expected`` the word that was due, ``near`` the unreadable rest for a lexical error."""

    def __init__(self, *, found: str | None = None, expected: str | None = None,
                 near: str | None = None, position: int = 0):
        super().__init__(near or found or expected or "end of filter")
        self.found, self.expected, self.near, self.position = found, expected, near, position


Predicate = Callable[[dict], bool]


def predicate(node: Node, leaf: Callable[[Compare | Test], Predicate]) -> Predicate:
    """The ``and``/``or``/``not`` structure of a tree as one record predicate; ``leaf``
    compiles each comparison or test the way its system means it."""
    if isinstance(node, Logical):
        parts = [predicate(p, leaf) for p in node.parts]
        test = any if node.op == "or" else all
        return lambda r: test(p(r) for p in parts)
    if isinstance(node, Not):
        inner = predicate(node.inner, leaf)
        return lambda r: not inner(r)
    return leaf(node)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise FilterSyntaxError(near=text[pos:pos + 20], position=pos)
        if match.lastgroup != "ws":
            tokens.append((match.lastgroup or "", match.group()))
        pos = match.end()
    return tokens


def parse_filter(text: str, *, ignore_case: bool = False) -> Node:
    """The syntax tree of ``text``. With ``ignore_case`` keywords, operators and the words
    ``true``/``false``/``null`` are read in any case (as SQL Server-backed systems do)."""
    return _Parser(tokenize(text.strip()), ignore_case).parse()


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], ignore_case: bool):
        self.tokens, self.pos, self.ignore_case = tokens, 0, ignore_case

    def parse(self) -> Node:
        node = self._or()
        if self.pos != len(self.tokens):
            raise FilterSyntaxError(found=self.tokens[self.pos][1])
        return node

    def _word(self, offset: int = 0) -> str | None:
        index = self.pos + offset
        if index >= len(self.tokens):
            return None
        word = self.tokens[index][1]
        return word.lower() if self.ignore_case else word

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise FilterSyntaxError()
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _accept(self, word: str) -> bool:
        if self._word() == word:
            self.pos += 1
            return True
        return False

    def _expect(self, word: str) -> None:
        if not self._accept(word):
            raise FilterSyntaxError(expected=word, found=self._word())

    def _or(self) -> Node:
        parts = [self._and()]
        while self._accept("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Logical("or", tuple(parts))

    def _and(self) -> Node:
        parts = [self._unary()]
        while self._accept("and"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else Logical("and", tuple(parts))

    def _unary(self) -> Node:
        if self._accept("not"):
            return Not(self._unary())
        if self._accept("("):
            inner = self._or()
            self._expect(")")
            return inner
        left = self._operand()
        op = self._word()
        if op in OPERATORS:
            self.pos += 1
            return Compare(op, left, self._operand())
        return Test(left)

    def _operand(self) -> Operand:
        kind, text = self._take()
        word = text.lower() if self.ignore_case else text
        if kind == "string":
            return Literal("string", text[1:-1].replace("''", "'"), text)
        if kind == "number":
            return Literal("number", Decimal(text.rstrip("mMdDfFlL")), text)
        if kind == "typed":
            prefix, _, rest = text.partition("'")
            return Literal(prefix, rest[:-1], text)
        if kind == "name" and word in ("true", "false"):
            return Literal("boolean", word == "true", text)
        if kind == "name" and word == "null":
            return Literal("null", None, text)
        if kind == "name" and self._word() == "(":
            return self._call(text)
        if kind == "name":
            return Name(text)
        raise FilterSyntaxError(found=text)

    def _call(self, name: str) -> Call:
        self._expect("(")
        args = [self._operand()]
        while self._accept(","):
            args.append(self._operand())
        self._expect(")")
        return Call(name, tuple(args))
