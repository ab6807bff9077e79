"""The subscription language of action triggers, modelled on Segment's (pure).

A trigger says which events an action takes, for example
``type = "track" and (event = "Push Token Registered" or event = "Application Installed")``::

    expression := conjunction ("or" conjunction)*
    conjunction := term ("and" term)*
    term       := "(" expression ")" | FIELD "exists" | FIELD ("=" | "!=" | "contains") STRING
    FIELD      := type | event | name | userId | properties.KEY | traits.KEY | context.KEY[.KEY...]
    STRING     := a double-quoted string; \\" and \\\\ stand for " and \\

``and`` binds tighter than ``or``. A value matches ``= "x"`` when it is the string ``x`` (a number or boolean
as its JSON text); ``!=`` is the negation of ``=`` (so a missing field is ``!=`` anything); ``contains`` matches
a string holding the text, or an array holding the string; ``exists`` matches a present, non-null value.
:func:`compile_trigger` parses once and returns a predicate over decoded events; bad syntax is a
:class:`SubscriptionError` naming the position (from 1) and what was expected there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

Predicate = Callable[[dict[str, Any]], bool]

#: Fields read at the event's top level, and those that need a key below them.
TOP_FIELDS: Final = frozenset({"type", "event", "name", "userId"})
NESTED_FIELDS: Final = frozenset({"properties", "traits", "context"})
_KEYWORDS: Final = frozenset({"and", "or", "exists", "contains"})
_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<unterminated>"(?:[^"\\]|\\.)*\\?$)
      | (?P<op>!=|=|\(|\))
      | (?P<word>[A-Za-z_$][\w$]*(?:\.[\w$-]+)*)
    )""",
    re.VERBOSE,
)
_MISSING: Final = object()


class SubscriptionError(ValueError):
    """A trigger that does not parse; the message names the position and what was expected."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "string", "op", "word" or "end"
    text: str
    position: int  # 1-based column

    def shown(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


def tokenize(text: str) -> list[_Token]:
    """The tokens of ``text``, ending with an ``end`` token.

    Raises:
        SubscriptionError: A character that starts no token, or a string without its closing quote.
    """
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        if text[index:].strip() == "":
            break
        match = _TOKEN.match(text, index)
        start = index + len(text[index:]) - len(text[index:].lstrip())
        if match is None or match.lastgroup is None:
            raise SubscriptionError(f"position {start + 1}: unexpected character {text[start]!r}")
        if match.lastgroup == "unterminated":
            raise SubscriptionError(f"position {start + 1}: string not closed (expected '\"')")
        tokens.append(_Token(match.lastgroup, match.group(match.lastgroup), start + 1))
        index = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


@dataclass(frozen=True, slots=True)
class Compare:
    """``path operator "literal"`` (``exists`` has no literal)."""

    path: tuple[str, ...]
    operator: str
    literal: str


@dataclass(frozen=True, slots=True)
class AnyOf:
    """``a or b or ...``"""

    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """``a and b and ...``"""

    parts: tuple[Node, ...]


Node = Compare | AnyOf | AllOf


class _Parser:
    """Recursive descent over the tokens; each method returns the predicate of what it parsed."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, expected: str) -> SubscriptionError:
        token = self.peek()
        return SubscriptionError(f"position {token.position}: expected {expected}, found {token.shown()}")

    def accept(self, kind: str, text: str) -> bool:
        token = self.peek()
        if token.kind == kind and token.text == text:
            self.index += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.expression()
        if self.peek().kind != "end":
            raise self.fail("'and', 'or' or the end")
        return node

    def expression(self) -> Node:
        parts = [self.conjunction()]
        while self.accept("word", "or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.term()]
        while self.accept("word", "and"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def term(self) -> Node:
        if self.accept("op", "("):
            inner = self.expression()
            if not self.accept("op", ")"):
                raise self.fail("')'")
            return inner
        path = self.field()
        if self.accept("word", "exists"):
            return Compare(path, "exists", "")
        operator = self.peek()
        if operator.kind == "string" or operator.text not in ("=", "!=", "contains"):
            raise self.fail("'=', '!=', 'contains' or 'exists'")
        self.take()
        literal = self.peek()
        if literal.kind != "string":
            raise self.fail("a string in double quotes")
        self.take()
        return Compare(path, operator.text, _unquote(literal.text))

    def field(self) -> tuple[str, ...]:
        token = self.peek()
        if token.kind != "word" or token.text in _KEYWORDS:
            raise self.fail("a field (type, event, name, userId, properties.x, traits.x, context.x) or '('")
        path = tuple(token.text.split("."))
        root = path[0]
        if (root in TOP_FIELDS and len(path) == 1) or (root in NESTED_FIELDS and len(path) > 1):
            self.take()
            return path
        raise self.fail("a field (type, event, name, userId, properties.x, traits.x, context.x)")


def _value(event: dict[str, Any], path: tuple[str, ...]) -> object:
    value: object = event
    for key in path:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(key, _MISSING)
    return value


def as_text(value: object) -> str | None:
    """A value as the comparisons see it: a string, a number or boolean as its JSON text, else ``None``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _comparison(node: Compare) -> Predicate:
    path, operator, literal = node.path, node.operator, node.literal
    if operator == "exists":
        return _exists(path)
    if len(path) == 1 and operator != "contains":
        return _top_level_in(path[0], frozenset({literal}), negate=operator == "!=")
    if operator == "=":
        return lambda event: as_text(_value(event, path)) == literal
    if operator == "!=":
        return lambda event: as_text(_value(event, path)) != literal
    return lambda event: _contains(_value(event, path), literal)


def _top_level_in(key: str, literals: frozenset[str], *, negate: bool) -> Predicate:
    """``key = a or key = b ...`` (or ``key != a and key != b ...``) on a top-level field, as one set lookup."""

    def member(event: dict[str, Any]) -> bool:
        value = event.get(key)
        if isinstance(value, str):
            return value in literals
        return as_text(value) in literals

    if negate:
        return lambda event: not member(event)
    return member


def _contains(value: object, literal: str) -> bool:
    if isinstance(value, str):
        return literal in value
    return isinstance(value, list) and literal in value


def _exists(path: tuple[str, ...]) -> Predicate:
    return lambda event: _value(event, path) not in (_MISSING, None)


def _grouped(parts: tuple[Node, ...], operator: str) -> list[Predicate]:
    """The parts' predicates, top-level comparisons by ``operator`` on one field merged into one set lookup."""
    sets: dict[str, set[str]] = {}
    predicates: list[Predicate] = []
    for part in parts:
        if isinstance(part, Compare) and part.operator == operator and len(part.path) == 1:
            sets.setdefault(part.path[0], set()).add(part.literal)
        else:
            predicates.append(_compile(part))
    merged = [_top_level_in(key, frozenset(literals), negate=operator == "!=") for key, literals in sets.items()]
    return merged + predicates


def _any_of(parts: list[Predicate]) -> Predicate:
    def any_of(event: dict[str, Any]) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop is cheaper than a generator, per event
            if part(event):
                return True
        return False

    return parts[0] if len(parts) == 1 else any_of


def _all_of(parts: list[Predicate]) -> Predicate:
    def all_of(event: dict[str, Any]) -> bool:
        for part in parts:  # noqa: SIM110 - a plain loop is cheaper than a generator, per event
            if not part(event):
                return False
        return True

    return parts[0] if len(parts) == 1 else all_of


def _compile(node: Node) -> Predicate:
    if isinstance(node, AnyOf):
        return _any_of(_grouped(node.parts, "="))
    if isinstance(node, AllOf):
        return _all_of(_grouped(node.parts, "!="))
    return _comparison(node)


def matched_values(node: Node, key: str) -> frozenset[str] | None:
    """The values (as :func:`as_text`) of the top-level ``key`` a trigger can match, or ``None`` for any."""
    if isinstance(node, Compare):
        return frozenset({node.literal}) if node.path == (key,) and node.operator == "=" else None
    known = [values for values in (matched_values(part, key) for part in node.parts) if values is not None]
    if isinstance(node, AllOf):
        return frozenset.intersection(*known) if known else None
    return frozenset.union(*known) if len(known) == len(node.parts) else None


#: The top-level fields by whose values an event can be looked up rather than tested.
_INDEXED: Final = (("type",), ("event",))


def _single_key(node: Node) -> tuple[str, ...] | None:
    """The one indexed field that ``node`` tests for equality (``type = "a"``, ``event = "a" or ...``), or ``None``."""
    parts = node.parts if isinstance(node, AnyOf) else (node,)
    paths = {part.path for part in parts if isinstance(part, Compare) and part.operator == "="}
    if len(paths) != 1 or not all(isinstance(part, Compare) and part.operator == "=" for part in parts):
        return None
    (path,) = paths
    return path if path in _INDEXED else None


def excluded_values(node: Node, key: str) -> frozenset[str]:
    """The values of the top-level ``key`` that ``key != "value"`` parts (alone or joined by ``and``) exclude."""
    parts = node.parts if isinstance(node, AllOf) else (node,)
    return frozenset(
        part.literal for part in parts if isinstance(part, Compare) and part.operator == "!=" and part.path == (key,)
    )


def decided_by_values(node: Node) -> bool:
    """Whether the values :func:`matched_values` and :func:`excluded_values` give for ``type`` and ``event`` decide
    the trigger exactly, with no other test."""
    parts = node.parts if isinstance(node, AllOf) else (node,)
    equalities = [_single_key(part) for part in parts if not _excludes_event(part)]
    return None not in equalities and len(set(equalities)) == len(equalities)


def _excludes_event(node: Node) -> bool:
    return isinstance(node, Compare) and node.operator == "!=" and node.path == ("event",)


def parse_trigger(text: str) -> Node:
    """The syntax tree of a trigger.

    Raises:
        SubscriptionError: The trigger does not parse; the message names the position and what was expected.
    """
    if not text.strip():
        raise SubscriptionError("position 1: expected a field or '(', found the end")
    return _Parser(text).parse()


def compile_trigger(text: str) -> Predicate:
    """The predicate of a trigger, parsed once.

    Args:
        text: The trigger, for example ``type = "track" and event = "Application Installed"``.

    Returns:
        A function of a decoded event (a dict) telling whether the trigger matches it; it never raises.

    Raises:
        SubscriptionError: The trigger does not parse; the message names the position and what was expected.
    """
    return _compile(parse_trigger(text))
