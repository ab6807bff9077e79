"""Mapping fidelity end to end: events dead-lettered for a timestamp under the old rule are delivered on replay,
and every time that could not be read is counted in a real scrape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers.keys import dlq_key
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from worker.deadletter.api import DeadLetter
from worker.local.demo import free_port

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "cio-fleet")
#: The reasons the old mapping gave when it refused an event for its time.
OLD_REASONS = {
    "timestamp": "timestamp: not ISO-8601 or unix seconds",
    "created_at": "traits.createdAt: not ISO-8601 or unix seconds",
}
APNS = "a" * 64

#: (event, the old reject reason, the field now counted): one per event type the old rule cost.
OLD_REJECTS: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "identify", "userId": "u1", "traits": {"createdAt": "soon"}}, "created_at", "created_at"),
    ({"type": "identify", "userId": "u2", "timestamp": "2018-03-04T12:08:56.235 PDT"}, "timestamp", "timestamp"),
    (
        {"type": "track", "userId": "u3", "event": "E", "messageId": "t-3", "timestamp": "yesterday"},
        "timestamp",
        "timestamp",
    ),
    (
        {
            "type": "page",
            "userId": "u4",
            "messageId": "p-4",
            "timestamp": "yesterday",
            "properties": {"url": "https://x.io/"},
        },
        "timestamp",
        "timestamp",
    ),
    (
        {"type": "screen", "userId": "u5", "messageId": "s-5", "name": "Home", "timestamp": "never"},
        "timestamp",
        "timestamp",
    ),
    (
        {
            "type": "track",
            "userId": "u6",
            "event": "Application Opened",
            "timestamp": "never",
            "context": {"device": {"token": APNS}},
        },
        "timestamp",
        "device.last_used",
    ),
]


def dead_letter(n: int, event: dict[str, Any], reason: str) -> DeadLetter:
    """A dead letter as the old worker wrote it: rejected by the mapping, never sent."""
    return DeadLetter(
        workspace="wsa",
        partition=0,
        event=orjson.dumps(event),
        outcome="rejected",
        reason=reason,
        attempts=1,
        first_failed_at_ms=1_700_000_000_000 + n,
        last_failed_at_ms=1_700_000_000_000 + n,
        host="old-worker",
        message_id=event.get("messageId"),
        event_type=event["type"],
        event_name=event.get("event"),
    )


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def dropped(samples: dict, field: str) -> float | None:
    """The counter's value for one field, or None when the series is not exposed."""
    return samples.get(("cio_fleet_timestamps_dropped_total", frozenset({("workspace", "wsa"), ("field", field)})))


def test_events_dead_lettered_for_a_timestamp_are_delivered_by_replay_and_counted(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given events the old rule dead-lettered for their time, written straight into the dead-letter queue,
    # and one dead letter for another reason
    for n, (event, old, _) in enumerate(OLD_REJECTS):
        redis_client.xadd(dlq_key(key_prefix, "wsa"), dead_letter(n, event, OLD_REASONS[old]).to_fields())
    other = dead_letter(99, {"type": "track", "userId": "u9", "event": "E"}, "HTTP 400: attribute too long")
    redis_client.xadd(dlq_key(key_prefix, "wsa"), other.to_fields())
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_METRICS_PORT=str(port))
    fleet.start(1)
    wait_for(lambda: dropped(scrape(port), "timestamp") == 0.0, 30, "the metric's zero series in a real scrape")
    # When on-call replays them by reason, with the current worker
    env = {**fleet.worker_env(), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [CLI, "dlq", "replay", "--workspace", "wsa", "--reason", "not ISO-8601"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Then every one of them is delivered, the other dead letter stays, and each unreadable time is counted
    wait_for(lambda: len(stand_in.accepted("site-a")) >= len(OLD_REJECTS), 30, "the replayed events delivered")
    wait_until_drained(redis_client, key_prefix, "wsa")
    operations = [record["operation"] for record in stand_in.accepted("site-a")]
    assert sorted(op["action"] for op in operations) == [
        "add_device",
        "event",
        "identify",
        "identify",
        "page",
        "screen",
    ]
    assert not any("timestamp" in op for op in operations)
    assert not any("last_used" in op.get("device", {}) for op in operations)
    left = [DeadLetter.from_fields(fields) for _, fields in redis_client.xrange(dlq_key(key_prefix, "wsa"))]
    assert [letter.reason for letter in left] == [other.reason]
    expected = {field: sum(1 for _, _, counted in OLD_REJECTS if counted == field) for _, _, field in OLD_REJECTS}
    wait_for(
        lambda: all(dropped(scrape(port), field) == count for field, count in expected.items()),
        30,
        f"cio_fleet_timestamps_dropped_total to reach {expected}",
    )
