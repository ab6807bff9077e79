"""Per-workspace actions: field mappings, configuration, and the issue's worked examples, one table row each.

Every delivered operation is checked against Customer.io's official schema (tests/schema.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.schema import validate_operation
from worker.mapping.actions import CATALOGUE, NO_ACTION, ActionConfigError, compile_actions, compile_mapping
from worker.mapping.transform import Deliver, Outcome, Reject, Skip, TransformOptions, transform
from worker.settings import ConfigError, WorkspaceConfig, load_settings, read_workspaces_file

APNS = "a" * 64
TS = "2022-11-24T22:48:17.593Z"
TS_S = 1669330097


def options(*entries: dict[str, Any], convert_timestamps: bool = True) -> TransformOptions:
    return TransformOptions(convert_timestamps=convert_timestamps, actions=compile_actions(entries))


def operations(outcome: Outcome) -> list[dict[str, Any]]:
    """The operations of a Deliver outcome, each checked against the official schema."""
    assert isinstance(outcome, Deliver), outcome
    for operation in outcome.operations:
        validate_operation(operation)
    return list(outcome.operations)


def only(outcome: Outcome) -> dict[str, Any]:
    delivered = operations(outcome)
    assert len(delivered) == 1, delivered
    return delivered[0]


PUSH_TOKEN = {"action": "Create or Update Device", "name": "Push token", "trigger": 'event = "Push Token Registered"'}
TRACK_EVENT_WITHOUT_PUSH = {
    "action": "Track Event",
    "trigger": CATALOGUE[1].trigger + ' and event != "Push Token Registered"',
}
CUSTOMER_ID = {"action": "Create or Update Person", "fields": {"user_id": "$.traits.customer_id"}}
PAGES_OFF = {"action": "Track Page View", "enabled": False}
NO_SSN = {
    "action": "Create or Update Person",
    "fields": {"attributes": {"email": "$.traits.email", "plan": "$.traits.plan", "created_at": "$.traits.created_at"}},
}
REGISTERED = {
    "type": "track",
    "event": "Push Token Registered",
    "userId": "u1",
    "messageId": "m1",
    "timestamp": TS,
    "properties": {"model": "iPhone"},
    "context": {"device": {"token": APNS, "type": "ios"}},
}
IDENTIFY = {
    "type": "identify",
    "userId": "anon-of-app",
    "traits": {"customer_id": "C-77", "email": "a@x.io", "plan": "pro", "ssn": "123-45-6789", "created_at": TS},
}


# --- the examples --------------------------------------------------------------------------------------


def test_a_custom_device_event_adds_the_device_and_is_still_a_track_event_by_default() -> None:
    delivered = operations(transform(REGISTERED, options(PUSH_TOKEN)))
    assert [op["action"] for op in delivered] == ["event", "add_device"]  # catalogue order
    assert delivered[1]["device"] == {
        "token": APNS,
        "platform": "ios",
        "last_used": TS_S,
        "attributes": {"model": "iPhone"},
    }


def test_a_custom_device_event_kept_out_of_track_event_becomes_only_the_device() -> None:
    operation = only(transform(REGISTERED, options(PUSH_TOKEN, TRACK_EVENT_WITHOUT_PUSH)))
    assert operation["action"] == "add_device"
    assert operation["identifiers"] == {"id": "u1"}


def test_two_device_triggers_both_add_devices() -> None:
    opts = options(PUSH_TOKEN, TRACK_EVENT_WITHOUT_PUSH)
    installed = {**REGISTERED, "event": "Application Installed"}
    assert only(transform(installed, opts))["action"] == "add_device"
    assert only(transform(REGISTERED, opts))["action"] == "add_device"


def test_a_user_id_from_a_trait() -> None:
    operation = only(transform(IDENTIFY, options(CUSTOMER_ID)))
    assert operation["identifiers"] == {"id": "C-77"}
    assert operation["attributes"]["customer_id"] == "C-77"  # the attributes rule is unchanged


def test_a_user_id_from_a_missing_trait_behaves_as_a_missing_user_id() -> None:
    event = {**IDENTIFY, "traits": {"plan": "pro"}}
    assert transform(event, options(CUSTOMER_ID)) == Skip("no userId or email")
    with_email = {**IDENTIFY, "traits": {"email": "a@x.io"}}
    assert only(transform(with_email, options(CUSTOMER_ID)))["identifiers"] == {"email": "a@x.io"}


def test_page_views_switched_off_are_skipped_with_no_action_subscribed() -> None:
    page = {"type": "page", "userId": "u1", "properties": {"url": "https://x.io/"}}
    assert transform(page, options(PAGES_OFF)) == Skip(NO_ACTION)
    assert only(transform({"type": "screen", "userId": "u1", "name": "Home"}, options(PAGES_OFF)))["action"] == "screen"


def test_a_pii_attribute_is_kept_out_by_an_attributes_mapping_without_it() -> None:
    operation = only(transform(IDENTIFY, options(NO_SSN)))
    assert operation["attributes"] == {"email": "a@x.io", "plan": "pro", "created_at": TS_S}
    assert operation["identifiers"] == {"id": "anon-of-app"}


# --- field mappings --------------------------------------------------------------------------------------------

TRACK = {"type": "track", "event": "Order", "userId": "u1", "messageId": "m1", "properties": {"total": 3, "at": TS}}
GROUP = {
    "type": "group",
    "groupId": "g1",
    "userId": "u1",
    "traits": {"name": "Co", "relationshipAttributes": {"role": "admin"}},
}


@pytest.mark.parametrize(
    ("entry", "event", "expected"),
    [
        ({"action": "Track Event", "fields": {"attributes": None}}, TRACK, {"name": "Order", "id": "m1"}),
        (
            {"action": "Track Event", "fields": {"event_id": None}},
            TRACK,
            {"name": "Order", "attributes": {"total": 3, "at": TS_S}},
        ),
        (
            {"action": "Track Event", "fields": {"event_name": "Bought"}},
            TRACK,
            {"name": "Bought", "id": "m1", "attributes": {"total": 3, "at": TS_S}},
        ),
        (
            {
                "action": "Track Event",
                "fields": {"attributes": {"sum": "$.properties.total", "src": "web", "no": "$.x"}},
            },
            TRACK,
            {"name": "Order", "id": "m1", "attributes": {"sum": 3, "src": "web"}},
        ),
        (
            {"action": "Track Event", "convert_timestamps": False},
            TRACK,
            {"name": "Order", "id": "m1", "attributes": {"total": 3, "at": TS}},
        ),
    ],
)
def test_track_event_field_mappings(entry: dict[str, Any], event: dict[str, Any], expected: dict[str, Any]) -> None:
    operation = only(transform(event, options(entry)))
    assert {key: operation.get(key) for key in ("name", "id", "attributes") if key in operation} == expected


def test_unmapped_relationship_attributes_are_left_out() -> None:
    entry = {"action": "Create or Update Object", "fields": {"relationship_attributes": None}}
    operation = only(transform(GROUP, options(entry)))
    assert operation["cio_relationships"] == [{"identifiers": {"id": "u1"}}]
    assert "relationship_attributes" in only(transform(GROUP, options()))["cio_relationships"][0]


def test_a_literal_object_type() -> None:
    entry = {"action": "Create or Update Object", "fields": {"object_type_id": "4"}}
    assert only(transform(GROUP, options(entry)))["identifiers"] == {"object_type_id": "4", "object_id": "g1"}


def test_a_missing_path_rejects_as_the_missing_field_does_today() -> None:
    entry = {"action": "Track Event", "fields": {"user_id": "$.properties.customer"}}
    anonymous = {key: value for key, value in TRACK.items() if key != "userId"}
    assert transform(TRACK, options(entry)) == transform(anonymous, TransformOptions())
    assert transform(TRACK, options(entry)) == Reject("userId: required for track (or anonymousId or email)")


def test_a_mapped_value_of_the_wrong_type_rejects_naming_the_field() -> None:
    entry = {"action": "Track Event", "fields": {"attributes": "$.properties.total"}}
    assert transform(TRACK, options(entry)) == Reject("attributes: must be an object")


def test_device_attributes_mapping_is_sent_as_text() -> None:
    entry = {"action": "Create or Update Device", "fields": {"attributes": {"paid": "$.properties.paid"}}}
    event = {**REGISTERED, "event": "Application Installed", "properties": {"paid": True, "model": "x"}}
    assert only(transform(event, options(entry)))["device"]["attributes"] == {"paid": "true"}


def test_an_event_matching_several_actions_yields_each_in_catalogue_order() -> None:
    audit = {"action": "Track Event", "name": "Audit", "trigger": 'type = "identify"', "fields": {"event_name": "Seen"}}
    delivered = operations(transform(IDENTIFY, options(audit)))
    assert [(op["action"], op.get("name")) for op in delivered] == [("identify", None), ("event", "Seen")]


def test_a_reject_by_one_matching_action_rejects_the_event() -> None:
    audit = {"action": "Track Event", "name": "Audit", "trigger": 'type = "identify"'}
    assert transform(IDENTIFY, options(audit)) == Reject("event: required for track")


def test_an_unsupported_type_is_still_rejected_not_skipped() -> None:
    assert transform({"type": "bogus"}, options(PAGES_OFF)) == Reject("type: unsupported event type")


# --- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"action": "Nope"}], "action #1 'Nope', field 'action': unknown action"),
        (
            [{"action": "Track Event", "fields": {"colour": "$.x"}}],
            "action 'Track Event', field 'colour': unknown field",
        ),
        ([{"action": "Track Event", "trigger": 'type = "track'}], "action 'Track Event', field 'trigger': position 8"),
        (
            [{"action": "Track Event", "fields": {"user_id": "$."}}],
            "action 'Track Event', field 'user_id': '$.' is not",
        ),
        ([{"action": "Track Event"}, {"action": "Track Event"}], "action 'Track Event' ('Track Event'), field 'name'"),
        (
            [{"action": "Track Event", "name": "X"}, {"action": "Delete Device", "name": "X"}],
            "action 'Delete Device' ('X'), field 'name': used twice",
        ),
        ([{"action": "Delete Device", "name": "Track Event"}], "action 'Delete Device' ('Track Event'), field 'name'"),
        (
            [{"action": "Delete Device", "name": "B", "trigger": "x"}],
            "action 'Delete Device' ('B'), field 'trigger': position 1",
        ),
    ],
)
def test_bad_configuration_names_the_action_and_the_field(entries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ActionConfigError) as caught:
        compile_actions(entries)
    assert str(caught.value).startswith(message)


def test_mapping_forms() -> None:
    event = {"traits": {"a": {"b": 1}}}
    assert compile_mapping(None) is None
    assert compile_mapping("$.traits.a.b")(event) == 1  # type: ignore[misc]
    assert compile_mapping("literal")(event) == "literal"  # type: ignore[misc]
    assert compile_mapping({"x": "$.traits.a", "y": 2})(event) == {"x": {"b": 1}, "y": 2}  # type: ignore[misc]


WORKSPACES = """
[workspaces.acme]
site_id = "s"
api_key = "k"

[[workspaces.acme.actions]]
action = "Create or Update Device"
name = "Push token"
trigger = 'event = "Push Token Registered"'

[[workspaces.acme.actions]]
action = "Track Page View"
enabled = false

[[workspaces.acme.actions]]
action = "Track Event"
unmapped = ["attributes"]
fields = { user_id = "$.properties.customer" }

[workspaces.plain]
site_id = "s"
api_key = "k"
"""


def test_the_workspaces_file_configures_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "workspaces.toml"
    path.write_text(WORKSPACES)
    monkeypatch.setenv("CIO_WORKSPACES_FILE", str(path))
    settings = load_settings()
    acme = TransformOptions.for_workspace(settings.workspace("acme"))
    assert acme.actions is not None
    assert [action.name for action in acme.actions.enabled if action.spec.name == "Create or Update Device"] == [
        "Create or Update Device",
        "Push token",
    ]
    assert transform({"type": "page", "userId": "u", "properties": {"url": "u"}}, acme) == Skip(NO_ACTION)
    track = {"type": "track", "event": "E", "userId": "u", "properties": {"customer": "c", "x": 1}}
    expected = {"type": "person", "action": "event", "identifiers": {"id": "c"}, "name": "E"}
    assert only(transform(track, acme)) == expected
    assert TransformOptions.for_workspace(settings.workspace("plain")).actions is None


def test_the_environment_configures_actions_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIO_WORKSPACES_FILE", raising=False)
    monkeypatch.setenv("CIO_WORKSPACES__ENVY__SITE_ID", "s")
    monkeypatch.setenv("CIO_WORKSPACES__ENVY__API_KEY", "k")
    monkeypatch.setenv("CIO_WORKSPACES__ENVY__ACTIONS", '[{"action": "Track Page View", "enabled": false}]')
    envy = TransformOptions.for_workspace(load_settings().workspace("envy"))
    assert transform({"type": "page", "userId": "u", "properties": {"url": "u"}}, envy) == Skip(NO_ACTION)


def test_a_bad_action_is_one_config_error_naming_workspace_action_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIO_WORKSPACES_FILE", raising=False)
    monkeypatch.setenv("CIO_WORKSPACES__ACME__SITE_ID", "s")
    monkeypatch.setenv("CIO_WORKSPACES__ACME__API_KEY", "secret-key")
    monkeypatch.setenv("CIO_WORKSPACES__ACME__ACTIONS", '[{"action": "Track Event", "trigger": "type ="}]')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "workspace 'acme'" in message
    assert "action 'Track Event', field 'trigger': position 7: expected a string in double quotes" in message
    assert "secret-key" not in message


def test_no_actions_configured_keeps_the_fixed_routing() -> None:
    workspace = WorkspaceConfig(site_id="s", api_key="k")  # type: ignore[arg-type]
    assert TransformOptions.for_workspace(workspace).actions is None


def readme_actions_example(tmp_path: Path) -> TransformOptions:
    """The README's worked examples, loaded as a workspaces file."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:]]
    (example,) = [block for block in blocks if "[[workspaces.acme.actions]]" in block and "site_id" not in block]
    path = tmp_path / "workspaces.toml"
    path.write_text('[workspaces.acme]\nsite_id = "s"\napi_key = "k"\n' + example, encoding="utf-8")
    return TransformOptions.for_workspace(load_settings(workspaces=read_workspaces_file(path)).workspace("acme"))


def test_the_readmes_worked_examples_do_what_it_says(tmp_path: Path) -> None:
    acme = readme_actions_example(tmp_path)
    device = only(transform(REGISTERED, acme))
    assert (device["action"], device["device"]["token"]) == ("add_device", APNS)
    assert only(transform({**REGISTERED, "event": "Application Installed"}, acme))["action"] == "add_device"
    assert only(transform({**REGISTERED, "event": "Order"}, acme))["action"] == "event"
    identify = only(transform(IDENTIFY, acme))
    assert identify["identifiers"] == {"id": "C-77"}
    assert identify["attributes"] == {"email": "a@x.io", "plan": "pro", "created_at": TS_S}
    assert transform({"type": "page", "userId": "u1", "properties": {"url": "https://x.io/"}}, acme) == Skip(NO_ACTION)
    assert acme.actions is not None
    (track_event,) = [view for view in acme.actions.described if view.action == "Track Event"]
    assert track_event.trigger == TRACK_EVENT_WITHOUT_PUSH["trigger"]


def test_a_workspaces_actions_are_compiled_once_and_reused() -> None:
    workspace = WorkspaceConfig(site_id="s", api_key="k", actions=[PAGES_OFF])  # type: ignore[arg-type]
    first, again = TransformOptions.for_workspace(workspace), TransformOptions.for_workspace(workspace)
    assert first.actions is not None
    assert first.actions is again.actions


def test_mappings_read_the_event_as_it_came_not_each_others_results() -> None:
    swap = {"action": "Merge People", "fields": {"primary": "$.previousId", "secondary": "$.userId"}}
    operation = only(transform({"type": "alias", "userId": "new", "previousId": "old"}, options(swap)))
    assert (operation["primary"], operation["secondary"]) == ({"id": "old"}, {"id": "new"})
