"""worker.mapping.transform against every rule of mapping.md, one table row per rule.

Every delivered operation is also checked against Customer.io's official schema (tests/schema.py).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.schema import validate_operation
from worker.mapping.transform import Deliver, Reject, Skip, TransformOptions, transform, transform_raw
from worker.settings import WorkspaceConfig

DEFAULT = TransformOptions()
NO_CONVERSION = TransformOptions(convert_timestamps=False)
TS = "2022-11-24T22:48:17.593Z"
TS_S = 1669330097
APNS = "a" * 32 + "0123456789abcdef0123456789ABCDEF"
FCM = (
    "cEFolG5uRDGPizsaUh4X4m:APA91bFsKwjW9zUaiuJMCGqa3fLRiJ8fv1riQ6U-1iI72aSFZx5wxiqGnqbL-S2g3kZ5RrRUUo3AAVh_"
    "LhpFbjDlSqEoC4rqHmH8Z1BGgqaD9jStahy63cGXueW-vOr6mTOekmXgWSww"
)


def person(action: str, identifiers: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"type": "person", "action": action, "identifiers": identifiers, **fields}


def track(name: object, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, **fields}


def delivered(outcome: object) -> dict[str, Any]:
    """The single operation of a Deliver outcome, after checking it against the official schema."""
    assert isinstance(outcome, Deliver), outcome
    assert len(outcome.operations) == 1
    assert outcome.encoded == tuple(orjson.dumps(op) for op in outcome.operations)
    validate_operation(outcome.operations[0])
    return outcome.operations[0]


# --- the origin document's example events, verbatim (the identify one without its trailing comma) ---------
ORIGIN_IDENTIFY = b"""{
"type": "identify",
"traits": {
"first_name": "cool",
"last_name": "person",
"email": "cool.person@example.com",
"plan": "premium"
},
"userId": "97980cfea0067",
"created_at": "1679407797"
}"""
ORIGIN_GROUP = b"""{
"messageId": "4vl6zh",
"timestamp": "2022-11-24T22:56:14.144Z",
"type": "group",
"projectId": "sqsv42VjV1e2d8ha2SHxM6",
"traits": {
"name": "Example Co, Inc.",
"industry": "edtech",
"plan": "enterprise"
},
"groupId": "example-company",
"userId": "97980cfea0067"
}"""
ORIGIN_DEVICE = """{
"messageId": "i6yatl",
"timestamp": "2022-11-24T22:48:17.593Z",
"type": "track",
"email": "cool.person@example.com",
"projectId": "sqsv42VjV1e2d8ha2SHxM6",
"properties": {
"device_id": "%s"
},
"userId": "97980cfea0067",
"event": "%s"
}"""
ORIGIN_TRACK = b"""{
"messageId": "i6yatl",
"timestamp": "2022-11-24T22:48:17.593Z",
"type": "track",
"email": "cool.person@example.com",
"projectId": "sqsv42VjV1e2d8ha2SHxM6",
"properties": {
"class_name": "Customer.io Basics",
"class_code": "cio101",
"start_date": 1679410730
},
"userId": "97980cfea0067",
"event": "enrolled"
}"""
ORIGIN_PAGE = b"""{
"messageId": "efxqsi",
"timestamp": "2022-11-24T22:55:59.498Z",
"type": "page",
"email": "cool.person@example.com",
"projectId": "sqsv42VjV1e2d8ha2SHxM6",
"properties": {
"session_started": 1679410730,
"url": "http://www.example.com"
},
"userId": "97980cfea0067",
"name": "home"
}"""
ORIGIN_SCREEN = b"""{
"messageId": "9zk6c",
"timestamp": "2023-03-20T22:56:06.259Z",
"type": "screen",
"email": "cool.person@example.com",
"projectId": "sqsv42VjV1e2d8ha2SHxM6",
"properties": {
"session_started": 1679410730
},
"userId": "97980cfea0067",
"name": "home"
}"""
USER = {"id": "97980cfea0067"}

ORIGIN_EXAMPLES = [
    pytest.param(
        ORIGIN_IDENTIFY,
        person(
            "identify",
            USER,
            attributes={
                "first_name": "cool",
                "last_name": "person",
                "email": "cool.person@example.com",
                "plan": "premium",
                "created_at": 1679407797,
            },
        ),
        id="identify-with-root-created_at",
    ),
    pytest.param(
        (ORIGIN_DEVICE % (FCM, "Application Installed")).encode(),
        person("add_device", USER, device={"token": FCM, "platform": "android", "last_used": TS_S}),
        id="application-installed-fcm-token-in-device_id",
    ),
    pytest.param(
        (ORIGIN_DEVICE % (FCM, "Application Uninstalled")).encode(),
        person("delete_device", USER, device={"token": FCM}),
        id="application-uninstalled",
    ),
    pytest.param(
        ORIGIN_GROUP,
        {
            "type": "object",
            "action": "identify",
            "identifiers": {"object_type_id": "1", "object_id": "example-company"},
            "attributes": {"name": "Example Co, Inc.", "industry": "edtech", "plan": "enterprise"},
            "cio_relationships": [{"identifiers": USER}],
        },
        id="group",
    ),
    pytest.param(
        ORIGIN_TRACK,
        person(
            "event",
            USER,
            name="enrolled",
            id="i6yatl",
            timestamp=TS_S,
            attributes={"class_name": "Customer.io Basics", "class_code": "cio101", "start_date": 1679410730},
        ),
        id="track",
    ),
    pytest.param(
        ORIGIN_PAGE,
        person(
            "page",
            USER,
            name="http://www.example.com",
            id="efxqsi",
            timestamp=1669330559,
            attributes={"session_started": 1679410730, "url": "http://www.example.com"},
        ),
        id="page",
    ),
    pytest.param(
        ORIGIN_SCREEN,
        person(
            "screen", USER, name="home", id="9zk6c", timestamp=1679352966, attributes={"session_started": 1679410730}
        ),
        id="screen",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), ORIGIN_EXAMPLES)
def test_the_origin_documents_examples_map_as_written(raw: bytes, expected: dict[str, Any]) -> None:
    assert delivered(transform_raw(raw, DEFAULT)) == expected


def test_the_origin_identify_example_with_its_trailing_comma_is_rejected_as_invalid_json() -> None:
    raw = ORIGIN_IDENTIFY.replace(b'"1679407797"\n}', b'"1679407797",\n}')
    assert transform_raw(raw, DEFAULT) == Reject("payload: not valid JSON")


# --- routing: every event type and every special track name -----------------------------------------------
ROUTING: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "identify", "userId": "u1"}, "person", "identify"),
    ({"type": "group", "groupId": "g1", "userId": "u1"}, "object", "identify"),
    ({"type": "group", "groupId": "g1", "anonymousId": "a1"}, "object", "identify_anonymous"),
    ({"type": "alias", "userId": "u1", "previousId": "u0"}, "person", "merge"),
    ({"type": "page", "userId": "u1", "properties": {"url": "https://x.io/"}}, "person", "page"),
    ({"type": "screen", "userId": "u1", "name": "Home"}, "person", "screen"),
    (track("Application Installed", userId="u1", context={"device": {"token": APNS}}), "person", "add_device"),
    (track("Application Opened", userId="u1", context={"device": {"token": APNS}}), "person", "add_device"),
    (track("Device Created or Updated", userId="u1", context={"device": {"token": APNS}}), "person", "add_device"),
    (track("Application Uninstalled", userId="u1", context={"device": {"token": APNS}}), "person", "delete_device"),
    (track("Device Deleted", userId="u1", context={"device": {"token": APNS}}), "person", "delete_device"),
    (track("User Deleted", userId="u1"), "person", "delete"),
    (track("User Suppressed", userId="u1"), "person", "suppress"),
    (track("User Unsuppressed", userId="u1"), "person", "unsuppress"),
    (track("Object Deleted", properties={"objectId": "o1"}), "object", "delete"),
    (track("Relationship Deleted", userId="u1", properties={"objectId": "o1"}), "object", "delete_relationships"),
    (track("Order Completed", userId="u1"), "person", "event"),
    (track("application installed", userId="u1"), "person", "event"),
    (track("User deleted", userId="u1"), "person", "event"),
]


@pytest.mark.parametrize(
    ("event", "kind", "action"), ROUTING, ids=[f"{e.get('event', e['type'])}:{a}" for e, _, a in ROUTING]
)
def test_each_event_routes_to_its_operation_with_exact_case_sensitive_names(
    event: dict[str, Any], kind: str, action: str
) -> None:
    operation = delivered(transform(event, DEFAULT))
    assert (operation["type"], operation["action"]) == (kind, action)


# --- whole operations, one rule each -------------------------------------------------------------------------
EXACT = [
    # person identifiers
    ({"type": "identify", "userId": "cio_a3000001"}, person("identify", {"cio_id": "a3000001"}, attributes={})),
    ({"type": "identify", "userId": "Jo@Example.com"}, person("identify", {"email": "Jo@Example.com"}, attributes={})),
    ({"type": "identify", "userId": 42}, person("identify", {"id": "42"}, attributes={})),
    ({"type": "identify", "userId": 42.0}, person("identify", {"id": "42"}, attributes={})),
    ({"type": "identify", "userId": "cio_"}, person("identify", {"id": "cio_"}, attributes={})),
    ({"type": "identify", "userId": "not@an email"}, person("identify", {"id": "not@an email"}, attributes={})),
    (
        {"type": "identify", "traits": {"email": "a@x.io"}},
        person("identify", {"email": "a@x.io"}, attributes={"email": "a@x.io"}),
    ),
    (
        {"type": "identify", "email": "top@x.io", "context": {"traits": {"email": "ctx@x.io"}}},
        person("identify", {"email": "top@x.io"}, attributes={"email": "top@x.io"}),
    ),
    (
        {"type": "identify", "context": {"traits": {"email": "ctx@x.io"}}},
        person("identify", {"email": "ctx@x.io"}, attributes={"email": "ctx@x.io"}),
    ),
    (
        {"type": "identify", "userId": "u1", "email": "top@x.io"},
        person("identify", {"id": "u1"}, attributes={"email": "top@x.io"}),
    ),
    (
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"email": "a@x.io"}},
        person("identify", {"id": "u1"}, attributes={"email": "a@x.io", "anonymous_id": "a1"}),
    ),
    (
        track("Signed Up", userId="u1", anonymousId="a1"),
        person("event", {"id": "u1"}, name="Signed Up", attributes={"anonymous_id": "a1"}),
    ),
    (track("Signed Up", anonymousId="a1"), person("event", {"anonymous_id": "a1"}, name="Signed Up")),
    (track("Signed Up", anonymousId=7), person("event", {"anonymous_id": "7"}, name="Signed Up")),
    (
        track("Signed Up", email="top@x.io", anonymousId="a1"),
        person("event", {"email": "top@x.io"}, name="Signed Up", attributes={"anonymous_id": "a1"}),
    ),
    (
        track("Signed Up", context={"traits": {"email": "ctx@x.io"}}),
        person("event", {"email": "ctx@x.io"}, name="Signed Up"),
    ),
    (
        track("Signed Up", userId="", traits={"email": "t@x.io"}, anonymousId="a1"),
        person("event", {"anonymous_id": "a1"}, name="Signed Up"),
    ),
    # identify: created_at, excluded traits, relationships, timestamp
    (
        {"type": "identify", "userId": "u1", "traits": {"createdAt": "2024-01-01T00:00:00Z"}},
        person("identify", {"id": "u1"}, attributes={"created_at": 1704067200}),
    ),
    (
        {"type": "identify", "userId": "u1", "traits": {"created_at": 1704067200.7, "createdAt": "2020-01-01"}},
        person("identify", {"id": "u1"}, attributes={"created_at": 1704067200}),
    ),
    (
        {"type": "identify", "userId": "u1", "created_at": "2024-01-01", "timestamp": TS},
        person("identify", {"id": "u1"}, attributes={"created_at": 1704067200}, timestamp=TS_S),
    ),
    (
        {"type": "identify", "userId": "u1", "traits": {"created_at": ""}},
        person("identify", {"id": "u1"}, attributes={}),
    ),
    (
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"objectId": "acme", "objectTypeId": "2", "relationshipAttributes": {"role": "admin"}},
        },
        person(
            "identify",
            {"id": "u1"},
            attributes={"objectId": "acme"},
            cio_relationships=[
                {
                    "identifiers": {"object_type_id": "2", "object_id": "acme"},
                    "relationship_attributes": {"role": "admin"},
                }
            ],
        ),
    ),
    (
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"objectId": 9, "object_type_id": 3, "objectTypeId": "2"},
        },
        person(
            "identify",
            {"id": "u1"},
            attributes={"objectId": 9},
            cio_relationships=[{"identifiers": {"object_type_id": "3", "object_id": "9"}}],
        ),
    ),
    # track
    (
        track("Order Completed", userId="u1", messageId="m-1", timestamp=TS, properties={"total": 9.5}),
        person("event", {"id": "u1"}, name="Order Completed", id="m-1", timestamp=TS_S, attributes={"total": 9.5}),
    ),
    (
        track("Order Completed", userId="u1", properties=[]),
        person("event", {"id": "u1"}, name="Order Completed"),
    ),
    (
        track("Order Completed", userId="u1", projectId="p", someFutureField={"x": 1}, context={"ip": "1.2.3.4"}),
        person("event", {"id": "u1"}, name="Order Completed"),
    ),
    # timestamps: timestamp → originalTimestamp → receivedAt, floored; digit strings are seconds; no clock
    (track("E", userId="u1", timestamp=1700000000.9), person("event", {"id": "u1"}, name="E", timestamp=1700000000)),
    (track("E", userId="u1", timestamp="1700000000"), person("event", {"id": "u1"}, name="E", timestamp=1700000000)),
    (
        track("E", userId="u1", originalTimestamp="2024-01-01", receivedAt=TS),
        person("event", {"id": "u1"}, name="E", timestamp=1704067200),
    ),
    (track("E", userId="u1", receivedAt=TS), person("event", {"id": "u1"}, name="E", timestamp=TS_S)),
    (track("E", userId="u1", sentAt=TS), person("event", {"id": "u1"}, name="E")),
    (
        track(
            "E",
            userId="u1",
            properties={
                "at": "2024-01-01T00:00:00+01:00",
                "day": "2024-01-01",
                "nested": {"at": "2024-01-01"},
                "list": ["2024-01-01"],
                "text": "25 Mar 2015",
                "us": "01/01/2019",
            },
        ),
        person(
            "event",
            {"id": "u1"},
            name="E",
            attributes={
                "at": 1704063600,
                "day": 1704067200,
                "nested": {"at": 1704067200},
                "list": ["2024-01-01"],
                "text": "25 Mar 2015",
                "us": "01/01/2019",
            },
        ),
    ),
    # page and screen
    (
        {"type": "page", "anonymousId": "a1", "context": {"page": {"url": "https://x.io/p"}}, "name": "P"},
        person("page", {"anonymous_id": "a1"}, name="https://x.io/p"),
    ),
    (
        {"type": "page", "userId": "u1", "properties": {"url": "https://x.io/a"}, "context": {"page": {"url": "b"}}},
        person("page", {"id": "u1"}, name="https://x.io/a", attributes={"url": "https://x.io/a"}),
    ),
    (
        {"type": "screen", "userId": "u1", "name": "Home", "messageId": "m", "properties": {"from": "push"}},
        person("screen", {"id": "u1"}, name="Home", id="m", attributes={"from": "push"}),
    ),
    # group
    (
        {
            "type": "group",
            "groupId": 12,
            "userId": "u@x.io",
            "traits": {
                "name": "Acme",
                "objectTypeId": "2",
                "since": "2024-01-01",
                "relationshipAttributes": {"role": "admin", "joined": "2024-01-01"},
            },
        },
        {
            "type": "object",
            "action": "identify",
            "identifiers": {"object_type_id": "2", "object_id": "12"},
            "attributes": {"name": "Acme", "since": 1704067200},
            "cio_relationships": [
                {"identifiers": {"email": "u@x.io"}, "relationship_attributes": {"role": "admin", "joined": 1704067200}}
            ],
        },
    ),
    (
        {"type": "group", "groupId": "g", "userId": "cio_x1", "traits": {"objectAttributes": {"a": 1}, "b": 2}},
        {
            "type": "object",
            "action": "identify",
            "identifiers": {"object_type_id": "1", "object_id": "g"},
            "attributes": {"a": 1},
            "cio_relationships": [{"identifiers": {"cio_id": "x1"}}],
        },
    ),
    (
        {"type": "group", "groupId": "g", "traits": {"name": "Acme"}},
        {
            "type": "object",
            "action": "identify",
            "identifiers": {"object_type_id": "1", "object_id": "g"},
            "attributes": {"name": "Acme"},
        },
    ),
    (
        {"type": "group", "groupId": "g", "anonymousId": "a1", "traits": {"relationshipAttributes": {"r": "x"}}},
        {
            "type": "object",
            "action": "identify_anonymous",
            "identifiers": {"object_type_id": "1", "object_id": "g"},
            "attributes": {"anonymous_id": "a1"},
            "cio_relationships": [{"identifiers": {"anonymous_id": "a1"}, "relationship_attributes": {"r": "x"}}],
        },
    ),
    # alias
    (
        {"type": "alias", "userId": "cio_p1", "previousId": "old@x.io"},
        {"type": "person", "action": "merge", "primary": {"cio_id": "p1"}, "secondary": {"email": "old@x.io"}},
    ),
    (
        {"type": "alias", "userId": 5, "previousId": "anon-7"},
        {"type": "person", "action": "merge", "primary": {"id": "5"}, "secondary": {"id": "anon-7"}},
    ),
    # devices: token sources, platform normalisation and inference, attributes, last_used
    (
        track(
            "Application Opened",
            userId="u1",
            timestamp=TS,
            properties={"push_enabled": True, "build": 42, "seen": "2024-01-01", "none": None},
            context={"device": {"token": "tok-1", "type": "iPadOS"}, "app": {"version": "2.1.0"}},
        ),
        person(
            "add_device",
            {"id": "u1"},
            device={
                "token": "tok-1",
                "platform": "ios",
                "last_used": TS_S,
                "attributes": {"push_enabled": "true", "build": "42", "seen": "1704067200", "app_version": "2.1.0"},
            },
        ),
    ),
    (
        track("Application Installed", userId="u1", context={"device": {"token": "t", "type": "Android"}}),
        person("add_device", {"id": "u1"}, device={"token": "t", "platform": "android"}),
    ),
    (
        track("Application Installed", userId="u1", context={"device": {"token": "t", "type": "watchOS"}}),
        person("add_device", {"id": "u1"}, device={"token": "t", "platform": "ios"}),
    ),
    (
        track("Application Installed", userId="u1", context={"device": {"token": "t"}, "os": {"name": "tvOS"}}),
        person("add_device", {"id": "u1"}, device={"token": "t", "platform": "ios"}),
    ),
    (
        track("Application Installed", userId="u1", context={"device": {"token": "t", "type": "IOS"}}),
        person("add_device", {"id": "u1"}, device={"token": "t", "platform": "ios"}),
    ),
    (
        track("Application Installed", userId="u1", context={"device": {"token": APNS, "type": "web"}}),
        person("add_device", {"id": "u1"}, device={"token": APNS, "platform": "ios"}),
    ),
    (
        track("Device Created or Updated", email="e@x.io", properties={"device_id": FCM, "model": "Pixel"}),
        person(
            "add_device",
            {"email": "e@x.io"},
            device={"token": FCM, "platform": "android", "attributes": {"model": "Pixel"}},
        ),
    ),
    (
        track("Application Installed", userId="u1", context={"device": {"token": APNS}}, properties={"device_id": FCM}),
        person("add_device", {"id": "u1"}, device={"token": APNS, "platform": "ios", "attributes": {"device_id": FCM}}),
    ),
    (
        track("Device Deleted", userId="u1", context={"device": {"token": "tok-1"}}),
        person("delete_device", {"id": "u1"}, device={"token": "tok-1"}),
    ),
    # deletes, suppression, objects
    (track("User Deleted", userId="cio_z"), person("delete", {"cio_id": "z"})),
    (track("User Suppressed", email="s@x.io"), person("suppress", {"email": "s@x.io"})),
    (track("User Unsuppressed", userId=77), person("unsuppress", {"id": "77"})),
    (
        track("Object Deleted", userId="u1", properties={"objectId": "o1", "objectTypeId": 4}),
        {"type": "object", "action": "delete", "identifiers": {"object_type_id": "4", "object_id": "o1"}},
    ),
    (
        track("Object Deleted", properties={"objectId": "o1", "object_type_id": "5", "objectTypeId": "4"}),
        {"type": "object", "action": "delete", "identifiers": {"object_type_id": "5", "object_id": "o1"}},
    ),
    (
        track("Relationship Deleted", userId="u1", properties={"objectId": "o1"}),
        {
            "type": "object",
            "action": "delete_relationships",
            "identifiers": {"object_type_id": "1", "object_id": "o1"},
            "cio_relationships": [{"identifiers": {"id": "u1"}}],
        },
    ),
]


@pytest.mark.parametrize(("event", "expected"), EXACT)
def test_event_maps_to_exactly_this_operation(event: dict[str, Any], expected: dict[str, Any]) -> None:
    assert delivered(transform(event, DEFAULT)) == expected


# --- workspace options ---------------------------------------------------------------------------------------
def test_without_conversion_iso_strings_pass_as_strings_but_event_times_are_still_seconds() -> None:
    event = track(
        "E",
        userId="u1",
        timestamp=TS,
        properties={"at": "2024-01-01", "nested": {"at": "2024-01-01T00:00:00Z"}},
    )
    operation = delivered(transform(event, NO_CONVERSION))
    assert operation["timestamp"] == TS_S
    assert operation["attributes"] == {"at": "2024-01-01", "nested": {"at": "2024-01-01T00:00:00Z"}}


def test_without_conversion_an_iso_device_last_used_is_left_out_because_the_schema_takes_only_integers() -> None:
    event = track("Application Opened", userId="u1", timestamp=TS, context={"device": {"token": APNS}})
    outcome = transform(event, NO_CONVERSION)
    assert "last_used" not in delivered(outcome)["device"]
    assert isinstance(outcome, Deliver) and outcome.dropped_timestamps == ("device.last_used",)


def test_the_workspace_default_object_type_applies_when_the_event_names_none() -> None:
    options = TransformOptions(object_type_id="7")
    group = delivered(transform({"type": "group", "groupId": "g"}, options))
    deleted = delivered(transform(track("Object Deleted", properties={"objectId": "o"}), options))
    assert group["identifiers"]["object_type_id"] == deleted["identifiers"]["object_type_id"] == "7"


def test_options_come_from_the_workspace_configuration() -> None:
    workspace = WorkspaceConfig(site_id="s", api_key="k", convert_timestamps=False, object_type_id="3")
    assert TransformOptions.for_workspace(workspace) == TransformOptions(convert_timestamps=False, object_type_id="3")


# --- anonymousId in the attributes of every operation that carries them, objects included ---------------------
def group(**fields: Any) -> dict[str, Any]:
    return {"type": "group", "groupId": "g", **fields}


def obj(action: str, **fields: Any) -> dict[str, Any]:
    return {"type": "object", "action": action, "identifiers": {"object_type_id": "1", "object_id": "g"}, **fields}


ANONYMOUS_ON_OBJECTS = [
    pytest.param(
        group(userId="u1", anonymousId="a1", traits={"name": "Acme"}),
        obj(
            "identify",
            attributes={"name": "Acme", "anonymous_id": "a1"},
            cio_relationships=[{"identifiers": {"id": "u1"}}],
        ),
        id="group-user-traits",
    ),
    pytest.param(
        group(userId="u1", anonymousId="a1"),
        obj("identify", attributes={"anonymous_id": "a1"}, cio_relationships=[{"identifiers": {"id": "u1"}}]),
        id="group-user-no-traits",
    ),
    pytest.param(
        group(anonymousId="a1", traits={"name": "Acme"}),
        obj(
            "identify_anonymous",
            attributes={"name": "Acme", "anonymous_id": "a1"},
            cio_relationships=[{"identifiers": {"anonymous_id": "a1"}}],
        ),
        id="group-anonymous-traits",
    ),
    pytest.param(
        group(anonymousId="a1"),
        obj(
            "identify_anonymous",
            attributes={"anonymous_id": "a1"},
            cio_relationships=[{"identifiers": {"anonymous_id": "a1"}}],
        ),
        id="group-anonymous-no-traits",
    ),
    pytest.param(
        group(userId="cio_x1", anonymousId="a1", traits={"objectAttributes": {"a": 1}, "b": 2}),
        obj(
            "identify", attributes={"a": 1, "anonymous_id": "a1"}, cio_relationships=[{"identifiers": {"cio_id": "x1"}}]
        ),
        id="group-cio-id-object-attributes",
    ),
    pytest.param(
        group(userId="u@x.io", anonymousId="a1", traits={"relationshipAttributes": {"role": "admin", "on": TS}}),
        obj(
            "identify",
            attributes={"anonymous_id": "a1"},
            cio_relationships=[
                {"identifiers": {"email": "u@x.io"}, "relationship_attributes": {"role": "admin", "on": TS_S}}
            ],
        ),
        id="group-email-relationship-attributes",
    ),
    pytest.param(
        group(email="e@x.io", anonymousId="a1"),
        obj("identify", attributes={"anonymous_id": "a1"}, cio_relationships=[{"identifiers": {"email": "e@x.io"}}]),
        id="group-no-user-id-but-email",
    ),
    pytest.param(
        group(userId="u1", traits={"name": "Acme"}),
        obj("identify", attributes={"name": "Acme"}, cio_relationships=[{"identifiers": {"id": "u1"}}]),
        id="group-without-anonymous-id",
    ),
    pytest.param(
        group(userId="u1"),
        obj("identify", cio_relationships=[{"identifiers": {"id": "u1"}}]),
        id="group-without-anonymous-id-or-traits",
    ),
    pytest.param(
        track("Relationship Deleted", userId="u1", anonymousId="a1", properties={"objectId": "g"}),
        obj(
            "delete_relationships", cio_relationships=[{"identifiers": {"id": "u1"}}], attributes={"anonymous_id": "a1"}
        ),
        id="relationship-deleted-user",
    ),
    pytest.param(
        track("Relationship Deleted", userId="cio_x1", anonymousId=7, properties={"objectId": "g"}),
        obj(
            "delete_relationships",
            cio_relationships=[{"identifiers": {"cio_id": "x1"}}],
            attributes={"anonymous_id": "7"},
        ),
        id="relationship-deleted-cio-id",
    ),
    pytest.param(
        track("Relationship Deleted", userId="u@x.io", anonymousId="a1", properties={"objectId": "g"}),
        obj(
            "delete_relationships",
            cio_relationships=[{"identifiers": {"email": "u@x.io"}}],
            attributes={"anonymous_id": "a1"},
        ),
        id="relationship-deleted-email",
    ),
    pytest.param(
        track("Relationship Deleted", userId="u1", properties={"objectId": "g"}),
        obj("delete_relationships", cio_relationships=[{"identifiers": {"id": "u1"}}]),
        id="relationship-deleted-without-anonymous-id",
    ),
]


@pytest.mark.parametrize(("event", "expected"), ANONYMOUS_ON_OBJECTS)
def test_an_anonymous_id_that_is_not_the_identifier_goes_into_the_objects_attributes(
    event: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert delivered(transform(event, DEFAULT)) == expected


# --- convert_timestamps off: every value as the producer sent it; the event time still in seconds ------------
CONVERT_OFF = [
    pytest.param(
        {
            "type": "identify",
            "userId": "u1",
            "timestamp": TS,
            "traits": {"since": "2024-01-01", "createdAt": TS, "address": {"moved": "2024-01-01T10:00:00Z"}},
        },
        person(
            "identify",
            {"id": "u1"},
            timestamp=TS_S,
            attributes={"since": "2024-01-01", "address": {"moved": "2024-01-01T10:00:00Z"}, "created_at": TS},
        ),
        id="identify-attributes-nested-and-created_at",
    ),
    pytest.param(
        {"type": "identify", "userId": "u1", "created_at": "1679407797"},
        person("identify", {"id": "u1"}, attributes={"created_at": "1679407797"}),
        id="identify-digit-created_at-as-given",
    ),
    pytest.param(
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"objectId": "o", "relationshipAttributes": {"since": "2024-01-01"}},
        },
        person(
            "identify",
            {"id": "u1"},
            attributes={"objectId": "o"},
            cio_relationships=[
                {
                    "identifiers": {"object_type_id": "1", "object_id": "o"},
                    "relationship_attributes": {"since": "2024-01-01"},
                }
            ],
        ),
        id="identify-relationship-attributes",
    ),
    pytest.param(
        group(userId="u1", traits={"since": TS, "deep": {"at": "2024-01-01"}, "relationshipAttributes": {"on": TS}}),
        obj(
            "identify",
            attributes={"since": TS, "deep": {"at": "2024-01-01"}},
            cio_relationships=[{"identifiers": {"id": "u1"}, "relationship_attributes": {"on": TS}}],
        ),
        id="group-attributes-and-relationship-attributes",
    ),
    pytest.param(
        track("E", userId="u1", timestamp=TS, properties={"a": {"b": {"at": TS}}, "day": "2024-01-01"}),
        person(
            "event", {"id": "u1"}, name="E", timestamp=TS_S, attributes={"a": {"b": {"at": TS}}, "day": "2024-01-01"}
        ),
        id="track-nested-objects",
    ),
    pytest.param(
        track(
            "Application Opened",
            userId="u1",
            timestamp=1700000000,
            properties={"seen": "2024-01-01"},
            context={"device": {"token": APNS}},
        ),
        person(
            "add_device",
            {"id": "u1"},
            device={"token": APNS, "platform": "ios", "last_used": 1700000000, "attributes": {"seen": "2024-01-01"}},
        ),
        id="device-last_used-integer-as-given",
    ),
]


@pytest.mark.parametrize(("event", "expected"), CONVERT_OFF)
def test_without_conversion_every_value_passes_as_given(event: dict[str, Any], expected: dict[str, Any]) -> None:
    outcome = transform(event, NO_CONVERSION)
    assert delivered(outcome) == expected
    assert isinstance(outcome, Deliver) and outcome.dropped_timestamps == ()


# --- a time that cannot be read never costs the event ---------------------------------------------------------
UNREADABLE = [
    pytest.param(
        {"type": "identify", "userId": "u1", "timestamp": "2018-03-04T12:08:56.235 PDT", "traits": {"plan": "pro"}},
        person("identify", {"id": "u1"}, attributes={"plan": "pro"}),
        ("timestamp",),
        id="identify-timestamp-left-out",
    ),
    pytest.param(
        {"type": "identify", "userId": "u1", "timestamp": TS, "traits": {"createdAt": "soon"}},
        person("identify", {"id": "u1"}, attributes={"created_at": "soon"}, timestamp=TS_S),
        ("created_at",),
        id="identify-created_at-as-given",
    ),
    pytest.param(
        {"type": "identify", "userId": "u1", "created_at": 1679407797000, "originalTimestamp": True},
        person("identify", {"id": "u1"}, attributes={"created_at": 1679407797000}),
        ("created_at", "timestamp"),
        id="identify-milliseconds-and-a-boolean",
    ),
    pytest.param(
        {"type": "identify", "userId": "u1", "traits": {"born": "25 Mar 2015", "at": "2024-02-30"}},
        person("identify", {"id": "u1"}, attributes={"born": "25 Mar 2015", "at": "2024-02-30"}),
        (),
        id="identify-attributes-that-are-not-dates-as-given",
    ),
    pytest.param(
        track("E", userId="u1", messageId="m", timestamp="yesterday"),
        person("event", {"id": "u1"}, name="E", id="m"),
        ("timestamp",),
        id="track",
    ),
    pytest.param(
        track("E", userId="u1", originalTimestamp=[1], receivedAt=TS),
        person("event", {"id": "u1"}, name="E"),
        ("timestamp",),
        id="track-fallback",
    ),
    pytest.param(
        {"type": "page", "userId": "u1", "timestamp": "yesterday", "properties": {"url": "https://x.io/"}},
        person("page", {"id": "u1"}, name="https://x.io/", attributes={"url": "https://x.io/"}),
        ("timestamp",),
        id="page",
    ),
    pytest.param(
        {"type": "screen", "anonymousId": "a1", "name": "Home", "receivedAt": "2024-13-01"},
        person("screen", {"anonymous_id": "a1"}, name="Home"),
        ("timestamp",),
        id="screen",
    ),
    pytest.param(
        track("Application Installed", userId="u1", timestamp="yesterday", context={"device": {"token": APNS}}),
        person("add_device", {"id": "u1"}, device={"token": APNS, "platform": "ios"}),
        ("device.last_used",),
        id="device-last_used-left-out",
    ),
    pytest.param(
        track("Application Opened", userId="u1", timestamp=1_700_000_000_000, context={"device": {"token": APNS}}),
        person("add_device", {"id": "u1"}, device={"token": APNS, "platform": "ios"}),
        ("device.last_used",),
        id="device-milliseconds-left-out",
    ),
]


@pytest.mark.parametrize(("event", "expected", "dropped"), UNREADABLE)
def test_an_unreadable_time_is_left_out_or_passed_as_given_and_named(
    event: dict[str, Any], expected: dict[str, Any], dropped: tuple[str, ...]
) -> None:
    outcome = transform(event, DEFAULT)
    assert delivered(outcome) == expected
    assert isinstance(outcome, Deliver) and outcome.dropped_timestamps == dropped


def test_readable_times_name_nothing() -> None:
    outcome = transform_raw(ORIGIN_IDENTIFY, DEFAULT)
    assert isinstance(outcome, Deliver) and outcome.dropped_timestamps == ()


# --- skips and rejects ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    [
        {"type": "identify"},
        {"type": "identify", "anonymousId": "a1", "traits": {"name": "x"}},
        {"type": "identify", "userId": "", "traits": {"email": ""}},
        {"type": "identify", "userId": None, "traits": {"email": 5}},
    ],
)
def test_identify_without_user_id_or_email_is_skipped(event: dict[str, Any]) -> None:
    assert transform(event, DEFAULT) == Skip("no userId or email")


LONG = "x" * 151
REJECTS = [
    # not an object, unknown types
    ([1, 2], "payload: not a JSON object"),
    ("identify", "payload: not a JSON object"),
    ({}, "type: unsupported event type"),
    ({"type": "Identify", "userId": "u"}, "type: unsupported event type"),
    ({"type": "batch"}, "type: unsupported event type"),
    ({"type": 3}, "type: unsupported event type"),
    # identifiers
    (track("E"), "userId: required for track (or anonymousId or email)"),
    ({"type": "page", "properties": {"url": "u"}}, "userId: required for page (or anonymousId or email)"),
    ({"type": "screen", "name": "Home"}, "userId: required for screen (or anonymousId or email)"),
    (track("E", userId={"id": 1}), "userId: must be a string or number"),
    (track("E", userId=True), "userId: must be a string or number"),
    (track("E", userId=LONG), "userId: longer than 150 bytes"),
    (track("E", userId="é" * 76), "userId: longer than 150 bytes"),
    ({"type": "identify", "traits": {"email": LONG + "@x.io"}}, "traits.email: longer than 150 bytes"),
    (track("E", anonymousId=LONG), "anonymousId: longer than 150 bytes"),
    # track, page, screen
    (track(""), "event: required for track"),
    ({"type": "track", "userId": "u"}, "event: required for track"),
    (track(5, userId="u"), "event: must be a string"),
    (track("e" * 101, userId="u"), "event: longer than 100 bytes"),
    (track("E", userId="u", messageId=["m"]), "messageId: must be a string"),
    (track("E", userId="u", properties="x"), "properties: must be an object"),
    (track("E", userId="u", properties={LONG: 1}), "properties: attribute name longer than 150 bytes"),
    ({"type": "page", "userId": "u"}, "properties.url: required for page (or context.page.url)"),
    (
        {"type": "page", "userId": "u", "properties": {"url": 5}},
        "properties.url: required for page (or context.page.url)",
    ),
    ({"type": "screen", "userId": "u"}, "name: required for screen"),
    ({"type": "screen", "userId": "u", "name": "n" * 101}, "name: longer than 100 bytes"),
    # identify
    ({"type": "identify", "userId": "u", "traits": ["a"]}, "traits: must be an object"),
    ({"type": "identify", "userId": "u", "traits": {LONG: 1}}, "traits: attribute name longer than 150 bytes"),
    (
        {"type": "identify", "userId": "u", "traits": {"objectId": "o", "objectTypeId": "Companies"}},
        "traits.objectTypeId: must be an integer",
    ),
    (
        {"type": "identify", "userId": "u", "traits": {"objectId": "o", "relationshipAttributes": 1}},
        "traits.relationshipAttributes: must be an object",
    ),
    # group
    ({"type": "group", "userId": "u"}, "groupId: required for group"),
    ({"type": "group", "groupId": LONG}, "groupId: longer than 150 bytes"),
    (
        {"type": "group", "groupId": "g", "traits": {"objectAttributes": "x"}},
        "traits.objectAttributes: must be an object",
    ),
    # alias
    ({"type": "alias", "previousId": "p"}, "userId: required for alias"),
    ({"type": "alias", "userId": "u"}, "previousId: required for alias"),
    ({"type": "alias", "userId": "u", "previousId": LONG}, "previousId: longer than 150 bytes"),
    # devices
    (track("Application Installed", context={"device": {"token": APNS}}), "userId: required for add_device (or email)"),
    (
        track("Application Installed", anonymousId="a", context={"device": {"token": APNS}}),
        "userId: required for add_device (or email)",
    ),
    (
        track("Application Opened", userId="u"),
        "context.device.token: required for add_device (or properties.device_id)",
    ),
    (
        track("Application Uninstalled", userId="u"),
        "context.device.token: required for delete_device (or properties.device_id)",
    ),
    (track("Device Deleted", context={"device": {"token": "t"}}), "userId: required for delete_device (or email)"),
    (
        track("Application Opened", userId="u", context={"device": {"token": 5}}),
        "context.device.token: must be a non-empty string",
    ),
    (
        track("Application Opened", userId="u", context={"device": {"token": "short", "type": "web"}}),
        "context.device.type: required for add_device (ios or android, not inferable from token)",
    ),
    # deletes and objects
    (track("User Deleted"), "userId: required for delete (or email)"),
    (track("User Suppressed", anonymousId="a"), "userId: required for suppress (or email)"),
    (track("User Unsuppressed"), "userId: required for unsuppress (or email)"),
    (track("Object Deleted", userId="u"), "properties.objectId: required for Object Deleted"),
    (track("Relationship Deleted", userId="u"), "properties.objectId: required for Relationship Deleted"),
    (
        track("Relationship Deleted", properties={"objectId": "o"}),
        "userId: required for delete_relationships (or email)",
    ),
    # size
    (track("E", userId="u", properties={"blob": "x" * 32_000}), "operation: larger than 32000 bytes"),
]


@pytest.mark.parametrize(("event", "reason"), REJECTS, ids=[r[1] for r in REJECTS])
def test_unmappable_events_are_rejected_naming_the_field(event: object, reason: str) -> None:
    assert transform(event, DEFAULT) == Reject(reason)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "payload: not valid JSON"),
        (b"", "payload: not valid JSON"),
        (b"\xff\xfe", "payload: not valid JSON"),
        (b"[1]", "payload: not a JSON object"),
        (b"null", "payload: not a JSON object"),
        ('{"type":"nope"}', "type: unsupported event type"),
    ],
)
def test_raw_input_that_is_not_a_json_object_is_rejected(raw: bytes | str, reason: str) -> None:
    assert transform_raw(raw, DEFAULT) == Reject(reason)


def test_an_operation_just_under_the_size_limit_is_delivered() -> None:
    base = len(orjson.dumps(person("event", {"id": "u"}, name="E", attributes={"blob": ""})))
    event = track("E", userId="u", properties={"blob": "x" * (32_000 - base)})
    outcome = transform(event, DEFAULT)
    assert isinstance(outcome, Deliver)
    assert len(outcome.encoded[0]) == 32_000


def test_the_input_event_is_not_modified() -> None:
    event = {
        "type": "identify",
        "userId": "u",
        "anonymousId": "a",
        "traits": {"createdAt": "2024-01-01", "at": "2024-01-01"},
    }
    snapshot = orjson.dumps(event)
    delivered(transform(event, DEFAULT))
    assert orjson.dumps(event) == snapshot
