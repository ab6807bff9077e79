"""Runs of transient failures, in-process with real Redis and the stand-in: state that ends with its run,
attempts counted over the run, a bounded 429 pause, credentials pauses, and splitting a batch that keeps failing.
"""

from __future__ import annotations

import time

import pytest
import redis

from producers.keys import authprobe_key, lease_key, retry_key, stream_key
from tests.integration import test_pipeline
from tests.integration.test_pipeline import (
    KEY,
    SITE,
    dead_letters,
    make_deps,
    put,
    stream_len,
    track,
)
from worker.local.fake_customerio import FakeCustomerIO
from worker.pipeline.drain import drain
from worker.pipeline.ports import Deps
from worker.store.fleet_status import gather_status
from worker.store.partitions import RETRY, PartitionStore
from worker.store.replies import hash_fields

pytestmark = pytest.mark.single_and_cluster

# The stand-in and the HTTP clients' clean-up of test_pipeline, whose helpers these tests share.
stand_in = test_pipeline.stand_in
close_http_clients = test_pipeline.close_http_clients


def retry_hash(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    return hash_fields(client.hgetall(retry_key(prefix, "ws", 0)))


def drain_now(deps: Deps, client: redis.Redis, prefix: str) -> str:
    """Drain partition 0 at once, as if its retry timer had just run out."""
    client.delete(lease_key(prefix, "ws", 0))
    return drain(deps, "ws", 0).action


def fail_times(deps: Deps, client: redis.Redis, prefix: str, stand_in: FakeCustomerIO, times: int) -> None:
    stand_in.set_faults([{"force_status": 503}])
    for _ in range(times):
        assert drain_now(deps, client, prefix) == "later"


def test_a_run_that_ends_in_the_dead_letter_queue_ends_its_retry_state(redis_client, key_prefix, stand_in):
    # Given a run of 503s on the head event, that ends with a 400: the event is dead-lettered
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0, properties={"tag": "bad-apple"}))
    fail_times(deps, redis_client, key_prefix, stand_in, 3)
    stand_in.set_faults([{"reject_batch_containing": "bad-apple"}])
    assert drain_now(deps, redis_client, key_prefix) == "done"
    (letter,) = dead_letters(redis_client, key_prefix)
    assert (letter.outcome, letter.status) == ("rejected", 400)
    # Then the run is over: no retry state, and status shows no retrying partition
    assert retry_hash(redis_client, key_prefix) == {}
    (ws,) = gather_status(redis_client, key_prefix, {"ws": 1}).workspaces
    assert (ws.backlog, ws.retrying) == (0, 0)
    # And the next transient failure starts a new run at attempt 1
    put(redis_client, key_prefix, track(1))
    fail_times(deps, redis_client, key_prefix, stand_in, 1)
    state = retry_hash(redis_client, key_prefix)
    assert state[b"attempts"] == b"1"
    assert int(state[b"first_failed_at"]) > letter.last_failed_at_ms - 1


@pytest.mark.parametrize(
    "final_fault", [{"reject_batch_containing": "bad-apple"}, {"reject_items_matching": "bad-apple"}]
)
def test_a_dead_letter_counts_every_attempt_of_its_run(redis_client, key_prefix, stand_in, final_fault):
    # Given 13 failed attempts (503) of the head event, then a permanent refusal (400, or the item in a 207)
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0, properties={"tag": "bad-apple"}))
    fail_times(deps, redis_client, key_prefix, stand_in, 13)
    first_failed = int(retry_hash(redis_client, key_prefix)[b"first_failed_at"])
    stand_in.set_faults([final_fault])
    drain_now(deps, redis_client, key_prefix)
    # Then the dead letter counts the 14 attempts, and the run's first failure
    (letter,) = dead_letters(redis_client, key_prefix)
    assert (letter.attempts, letter.first_failed_at_ms) == (14, first_failed)
    assert retry_hash(redis_client, key_prefix) == {}


def test_a_429_after_a_long_run_of_5xx_pauses_only_a_short_bounded_step(redis_client, key_prefix, stand_in):
    # Given a backoff of 1 s doubling up to 300 s, and a run of ten 503s (the tenth step would be 300 s)
    deps = make_deps(redis_client, key_prefix, stand_in.url, retry={"base_s": 1.0, "cap_s": 300.0})
    put(redis_client, key_prefix, track(0))
    fail_times(deps, redis_client, key_prefix, stand_in, 10)
    # When Customer.io answers 429 without Retry-After
    stand_in.set_faults([{"force_status": 429}])
    redis_client.delete(lease_key(key_prefix, "ws", 0))
    result = drain(deps, "ws", 0)
    # Then the workspace pauses, and the partition waits, for at most the third step of the policy (4 s)
    assert result.action == "later" and result.delay_s <= 4.0
    assert 0 < deps.limiter.paused_for("ws") <= 4.0


def test_a_credentials_pause_longer_than_the_window_then_a_429_dead_letters_nothing(redis_client, key_prefix, stand_in):
    # Given a partition whose head failed once (503), then a workspace paused for refused credentials
    window_s = 1.0
    retry = {"base_s": 0.05, "cap_s": 0.1, "window_s": window_s}
    deps = make_deps(redis_client, key_prefix, stand_in.url, retry=retry, probe_s=0.2)
    put(redis_client, key_prefix, track(0), track(1))
    fail_times(deps, redis_client, key_prefix, stand_in, 1)
    stand_in.set_faults([])
    stand_in.set_credentials({SITE: "another-key"})
    assert drain_now(deps, redis_client, key_prefix) == "later"
    assert deps.limiter.auth_pause("ws") is not None
    # And events that wait through a pause longer than the retry window
    put(redis_client, key_prefix, track(2), track(3))
    newest_ms = int(redis_client.xrevrange(stream_key(key_prefix, "ws", 0), count=1)[0][0].split(b"-")[0])
    store = PartitionStore(redis_client, key_prefix)
    while store.now_ms() - newest_ms < window_s * 1000 * 1.5:
        time.sleep(0.05)
    # When the credentials are fixed and the probe meets a 429
    stand_in.set_credentials({SITE: KEY})
    stand_in.set_faults([{"force_status": 429}])
    redis_client.delete(authprobe_key(key_prefix, "ws"))
    assert drain_now(deps, redis_client, key_prefix) == "later"
    # Then nothing is dead-lettered: the events never had their chance during the pause
    assert dead_letters(redis_client, key_prefix) == []
    assert stream_len(redis_client, key_prefix) == 4
    assert retry_hash(redis_client, key_prefix)[b"attempts"] == b"1"


def test_one_event_that_makes_customer_io_fail_is_isolated_and_the_others_are_delivered_in_order(
    redis_client, key_prefix, stand_in
):
    # Given 50 events of one person, the 21st of which makes Customer.io answer 500 whatever batch holds it
    retry = {"base_s": 0.01, "cap_s": 0.02, "window_s": 1.0}
    deps = make_deps(redis_client, key_prefix, stand_in.url, retry=retry)
    events = [track(n) for n in range(50)]
    events[20]["properties"] = {"tag": "poison-5xx"}
    put(redis_client, key_prefix, *events)
    stand_in.set_faults([{"fail_batch_containing": "poison-5xx"}])
    # When the partition is drained whenever its retry timer runs out, until it is empty
    deadline = time.monotonic() + 30
    while stream_len(redis_client, key_prefix) and time.monotonic() < deadline:
        if redis_client.get(lease_key(key_prefix, "ws", 0)) == RETRY.encode():
            time.sleep(0.01)
        drain_now(deps, redis_client, key_prefix)
    # Then the 49 others are delivered in order, and only the poison event is dead-lettered after the window
    assert [r["operation"]["id"] for r in stand_in.accepted()] == [f"m{n}" for n in range(50) if n != 20]
    (letter,) = dead_letters(redis_client, key_prefix)
    assert (letter.outcome, letter.status, letter.message_id) == ("failed_after_retries", 500, "m20")
    assert letter.last_failed_at_ms - letter.first_failed_at_ms >= 1000
    assert retry_hash(redis_client, key_prefix) == {}


class TakeOverAfterFirstLeaseCommand(redis.Redis):
    """A Redis client after whose first read or script on a lease another drainer takes that lease over."""

    lease = ""
    token = ""
    taken = False

    def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        result = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis leaves it untyped
        if not self.taken and args[0] in ("GET", "EVALSHA", "EVAL"):
            self.taken = True
            super().execute_command("SET", self.lease, self.token, "PX", 30_000)  # type: ignore[no-untyped-call]  # redis leaves it untyped
        return result


@pytest.mark.single_only
def test_ending_retry_timers_never_frees_a_lease_another_drainer_took_meanwhile(redis_url, redis_client, key_prefix):
    # Given a partition waiting for its retry timer, and a drainer that takes its lease right after the first look
    client = TakeOverAfterFirstLeaseCommand(connection_pool=redis.ConnectionPool.from_url(redis_url))
    client.lease, client.token = lease_key(key_prefix, "ws", 0), "drainer-2"
    redis_client.set(lease_key(key_prefix, "ws", 0), RETRY, px=30_000)
    # When the workspace's retry timers are ended (its credentials changed)
    PartitionStore(client, key_prefix).end_retry_timers("ws", 1)
    client.close()
    # Then the new owner still holds the partition: the timer was freed, or left, in one step
    assert client.taken
    assert redis_client.get(lease_key(key_prefix, "ws", 0)) == b"drainer-2"


def test_ending_retry_timers_frees_timers_only_and_ends_every_run(redis_client, key_prefix):
    store = PartitionStore(redis_client, key_prefix)
    leases = {0: RETRY, 1: "kicked", 2: "owner-token"}
    for partition, value in leases.items():
        redis_client.set(lease_key(key_prefix, "ws", partition), value, px=30_000)
        redis_client.hset(retry_key(key_prefix, "ws", partition), mapping={"attempts": 4, "first_failed_at": 1})
    redis_client.set(authprobe_key(key_prefix, "ws"), "1", px=30_000)

    assert store.end_retry_timers("ws", 4) == 1

    assert [redis_client.get(lease_key(key_prefix, "ws", p)) for p in range(4)] == [
        None,
        b"kicked",
        b"owner-token",
        None,
    ]
    assert [store.retry_state("ws", p) for p in range(4)] == [None] * 4
    assert not redis_client.exists(authprobe_key(key_prefix, "ws"))


def test_when_customer_io_keeps_failing_past_the_window_every_batch_that_waited_it_is_dead_lettered(
    redis_client, key_prefix, stand_in
):
    # Given a run of 503s on a partition with two batches of two events
    retry = {"base_s": 0.01, "cap_s": 0.02, "window_s": 0.5}
    deps = make_deps(redis_client, key_prefix, stand_in.url, retry=retry, max_events=2)
    put(redis_client, key_prefix, *[track(n) for n in range(4)])
    fail_times(deps, redis_client, key_prefix, stand_in, 1)
    store = PartitionStore(redis_client, key_prefix)
    first_failed = int(retry_hash(redis_client, key_prefix)[b"first_failed_at"])
    while store.now_ms() - first_failed < 600:
        time.sleep(0.05)
    # When Customer.io still fails after the window
    drain_now(deps, redis_client, key_prefix)
    # Then the head batch expires, and so does the batch behind it, which waited as long in the failing partition
    assert [letter.message_id for letter in dead_letters(redis_client, key_prefix)] == ["m0", "m1", "m2", "m3"]
    assert {letter.outcome for letter in dead_letters(redis_client, key_prefix)} == {"failed_after_retries"}
    assert retry_hash(redis_client, key_prefix) == {}
