"""Per-workspace actions end to end: real workers deliver each workspace what its own actions say."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from producers.keys import dlq_key
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from worker.mapping.actions import CATALOGUE

pytestmark = pytest.mark.e2e

APNS = "b" * 64
#: wsa's actions: a custom device event (kept out of Track Event), the user id from a trait, page views off and
#: an attributes mapping that keeps the PII trait ``ssn`` out of Customer.io.
ACTIONS = [
    {"action": "Create or Update Device", "name": "Push token", "trigger": 'event = "Push Token Registered"'},
    {"action": "Track Event", "trigger": CATALOGUE[1].trigger + ' and event != "Push Token Registered"'},
    {"action": "Track Page View", "enabled": False},
    {
        "action": "Create or Update Person",
        "fields": {"user_id": "$.traits.customer_id", "attributes": {"plan": "$.traits.plan"}},
    },
]
EVENTS: list[dict[str, Any]] = [
    {"type": "identify", "userId": "app-1", "traits": {"customer_id": "C-1", "plan": "pro", "ssn": "123-45-6789"}},
    {"type": "page", "userId": "app-1", "properties": {"url": "https://x.io/pricing"}},
    {"type": "track", "userId": "app-1", "event": "Push Token Registered", "context": {"device": {"token": APNS}}},
    {"type": "track", "userId": "app-1", "event": "Order Completed", "properties": {"total": 3}},
]


def summary(accepted: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    ops = [record["operation"] for record in accepted]
    return sorted((op["action"], orjson.dumps(op["identifiers"]).decode(), op.get("name")) for op in ops)


def test_a_workspace_with_custom_actions_and_one_with_defaults_side_by_side(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given two workspaces on one worker: wsa with custom actions (from the environment), wsb with the defaults
    fleet = make_fleet(
        standin_workspaces(stand_in.url, "ab"), CIO_WORKSPACES__WSA__ACTIONS=orjson.dumps(ACTIONS).decode()
    )
    fleet.start(1)
    # When both receive the same four events
    for workspace in ("wsa", "wsb"):
        with fleet.producer(workspace) as producer:
            assert producer.enqueue_many(EVENTS).enqueued == 4
    wait_until_drained(redis_client, key_prefix, "wsa", timeout_s=30)
    wait_until_drained(redis_client, key_prefix, "wsb", timeout_s=30)
    wait_for(lambda: len(stand_in.accepted("site-b")) >= 4, 30, "wsb's four operations")
    # Then wsa got what its actions say: the customer id, no ssn, no page, the push token as a device only
    custom = stand_in.accepted("site-a")
    assert summary(custom) == [
        ("add_device", '{"id":"app-1"}', None),
        ("event", '{"id":"app-1"}', "Order Completed"),
        ("identify", '{"id":"C-1"}', None),
    ]
    (identify,) = [r["operation"] for r in custom if r["operation"]["action"] == "identify"]
    assert identify["attributes"] == {"plan": "pro"}
    # And the skipped page view was not dead-lettered
    assert redis_client.xlen(dlq_key(key_prefix, "wsa")) == 0
    # And wsb got today's mapping
    assert summary(stand_in.accepted("site-b")) == [
        ("event", '{"id":"app-1"}', "Order Completed"),
        ("event", '{"id":"app-1"}', "Push Token Registered"),
        ("identify", '{"id":"app-1"}', None),
        ("page", '{"id":"app-1"}', "https://x.io/pricing"),
    ]
    (default_identify,) = [
        r["operation"] for r in stand_in.accepted("site-b") if r["operation"]["action"] == "identify"
    ]
    assert default_identify["attributes"]["ssn"] == "123-45-6789"
