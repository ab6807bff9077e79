"""Real workers under clock skew, and what dead letters keep: every field of the entry, and no secret."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from producers.keys import dlq_key, lease_key, stream_key
from tests.e2e.conftest import standin_workspaces, wait_for
from worker.local.fake_customerio import FakeCustomerIO
from worker.ops.logs import MASK

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "cio-fleet")


def track(n: int, user: str = "u") -> bytes:
    return orjson.dumps({"type": "track", "userId": f"{user}{n}", "event": "Ordered", "messageId": f"m{n}"})


def xadd_ahead_of_the_clock(client: redis.Redis, key: str, ahead_ms: int, event: bytes) -> None:
    """XADD with an explicit id ``ahead_ms`` past Redis's clock (as after a failover to a slower replica)."""
    seconds, micros = client.time()
    client.xadd(key, {"v": "1", "event": event}, id=f"{seconds * 1000 + micros // 1000 + ahead_ms}-0")


def accepted_ids(stand_in) -> list[str]:
    return sorted(record["operation"]["id"] for record in stand_in.accepted())


def test_an_entry_ahead_of_the_clock_neither_stalls_its_partition_nor_starves_its_workspace(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given one worker with a single slot for the workspace (2 threads, half of them at most per workspace)
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=2), CIO_WORKSPACE_MAX_SHARE="0.5")
    fleet.start(1, concurrency=2)
    # When partition 0's head has an id 60 s ahead of Redis's clock, and partition 1 gets an ordinary event
    xadd_ahead_of_the_clock(redis_client, stream_key(key_prefix, "wsa", 0), 60_000, track(0))
    redis_client.xadd(stream_key(key_prefix, "wsa", 1), {"v": "1", "event": track(1)})
    # Then both are delivered within seconds, not after the skew (today: 60 s or more)
    wait_for(lambda: accepted_ids(stand_in) == ["m0", "m1"], 10, "both events delivered")


def test_a_worker_told_to_stop_during_a_long_linger_exits_promptly_and_loses_nothing(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given a worker lingering (up to 5 s) on a lone entry whose id is 60 s ahead of the clock
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=1), CIO_BATCHING__LINGER_MS="5000")
    (worker,) = fleet.start(1)
    xadd_ahead_of_the_clock(redis_client, stream_key(key_prefix, "wsa", 0), 60_000, track(0))
    lease = lease_key(key_prefix, "wsa", 0)
    wait_for(lambda: redis_client.get(lease) not in (None, b"kicked", b"retry"), 10, "a drainer to own the partition")
    # When it is told to stop
    worker.send_signal(signal.SIGTERM)
    # Then it exits within seconds (today it sleeps out the skew: a minute)
    wait_for(lambda: worker.poll() is not None, 20, "the worker to exit")
    assert worker.returncode == 0
    # And the event is delivered by the next worker
    fleet.start(1)
    wait_for(lambda: accepted_ids(stand_in) == ["m0"], 20, "the event delivered")


SECRET_SITE, SECRET_KEY = "site-secret", "sk-live-DO-NOT-STORE-0123456789"
BASIC = base64.b64encode(f"{SECRET_SITE}:{SECRET_KEY}".encode()).decode()


def cli(fleet, *args: str) -> str:
    env = {**fleet.worker_env(), "PATH": str(Path(sys.executable).parent), "COLUMNS": "250"}
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("status", [400, 422])
def test_a_response_echoing_the_credentials_leaves_no_secret_in_dead_letters(
    make_fleet, redis_client, key_prefix, status
):
    # Given Customer.io answering a permanent error whose body echoes the Authorization header and the API key
    echo = f"bad request. Authorization: Basic {BASIC}; basic={BASIC}; your key {SECRET_KEY} was read"
    stand_in = FakeCustomerIO(credentials={SECRET_SITE: SECRET_KEY}).start()
    try:
        stand_in.set_faults([{"force_status": status, "body": {"errors": [{"reason": "bad", "message": echo}]}}])
        workspace = {"site_id": SECRET_SITE, "api_key": SECRET_KEY, "track_url": stand_in.url, "partitions": 1}
        fleet = make_fleet({"wss": workspace})
        fleet.start(1)
        # When an event is sent and dead-lettered
        redis_client.xadd(stream_key(key_prefix, "wss", 0), {"v": "1", "event": track(0)})
        dlq = dlq_key(key_prefix, "wss")
        wait_for(lambda: redis_client.xlen(dlq) == 1, 20, "the dead letter")
        assert stand_in.requests(), "the stand-in answered the request"
    finally:
        stand_in.stop()
    # Then neither the stored fields nor what the CLI prints hold the key or its Basic form
    ((stream_id, fields),) = redis_client.xrange(dlq)
    stored = b"\n".join(fields.values()).decode("utf-8", "replace")
    shown = [
        cli(fleet, "dlq", "show", f"wss/{stream_id.decode()}"),
        cli(fleet, "dlq", "show", f"wss/{stream_id.decode()}", "--json"),
        cli(fleet, "dlq", "list", "--json"),
    ]
    for text in [stored, *shown]:
        assert SECRET_KEY not in text
        assert BASIC not in text
    # And the reason still says what happened, the secrets masked
    assert f"HTTP {status}: bad request. Authorization: {MASK}" in fields[b"reason"].decode()


def test_megabyte_events_are_dead_lettered_whole_and_the_small_ones_around_them_delivered(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given 1 MB events written straight into a stream between small ones
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=1))
    fleet.start(1)
    pad = {"type": "track", "userId": "u", "event": "E", "context": {"pad": "p" * 1_000_000}}
    big = [orjson.dumps({**pad, "messageId": f"big-{n}"}) for n in range(2)]
    for event in [track(0), big[0], track(1), big[1], track(2)]:
        redis_client.xadd(stream_key(key_prefix, "wsa", 0), {"v": "1", "event": event})
    # Then the small ones are delivered, and the large ones dead-lettered for their size, bytes intact
    dlq = dlq_key(key_prefix, "wsa")
    wait_for(lambda: accepted_ids(stand_in) == ["m0", "m1", "m2"] and redis_client.xlen(dlq) == 2, 20, "all settled")
    letters = [fields for _, fields in redis_client.xrange(dlq)]
    assert [fields[b"event"] for fields in letters] == big
    assert all(b"over the 32000-byte limit" in fields[b"reason"] for fields in letters)
