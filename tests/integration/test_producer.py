"""``Producer`` against the real Redis: the wire format, partitioning, backpressure and the kick."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from producers import EnqueueResult, InvalidEventError, Producer, QueueFull, partition_for
from producers.keys import backlog_key, config_key, drain_queue, enqueued_key, lease_key, ready_key, stream_key
from producers.wire import KICK_TTL_MS
from worker.store.layout import reset_backlog_bound
from worker.store.replies import hash_fields, stream_rows

pytestmark = pytest.mark.single_and_cluster

WS = "acme"


@pytest.fixture
def producer(redis_url: str, key_prefix: str) -> Iterator[Producer]:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8, kick=False) as made:
        yield made


def entries(client: redis.Redis, prefix: str, partitions: int = 8) -> list[tuple[int, dict[bytes, bytes]]]:
    """Every entry of the workspace's streams, with its partition, in stream order per partition."""
    found = []
    for partition in range(partitions):
        found += [(partition, fields) for _, fields in stream_rows(client.xrange(stream_key(prefix, WS, partition)))]
    return found


def events_in(client: redis.Redis, prefix: str, partitions: int = 8) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"event"]) for _, fields in entries(client, prefix, partitions)]


def drain_messages(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in client.lrange(drain_queue(prefix), 0, -1)]


def test_an_entry_holds_the_version_and_the_event_plus_its_stamps(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    event = {"type": "track", "userId": "u1", "event": "Signed Up", "odd-field": {"nested": [1, None, "ü"]}}
    message_id = producer.enqueue(event)
    [(partition, fields)] = entries(redis_client, key_prefix)
    assert partition == partition_for(event, 8)
    assert set(fields) == {b"v", b"event"}
    assert fields[b"v"] == b"1"
    written = orjson.loads(fields[b"event"])
    assert written == {**event, "messageId": message_id, "timestamp": written["sentAt"], "sentAt": written["sentAt"]}
    sent_at = dt.datetime.fromisoformat(written["sentAt"])
    assert written["sentAt"].endswith("Z")
    assert abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) < 60


def test_a_given_message_id_and_timestamp_are_kept(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    event = {"type": "identify", "userId": 7, "messageId": "m-1", "timestamp": "2020-02-02T00:00:00Z"}
    assert producer.enqueue(event) == "m-1"
    [written] = events_in(redis_client, key_prefix)
    assert (written["messageId"], written["timestamp"], written["userId"]) == ("m-1", "2020-02-02T00:00:00Z", 7)


def test_a_bad_event_raises_and_enqueues_nothing(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(InvalidEventError, match=r"^event: required for track$"):
        producer.enqueue({"type": "track", "userId": "u1"})
    assert entries(redis_client, key_prefix) == []
    assert producer.backlog() == 0


def test_one_persons_events_share_a_stream_in_order(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    names = [f"step {n}" for n in range(20)]
    for name in names:
        producer.track("same-person", name)
    producer.track("someone-else", "noise")
    streams = {
        partition for partition, fields in entries(redis_client, key_prefix) if b"same-person" in fields[b"event"]
    }
    assert streams == {partition_for({"userId": "same-person"}, 8)}
    ours = [e["event"] for e in events_in(redis_client, key_prefix) if e["userId"] == "same-person"]
    assert ours == names


def test_enqueue_many_enqueues_the_good_events_and_reports_the_bad_by_index(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    events: list[Any] = [
        {"type": "track", "userId": "u1", "event": "A"},
        {"type": "track", "userId": "u1"},
        {"type": "alias", "userId": "u1", "previousId": "a1"},
        "not an object",
        {"type": "group", "groupId": "g1", "messageId": "given"},
    ]
    result = producer.enqueue_many(events)
    assert result.enqueued == 3
    assert result.message_ids[1] is None and result.message_ids[3] is None
    assert result.message_ids[4] == "given"
    assert {index: (error.field, error.index) for index, error in result.errors.items()} == {
        1: ("event", 1),
        3: ("(event)", 3),
    }
    written = {event["messageId"] for event in events_in(redis_client, key_prefix)}
    assert written == {result.message_ids[0], result.message_ids[2], "given"}


def test_enqueue_many_spans_several_chunks_in_input_order(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    result = producer.enqueue_many({"type": "track", "userId": "one", "event": str(n)} for n in range(2_500))
    assert result == EnqueueResult(2_500, result.message_ids, {})
    assert [event["event"] for event in events_in(redis_client, key_prefix)] == [str(n) for n in range(2_500)]


def test_a_full_backlog_raises_queue_full_and_adds_nothing(redis_url: str, key_prefix: str) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=3, kick=False) as producer:
        for n in range(3):
            producer.track(f"user-{n}", "fill")
        with pytest.raises(QueueFull) as caught:
            producer.track("user-9", "one too many")
        assert (caught.value.workspace, caught.value.backlog, caught.value.cap) == (WS, 3, 3)
        assert caught.value.result is None
        assert producer.backlog() == 3


def test_enqueue_many_fills_up_to_the_cap_in_input_order_then_raises(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    events = [{"type": "track", "userId": f"u{n}", "event": str(n)} for n in range(6)]
    events.insert(1, {"type": "track", "event": "no person"})
    with (
        Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=4, kick=False) as producer,
        pytest.raises(QueueFull) as caught,
    ):
        producer.enqueue_many(events)
    result = caught.value.result
    assert result is not None
    assert result.enqueued == 4
    assert [message_id is not None for message_id in result.message_ids] == [True, False, True, True, True] + [
        False
    ] * 2
    assert list(result.errors) == [1]
    assert sorted(e["event"] for e in events_in(redis_client, key_prefix, 4)) == ["0", "1", "2", "3"]


def test_the_enqueued_counts_per_type_count_exactly_the_events_appended(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # Given a mix of types, and a cap that stops the call after the fifth event
    kinds = ["track", "page", "identify", "track", "group", "alias", "screen", "track"]
    people = {"group": {"groupId": "g"}, "alias": {"previousId": "p"}}
    events = [{"type": kind, "userId": f"u{n}", "event": "e", **people.get(kind, {})} for n, kind in enumerate(kinds)]
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=5, kick=False) as producer:
        producer.enqueue_many(events[:2])
        with pytest.raises(QueueFull):
            producer.enqueue_many(events[2:])
    # Then the per-type counts hold the five appended events, by type
    counts = {
        kind.decode(): int(n) for kind, n in hash_fields(redis_client.hgetall(enqueued_key(key_prefix, WS))).items()
    }
    assert counts == {"track": 2, "page": 1, "identify": 1, "group": 1}


def stale_high_bound(client: redis.Redis, prefix: str, producer: Producer, delivered: int) -> None:
    """Take ``delivered`` entries out of the workspace's streams as deliveries do: the bound is not lowered."""
    for key in producer._resolve().streams:
        for entry_id, _ in stream_rows(client.xrange(key)):
            if delivered:
                client.xdel(key, entry_id)
                delivered -= 1


def test_a_stale_high_bound_still_fills_the_cap_exactly(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=10, kick=False) as producer:
        # Given 8 events enqueued, 6 of them delivered since: the bound says 8, the backlog is 2
        producer.enqueue_many({"type": "track", "userId": f"u{n}", "event": "old"} for n in range(8))
        stale_high_bound(redis_client, key_prefix, producer, delivered=6)
        assert int(redis_client.hget(backlog_key(key_prefix, WS), "events") or 0) == 8
        # When 10 more are offered
        with pytest.raises(QueueFull) as caught:
            producer.enqueue_many({"type": "track", "userId": f"v{n}", "event": "new"} for n in range(10))
        # Then exactly 8 go in, up to the cap, and the bound is the exact backlog again
        assert caught.value.result is not None and caught.value.result.enqueued == 8
        assert caught.value.backlog == producer.backlog() == 10
        assert redis_client.hmget(backlog_key(key_prefix, WS), ["events", "streams"]) == [b"10", b"4"]


def test_a_lone_event_at_a_stale_high_bound_is_enqueued(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=3, kick=False) as producer:
        # Given a bound at the cap (3) while one event waits: its one-partition call cannot sum the backlog
        producer.enqueue_many({"type": "track", "userId": f"u{n}", "event": "old"} for n in range(3))
        stale_high_bound(redis_client, key_prefix, producer, delivered=2)
        # When one more event is tracked, it goes in (sent again with every stream, which sums the backlog)
        producer.track("u9", "new")
        assert producer.backlog() == 2
        assert redis_client.hmget(backlog_key(key_prefix, WS), ["events", "streams"]) == [b"2", b"4"]


def test_events_enqueued_without_a_cap_count_against_another_producers_cap(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    capped = Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=6, kick=False)
    uncapped = Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=None, kick=False)
    with capped, uncapped:
        capped.track("u0", "first")  # the bound is exact from here: 1
        assert uncapped.enqueue_many({"type": "track", "userId": f"u{n}", "event": "x"} for n in range(5)).enqueued == 5
        with pytest.raises(QueueFull):
            capped.track("u9", "one too many")
        assert capped.backlog() == 6


def test_a_bound_over_fewer_streams_than_the_layout_is_not_trusted(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # Given 3 events in stream 3 and a bound of 0 that covers streams 0..1 only
    for n in range(3):
        redis_client.xadd(stream_key(key_prefix, WS, 3), {"v": "1", "event": orjson.dumps({"n": n})})
    redis_client.hset(backlog_key(key_prefix, WS), mapping={"events": 0, "streams": 2})
    # Then a producer of 4 partitions sums the 4 streams and finds the cap reached
    with (
        Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=3, kick=False) as producer,
        pytest.raises(QueueFull) as caught,
    ):
        producer.track("u1", "x")
    assert caught.value.backlog == 3


def test_raw_xadd_events_count_against_the_cap_from_the_next_sweep(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=3, kick=False) as producer:
        # Given an exact bound (one event), then two events from a raw XADD, which the bound does not see
        producer.track("u1", "x")
        for n in range(2):
            redis_client.xadd(stream_key(key_prefix, WS, 0), {"v": "1", "event": orjson.dumps({"n": n})})
        # When the producer enqueues before the sweeper's round, it goes by the bound (1 + 1 <= 3)
        producer.track("u2", "x")
        assert producer.backlog() == 4
        # Then once a sweep set the bound to the backlog, the cap holds
        assert reset_backlog_bound(redis_client, key_prefix, WS, 4) == 4
        with pytest.raises(QueueFull):
            producer.track("u3", "x")
        assert producer.backlog() == 4


def test_a_sweep_lowers_the_bound_to_the_backlog(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4, backlog_cap=100, kick=False) as producer:
        producer.enqueue_many({"type": "track", "userId": f"u{n}", "event": "x"} for n in range(9))
        stale_high_bound(redis_client, key_prefix, producer, delivered=7)
    assert reset_backlog_bound(redis_client, key_prefix, WS, 6) == 2
    assert redis_client.hmget(backlog_key(key_prefix, WS), ["events", "streams"]) == [b"2", b"6"]


def test_no_cap_means_no_backpressure(redis_url: str, key_prefix: str) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=2, backlog_cap=None, kick=False) as producer:
        assert producer.enqueue_many({"type": "page", "userId": n} for n in range(50)).enqueued == 50
        assert producer.backlog() == 50


def test_a_producer_follows_the_count_the_workers_publish_after_it_cached_one(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    """Issue 9.3: a cached count of 16 after the workers moved to 8 would write to streams nobody drains."""
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    users = [f"user-{n}" for n in range(40)]
    assert any(partition_for({"userId": user}, 16) >= 8 for user in users)
    with Producer(redis_url, WS, key_prefix=key_prefix, kick=False) as producer:
        producer.track("early", "x")
        redis_client.hset(config_key(key_prefix, WS), "partitions", "8")
        producer.track(users[0], "x")
        producer.enqueue_many({"type": "track", "userId": user, "event": "x"} for user in users[1:])
    early = partition_for({"userId": "early"}, 16)
    assert redis_client.xlen(stream_key(key_prefix, WS, early)) >= 1
    in_range = sum(redis_client.xlen(stream_key(key_prefix, WS, n)) for n in range(8))
    assert in_range == len(users) + (early < 8)
    for user in users:
        assert redis_client.xlen(stream_key(key_prefix, WS, partition_for({"userId": user}, 8))) >= 1


def test_the_published_count_wins_over_the_partitions_argument(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    redis_client.hset(config_key(key_prefix, WS), "partitions", "3")
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8, kick=False) as producer:
        producer.track("u1", "x")
    assert redis_client.xlen(stream_key(key_prefix, WS, partition_for({"userId": "u1"}, 3))) == 1


def test_before_any_count_is_published_the_producer_records_the_span_it_writes(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    """Workers then drain streams 0..15 whatever count they are configured with."""
    with Producer(redis_url, WS, key_prefix=key_prefix, kick=False) as producer:
        producer.track("u1", "x")
    assert redis_client.hgetall(config_key(key_prefix, WS)) == {b"span": b"16"}


@pytest.mark.parametrize("published", [None, "0", "lots"])
def test_without_a_usable_published_count_the_default_16_partitions_apply(
    redis_client: redis.Redis, redis_url: str, key_prefix: str, published: str | None
) -> None:
    if published is not None:
        redis_client.hset(config_key(key_prefix, WS), "partitions", published)
    with Producer(redis_url, WS, key_prefix=key_prefix, kick=False) as producer:
        producer.track("u-abc", "x")
    assert redis_client.xlen(stream_key(key_prefix, WS, partition_for({"userId": "u-abc"}, 16))) == 1


@pytest.mark.single_only
def test_the_first_event_of_an_idle_partition_kicks_one_drain_task(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8) as producer:
        producer.track("u1", "first")
        producer.track("u1", "second")
    partition = partition_for({"userId": "u1"}, 8)
    assert redis_client.get(lease_key(key_prefix, WS, partition)) == b"kicked"
    assert KICK_TTL_MS - 60_000 < redis_client.pttl(lease_key(key_prefix, WS, partition)) <= KICK_TTL_MS
    [message] = drain_messages(redis_client, key_prefix)
    assert message["headers"]["task"] == "worker.drain"
    assert message["headers"]["argsrepr"] == repr([WS, partition])
    assert message["content-type"] == "application/json"
    args, kwargs, _ = orjson.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([WS, partition], {})


def test_a_partition_with_a_lease_is_not_kicked_again(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    partition = partition_for({"userId": "u1"}, 8)
    redis_client.set(lease_key(key_prefix, WS, partition), "owner-token", px=30_000)
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8) as producer:
        producer.track("u1", "x")
    assert redis_client.get(lease_key(key_prefix, WS, partition)) == b"owner-token"
    assert drain_messages(redis_client, key_prefix) == []


def test_enqueue_many_kicks_each_idle_partition_it_touched_once(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    users = [f"user-{n}" for n in range(12)]
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=4) as producer:
        producer.enqueue_many({"type": "track", "userId": user, "event": "x"} for user in users * 3)
    touched = sorted({partition_for({"userId": user}, 4) for user in users})
    assert kicked_partitions(redis_client, key_prefix) == touched


def kicked_partitions(client: redis.Redis, prefix: str) -> list[int]:
    """The partitions kicked: drain tasks on the queue (one node), or partitions marked ready (a cluster)."""
    queued = [orjson.loads(base64.b64decode(m["body"]))[0][1] for m in drain_messages(client, prefix)]
    ready = [int(member) for member in client.smembers(ready_key(prefix, WS))]
    return sorted(queued + ready)


def test_a_kick_goes_where_the_workers_take_it_from(
    redis_client: redis.Redis, redis_url: str, redis_kind: str, key_prefix: str
) -> None:
    # When a producer kicks an idle partition
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8) as producer:
        producer.track("u1", "first")
        producer.track("u1", "second")
    partition = partition_for({"userId": "u1"}, 8)
    # Then on one node its drain task is on the drain queue (the broker is this Redis); on a cluster (the broker is
    # elsewhere) the partition is marked ready in the workspace's slot, for the workers to queue its task
    assert redis_client.get(lease_key(key_prefix, WS, partition)) == b"kicked"
    on_cluster = redis_kind == "cluster"
    assert redis_client.smembers(ready_key(key_prefix, WS)) == ({str(partition).encode()} if on_cluster else set())
    assert len(drain_messages(redis_client, key_prefix)) == (0 if on_cluster else 1)


def test_kick_false_leaves_the_partition_to_the_sweeper(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    producer.track("u1", "x")
    assert redis_client.get(lease_key(key_prefix, WS, partition_for({"userId": "u1"}, 8))) is None
    assert redis_client.exists(drain_queue(key_prefix)) == 0


@pytest.mark.single_only
def test_the_kick_is_the_message_celery_would_queue(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    # Given the message Celery's own client queues for a drain task (the worker's broker reads that form)
    import celery

    app = celery.Celery(broker=redis_url, set_as_current=False)
    app.send_task("worker.drain", args=['we"ird ws', 5], queue=drain_queue(key_prefix), serializer="json")
    app.close()
    [celerys] = drain_messages(redis_client, key_prefix)
    redis_client.delete(drain_queue(key_prefix))
    # When a producer kicks partition 5 of that workspace in its enqueue script
    user = next(f"u{n}" for n in range(1000) if partition_for({"userId": f"u{n}"}, 8) == 5)
    with Producer(redis_url, 'we"ird ws', key_prefix=key_prefix, partitions=8) as producer:
        producer.track(user, "x")
    [ours] = drain_messages(redis_client, key_prefix)
    # Then it is the same message, but for its task id and origin (Celery's reply_to is for results: none here)
    for message in (ours, celerys):
        assert message["headers"]["id"] == message["headers"]["root_id"] == message["properties"]["correlation_id"]
        assert message["properties"].pop("delivery_tag") and message["properties"].pop("correlation_id")
        message["headers"].pop("id"), message["headers"].pop("root_id"), message["headers"].pop("origin")
        message["properties"].pop("reply_to", None)
    assert orjson.loads(base64.b64decode(ours.pop("body"))) == orjson.loads(base64.b64decode(celerys.pop("body")))
    assert ours == celerys


@pytest.mark.single_only
def test_a_kick_has_a_task_id_of_its_own(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    users = [f"user-{n}" for n in range(40)]
    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8) as producer:
        producer.enqueue_many({"type": "track", "userId": user, "event": "x"} for user in users)
        producer.track("late", "x")
    ids = [uuid.UUID(message["headers"]["id"]) for message in drain_messages(redis_client, key_prefix)]
    assert len(ids) == len({partition_for({"userId": user}, 8) for user in [*users, "late"]}) == len(set(ids))


def test_the_call_shapes_write_segment_events(producer: Producer, redis_client: redis.Redis, key_prefix: str) -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    producer.identify("u1", {"email": "a@x.io"}, context={"ip": "1.2.3.4"}, timestamp=moment, plan="pro")
    producer.track("u1", "Bought", {"total": 3}, message_id="m-track")
    producer.page("u1", "Home", {"url": "https://x.io"}, category="docs")
    producer.screen("u1", "Settings", anonymous_id="anon")
    producer.group("u1", "g1", {"name": "G"}, integrations={"All": True})
    producer.alias("anon", "u1")
    written = {event["type"]: event for event in events_in(redis_client, key_prefix)}
    assert written["identify"]["traits"] == {"email": "a@x.io"}
    assert (written["identify"]["timestamp"], written["identify"]["plan"]) == ("2026-01-02T03:04:05Z", "pro")
    assert written["identify"]["context"] == {"ip": "1.2.3.4"}
    assert (written["track"]["event"], written["track"]["messageId"]) == ("Bought", "m-track")
    assert (written["page"]["name"], written["page"]["category"]) == ("Home", "docs")
    assert (written["screen"]["name"], written["screen"]["anonymousId"]) == ("Settings", "anon")
    assert (written["group"]["groupId"], written["group"]["integrations"]) == ("g1", {"All": True})
    assert (written["alias"]["previousId"], written["alias"]["userId"]) == ("anon", "u1")
    assert all(uuid.UUID(event["messageId"]) for event in written.values() if event["type"] != "track")


def test_a_call_shape_with_a_missing_field_raises_before_anything_is_sent(
    producer: Producer, redis_client: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(InvalidEventError, match=r"^previousId: required for alias$"):
        producer.alias(None, "u1")
    with pytest.raises(InvalidEventError, match=r"^userId: userId, anonymousId or email required for track$"):
        producer.track(event="Anonymous click")
    assert producer.backlog() == 0


def test_a_model_can_be_enqueued_directly(producer: Producer, redis_client: redis.Redis, key_prefix: str) -> None:
    from producers import Track

    producer.enqueue(Track(userId="u1", event="Typed", properties={"a": 1}, custom="kept"))
    [written] = events_in(redis_client, key_prefix)
    assert (written["event"], written["custom"], written["properties"]) == ("Typed", "kept", {"a": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workspace": None}, "workspace"),
        ({"workspace": "a:b"}, "workspace"),
        ({"workspace": WS, "partitions": 0}, "partitions"),
        ({"workspace": WS, "backlog_cap": 0}, "backlog_cap"),
    ],
)
def test_bad_arguments_are_refused_at_construction(redis_url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Producer(redis_url, **kwargs)


def test_a_script_missing_from_the_server_cache_is_loaded_and_the_call_retried(
    producer: Producer, redis_client: redis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A variant of the script the server has never seen, as after a restart; SCRIPT FLUSH would disturb others.
    import hashlib

    import producers._kick
    import producers._producer

    fresh = producers._kick.ENQUEUE_SCRIPT + f"\n-- {uuid.uuid4()}\n"
    monkeypatch.setattr(producers._producer, "ENQUEUE_SCRIPT", fresh)
    monkeypatch.setattr(producers._kick, "ENQUEUE_SHA", hashlib.sha1(fresh.encode()).hexdigest())
    producer.track("u1", "after a restart")
    assert [e["event"] for e in events_in(redis_client, key_prefix)] == ["after a restart"]


def test_threads_sharing_one_producer_each_get_a_connection(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # Given one producer and 8 threads that enqueue at the same time (single events and chunks)
    import threading

    start = threading.Barrier(8)

    def work(shared: Producer, thread: int) -> None:
        start.wait()
        for n in range(50):
            shared.track(f"user-{thread}", f"{thread}-{n}")
        shared.enqueue_many({"type": "track", "userId": f"user-{thread}", "event": f"{thread}-m{n}"} for n in range(50))

    with Producer(redis_url, WS, key_prefix=key_prefix, partitions=8) as producer:
        threads = [threading.Thread(target=work, args=(producer, n)) for n in range(8)]
        for started in threads:
            started.start()
        for started in threads:
            started.join()
    # Then every event is written once, each thread's in its order
    written = events_in(redis_client, key_prefix)
    assert len(written) == len({event["messageId"] for event in written}) == 800
    for thread in range(8):
        ours = [event["event"] for event in written if event["userId"] == f"user-{thread}"]
        assert ours == [f"{thread}-{n}" for n in range(50)] + [f"{thread}-m{n}" for n in range(50)]


@pytest.mark.single_only
def test_every_kick_body_is_well_formed_base64_whatever_its_length(
    redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # One- and two-digit partitions and names of three lengths: bodies of every length modulo 3 (base64 padding)
    lengths = set()
    for workspace in ("a", "ab", "abc"):
        with Producer(redis_url, workspace, key_prefix=key_prefix, partitions=16) as producer:
            producer.enqueue_many({"type": "track", "userId": f"u{n}", "event": "x"} for n in range(200))
        bodies = [base64.b64decode(m["body"], validate=True) for m in drain_messages(redis_client, key_prefix)]
        redis_client.delete(drain_queue(key_prefix))
        assert sorted(orjson.loads(body)[0][1] for body in bodies) == list(range(16))
        assert {orjson.loads(body)[0][0] for body in bodies} == {workspace}
        lengths |= {len(body) % 3 for body in bodies}
    assert lengths == {0, 1, 2}
