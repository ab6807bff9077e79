"""The trigger language: parsing, matching, and bad syntax named by position and expectation."""

from __future__ import annotations

from typing import Any

import pytest

from worker.mapping.subscriptions import SubscriptionError, compile_trigger

EVENT: dict[str, Any] = {
    "type": "track",
    "event": "Push Token Registered",
    "name": "Home",
    "userId": 42,
    "properties": {"plan": "pro", "tags": ["a", "b"], "paid": True, "empty": None},
    "traits": {"email": "a@x.io"},
    "context": {"device": {"type": "ios"}},
}


@pytest.mark.parametrize(
    ("trigger", "matches"),
    [
        ('type = "track"', True),
        ('type = "identify"', False),
        ('type != "identify"', True),
        ('event = "Push Token Registered"', True),
        ('name = "Home"', True),
        ('userId = "42"', True),
        ('properties.plan = "pro"', True),
        ('properties.paid = "true"', True),
        ('properties.missing != "x"', True),
        ('properties.missing = "x"', False),
        ('event contains "Token"', True),
        ('event contains "token"', False),
        ('properties.tags contains "b"', True),
        ('properties.tags contains "c"', False),
        ("traits.email exists", True),
        ("properties.empty exists", False),
        ("properties.missing exists", False),
        ('context.device.type = "ios"', True),
        ('context.device.type.deeper = "ios"', False),
        ('type = "track" and event = "Nope"', False),
        ('type = "track" and event = "Nope" or name = "Home"', True),
        ('type = "track" and (event = "Nope" or name = "Home")', True),
        ('type = "identify" and (event = "Nope" or name = "Home")', False),
        ('(type = "identify" or type = "track") and properties.plan = "pro"', True),
        ('event = "say \\"hi\\""', False),
        ('  type   =   "track"  ', True),
    ],
)
def test_a_trigger_matches_as_documented(trigger: str, matches: bool) -> None:
    assert compile_trigger(trigger)(EVENT) is matches


def test_escaped_quotes_are_part_of_the_string() -> None:
    assert compile_trigger(r'event = "say \"hi\""')({"event": 'say "hi"'})


def test_a_trigger_never_raises_on_odd_events() -> None:
    predicate = compile_trigger('properties.a.b = "x" or traits.c contains "y" or context.d exists')
    for event in ({}, {"properties": 5}, {"properties": {"a": [1]}}, {"traits": {"c": {"y": 1}}}, {"context": None}):
        assert predicate(event) is False


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("", "position 1: expected a field or '(', found the end"),
        ("type = ", "position 8: expected a string in double quotes, found the end"),
        ('type == "x"', "position 7: expected a string in double quotes, found '='"),
        ('type "x"', "position 6: expected '=', '!=', 'contains' or 'exists', found '\"x\"'"),
        ('colour = "x"', "position 1: expected a field (type, event, name, userId, properties.x, traits.x, context.x)"),
        ('properties = "x"', "position 1: expected a field"),
        ('(type = "x"', "position 12: expected ')', found the end"),
        ('type = "x', "position 8: string not closed"),
        ('type = "x" event = "y"', "position 12: expected 'and', 'or' or the end, found 'event'"),
        ('type = "x" and', "position 15: expected a field"),
        ('type = "x" & event = "y"', "position 12: unexpected character '&'"),
        ("type = x", "position 8: expected a string in double quotes, found 'x'"),
    ],
)
def test_bad_syntax_names_the_position_and_what_was_expected(trigger: str, message: str) -> None:
    with pytest.raises(SubscriptionError) as caught:
        compile_trigger(trigger)
    assert str(caught.value).startswith(message)
