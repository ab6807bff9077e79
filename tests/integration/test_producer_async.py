"""``AsyncProducer`` against the real Redis: the same behaviour as ``Producer`` through ``redis.asyncio``."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import pytest
import redis

from producers import AsyncProducer, InvalidEventError, QueueFull, partition_for
from producers.keys import backlog_key, config_key, drain_queue, lease_key, stream_key
from worker.store.replies import stream_rows

pytestmark = pytest.mark.single_and_cluster

WS = "acme"
T = TypeVar("T")


def run(redis_url: str, prefix: str, scenario: Callable[[AsyncProducer], Awaitable[T]], **options: Any) -> T:
    """Run ``scenario`` with a fresh producer inside its own event loop, closing the producer afterwards."""

    async def main() -> T:
        async with AsyncProducer(redis_url, WS, key_prefix=prefix, **options) as producer:
            return await scenario(producer)

    return asyncio.run(main())


def events_in(client: redis.Redis, prefix: str, partitions: int) -> list[dict[str, Any]]:
    found = []
    for partition in range(partitions):
        found += [
            orjson.loads(fields[b"event"])
            for _, fields in stream_rows(client.xrange(stream_key(prefix, WS, partition)))
        ]
    return found


def test_an_event_is_written_with_its_stamps(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    event = {"type": "track", "userId": 5, "event": "Async", "extra": [1, 2]}
    message_id = run(redis_url, key_prefix, lambda p: p.enqueue(event), partitions=4, kick=False)
    [written] = events_in(redis_client, key_prefix, 4)
    assert written == {**event, "messageId": message_id, "timestamp": written["sentAt"], "sentAt": written["sentAt"]}
    assert redis_client.xlen(stream_key(key_prefix, WS, partition_for(event, 4))) == 1


def test_a_bad_event_raises_and_enqueues_nothing(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    async def scenario(producer: AsyncProducer) -> int:
        with pytest.raises(InvalidEventError, match=r"^groupId: required for group$"):
            await producer.group("u1", None)
        return await producer.backlog()

    assert run(redis_url, key_prefix, scenario, partitions=4, kick=False) == 0


def test_enqueue_many_reports_bad_events_by_index(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    events = [{"type": "page", "userId": "u"}, {"type": "page"}, {"type": "screen", "userId": "u", "name": "S"}]
    result = run(redis_url, key_prefix, lambda p: p.enqueue_many(events), partitions=4, kick=False)
    assert (result.enqueued, list(result.errors), result.message_ids[1]) == (2, [1], None)
    assert [e["type"] for e in events_in(redis_client, key_prefix, 4)] == ["page", "screen"]


def test_a_full_backlog_raises_queue_full(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    async def scenario(producer: AsyncProducer) -> QueueFull:
        await producer.track("u1", "one")
        with pytest.raises(QueueFull) as caught:
            await producer.enqueue_many([{"type": "track", "userId": "u2", "event": n} for n in ("two", "three")])
        return caught.value

    full = run(redis_url, key_prefix, scenario, partitions=2, backlog_cap=2, kick=False)
    assert (full.backlog, full.cap, full.result and full.result.enqueued) == (2, 2, 1)
    assert [e["event"] for e in events_in(redis_client, key_prefix, 2)] == ["one", "two"]


def test_a_stale_high_bound_still_fills_the_cap_exactly(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    async def scenario(producer: AsyncProducer) -> QueueFull:
        # Given 5 events enqueued, then 4 of them delivered (deleted): the bound says 5, the backlog is 1
        await producer.enqueue_many([{"type": "track", "userId": f"u{n}", "event": "old"} for n in range(5)])
        streams = (await producer._resolve()).streams
        waiting = [(key, entry_id) for key in streams for entry_id, _ in stream_rows(redis_client.xrange(key))]
        for key, entry_id in waiting[1:]:
            redis_client.xdel(key, entry_id)
        with pytest.raises(QueueFull) as caught:
            await producer.enqueue_many([{"type": "track", "userId": f"v{n}", "event": "new"} for n in range(6)])
        return caught.value

    full = run(redis_url, key_prefix, scenario, partitions=2, backlog_cap=5, kick=False)
    # Then exactly 4 of the 6 went in, up to the cap, and the bound is exact again
    assert (full.backlog, full.result and full.result.enqueued) == (5, 4)
    assert len(events_in(redis_client, key_prefix, 2)) == 5
    assert redis_client.hmget(backlog_key(key_prefix, WS), ["events", "streams"]) == [b"5", b"2"]


def test_events_enqueued_without_a_cap_count_against_the_cap(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    async def scenario(producer: AsyncProducer) -> None:
        await producer.track("u0", "first")  # the bound is exact from here: 1
        async with AsyncProducer(
            redis_url, WS, key_prefix=key_prefix, partitions=2, backlog_cap=None, kick=False
        ) as uncapped:
            await uncapped.enqueue_many([{"type": "track", "userId": f"u{n}", "event": "x"} for n in range(3)])
        with pytest.raises(QueueFull):
            await producer.track("u9", "one too many")

    run(redis_url, key_prefix, scenario, partitions=2, backlog_cap=4, kick=False)
    assert len(events_in(redis_client, key_prefix, 2)) == 4


def test_the_published_partition_count_is_used(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    redis_client.hset(config_key(key_prefix, WS), "partitions", "5")
    run(redis_url, key_prefix, lambda p: p.identify("someone"), kick=False)
    assert redis_client.xlen(stream_key(key_prefix, WS, partition_for({"userId": "someone"}, 5))) == 1


def test_a_cached_count_is_dropped_when_the_workers_publish_another(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    """Issue 9.3: a count of 16 cached before the workers moved to 8 must not write to streams 8-15."""
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    users = [f"user-{n}" for n in range(40)]

    async def scenario(producer: AsyncProducer) -> None:
        await producer.track("early", "x")
        redis_client.hset(config_key(key_prefix, WS), "partitions", "8")
        await producer.track(users[0], "x")
        await producer.enqueue_many({"type": "track", "userId": user, "event": "x"} for user in users[1:])

    run(redis_url, key_prefix, scenario, kick=False)
    late = [e for e in events_in(redis_client, key_prefix, 8) if e["userId"] != "early"]
    assert sorted(e["userId"] for e in late) == sorted(users)
    for user in users:
        assert redis_client.xlen(stream_key(key_prefix, WS, partition_for({"userId": user}, 8))) >= 1


@pytest.mark.single_only
def test_the_first_event_kicks_one_drain_task(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    async def scenario(producer: AsyncProducer) -> None:
        await producer.track("u1", "first")
        await producer.track("u1", "second")

    run(redis_url, key_prefix, scenario, partitions=4)
    partition = partition_for({"userId": "u1"}, 4)
    assert redis_client.get(lease_key(key_prefix, WS, partition)) == b"kicked"
    [raw] = redis_client.lrange(drain_queue(key_prefix), 0, -1)
    message = orjson.loads(raw)
    assert message["headers"]["task"] == "worker.drain"
    assert orjson.loads(base64.b64decode(message["body"]))[0] == [WS, partition]


def test_kick_false_queues_no_task(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    run(redis_url, key_prefix, lambda p: p.alias("anon", "u1"), partitions=4, kick=False)
    assert redis_client.get(lease_key(key_prefix, WS, partition_for({"userId": "u1"}, 4))) is None
    assert redis_client.exists(drain_queue(key_prefix)) == 0


def test_the_call_shapes_are_awaitable(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    async def scenario(producer: AsyncProducer) -> list[str]:
        return list(
            await asyncio.gather(
                producer.identify("u1", {"plan": "pro"}),
                producer.page("u1", "Home"),
                producer.screen("u1", "Main"),
                producer.group("u1", "g1"),
            )
        )

    ids = run(redis_url, key_prefix, scenario, partitions=4, kick=False)
    assert sorted(e["messageId"] for e in events_in(redis_client, key_prefix, 4)) == sorted(ids)


def test_concurrent_tasks_sharing_one_producer_are_all_written(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    async def scenario(producer: AsyncProducer) -> list[str]:
        singles = [producer.track(f"user-{n % 7}", f"e{n}") for n in range(60)]  # the pool holds 100
        many = producer.enqueue_many({"type": "track", "userId": "bulk", "event": f"m{n}"} for n in range(300))
        ids, result = await asyncio.gather(asyncio.gather(*singles), many)
        assert None not in result.message_ids
        return [*ids, *(str(message_id) for message_id in result.message_ids)]

    message_ids = run(redis_url, key_prefix, scenario, partitions=4)
    written = events_in(redis_client, key_prefix, 4)
    assert sorted(event["messageId"] for event in written) == sorted(message_ids)
    assert [event["event"] for event in written if event["userId"] == "bulk"] == [f"m{n}" for n in range(300)]
