"""`cio-fleet dlq show` maps a dead letter with today's rules: events dead-lettered for a timestamp now deliver."""

from __future__ import annotations

import pytest
import redis

from tests.integration.test_cli_dlq import cli_env, run_json
from tests.integration.test_deadletter_store import letter, put

__all__ = ["cli_env"]  # the fixture the tests below use

#: Events the old mapping refused for their time, with the reason it gave, and what they map to now.
OLD_REJECTS = [
    pytest.param(
        b'{"type":"track","userId":"u1","event":"E","messageId":"m1","timestamp":"2018-03-04T12:08:56.235 PDT"}',
        "timestamp: not ISO-8601 or unix seconds",
        {
            "outcome": "deliver",
            "operations": [{"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "E", "id": "m1"}],
            "dropped_timestamps": ["timestamp"],
        },
        id="track-timestamp",
    ),
    pytest.param(
        b'{"type":"identify","userId":"u1","traits":{"createdAt":"soon"}}',
        "traits.createdAt: not ISO-8601 or unix seconds",
        {
            "outcome": "deliver",
            "operations": [
                {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": "u1"},
                    "attributes": {"created_at": "soon"},
                }
            ],
            "dropped_timestamps": ["created_at"],
        },
        id="identify-created_at",
    ),
]


@pytest.mark.parametrize(("event", "reason", "maps_to"), OLD_REJECTS)
def test_show_maps_an_event_dead_lettered_for_its_time_with_todays_rules(
    cli_env: dict[str, str], redis_client: redis.Redis, key_prefix: str, event: bytes, reason: str, maps_to: dict
) -> None:
    stream_id = put(redis_client, key_prefix, letter(event=event, reason=reason, status=None))
    data = run_json(cli_env, "dlq", "show", f"acme/{stream_id}")
    assert isinstance(data, dict)
    assert data["reason"] == reason
    assert data["maps_to"] == maps_to
