"""Replay moves dead letters back to their partition streams atomically, once, on the real Redis."""

from __future__ import annotations

import pytest
import redis

from producers.keys import backlog_key, config_key, dlq_key, lease_key, stream_key
from producers.wire import KICK_TTL_MS, KICKED, partition_for
from tests.integration.test_deadletter_store import letter, put
from worker.deadletter.api import (
    DeadLetter,
    DeadLetterFilter,
    audit,
    dlq_size,
    kick_partitions,
    partitions_lookup,
    replay,
)
from worker.deadletter.replay import ReplayTarget, move_chunk
from worker.store.replies import entry_fields, stream_rows

pytestmark = pytest.mark.single_and_cluster

PARTITIONS = 8


def parts(_workspace: str) -> int:
    return PARTITIONS


def partition_entries(client: redis.Redis, prefix: str, workspace: str = "acme") -> list[dict[bytes, bytes]]:
    """Every entry waiting in the workspace's partition streams."""
    found = []
    for n in range(PARTITIONS):
        found += [fields for _, fields in stream_rows(client.xrange(stream_key(prefix, workspace, n)))]
    return found


def test_replay_moves_entries_to_their_person_partition_with_attempts_kept(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    item = letter(n=3, attempts=6, first_failed_at_ms=1_700_000_000_000, partition=99)
    put(redis_client, key_prefix, item)
    result = replay(redis_client, key_prefix, DeadLetterFilter(), parts)
    target = stream_key(key_prefix, "acme", partition_for({"userId": "u3"}, PARTITIONS))
    [(_, fields)] = stream_rows(redis_client.xrange(target))
    assert fields == {b"v": b"1", b"event": item.event, b"attempts": b"6", b"first_failed_at": b"1700000000000"}
    assert (result.matched, result.moved, result.missing) == (1, 1, 0)
    assert dlq_size(redis_client, key_prefix, "acme") == 0


def test_a_replayed_dead_letter_adds_to_the_backlog_bound(redis_client: redis.Redis, key_prefix: str) -> None:
    # Given an exact bound (nothing waits) and two dead letters
    redis_client.hset(backlog_key(key_prefix, "acme"), mapping={"events": 0, "streams": PARTITIONS})
    put(redis_client, key_prefix, letter(n=1))
    put(redis_client, key_prefix, letter(n=2))
    # When they are replayed, the bound counts them, as an enqueue would
    assert replay(redis_client, key_prefix, DeadLetterFilter(), parts).moved == 2
    assert redis_client.hget(backlog_key(key_prefix, "acme"), "events") == b"2"


def test_an_event_that_is_not_json_returns_to_its_recorded_partition_byte_for_byte(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    put(redis_client, key_prefix, DeadLetter("acme", 5, b"\xff{not json", "rejected", "not JSON"))
    replay(redis_client, key_prefix, DeadLetterFilter(), parts)
    assert stream_rows(redis_client.xrange(stream_key(key_prefix, "acme", 5)))[0][1][b"event"] == b"\xff{not json"


def test_only_matching_entries_are_replayed(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter(n=1, status=400))
    put(redis_client, key_prefix, letter(n=2, status=503))
    put(redis_client, key_prefix, letter("beta", n=3, status=503))
    result = replay(redis_client, key_prefix, DeadLetterFilter(workspace="acme", status=503), parts)
    assert result.moved == 1
    assert [f[b"event"] for f in partition_entries(redis_client, key_prefix)] == [letter(n=2).event]
    assert (dlq_size(redis_client, key_prefix, "acme"), dlq_size(redis_client, key_prefix, "beta")) == (1, 1)


def test_a_dry_run_moves_nothing_and_is_audited(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter())
    result = replay(redis_client, key_prefix, DeadLetterFilter(), parts, dry_run=True)
    assert (result.matched, result.moved, dlq_size(redis_client, key_prefix, "acme")) == (1, 0, 1)
    [record] = audit(redis_client, key_prefix)
    assert (record.action, record.count, record.dry_run) == ("replay", 1, True)


def test_the_limit_replays_the_oldest_first(redis_client: redis.Redis, key_prefix: str) -> None:
    for n in range(5):
        put(redis_client, key_prefix, letter(n=n))
    replay(redis_client, key_prefix, DeadLetterFilter(), parts, limit=2)
    moved = {f[b"event"] for f in partition_entries(redis_client, key_prefix)}
    assert moved == {letter(n=0).event, letter(n=1).event}


def test_entries_failing_again_during_the_replay_are_not_replayed_again(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given entries in the queue, and a "worker" that dead-letters each replayed event again at once
    for n in range(6):
        put(redis_client, key_prefix, letter(n=n, attempts=1))

    def worker_fails_again(done: int, total: int) -> None:
        for n in range(PARTITIONS):
            for entry_id, fields in stream_rows(redis_client.xrange(stream_key(key_prefix, "acme", n))):
                again = DeadLetter(
                    "acme", n, fields[b"event"], "rejected", "again", attempts=int(fields[b"attempts"]) + 1
                )
                redis_client.xadd(dlq_key(key_prefix, "acme"), entry_fields(again.to_fields()))
                redis_client.xdel(stream_key(key_prefix, "acme", n), entry_id)

    # When a replay runs with a tiny rate, so that the "worker" acts between chunks
    result = replay(redis_client, key_prefix, DeadLetterFilter(), parts, rate=20, progress=worker_fails_again)
    # Then each entry was replayed once, and the second failures wait in the queue
    assert (result.matched, result.moved) == (6, 6)
    again = [fields for _, fields in stream_rows(redis_client.xrange(dlq_key(key_prefix, "acme")))]
    assert sorted(f[b"attempts"] for f in again) == [b"2"] * 6


def test_moving_an_entry_already_gone_does_nothing(redis_client: redis.Redis, key_prefix: str) -> None:
    stream_id = put(redis_client, key_prefix, letter())
    target = ReplayTarget("acme", stream_id, 2)
    assert move_chunk(redis_client, key_prefix, [target]) == 1
    assert move_chunk(redis_client, key_prefix, [target]) == 0
    assert redis_client.xlen(stream_key(key_prefix, "acme", 2)) == 1


def test_entries_gone_before_their_turn_are_counted_missing(redis_client: redis.Redis, key_prefix: str) -> None:
    ids = [put(redis_client, key_prefix, letter(n=n)) for n in range(3)]

    def purge_last(done: int, total: int) -> None:
        redis_client.xdel(dlq_key(key_prefix, "acme"), ids[-1])

    result = replay(redis_client, key_prefix, DeadLetterFilter(), parts, rate=10, progress=purge_last)
    assert (result.matched, result.moved, result.missing) == (3, 2, 1)


def test_the_rate_spaces_the_moves(redis_client: redis.Redis, key_prefix: str) -> None:
    for n in range(4):
        put(redis_client, key_prefix, letter(n=n))
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    replay(redis_client, key_prefix, DeadLetterFilter(), parts, rate=2, clock=lambda: now[0], sleep=sleep)
    assert slept == [0.5, 0.5, 0.5]


def test_a_replay_is_audited_with_who_and_what(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter(status=400))
    replay(redis_client, key_prefix, DeadLetterFilter(status=400), parts)
    [record] = audit(redis_client, key_prefix)
    assert (record.action, record.filters, record.count, record.dry_run) == ("replay", "status=400", 1, False)
    assert record.user and record.host and record.at_ms > 0


def test_the_partitions_that_received_entries_are_returned_for_kicking(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    put(redis_client, key_prefix, letter(n=1))
    result = replay(redis_client, key_prefix, DeadLetterFilter(), parts)
    assert result.partitions == {("acme", partition_for({"userId": "u1"}, PARTITIONS))}


def test_kicking_takes_idle_leases_and_sends_one_task_each(redis_client: redis.Redis, key_prefix: str) -> None:
    redis_client.set(lease_key(key_prefix, "acme", 2), "owner-token")
    sent: list[tuple[str, int]] = []
    kicked = kick_partitions(redis_client, key_prefix, {("acme", 1), ("acme", 2)}, lambda w, p: sent.append((w, p)))
    assert (kicked, sent) == (1, [("acme", 1)])
    assert redis_client.get(lease_key(key_prefix, "acme", 1)) == KICKED.encode()
    assert 0 < redis_client.pttl(lease_key(key_prefix, "acme", 1)) <= KICK_TTL_MS
    assert redis_client.get(lease_key(key_prefix, "acme", 2)) == b"owner-token"


def test_a_failed_kick_gives_the_lease_back(redis_client: redis.Redis, key_prefix: str) -> None:
    def broken(_workspace: str, _partition: int) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError, match="broker down"):
        kick_partitions(redis_client, key_prefix, {("acme", 1)}, broken)
    assert redis_client.get(lease_key(key_prefix, "acme", 1)) is None


def test_partition_counts_come_from_config_then_workers_then_the_default(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.hset(config_key(key_prefix, "published"), "partitions", "4")
    lookup = partitions_lookup(redis_client, key_prefix, {"acme": 32})
    assert (lookup("acme"), lookup("published"), lookup("unknown")) == (32, 4, 16)
