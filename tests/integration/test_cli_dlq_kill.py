"""A replay killed midway (SIGKILL) leaves every entry in exactly one place, and a second run finishes it."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from producers.keys import dlq_key, stream_key
from tests.integration.test_cli_dlq import CLI, PARTITIONS, cli_environment, run
from tests.integration.test_deadletter_store import letter, put
from worker.store.replies import stream_rows

ENTRIES = 30


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return cli_environment(tmp_path, redis_url, key_prefix)


def places(client: redis.Redis, prefix: str) -> Counter[bytes]:
    """How many times each event is found in the dead-letter stream and the partition streams together."""
    keys = [dlq_key(prefix, "acme")] + [stream_key(prefix, "acme", n) for n in range(PARTITIONS)]
    return Counter(fields[b"event"] for key in keys for _, fields in stream_rows(client.xrange(key)))


def moved(client: redis.Redis, prefix: str) -> int:
    return sum(client.xlen(stream_key(prefix, "acme", n)) for n in range(PARTITIONS))


def test_a_killed_replay_loses_and_duplicates_nothing(
    cli_env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given dead letters and a slow replay running
    events = {letter(n=n).event for n in range(ENTRIES)}
    for n in range(ENTRIES):
        put(redis_client, key_prefix, letter(n=n))
    command = [CLI, "dlq", "replay", "--rate", "5", "--no-kick"]
    replaying = subprocess.Popen(command, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while moved(redis_client, key_prefix) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        # When it is killed midway
        replaying.send_signal(signal.SIGKILL)
    finally:
        replaying.kill()
        replaying.wait(timeout=10)
    # Then every event is in exactly one place, some moved and some not
    assert 3 <= moved(redis_client, key_prefix) < ENTRIES
    assert places(redis_client, key_prefix) == Counter(dict.fromkeys(events, 1))
    # And a second replay moves the rest, once
    run(cli_env, "dlq", "replay", "--no-kick")
    assert moved(redis_client, key_prefix) == ENTRIES
    assert places(redis_client, key_prefix) == Counter(dict.fromkeys(events, 1))
