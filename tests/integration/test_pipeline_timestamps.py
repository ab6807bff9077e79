"""A time that cannot be read never costs an event: the drain delivers it and counts it (real Redis, stand-in)."""

from __future__ import annotations

import logging

from producers.keys import lease_key
from tests.integration.test_pipeline import close_http_clients, dead_letters, make_deps, put, stand_in, stream_len
from worker.ops.metrics import FleetMetrics
from worker.pipeline.drain import drain

__all__ = ["close_http_clients", "stand_in"]  # fixtures used by the tests below

APNS = "a" * 64


def sample(metrics: FleetMetrics, field: str) -> float | None:
    return metrics.registry.get_sample_value("cio_fleet_timestamps_dropped_total", {"workspace": "ws", "field": field})


def test_events_with_unreadable_times_are_delivered_and_counted_by_field(redis_client, key_prefix, stand_in, caplog):
    # Given events whose times cannot be read, and one whose time can
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    deps.metrics = FleetMetrics()
    put(
        redis_client,
        key_prefix,
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m1", "timestamp": "yesterday"},
        {
            "type": "page",
            "userId": "u1",
            "messageId": "m2",
            "timestamp": "2018-03-04T12:08:56.235 PDT",
            "properties": {"url": "https://x.io/"},
        },
        {"type": "identify", "userId": "u1", "traits": {"createdAt": "soon"}, "timestamp": "2024-01-01"},
        {
            "type": "track",
            "userId": "u1",
            "event": "Application Opened",
            "timestamp": "never",
            "context": {"device": {"token": APNS}},
        },
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m5", "timestamp": "2024-01-01"},
    )
    # When the partition is drained
    with caplog.at_level(logging.DEBUG, logger="cio_fleet.pipeline"):
        drain(deps, "ws", 0)
    # Then every event is delivered, none dead-lettered, and each unreadable time is counted by its field
    operations = [record["operation"] for record in stand_in.accepted()]
    assert [op["action"] for op in operations] == ["event", "page", "identify", "add_device", "event"]
    assert ["timestamp" in op for op in operations] == [False, False, True, False, True]
    assert operations[2]["attributes"]["created_at"] == "soon"
    assert "last_used" not in operations[3]["device"]
    assert dead_letters(redis_client, key_prefix) == []
    assert stream_len(redis_client, key_prefix) == 0
    assert (sample(deps.metrics, "timestamp"), sample(deps.metrics, "created_at")) == (2.0, 1.0)
    assert sample(deps.metrics, "device.last_used") == 1.0
    logged = [r for r in caplog.records if r.levelno == logging.DEBUG and getattr(r, "fields", None)]
    assert sorted(field for record in logged for field in record.fields) == [
        "created_at",
        "device.last_used",
        "timestamp",
        "timestamp",
    ]


def test_a_retried_or_refused_event_is_counted_once(redis_client, key_prefix, stand_in):
    # Given two events with unreadable times, and Customer.io answering 503
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    deps.metrics = FleetMetrics()
    stand_in.set_faults([{"force_status": 503}])
    put(
        redis_client,
        key_prefix,
        {"type": "track", "userId": "u1", "event": "E", "messageId": "m1", "timestamp": "yesterday"},
        {
            "type": "track",
            "userId": "u1",
            "event": "E",
            "messageId": "m2",
            "timestamp": "never",
            "properties": {"t": "x-bad"},
        },
    )
    # When the batch fails once, then Customer.io accepts one event and refuses the other
    assert drain(deps, "ws", 0).action == "later"
    assert sample(deps.metrics, "timestamp") is None
    stand_in.set_faults([{"reject_items_matching": "x-bad"}])
    redis_client.delete(lease_key(key_prefix, "ws", 0))
    assert drain(deps, "ws", 0).action == "done"
    # Then each event is counted once, whether delivered or dead-lettered
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m1"]
    assert [letter.message_id for letter in dead_letters(redis_client, key_prefix)] == ["m2"]
    assert sample(deps.metrics, "timestamp") == 2.0
