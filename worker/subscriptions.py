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

    def parse(self) -> Predicate:
        predicate = self.expression()
        if self.peek().kind != "end":
            raise self.fail("'and', 'or' or the end")
        return predicate

    def expression(self) -> Predicate:
        parts = [self.conjunction()]
        while self.accept("word", "or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else _any_of(tuple(parts))

    def conjunction(self) -> Predicate:
        parts = [self.term()]
        while self.accept("word", "and"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else _all_of(tuple(parts))

    def term(self) -> Predicate:
        if self.accept("op", "("):
            inner = self.expression()
            if not self.accept("op", ")"):
                raise self.fail("')'")
            return inner
        path = self.field()
        if self.accept("word", "exists"):
            return _exists(path)
        operator = self.peek()
        if operator.kind == "string" or operator.text not in ("=", "!=", "contains"):
            raise self.fail("'=', '!=', 'contains' or 'exists'")
        self.take()
        literal = self.peek()
        if literal.kind != "string":
            raise self.fail("a string in double quotes")
        self.take()
        return _comparison(path, operator.text, _unquote(literal.text))

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


def _as_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _comparison(path: tuple[str, ...], operator: str, literal: str) -> Predicate:
    if len(path) == 1 and operator != "contains":
        return _top_level_equals(path[0], literal, negate=operator == "!=")
    if operator == "=":
        return lambda event: _as_text(_value(event, path)) == literal
    if operator == "!=":
        return lambda event: _as_text(_value(event, path)) != literal
    return lambda event: _contains(_value(event, path), literal)


def _top_level_equals(key: str, literal: str, *, negate: bool) -> Predicate:
    """``key = literal`` (or ``!=``) on a top-level field: the common case, kept to one lookup."""

    def equals(event: dict[str, Any]) -> bool:
        value = event.get(key)
        if isinstance(value, str):
            return value == literal
        return _as_text(value) == literal

    if negate:
        return lambda event: not equals(event)
    return equals


def _contains(value: object, literal: str) -> bool:
    if isinstance(value, str):
        return literal in value
    return isinstance(value, list) and literal in value


def _exists(path: tuple[str, ...]) -> Predicate:
    return lambda event: _value(event, path) not in (_MISSING, None)


def _any_of(parts: tuple[Predicate, ...]) -> Predicate:
    return lambda event: any(part(event) for part in parts)


def _all_of(parts: tuple[Predicate, ...]) -> Predicate:
    return lambda event: all(part(event) for part in parts)


def compile_trigger(text: str) -> Predicate:
    """The predicate of a trigger, parsed once.

    Args:
        text: The trigger, for example ``type = "track" and event = "Application Installed"``.

    Returns:
        A function of a decoded event (a dict) telling whether the trigger matches it; it never raises.

    Raises:
        SubscriptionError: The trigger does not parse; the message names the position and what was expected.
    """
    if not text.strip():
        raise SubscriptionError("position 1: expected a field or '(', found the end")
    return _Parser(text).parse()
