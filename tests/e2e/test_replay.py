"""On-call end to end: dead letters replayed with the real CLI into real workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from producers.keys import dlq_key
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from worker.deadletter.api import DeadLetter

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "cio-fleet")


def letters(client, prefix: str) -> list[DeadLetter]:
    return [DeadLetter.from_fields(fields) for _, fields in client.xrange(dlq_key(prefix, "wsa"))]


def replay(fleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**fleet.worker_env(), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(
        [CLI, "dlq", "replay", "--workspace", "wsa", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.single_and_cluster
def test_replay_returns_still_failing_events_once_and_delivers_them_after_the_fix(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given ten events Customer.io refuses item by item, and ten it accepts
    stand_in.set_faults([{"site_id": "site-a", "reject_items_matching": "poison-x"}])
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    fleet.start(1)
    poison = {"type": "track", "event": "E", "properties": {"t": "poison-x"}}
    bad = [dict(poison, userId=f"b{n}", messageId=f"bad-{n}") for n in range(10)]
    good = [{"type": "track", "userId": f"g{n}", "event": "E", "messageId": f"good-{n}"} for n in range(10)]
    with fleet.producer("wsa") as producer:
        producer.enqueue_many(bad + good)
    wait_for(lambda: len(letters(redis_client, key_prefix)) >= 10, 30, "ten dead letters")
    assert {letter.attempts for letter in letters(redis_client, key_prefix)} == {1}
    # When on-call replays them before the cause is fixed
    result = replay(fleet)
    assert result.returncode == 0, result.stderr
    # Then they come back once, with their attempts counted, and the replay does not loop
    wait_for(lambda: len(letters(redis_client, key_prefix)) == 10, 30, "the ten to fail again")
    assert {x.attempts for x in letters(redis_client, key_prefix)} == {2}
    time.sleep(1.0)  # a replay that looped would move them again by now
    assert {x.attempts for x in letters(redis_client, key_prefix)} == {2}
    assert sorted(str(x.message_id) for x in letters(redis_client, key_prefix)) == sorted(f"bad-{n}" for n in range(10))
    # When the cause is fixed and they are replayed again
    stand_in.set_faults([])
    assert replay(fleet).returncode == 0
    # Then they are delivered with their original ids and the dead-letter queue is empty
    wait_for(lambda: len(stand_in.accepted("site-a")) >= 20, 30, "all twenty delivered")
    delivered = sorted(record["operation"]["id"] for record in stand_in.accepted("site-a"))
    assert delivered == sorted([f"bad-{n}" for n in range(10)] + [f"good-{n}" for n in range(10)])
    assert letters(redis_client, key_prefix) == []
    wait_until_drained(redis_client, key_prefix, "wsa")
