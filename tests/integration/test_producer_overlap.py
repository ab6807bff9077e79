"""``enqueue_many`` prepares chunk N + 1 while Redis runs chunk N: a stale count or the cap in N's reply loses nothing.

The events come from a generator that acts on Redis at a chosen index, that is, at a known point of the chunking:
the last event of the first chunk is read just before that chunk is sent; an event of chunk N + 1 is read after
chunk N was sent and before its reply is read (``enqueue_many`` prepares the next chunk between the two). Checked
against the real Redis, for ``Producer`` and ``AsyncProducer``: every event once, in each person's input order, in
the streams of the count the workers publish, and after a cap cut exactly the valid events before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
import pytest
import redis

from producers import AsyncProducer, EnqueueResult, Producer, QueueFull, partition_for
from producers._chunk import CHUNK_EVENTS
from producers.keys import config_key, stream_key
from worker.store.replies import stream_rows

WS = "acme"
PEOPLE = 7


def events(total: int, hooks: Mapping[int, Callable[[], object]]) -> Iterator[dict[str, Any]]:
    """``total`` track events of ``PEOPLE`` people (``event`` is the input index); ``hooks[n]()`` runs before n."""
    for n in range(total):
        if n in hooks:
            hooks[n]()
        yield {"type": "track", "userId": f"u{n % PEOPLE}", "event": str(n)}


def enqueue_many(kind: str, redis_url: str, prefix: str, source: Iterator[dict[str, Any]], **options: Any) -> Any:
    """``enqueue_many`` of ``Producer`` or ``AsyncProducer``: its result, or the ``QueueFull`` it raised."""
    try:
        if kind == "sync":
            with Producer(redis_url, WS, key_prefix=prefix, kick=False, **options) as producer:
                return producer.enqueue_many(source)

        async def main() -> EnqueueResult:
            async with AsyncProducer(redis_url, WS, key_prefix=prefix, kick=False, **options) as producer:
                return await producer.enqueue_many(source)

        return asyncio.run(main())
    except QueueFull as full:
        return full


def streams(client: redis.Redis, prefix: str, partitions: int) -> dict[int, list[dict[str, Any]]]:
    """Each partition's events, in stream order."""
    rows = {partition: stream_rows(client.xrange(stream_key(prefix, WS, partition))) for partition in range(partitions)}
    return {partition: [orjson.loads(fields[b"event"]) for _, fields in found] for partition, found in rows.items()}


def assert_once_in_person_order(written: list[dict[str, Any]], expected: range) -> None:
    assert sorted(int(event["event"]) for event in written) == list(expected)
    for person in range(PEOPLE):
        ours = [int(event["event"]) for event in written if event["userId"] == f"u{person}"]
        assert ours == sorted(ours)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_count_changed_while_the_next_chunk_was_prepared_moves_every_event_once_in_order(
    kind: str, redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # Given the workers publish 8 partitions, then 3 just before the first chunk is sent under 8: its reply says
    # stale while the second chunk is being prepared
    total = 2 * CHUNK_EVENTS + CHUNK_EVENTS // 2
    config = config_key(key_prefix, WS)
    redis_client.hset(config, "partitions", "8")
    publish = {CHUNK_EVENTS - 1: lambda: redis_client.hset(config, "partitions", "3")}
    # When the events are enqueued in one call
    result = enqueue_many(kind, redis_url, key_prefix, events(total, publish))
    # Then all are enqueued once, in each person's order, in the streams of 3 partitions (none under 8)
    assert isinstance(result, EnqueueResult)
    assert (result.enqueued, result.errors, len(result.message_ids)) == (total, {}, total)
    found = streams(redis_client, key_prefix, 8)
    assert all(not found[partition] for partition in range(3, 8))
    for partition, written in found.items():
        assert all(partition_for(event, 3) == partition for event in written)
    written = [event for partition in range(3) for event in found[partition]]
    assert_once_in_person_order(written, range(total))
    assert {event["messageId"] for event in written} == set(result.message_ids)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_cap_cut_while_the_next_chunk_was_prepared_enqueues_exactly_the_events_before_it(
    kind: str, redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # Given a cap that cuts the second of three chunks
    cap = CHUNK_EVENTS + CHUNK_EVENTS // 2
    # When the events are enqueued in one call
    full = enqueue_many(kind, redis_url, key_prefix, events(3 * CHUNK_EVENTS, {}), partitions=4, backlog_cap=cap)
    # Then QueueFull tells that exactly the events before the cut were enqueued, and the prepared third chunk is not
    assert isinstance(full, QueueFull) and full.result is not None
    assert (full.result.enqueued, full.backlog, full.cap) == (cap, cap, cap)
    assert [message_id is not None for message_id in full.result.message_ids] == [True] * cap + [False] * (
        2 * CHUNK_EVENTS - cap
    )
    written = [event for stream in streams(redis_client, key_prefix, 4).values() for event in stream]
    assert_once_in_person_order(written, range(cap))


def test_a_drain_after_the_cap_cut_does_not_let_the_prepared_chunk_through(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    """With two chunks in flight the third could be appended after the cut, once the workers drained: a gap.

    The drain runs while the third chunk is prepared, after the second was sent: it waits for the second chunk's
    events to be in Redis (its reply is read only after the third chunk is prepared, so the wait always ends).
    """
    cap = CHUNK_EVENTS + CHUNK_EVENTS // 2
    drained: list[dict[str, Any]] = []

    def drain_once_the_second_chunk_ran() -> None:
        # Runs while the third chunk is prepared, the second one sent and its reply not read yet.
        deadline = time.monotonic() + 120
        while sum(len(stream) for stream in streams(redis_client, key_prefix, 4).values()) < cap:
            assert time.monotonic() < deadline, "the second chunk was never run"
            time.sleep(0.01)
        for stream in streams(redis_client, key_prefix, 4).values():
            drained.extend(stream)
        redis_client.delete(*(stream_key(key_prefix, WS, partition) for partition in range(4)))

    hooks = {2 * CHUNK_EVENTS + 10: drain_once_the_second_chunk_ran}
    full = enqueue_many("sync", redis_url, key_prefix, events(3 * CHUNK_EVENTS, hooks), partitions=4, backlog_cap=cap)
    assert isinstance(full, QueueFull) and full.result is not None
    assert full.result.enqueued == cap
    assert len(full.result.message_ids) == 2 * CHUNK_EVENTS
    left = [event for stream in streams(redis_client, key_prefix, 4).values() for event in stream]
    assert drained and not left
    assert_once_in_person_order(drained, range(cap))
