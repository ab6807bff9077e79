"""Settling is fenced by the lease token: real Redis, no workers."""

from __future__ import annotations

import redis

from producers.keys import dlq_key
from worker.store.partitions import PartitionStore, RetryState
from worker.store.replies import string

WS, PARTITION = "ws", 0


def prepare(client: redis.Redis, store: PartitionStore, owner: str, entries: int = 3) -> list[str]:
    """A partition leased to ``owner``, holding ``entries`` entries and a retry state; returns the entry ids."""
    client.set(store.lease(WS, PARTITION), owner, px=60_000)
    client.hset(store.retry_key(WS, PARTITION), mapping={"attempts": 2, "first_failed_at": 1})
    stream = store.stream(WS, PARTITION)
    return [string(client.xadd(stream, {"v": "1", "event": f"e{n}"})).decode() for n in range(entries)]


def snapshot(client: redis.Redis, store: PartitionStore) -> tuple[object, ...]:
    return (
        client.xrange(store.stream(WS, PARTITION)),
        client.xrange(dlq_key(store.prefix, WS)),
        client.hgetall(store.retry_key(WS, PARTITION)),
        client.get(store.lease(WS, PARTITION)),
    )


def test_a_settle_with_a_stale_token_changes_nothing(redis_client, key_prefix):
    # Given a partition whose lease another drainer took over
    store = PartitionStore(redis_client, key_prefix)
    ids = prepare(redis_client, store, owner="new-owner")
    before = snapshot(redis_client, store)
    # When the old drainer settles with its token
    letters = [(dlq_key(key_prefix, WS), {"event": "e1", "outcome": "rejected"})]
    settled = store.settle(WS, PARTITION, "old-owner", ids[:2], letters, clear_retry=True)
    # Then it is told so, and no entry, dead letter, retry state or lease changed
    assert settled is False
    assert snapshot(redis_client, store) == before


def test_a_settle_with_the_lease_token_deletes_dead_letters_and_ends_the_retry_state(redis_client, key_prefix):
    # Given a partition leased to this drainer
    store = PartitionStore(redis_client, key_prefix)
    ids = prepare(redis_client, store, owner="me")
    # When it settles two entries, one of them dead-lettered
    letters = [(dlq_key(key_prefix, WS), {"event": "e1", "outcome": "rejected"})]
    assert store.settle(WS, PARTITION, "me", ids[:2], letters, clear_retry=True) is True
    # Then they leave the stream, the dead letter is written with its fields, and the retry state ends
    assert [entry_id.decode() for entry_id, _ in redis_client.xrange(store.stream(WS, PARTITION))] == ids[2:]
    assert [fields for _, fields in redis_client.xrange(dlq_key(key_prefix, WS))] == [
        {b"event": b"e1", b"outcome": b"rejected"}
    ]
    assert not redis_client.exists(store.retry_key(WS, PARTITION))


def test_a_settle_of_thousands_of_entries_deletes_them_all(redis_client, key_prefix):
    # Given more entries than one XDEL call of the script takes
    store = PartitionStore(redis_client, key_prefix)
    ids = prepare(redis_client, store, owner="me", entries=2_500)
    # When they are settled at once, then every one is gone and the retry state is kept unless asked
    assert store.settle(WS, PARTITION, "me", ids) is True
    assert redis_client.xlen(store.stream(WS, PARTITION)) == 0
    assert redis_client.exists(store.retry_key(WS, PARTITION))


def test_a_failure_recorded_with_a_stale_token_leaves_the_new_owners_run_alone(redis_client, key_prefix):
    # Given a partition whose lease another drainer took over (its run: 2 attempts)
    store = PartitionStore(redis_client, key_prefix)
    prepare(redis_client, store, owner="new-owner")
    before = snapshot(redis_client, store)
    # When the old drainer's request times out after it woke and it records the failure
    recorded = store.record_failure(WS, PARTITION, "old-owner", RetryState(7, 5, 0), "HTTP 503")
    # Then nothing is written, and it is told so; with the lease, the run is recorded
    assert recorded is False
    assert snapshot(redis_client, store) == before
    assert store.record_failure(WS, PARTITION, "new-owner", RetryState(3, 1, 0), "HTTP 503") is True
    assert store.retry_state(WS, PARTITION) == RetryState(3, 1, 0)
