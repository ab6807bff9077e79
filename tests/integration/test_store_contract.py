"""The partition store's contract, run against the real ``PartitionStore`` (Redis) and the in-memory ``FakeStore``
of the unit tier, so that the fake cannot drift from what Redis does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from producers.keys import dlq_key, lease_key, stream_key
from producers.wire import KICKED
from tests.support.fakes import FakeClock, FakeStore
from worker.pipeline.ports import PartitionStorePort
from worker.store.partitions import PARKED, RETRY, PartitionStore, ReadStep, RetryState
from worker.store.replies import optional_string, string

WS, N = "acme", 1


class Backend:
    """One store under test, with the few raw moves a test needs to set a scene."""

    def __init__(self, store: PartitionStorePort, add, set_lease, lease) -> None:
        self.store, self.add, self.set_lease, self.lease = store, add, set_lease, lease


@pytest.fixture(params=["redis", "fake"])
def backend(request, redis_client: redis.Redis, key_prefix: str) -> Iterator[Backend]:
    if request.param == "redis":
        store = PartitionStore(redis_client, key_prefix)

        def add(fields):
            return string(redis_client.xadd(stream_key(key_prefix, WS, N), fields)).decode()

        def set_lease(value, ttl_ms):
            redis_client.set(lease_key(key_prefix, WS, N), value, px=ttl_ms)

        def lease():
            value = optional_string(redis_client.get(lease_key(key_prefix, WS, N)))
            return value.decode() if value is not None else None

        yield Backend(store, add, set_lease, lease)
    else:
        fake = FakeStore(FakeClock(), key_prefix)
        yield Backend(
            fake,
            lambda fields: fake.add(WS, N, fields),
            lambda value, ttl_ms: fake.set_lease(WS, N, value, ttl_ms),
            lambda: fake.lease_value(WS, N),
        )


def test_a_free_or_kicked_partition_is_taken_and_an_owned_one_refused(backend: Backend):
    store = backend.store
    assert store.take_lease(WS, N, "t1", 10_000) is None
    refusal = store.take_lease(WS, N, "t2", 10_000)
    assert refusal is not None and not refusal.retry_timer and 0 < refusal.remaining_ms <= 10_000
    backend.set_lease(KICKED, 10_000)
    assert store.take_lease(WS, N, "t2", 10_000) is None
    assert backend.lease() == "t2"


def test_a_retry_timer_refuses_the_lease_as_a_retry_timer(backend: Backend):
    backend.set_lease(RETRY, 10_000)
    refusal = backend.store.take_lease(WS, N, "t1", 10_000)
    assert refusal is not None and refusal.retry_timer


def test_renew_defer_and_release_hold_only_for_the_owner(backend: Backend):
    store = backend.store
    store.take_lease(WS, N, "t1", 10_000)
    assert not store.renew_lease(WS, N, "other", 10_000)
    assert store.renew_lease(WS, N, "t1", 10_000)
    assert not store.release_lease(WS, N, "other", 10_000)
    assert backend.lease() == "t1"
    assert not store.release_lease(WS, N, "t1", 10_000)  # an empty stream: the lease is gone
    assert backend.lease() is None
    store.take_lease(WS, N, "t1", 10_000)
    backend.add({b"v": b"1", b"event": b"{}"})
    assert store.release_lease(WS, N, "t1", 10_000)  # work remains: kicked, for the caller to queue
    assert backend.lease() == KICKED
    store.take_lease(WS, N, "t2", 10_000)
    assert not store.defer(WS, N, "other", 5_000)
    assert store.defer(WS, N, "t2", 5_000)
    assert backend.lease() == RETRY


def test_park_unpark_and_forget_kick_move_only_their_own_states(backend: Backend):
    store = backend.store
    assert store.park(WS, N, 5_000)  # no lease at all: ours to park
    assert backend.lease() == PARKED
    assert store.unpark(WS, N, 10_000)
    assert backend.lease() == KICKED
    assert not store.unpark(WS, N, 10_000)
    assert store.forget_kick(WS, N)
    assert backend.lease() is None
    store.take_lease(WS, N, "t1", 10_000)
    assert not store.park(WS, N, 5_000) and not store.forget_kick(WS, N)


def test_read_head_renews_the_owned_lease_and_reads_entries_and_retry_state_in_one_step(backend: Backend):
    ids = [backend.add({b"v": b"1", b"event": b"x" * 10}) for _ in range(3)]
    store = backend.store
    # A lease another drainer holds: nothing is read, nothing renewed
    backend.set_lease("other", 1_000)
    assert store.read_head(WS, N, "t1", 10_000, 10, 1_000_000) is None
    assert backend.lease() == "other"
    # The drainer's own lease: the entries as ``read`` gives them, the retry state, and the clock
    backend.set_lease("t1", 1_000)
    store.record_failure(WS, N, "t1", RetryState(2, 7, 1), "boom")
    head = store.read_head(WS, N, "t1", 10_000, 2, 1_000_000)
    assert head is not None and [entry.id for entry in head.entries] == ids[:2]
    assert head.retry == RetryState(2, 7, 1) and head.now_ms > 0
    assert backend.lease() == "t1" and store.take_lease(WS, N, "t2", 10_000) is not None


def test_settle_and_read_settles_then_reads_the_new_head_and_a_lost_lease_does_neither(backend: Backend):
    ids = [backend.add({b"v": b"1", b"event": b"x" * 10}) for _ in range(4)]
    store, step = backend.store, ReadStep(10_000, 2, 1_000_000)
    backend.set_lease("t1", 1_000)
    store.record_failure(WS, N, "t1", RetryState(2, 7, 1), "boom")
    # The settle ends the run of failures and deletes the first two; the read that follows sees what is left
    head = store.settle_and_read(WS, N, "t1", ids[:2], [], clear_retry=True, read=step)
    assert head is not None and [entry.id for entry in head.entries] == ids[2:] and head.retry is None
    assert store.take_lease(WS, N, "t2", 10_000) is not None  # renewed: still t1's
    # Another drainer's lease: nothing deleted, nothing read
    backend.set_lease("other", 1_000)
    assert store.settle_and_read(WS, N, "t1", ids[2:3], [], clear_retry=False, read=step) is None
    assert [entry.id for entry in store.read(WS, N, 10, 1_000_000)] == ids[2:]


def test_read_returns_the_oldest_entries_in_order_within_the_budget(backend: Backend):
    ids = [backend.add({b"v": b"1", b"event": b"x" * 10}) for _ in range(5)]
    store = backend.store
    assert [entry.id for entry in store.read(WS, N, 3, 1_000_000)] == ids[:3]
    assert [entry.id for entry in store.read(WS, N, 10, 34)] == ids[:2]  # 17 bytes each
    assert [entry.id for entry in store.read(WS, N, 10, 33)] == ids[:1]
    assert [entry.id for entry in store.read(WS, N, 10, 1)] == ids[:1]  # the first entry, whatever its size
    assert store.read(WS, N, 10, 1)[0].fields == {b"v": b"1", b"event": b"x" * 10}


def test_settle_is_fenced_by_the_token_and_writes_dead_letters_with_the_deletes(backend: Backend):
    store = backend.store
    first, second = backend.add({b"event": b"1"}), backend.add({b"event": b"2"})
    store.take_lease(WS, N, "t1", 10_000)
    assert store.record_failure(WS, N, "t1", RetryState(2, 1_000, 1), "HTTP 503")
    letter = [(dlq_key(store.prefix, WS), {"event": "1", "outcome": "rejected"})]
    assert not store.settle(WS, N, "other", [first], letter, clear_retry=True)
    assert store.dead_letter_count(WS) == 0 and store.retry_state(WS, N) == RetryState(2, 1_000, 1)
    assert store.settle(WS, N, "t1", [first], letter, clear_retry=True)
    assert store.dead_letter_count(WS) == 1
    assert store.retry_state(WS, N) is None
    assert [entry.id for entry in store.read(WS, N, 10, 1_000)] == [second]


def test_failures_are_recorded_only_by_the_owner_and_a_run_ends(backend: Backend):
    store = backend.store
    store.take_lease(WS, N, "t1", 10_000)
    assert not store.record_failure(WS, N, "other", RetryState(1, 5), "x")
    assert store.retry_state(WS, N) is None
    assert store.record_failure(WS, N, "t1", RetryState(1, 5), "x")
    assert store.retry_state(WS, N) == RetryState(1, 5, 0)
    store.end_retry_run(WS, N)
    assert store.retry_state(WS, N) is None


def test_ending_retry_timers_frees_only_retry_leases(backend: Backend):
    store = backend.store
    backend.set_lease(RETRY, 10_000)
    assert store.end_retry_timers(WS, N + 1) == 1
    assert backend.lease() is None
    store.take_lease(WS, N, "t1", 10_000)
    assert store.end_retry_timers(WS, N + 1) == 0
    assert backend.lease() == "t1"


def test_only_a_retry_timer_is_turned_into_a_kick(backend: Backend):
    store = backend.store
    assert not store.kick_retry_timer(WS, N, 10_000)  # no lease at all
    backend.set_lease(RETRY, 10_000)
    assert store.kick_retry_timer(WS, N, 10_000)
    assert backend.lease() == KICKED
    assert not store.kick_retry_timer(WS, N, 10_000)
    store.take_lease(WS, N, "t1", 10_000)
    assert not store.kick_retry_timer(WS, N, 10_000)
    assert backend.lease() == "t1"


def test_a_probe_is_claimed_once_per_interval(backend: Backend):
    store = backend.store
    assert store.claim_probe(WS, 10_000) is None
    wait = store.claim_probe(WS, 10_000)
    assert wait is not None and 0 < wait <= 10.0
    store.hold_probe("other", 10_000)
    assert store.claim_probe("other", 10_000) is not None
