"""The default actions are today's contract: on any event they give exactly the fixed routing's outcome."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_transform_properties import (
    SETTINGS,
    json_objects,
    json_values,
    likely_valid_events,
    near_valid_events,
    options,
)
from worker.mapping.actions import compile_actions
from worker.mapping.transform import TransformOptions, transform

DEFAULT_ACTIONS = compile_actions(())


def with_default_actions(opts: TransformOptions) -> TransformOptions:
    return dataclasses.replace(opts, actions=DEFAULT_ACTIONS)


@SETTINGS
@given(event=near_valid_events | likely_valid_events | json_objects | json_values, opts=options)
def test_the_default_actions_give_exactly_the_fixed_routings_outcome(event: Any, opts: TransformOptions) -> None:
    assert opts.actions is None
    assert transform(event, with_default_actions(opts)) == transform(event, opts)


@SETTINGS
@given(event=likely_valid_events, opts=options, noise=st.dictionaries(st.sampled_from(["x", "y"]), json_values))
def test_default_actions_are_byte_for_byte_the_same_on_likely_valid_events(
    event: dict[str, Any], opts: TransformOptions, noise: dict[str, Any]
) -> None:
    mixed = {**noise, **event}
    ours, today = transform(mixed, with_default_actions(opts)), transform(mixed, opts)
    assert getattr(ours, "encoded", None) == getattr(today, "encoded", None)
    assert ours == today


def test_each_event_type_matches_exactly_one_default_action() -> None:
    names = ["Application Installed", "Device Deleted", "User Deleted", "Object Deleted", "Order Completed", 7, None]
    events: list[dict[str, Any]] = [{"type": kind} for kind in ("identify", "page", "screen", "group", "alias")]
    events += [{"type": "track", "event": name} for name in names]
    for event in events:
        assert sum(action.matches(event) for action in DEFAULT_ACTIONS.enabled) == 1, event


#: Triggers of every shape the index treats differently: exact, excluding, untyped, mixed, non-indexed fields.
ODD_TRIGGERS = [
    'event != "A"',
    'type = "track" and event = "A"',
    '(event = "A" or event = "5") and properties.x exists',
    'type = "page" or event = "A"',
    'userId = "u1"',
    'type != "track"',
    'event = "true" or event = "B"',
    'type = "track" and event != "B" and event != "Order Completed"',
    'event = "A" and event != "B"',
    '(type = "identify" or type = "group") and (traits.plan = "pro" or userId exists)',
]
ODD_ACTIONS = compile_actions(
    [
        {"action": "Track Event", "name": f"T{n}", "trigger": trigger, "fields": {"event_name": f"n{n}"}}
        for n, trigger in enumerate(ODD_TRIGGERS)
    ]
    + [{"action": "Track Page View", "enabled": False}, {"action": "Delete Person", "trigger": 'event contains "A"'}]
)
odd_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["identify", "track", "page", "screen", "group", "alias"])},
    optional={
        "event": st.sampled_from(["A", "B", "5", "true", "Order Completed", "User Deleted", "C"])
        | st.sampled_from([5, True, None, 5.0, ["A"], {"A": 1}]),
        "userId": st.sampled_from(["u1", "u2", 7]),
        "properties": st.fixed_dictionaries({}, optional={"x": st.sampled_from([1, None]), "url": st.just("u")}),
        "traits": st.fixed_dictionaries({}, optional={"plan": st.sampled_from(["pro", "free"])}),
        "name": st.just("Home"),
        "groupId": st.just("g"),
        "previousId": st.just("p"),
    },
)


@SETTINGS
@given(event=odd_events | near_valid_events, opts=options)
def test_the_trigger_index_never_changes_which_actions_take_an_event(
    event: dict[str, Any], opts: TransformOptions
) -> None:
    for actions in (ODD_ACTIONS, DEFAULT_ACTIONS):
        unindexed = dataclasses.replace(actions, by_name={})
        indexed_outcome = transform(event, dataclasses.replace(opts, actions=actions))
        assert indexed_outcome == transform(event, dataclasses.replace(opts, actions=unindexed))
