"""Segment event models and the producer's edge checks (no Redis)."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from producers import (
    MAX_EVENT_BYTES,
    Alias,
    Group,
    Identify,
    InvalidEventError,
    Page,
    ProducerError,
    Screen,
    Track,
    parse_event,
    validate_event,
)
from producers._events import build_event, encode_event, new_message_id

NOW = "2026-01-02T03:04:05.678Z"

VALID_EVENTS = [
    {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
    {"type": "identify", "userId": 42},
    {"type": "identify", "anonymousId": "anon-1"},
    {"type": "identify", "traits": {"email": "a@example.com"}},
    {"type": "identify", "email": "a@example.com", "projectId": "p1", "created_at": "1679407797"},
    {"type": "track", "userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
    {"type": "track", "anonymousId": 7, "event": "Clicked"},
    {"type": "track", "email": "a@example.com", "event": "Clicked"},
    {"type": "track", "context": {"traits": {"email": "a@example.com"}}, "event": "Clicked"},
    {"type": "page", "userId": "u1", "properties": {"url": "https://example.com"}},
    {"type": "screen", "anonymousId": "a", "name": "Home"},
    {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}},
    {"type": "group", "groupId": 9},
    {"type": "alias", "userId": "u1", "previousId": "anon-1"},
    {"type": "track", "userId": "u1", "event": "x", "timestamp": "2026-01-01T00:00:00Z", "messageId": "m-1"},
    {"type": "track", "userId": "u1", "event": "x", "timestamp": 1_700_000_000, "unknown": {"kept": True}},
]

INVALID_EVENTS = [
    ([1, 2], "(event)", "must be a JSON object"),
    ({"userId": "u1"}, "type", "required"),
    ({"type": "Track", "userId": "u1"}, "type", "unknown event type 'Track'"),
    ({"type": 3}, "type", "unknown event type 3"),
    ({"type": "track", "userId": "u1"}, "event", "required for track"),
    ({"type": "track", "userId": "u1", "event": ""}, "event", "required for track"),
    ({"type": "track", "userId": "u1", "event": "  "}, "event", "required for track"),
    ({"type": "track", "userId": "u1", "event": 5}, "event", "must be a string"),
    ({"type": "track", "event": "x"}, "userId", "userId, anonymousId or email required for track"),
    ({"type": "track", "userId": "", "event": "x"}, "userId", "userId, anonymousId or email required for track"),
    ({"type": "page", "properties": {}}, "userId", "userId, anonymousId or email required for page"),
    ({"type": "screen", "name": "Home"}, "userId", "userId, anonymousId or email required for screen"),
    ({"type": "identify", "traits": {"plan": "x"}}, "userId", "required for identify"),
    ({"type": "identify", "traits": {"email": ""}}, "userId", "required for identify"),
    ({"type": "group", "userId": "u1"}, "groupId", "required for group"),
    ({"type": "group", "groupId": ""}, "groupId", "required for group"),
    ({"type": "group", "groupId": ["a"]}, "groupId", "must be a non-blank string or an integer"),
    ({"type": "alias", "previousId": "a"}, "userId", "required for alias"),
    ({"type": "alias", "userId": "u1"}, "previousId", "required for alias"),
    ({"type": "track", "userId": 1.5, "event": "x"}, "userId", "must be a string or an integer"),
    ({"type": "track", "userId": True, "event": "x"}, "userId", "must be a string or an integer"),
    ({"type": "track", "anonymousId": {}, "event": "x"}, "anonymousId", "must be a string or an integer"),
    ({"type": "track", "userId": "u", "event": "x", "properties": []}, "properties", "must be an object"),
    ({"type": "identify", "userId": "u", "traits": "pro"}, "traits", "must be an object"),
    ({"type": "track", "userId": "u", "event": "x", "context": 1}, "context", "must be an object"),
    ({"type": "track", "userId": "u", "event": "x", "integrations": "all"}, "integrations", "must be an object"),
    ({"type": "track", "userId": "u", "event": "x", "timestamp": []}, "timestamp", "ISO-8601"),
    ({"type": "track", "userId": "u", "event": "x", "sentAt": False}, "sentAt", "ISO-8601"),
    ({"type": "track", "userId": "u", "event": "x", "messageId": ""}, "messageId", "must be a non-empty string"),
    ({"type": "track", "userId": "u", "event": "x", "messageId": 12}, "messageId", "must be a non-empty string"),
    ({"type": "track", "userId": "u", "event": "x", "p": "x" * MAX_EVENT_BYTES}, "(event)", "exceeds 32000"),
    ({"type": "track", "userId": "u", "event": "x", "p": {1, 2}}, "(event)", "cannot be serialised as JSON"),
]


@pytest.mark.parametrize("event", VALID_EVENTS)
def test_a_valid_event_passes_validation(event: dict[str, Any]) -> None:
    validate_event(event)


@pytest.mark.parametrize(("event", "field", "reason"), INVALID_EVENTS)
def test_an_invalid_event_names_the_field_and_the_reason(event: Any, field: str, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        validate_event(event)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value) == f"{field}: {caught.value.reason}"


def test_the_error_message_reads_field_colon_reason() -> None:
    with pytest.raises(InvalidEventError, match=r"^event: required for track$"):
        validate_event({"type": "track", "userId": "u1"})


def test_invalid_event_error_is_a_producer_error_and_survives_pickling() -> None:
    error = InvalidEventError("event", "required for track", index=3)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, InvalidEventError)
    assert issubclass(InvalidEventError, ProducerError)
    assert (copy.field, copy.reason, copy.index, str(copy)) == ("event", "required for track", 3, str(error))


def test_encoding_adds_message_id_timestamp_and_sent_at_and_keeps_everything_else() -> None:
    event = {"type": "track", "userId": 7, "event": "x", "weird Field": [1, {"a": None}], "sentAt": "old"}
    message_id, data = encode_event(event, now=NOW)
    assert uuid.UUID(message_id).version == 4
    assert orjson.loads(data) == {**event, "messageId": message_id, "timestamp": NOW, "sentAt": NOW}
    assert list(orjson.loads(data))[:4] == ["type", "userId", "event", "weird Field"]


@pytest.mark.parametrize(
    ("given", "kept_id", "kept_timestamp"),
    [
        ({"messageId": "m-1", "timestamp": "2020-01-01T00:00:00Z"}, "m-1", "2020-01-01T00:00:00Z"),
        ({"messageId": None, "timestamp": None}, None, NOW),
        ({"timestamp": 1_600_000_000}, None, 1_600_000_000),
    ],
)
def test_encoding_keeps_a_given_message_id_and_timestamp(
    given: dict[str, Any], kept_id: str | None, kept_timestamp: Any
) -> None:
    message_id, data = encode_event({"type": "track", "userId": "u", "event": "x", **given}, now=NOW)
    written = orjson.loads(data)
    assert written["messageId"] == message_id
    assert kept_id is None or message_id == kept_id
    assert written["timestamp"] == kept_timestamp


def test_encoding_writes_utc_datetimes_with_a_z() -> None:
    moment = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=dt.UTC)
    _, data = encode_event({"type": "track", "userId": "u", "event": "x", "timestamp": moment}, now=NOW)
    assert orjson.loads(data)["timestamp"] == "2026-05-04T03:02:01Z"


def test_new_message_ids_are_random_rfc_4122_version_4_uuids() -> None:
    ids = [new_message_id() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    for message_id in ids:
        parsed = uuid.UUID(message_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, message_id)


@pytest.mark.parametrize(
    ("model", "fields", "expected"),
    [
        (Identify, {"userId": "u1", "traits": {"plan": "pro"}}, {"type": "identify", "userId": "u1"}),
        (Track, {"userId": 5, "event": "Signed Up", "foo": "bar"}, {"type": "track", "foo": "bar", "userId": 5}),
        (Page, {"anonymousId": "a", "name": "Home"}, {"type": "page", "name": "Home"}),
        (Screen, {"anonymousId": "a", "name": "Home"}, {"type": "screen", "name": "Home"}),
        (Group, {"groupId": "g", "traits": {"name": "G"}}, {"type": "group", "groupId": "g"}),
        (Alias, {"userId": "u1", "previousId": "a1"}, {"type": "alias", "previousId": "a1"}),
    ],
)
def test_a_model_builds_the_plain_event_with_its_type_and_extras(
    model: type[Any], fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    event = build_event(model, fields)
    assert expected.items() <= event.items()
    assert None not in event.values()
    validate_event(event)


def test_a_model_refuses_what_the_producer_refuses_with_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="event: required for track"):
        Track(userId="u1", event="")


@pytest.mark.parametrize(
    ("model", "fields", "field", "reason"),
    [
        (Track, {"userId": "u1", "event": ""}, "event", "required for track"),
        (Alias, {"userId": "u1"}, "previousId", "required for alias"),
        (Page, {"userId": "u1", "name": 3}, "name", "input should be a valid string"),
        (Identify, {"userId": "u1", "email": 3}, "email", "input should be a valid string"),
    ],
)
def test_building_an_event_turns_model_errors_into_invalid_event_errors(
    model: type[Any], fields: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        build_event(model, fields)
    assert (caught.value.field, caught.value.reason) == (field, reason)


@pytest.mark.parametrize("event", VALID_EVENTS)
def test_parse_event_picks_the_model_of_the_type_and_keeps_unknown_fields(event: dict[str, Any]) -> None:
    parsed = parse_event(event)
    assert parsed.type == event["type"]
    assert parsed.model_dump(mode="json", exclude_none=True) == event


def test_parse_event_names_a_nested_field_without_the_union_tag() -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event({"type": "screen", "userId": "u", "name": ["Home"]})
    assert caught.value.field == "name"
