"""Kicks on a broker of their own: the relay publishes them, none is lost, and the sweeper still finds lost ones.

Real Redis; the broker is a recording publish function (the relay's port), or a second Redis database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from producers import Producer, partition_for
from producers.connect import sync_client
from producers.keys import drain_queue, kicks_key, lease_key, ready_key, stream_key
from producers.wire import KICK_GRACE_MS, KICK_TTL_MS
from tests.conftest import TEST_REDIS_URL
from worker.broker import QueuedPartitions, broker_is_events_redis
from worker.pipeline.relay import ReadyRelay, Relay
from worker.pipeline.sweeper import kick_lost, relay_ready
from worker.settings import Settings
from worker.store.kicks import PUBLISHED_TTL_MS, mark_published
from worker.store.partitions import PartitionStore

WS = "acme"
#: A second database of the test Redis, standing for a standalone Redis broker.
BROKER_DB = 1


class Broker:
    """The relay's publish port: records what it publishes, or fails while ``down``."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []
        self.down = False

    def publish(self, workspace: str, partition: int) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.published.append((workspace, partition))


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def relay(redis_url: str, key_prefix: str, broker: Broker) -> Iterator[Relay]:
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    yield Relay(client, drain_queue(key_prefix), broker.publish)
    client.close()


def users_by_partition(partitions: int = 8) -> dict[int, str]:
    return {partition_for({"userId": f"u{n}"}, partitions): f"u{n}" for n in range(100)}


def enqueue(redis_url: str, prefix: str, *partitions: int) -> None:
    """One event per partition, by the producer: each idle partition is kicked (lease + message on the list)."""
    users = users_by_partition()
    with Producer(redis_url, WS, key_prefix=prefix, partitions=8) as producer:
        for partition in partitions:
            producer.track(users[partition], "x")


def test_the_relay_publishes_each_kick_a_producer_left_in_the_list(relay, broker, redis_url, redis_client, key_prefix):
    # Given two partitions kicked by a producer
    enqueue(redis_url, key_prefix, 3, 5)
    # When the relay goes round until the list is empty
    while relay.relay_once():
        pass
    # Then each partition's drain task was published once, in the order of the kicks, and the list is empty
    assert broker.published == [(WS, 3), (WS, 5)]
    assert redis_client.llen(drain_queue(key_prefix)) == 0


def test_a_kick_whose_publish_fails_stays_in_the_list_and_is_published_when_the_broker_is_back(
    relay, broker, redis_url, redis_client, key_prefix
):
    # Given a kicked partition and a broker that cannot be reached
    enqueue(redis_url, key_prefix, 3)
    broker.down = True
    # When the relay tries, then the publish fails and the kick is back in the list, its lease still 'kicked'
    with pytest.raises(ConnectionError):
        relay.relay_once()
    assert redis_client.llen(drain_queue(key_prefix)) == 1
    assert redis_client.get(lease_key(key_prefix, WS, 3)) == b"kicked"
    # And once the broker is back, the next round publishes it
    broker.down = False
    assert relay.relay_once() == 1
    assert broker.published == [(WS, 3)]


def test_a_message_that_is_not_a_drain_task_is_dropped(relay, broker, redis_client, key_prefix):
    redis_client.lpush(drain_queue(key_prefix), b"not json")
    assert relay.relay_once() == 0
    assert broker.published == []
    assert redis_client.llen(drain_queue(key_prefix)) == 0


def test_the_relay_returns_after_its_wait_when_there_is_no_kick(relay, broker):
    assert relay.relay_once() == 0
    assert broker.published == []


def test_the_relay_thread_publishes_kicks_as_they_come_and_stops(relay, broker, redis_url, key_prefix):
    from tests.e2e.conftest import wait_for

    relay.start()
    enqueue(redis_url, key_prefix, 1)
    wait_for(lambda: broker.published == [(WS, 1)], 30, "the kick to be published")
    relay.stop()
    assert not relay._thread.is_alive()


# What the sweeper reads back on each broker


def fleet_settings(prefix: str, broker_url: str | None = None) -> Settings:
    workspace = {"site_id": "site", "api_key": "key", "track_url": "http://127.0.0.1:9/", "partitions": 8}
    return Settings(key_prefix=prefix, workspaces={WS: workspace}, broker_url=broker_url)


def old_kick(client: redis.Redis, prefix: str, partition: int) -> None:
    """A partition with an event and a ``kicked`` lease set more than ``KICK_GRACE_MS`` ago."""
    client.xadd(stream_key(prefix, WS, partition), {"v": "1", "event": b"{}"})
    client.set(lease_key(prefix, WS, partition), "kicked", px=KICK_TTL_MS - KICK_GRACE_MS - 1_000)


def test_a_kick_published_to_rabbitmq_is_never_taken_for_lost(redis_client, key_prefix):
    # Given two old kicks on RabbitMQ, whose queue cannot be read: one published (recorded), one lost on the way
    old_kick(redis_client, key_prefix, 2)
    old_kick(redis_client, key_prefix, 4)
    assert mark_published(redis_client, key_prefix, WS, 2)
    assert int(redis_client.pttl(lease_key(key_prefix, WS, 2))) > KICK_TTL_MS
    # When the sweeper looks for lost kicks, with nothing readable in the relay's list
    kicked: list[tuple[str, int]] = []
    store = PartitionStore(redis_client, key_prefix)
    amqp = fleet_settings(key_prefix, "amqp://guest:guest@127.0.0.1:5672//")
    found = kick_lost(amqp, store, lambda ws, n: kicked.append((ws, n)), QueuedPartitions(amqp, redis_client))
    # Then only the unpublished one is kicked again
    assert (found, kicked) == (1, [(WS, 4)])


def test_only_a_kicked_lease_is_marked_published(redis_client, key_prefix):
    redis_client.set(lease_key(key_prefix, WS, 1), "a-drainers-token", px=60_000)
    assert not mark_published(redis_client, key_prefix, WS, 1)
    assert int(redis_client.pttl(lease_key(key_prefix, WS, 1))) <= 60_000
    assert not mark_published(redis_client, key_prefix, WS, 2)  # no lease at all
    assert PUBLISHED_TTL_MS > KICK_TTL_MS


@pytest.fixture
def broker_redis(redis_url: str, key_prefix: str) -> Iterator[str]:
    """A standalone Redis broker: another database of the test Redis; the test's queue is deleted afterwards."""
    url = redis_url.rsplit("/", 1)[0] + f"/{BROKER_DB}"
    yield url
    client = redis.Redis.from_url(url)
    client.delete(drain_queue(key_prefix))
    client.close()


def test_on_a_standalone_redis_broker_the_relays_list_and_the_brokers_queue_are_both_read(
    redis_url, redis_client, key_prefix, broker_redis
):
    # Given one kick waiting for the relay and one drain task already on the standalone Redis broker
    enqueue(redis_url, key_prefix, 3)
    app = Celery(broker=broker_redis, set_as_current=False)
    app.send_task("worker.drain", args=[WS, 6], queue=drain_queue(key_prefix))
    app.close()
    # When the sweeper reads what is queued, then both partitions are found
    standalone = fleet_settings(key_prefix, broker_redis)
    assert QueuedPartitions(standalone, redis_client)() == {(WS, 3), (WS, 6)}
    # And with the events Redis as the broker, only its own list is read
    assert QueuedPartitions(fleet_settings(key_prefix), redis_client)() == {(WS, 3)}


def test_a_redis_broker_is_told_apart_from_the_events_redis_by_server_and_database(redis_url, redis_client, key_prefix):
    # The events Redis under another spelling is the same broker (no relay); another database is another broker
    same = redis_url.replace("127.0.0.1", "localhost")
    assert broker_is_events_redis(fleet_settings(key_prefix), redis_client)
    assert broker_is_events_redis(fleet_settings(key_prefix, same), redis_client)
    assert not broker_is_events_redis(fleet_settings(key_prefix, redis_url.rsplit("/", 1)[0] + "/1"), redis_client)
    assert not broker_is_events_redis(fleet_settings(key_prefix, "amqp://guest:guest@127.0.0.1:5672//"), redis_client)


@pytest.mark.single_and_cluster
def test_kicks_marked_ready_are_published_once_and_a_task_waiting_on_the_broker_is_not_taken_for_lost(
    redis_client, key_prefix
):
    # Given an old kick a producer on a Redis Cluster left in the workspace's ready set (the cluster has no queue),
    # and a standalone Redis broker
    old_kick(redis_client, key_prefix, 5)
    redis_client.sadd(ready_key(key_prefix, WS), 5)
    broker_url = TEST_REDIS_URL.rsplit("/", 1)[0] + f"/{BROKER_DB}"
    settings = fleet_settings(key_prefix, broker_url)
    app = Celery(broker=broker_url, set_as_current=False)
    kicked: list[tuple[str, int]] = []

    def kick(workspace: str, partition: int) -> None:
        app.send_task("worker.drain", args=[workspace, partition], queue=drain_queue(key_prefix))
        kicked.append((workspace, partition))

    store = PartitionStore(redis_client, key_prefix)
    queued = QueuedPartitions(settings, redis_client)
    broker = redis.Redis.from_url(broker_url)
    try:
        # When a sweeper round publishes the ready set, then the partition's task is on the broker, once
        assert relay_ready(settings, store, kick) == 1
        assert (kicked, redis_client.scard(ready_key(key_prefix, WS))) == ([(WS, 5)], 0)
        assert relay_ready(settings, store, kick) == 0
        # And the lost-kick check finds it queued there: the old kick is not kicked again
        assert kick_lost(settings, store, kick, queued) == 0
        # But once the task is gone from the broker without a drain, it is kicked again
        broker.delete(drain_queue(key_prefix))
        assert kick_lost(settings, store, kick, queued) == 1
    finally:
        broker.delete(drain_queue(key_prefix))
        broker.close()
        app.close()


# On a Redis Cluster: producers wake the relay through the workspace's kicks list


class Crash(BaseException):
    """The relay's process dies in the middle of a publish (nothing below catches it)."""


@pytest.fixture
def ready_relay(redis_url: str, key_prefix: str, broker: Broker) -> Iterator[ReadyRelay]:
    client = sync_client(redis_url, socket_timeout=10)
    relay = ReadyRelay(client, key_prefix, [WS, "other"], broker.publish)
    yield relay
    relay.stop()
    client.close()


def group_of(relay: ReadyRelay, workspace: str) -> list[str]:
    return next(group for group in relay.groups if workspace in group)


@pytest.mark.parametrize("redis_kind", ["cluster"])
def test_on_a_cluster_the_relay_thread_publishes_a_producers_kick_with_no_sweep(
    ready_relay, broker, redis_url, redis_client, key_prefix
):
    from tests.e2e.conftest import wait_for

    # Given a worker's relay waiting on the kicks lists of its workspaces (no sweeper runs)
    ready_relay.start()
    # When a producer on the cluster kicks two partitions
    enqueue(redis_url, key_prefix, 3, 5)
    # Then the relay publishes both drain tasks, and leaves neither the ready set nor the wake-up behind
    wait_for(lambda: sorted(broker.published) == [(WS, 3), (WS, 5)], 30, "the kicks to be published")
    ready_relay.stop()
    assert redis_client.scard(ready_key(key_prefix, WS)) == 0
    assert redis_client.llen(kicks_key(key_prefix, WS)) == 0


@pytest.mark.parametrize("redis_kind", ["cluster"])
def test_on_a_cluster_a_producer_pushes_one_wake_up_however_many_kicks_wait(
    ready_relay, broker, redis_url, redis_client, key_prefix
):
    # Given kicks of three partitions made by two enqueues while no relay ran
    enqueue(redis_url, key_prefix, 1, 2)
    enqueue(redis_url, key_prefix, 6)
    assert redis_client.llen(kicks_key(key_prefix, WS)) == 1
    # When a relay takes the wake-up, then it publishes the three, and the next round finds nothing
    assert ready_relay.relay_once(group_of(ready_relay, WS)) == 3
    assert sorted(broker.published) == [(WS, 1), (WS, 2), (WS, 6)]
    assert ready_relay.relay_once(group_of(ready_relay, WS)) == 0


@pytest.mark.parametrize("redis_kind", ["cluster"])
def test_on_a_cluster_partitions_a_failed_publish_left_are_back_in_the_ready_set(
    ready_relay, broker, redis_url, redis_client, key_prefix
):
    # Given two kicked partitions and a broker that cannot be reached
    enqueue(redis_url, key_prefix, 3, 5)
    broker.down = True
    # When the relay takes them, then the publish fails and the partition it did not try is back in the ready set
    with pytest.raises(ConnectionError):
        ready_relay.relay_once(group_of(ready_relay, WS))
    assert redis_client.smembers(ready_key(key_prefix, WS)) == {b"5"}
    # And the sweeper's round publishes it once the broker is back
    broker.down = False
    store = PartitionStore(redis_client, key_prefix)
    assert relay_ready(fleet_settings(key_prefix), store, broker.publish) == 1
    assert broker.published == [(WS, 5)]


@pytest.mark.parametrize("redis_kind", ["cluster"])
def test_on_a_cluster_a_kick_taken_by_a_relay_that_died_is_kicked_again_by_the_sweeper(
    redis_url, redis_client, key_prefix
):
    # Given a relay whose process dies as it publishes a partition it took from the ready set
    def die(workspace: str, partition: int) -> None:
        raise Crash

    client = sync_client(redis_url, socket_timeout=10)
    relay = ReadyRelay(client, key_prefix, [WS], die)
    enqueue(redis_url, key_prefix, 4)
    with pytest.raises(Crash):
        relay.relay_once([WS])
    client.close()
    assert redis_client.scard(ready_key(key_prefix, WS)) == 0
    # When its kick is older than the grace and no task of it is queued
    redis_client.pexpire(lease_key(key_prefix, WS, 4), KICK_TTL_MS - KICK_GRACE_MS - 1_000)
    kicked: list[tuple[str, int]] = []
    store = PartitionStore(redis_client, key_prefix)
    found = kick_lost(fleet_settings(key_prefix), store, lambda ws, n: kicked.append((ws, n)), set)
    # Then the sweeper kicks it again
    assert (found, kicked) == (1, [(WS, 4)])
