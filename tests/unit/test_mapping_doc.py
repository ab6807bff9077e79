"""docs/mapping.md stays in step with the code: every row of its routing table is what the transform does."""

from __future__ import annotations

import re

import pytest

from tests.unit.test_compose import REPO
from worker.mapping.transform import Deliver, Reject, TransformOptions, transform

DOC = (REPO / "docs" / "mapping.md").read_text(encoding="utf-8")
ROUTING = DOC.split("## Routing", 1)[1].split("\n## ", 1)[0]
ROWS = re.findall(r"^\| (.+?) \| (.+?) \|$", ROUTING, flags=re.MULTILINE)[2:]

#: An event with everything any operation needs: a person, a device token, an object id, a URL and a name.
BASE = {
    "userId": "97980cfea0067",
    "groupId": "example-company",
    "previousId": "old-id",
    "name": "Home",
    "messageId": "m-1",
    "timestamp": "2024-01-02T03:04:05Z",
    "properties": {"url": "https://example.com/", "objectId": "42", "device_id": "fcm:APA91bXYZ"},
    "context": {"device": {"token": "fcm:APA91bXYZ", "type": "android"}},
}


def routed(event_type: str, event_name: str | None = None) -> tuple[str, str]:
    """(type, action) of the first operation an event of this type (and track name) becomes."""
    event = {**BASE, "type": event_type}
    if event_name is not None:
        event["event"] = event_name
    outcome = transform(event, TransformOptions())
    assert isinstance(outcome, Deliver), outcome
    return outcome.operations[0]["type"], outcome.operations[0]["action"]


def cases() -> list[tuple[str, str | None, str, str]]:
    """(event type, track name or None, expected type, expected action) for every row naming events exactly."""
    found = []
    for event_cell, operation_cell in ROWS:
        operation = re.match(r"(person|object) `(\w+)`", operation_cell)
        if operation is None:  # the reject row, checked on its own below
            continue
        expected_type, action = operation.groups()
        names = re.findall(r"`([^`]+)`", event_cell)
        if event_cell.startswith("track "):
            actions = re.findall(r"`(\w+)`", operation_cell.split(" ", 1)[1])
            found += [("track", name, expected_type, actions[min(i, len(actions) - 1)]) for i, name in enumerate(names)]
        elif event_cell == "any other track":
            found.append(("track", "Signed Up", expected_type, action))
        elif names:
            found.append((names[0], None, expected_type, action))
    return found


def test_the_routing_table_is_parsed() -> None:
    assert len(cases()) >= 15


@pytest.mark.parametrize(("event_type", "event_name", "expected_type", "action"), cases())
def test_every_routing_row_is_what_the_transform_does(
    event_type: str, event_name: str | None, expected_type: str, action: str
) -> None:
    assert routed(event_type, event_name) == (expected_type, action)


def test_any_other_type_is_rejected_as_the_table_says() -> None:
    assert any("unsupported event type" in operation for _, operation in ROWS)
    outcome = transform({**BASE, "type": "bogus"}, TransformOptions())
    assert isinstance(outcome, Reject) and "unsupported event type" in outcome.reason
