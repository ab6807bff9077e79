"""Issue 16: a master of the cluster dies while a worker delivers; its replica takes over and the fleet carries on.

A private cluster of its own (the test kills one of its masters); the broker is the shared single Redis.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import redis

from producers import NotReplicated
from producers.connect import sync_client
from producers.keys import stream_key
from tests.conftest import TEST_REDIS_URL
from tests.e2e.conftest import standin_workspaces, wait_for
from tests.support.redis_cluster import RedisCluster
from worker.local.fake_customerio import FakeCustomerIO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    private = RedisCluster(tmp_path_factory.mktemp("e2e-failover-cluster"))
    private.start()
    yield private
    private.stop()


@pytest.fixture
def redis_url(cluster: RedisCluster) -> str:
    return cluster.url


@pytest.fixture
def broker(key_prefix: str) -> Iterator[None]:
    yield
    client = redis.Redis.from_url(TEST_REDIS_URL)
    keys = [*client.scan_iter(match=f"{key_prefix}.*"), *client.scan_iter(match=f"_kombu.binding*.{key_prefix}.*")]
    if keys:
        client.delete(*keys)
    client.close()


def master_of(client: redis.Redis, key: str) -> int:
    cluster: redis.cluster.RedisCluster = client  # type: ignore[assignment]
    cluster.nodes_manager.initialize()
    node = cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
    return int(node.port)


def delivered(stand_in: FakeCustomerIO, ids: set[str]) -> bool:
    return ids <= {op["operation"]["id"] for op in stand_in.accepted("site-a")}


def test_a_master_killed_mid_run_fails_over_and_the_worker_delivers_everything_acknowledged(
    stand_in, make_fleet, cluster, key_prefix, broker
):
    # Given a worker on the cluster and a producer that waits for a replica before it acknowledges
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_BROKER_URL=TEST_REDIS_URL)
    fleet.start(1)
    client = sync_client(cluster.url)
    master = master_of(client, stream_key(key_prefix, "wsa", 0))
    acknowledged: set[str] = set()
    with fleet.producer("wsa", wait_replicas=1, wait_timeout_ms=10_000) as producer:
        for n in range(40):
            acknowledged.add(producer.track(f"user-{n % 8}", "Before"))
        # When the workspace's master is killed mid-run, its replica takes over, and the old master comes back as
        # a replica (the producer's WAIT needs one)
        cluster.kill(master)
        wait_for(lambda: master_of(client, stream_key(key_prefix, "wsa", 0)) != master, 60, "the failover")
        cluster.start_node(master)

        def enqueued(n: int) -> bool:
            try:
                acknowledged.add(producer.track(f"user-{n % 8}", "After"))
            except (redis.RedisError, NotReplicated):
                return False
            return True

        for n in range(20):
            wait_for(functools.partial(enqueued, n), 60, "the producer to enqueue on the new master")
    # Then the same worker (no restart) delivers every acknowledged event
    wait_for(functools.partial(delivered, stand_in, acknowledged), 90, "every acknowledged event delivered")
    client.close()
