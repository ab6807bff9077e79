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
from worker.actions import compile_actions
from worker.transform import TransformOptions, transform

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
