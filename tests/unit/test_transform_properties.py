"""worker.mapping.transform over generated input: total, bounded, consistent, and schema-valid when it delivers."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.schema import validate_operation
from worker.mapping.transform import Deliver, Outcome, Reject, Skip, TransformOptions, transform, transform_raw

#: The reason of the last-resort guard; a JSON input reaching it is a bug in the transform.
GUARD_REASON = "payload: cannot be mapped"

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=8)

ids = (
    st.none()
    | st.sampled_from(["u1", "cio_a1", "a@x.io", "", " ", "x" * 151, "cio_"])
    | st.integers(-(2**63), 2**63 - 1)
    | json_values
)
times = st.sampled_from(["2022-11-24T22:48:17.593Z", "2024-01-01", "1700000000", "25 Mar 2015", "", 1.7e9]) | scalars
track_names = (
    st.sampled_from(
        [
            "Application Installed",
            "Application Opened",
            "Device Created or Updated",
            "Application Uninstalled",
            "Device Deleted",
            "User Deleted",
            "User Suppressed",
            "User Unsuppressed",
            "Object Deleted",
            "Relationship Deleted",
            "Order Completed",
            "e" * 101,
        ]
    )
    | json_values
)
tokens = st.sampled_from(["a" * 64, "abc:APA91bXYZ-_", "short", ""]) | json_values
attribute_maps = st.dictionaries(
    st.sampled_from(["url", "email", "objectId", "objectTypeId", "object_type_id", "device_id", "created_at", "at"])
    | st.text(max_size=10),
    st.sampled_from(["2024-01-01", "https://x.io/", "7", "o1", "a@x.io"]) | json_values,
    max_size=6,
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "device": st.fixed_dictionaries(
            {}, optional={"token": tokens, "type": st.sampled_from(["iOS", "android", "web"])}
        ),
        "os": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["iPadOS", "Android", "Linux"]) | scalars}),
        "app": st.fixed_dictionaries({}, optional={"version": scalars}),
        "page": st.fixed_dictionaries({}, optional={"url": st.sampled_from(["https://x.io/p", ""]) | scalars}),
        "traits": attribute_maps,
    },
)
near_valid_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "Identify", "other"])},
    optional={
        "userId": ids,
        "anonymousId": ids,
        "previousId": ids,
        "groupId": ids,
        "email": st.sampled_from(["e@x.io", ""]) | scalars,
        "event": track_names,
        "name": st.sampled_from(["Home", ""]) | scalars,
        "messageId": st.sampled_from(["m-1"]) | scalars,
        "timestamp": times,
        "originalTimestamp": times,
        "receivedAt": times,
        "created_at": times,
        "traits": attribute_maps | json_values,
        "properties": attribute_maps | json_values,
        "context": contexts | json_values,
    },
)
good_ids = st.sampled_from(["u1", "cio_a1", "a@x.io", "42"]) | st.integers(0, 10**12)
good_times = st.sampled_from(["2022-11-24T22:48:17.593Z", "2024-01-01", "1700000000"]) | st.integers(0, 2**31)
good_contexts = st.fixed_dictionaries(
    {
        "device": st.fixed_dictionaries(
            {"token": st.sampled_from(["a" * 64, "abc:APA91bXYZ-_", "tok"])},
            optional={"type": st.sampled_from(["iOS", "android", "tvOS"])},
        ),
    },
    optional={"app": st.fixed_dictionaries({"version": st.sampled_from(["1.0", "2"])})},
)
common = {
    "anonymousId": st.sampled_from(["anon-1", 7]),
    "messageId": st.sampled_from(["m-1", "01HZX3K6Q7V8W9Y0ABCDEFGHJK"]),
    "timestamp": good_times,
    "originalTimestamp": good_times,
}


def typed(kind: str, required: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind), **required}, optional=common)


likely_valid_events = st.one_of(
    typed("identify", {"userId": good_ids, "traits": attribute_maps}),
    typed("track", {"userId": good_ids, "event": track_names, "properties": attribute_maps, "context": good_contexts}),
    typed("page", {"userId": good_ids, "properties": st.fixed_dictionaries({"url": st.just("https://x.io/")})}),
    typed("screen", {"userId": good_ids, "name": st.sampled_from(["Home", "Settings"]), "properties": attribute_maps}),
    typed("group", {"groupId": good_ids, "traits": attribute_maps}),
    typed("group", {"groupId": good_ids, "userId": good_ids, "traits": attribute_maps}),
    typed("alias", {"userId": good_ids, "previousId": good_ids}),
)
options = st.builds(TransformOptions, convert_timestamps=st.booleans(), object_type_id=st.sampled_from(["1", "4"]))


def check_outcome(outcome: Outcome) -> None:
    assert isinstance(outcome, Deliver | Skip | Reject)
    if isinstance(outcome, Deliver):
        assert outcome.operations
        assert outcome.encoded == tuple(orjson.dumps(op) for op in outcome.operations)
        assert all(len(encoded) <= 32_000 for encoded in outcome.encoded)
    else:
        assert outcome.reason
        assert outcome.reason != GUARD_REASON


@SETTINGS
@given(event=json_values, opts=options)
def test_any_json_value_gives_exactly_one_outcome_and_never_raises(event: Any, opts: TransformOptions) -> None:
    check_outcome(transform(event, opts))


@SETTINGS
@given(event=json_objects, opts=options)
def test_any_json_object_gives_exactly_one_outcome_and_never_raises(
    event: dict[str, Any], opts: TransformOptions
) -> None:
    check_outcome(transform(event, opts))


@SETTINGS
@given(event=near_valid_events | likely_valid_events, opts=options)
def test_near_valid_events_deliver_only_schema_valid_operations(event: dict[str, Any], opts: TransformOptions) -> None:
    outcome = transform(event, opts)
    check_outcome(outcome)
    if isinstance(outcome, Deliver):
        for operation in outcome.operations:
            validate_operation(operation)


#: Every field an event's times are read from.
TIME_KEYS = ("timestamp", "originalTimestamp", "receivedAt", "created_at")


@SETTINGS
@given(event=likely_valid_events, field=st.sampled_from(TIME_KEYS), value=json_values, opts=options)
def test_no_value_in_a_time_field_decides_whether_an_event_is_delivered(
    event: dict[str, Any], field: str, value: Any, opts: TransformOptions
) -> None:
    """A timestamp never costs an event: whatever a time field holds, the outcome is the one without it."""
    assume(len(orjson.dumps(value)) < 1_000)
    timeless = {key: item for key, item in event.items() if key not in TIME_KEYS}
    outcome = transform({**timeless, field: value}, opts)
    assert type(outcome) is type(transform(timeless, opts))
    if isinstance(outcome, Deliver):
        for operation in outcome.operations:
            validate_operation(operation)


@SETTINGS
@given(event=near_valid_events, opts=options)
def test_the_raw_json_of_an_event_maps_like_the_event_itself(event: dict[str, Any], opts: TransformOptions) -> None:
    assert transform_raw(orjson.dumps(event), opts) == transform(event, opts)


@SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text_give_an_outcome(raw: bytes | str) -> None:
    check_outcome(transform_raw(raw, TransformOptions()))


@settings(max_examples=50, deadline=None)
@given(payload=st.text(min_size=1, max_size=40), copies=st.integers(1, 2_000))
def test_large_events_are_delivered_under_the_cap_or_rejected_for_size(payload: str, copies: int) -> None:
    event = {"type": "track", "event": "Big", "userId": "u", "properties": {"blob": payload * copies}}
    outcome = transform(event, TransformOptions())
    check_outcome(outcome)
    assert isinstance(outcome, Deliver) or outcome == Reject("operation: larger than 32000 bytes")


def test_events_nested_deeper_than_the_encoder_allows_are_rejected_not_raised() -> None:
    nested: dict[str, Any] = {}
    for _ in range(3_000):
        nested = {"n": nested}
    outcome = transform({"type": "track", "event": "Deep", "userId": "u", "properties": nested}, TransformOptions())
    assert outcome == Reject("payload: nested too deeply or not serialisable")


def test_python_only_values_are_rejected_not_raised() -> None:
    event = {"type": "track", "event": "E", "userId": "u", "properties": {"when": object(), 3: "x"}}
    assert isinstance(transform(event, TransformOptions()), Reject)
