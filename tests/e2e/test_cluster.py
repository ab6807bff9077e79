"""Issue 16: a fleet whose streams live on a Redis Cluster (3 masters + 3 replicas), its broker on one Redis node."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers.connect import sync_client
from producers.keys import drain_queue, kicks_key, ready_key
from tests.conftest import TEST_REDIS_URL
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from worker.local.fake_customerio import FakeCustomerIO
from worker.local.localfleet import worker_command

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("redis_kind", ["cluster"])]

CLI = [str(Path(sys.executable).parent / "cio-fleet")]


@pytest.fixture
def broker(key_prefix: str) -> Iterator[redis.Redis]:
    """The Celery broker of the cluster fleet: the shared Redis (a cluster cannot be one); its queue is removed."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    yield client
    keys = [*client.scan_iter(match=f"{key_prefix}.*"), *client.scan_iter(match=f"_kombu.binding*.{key_prefix}.*")]
    if keys:
        client.delete(*keys)
    client.close()


def accepted_at_least(stand_in: FakeCustomerIO, site: str, count: int) -> bool:
    return len(stand_in.accepted(site)) >= count


def test_a_worker_on_a_redis_cluster_delivers_every_event_and_status_reads_every_node(
    stand_in, make_fleet, redis_client, redis_url, key_prefix, broker, tmp_path
):
    # Given a worker whose streams are on the test cluster and whose broker is the single Redis
    assert redis_url.startswith("redis+cluster://")
    fleet = make_fleet(standin_workspaces(stand_in.url, "ab"), CIO_BROKER_URL=TEST_REDIS_URL)
    fleet.start(1)
    # When producers enqueue events of many people in two workspaces (their keys live on different masters)
    for workspace in ("wsa", "wsb"):
        with fleet.producer(workspace) as producer:
            events = [
                {"type": "track", "userId": f"user-{n % 9}", "event": "Clustered", "messageId": f"{workspace}-{n}"}
                for n in range(30)
            ]
            assert producer.enqueue_many(events).enqueued == 30
    # Then the worker queues their drain tasks on the broker (from the workspaces' ready sets) and delivers them all
    for site, workspace in (("site-a", "wsa"), ("site-b", "wsb")):
        wait_for(functools.partial(accepted_at_least, stand_in, site, 30), 60, f"30 operations of {workspace}")
        ids = sorted(op["operation"]["id"] for op in stand_in.accepted(site))
        assert ids == sorted(f"{workspace}-{n}" for n in range(30))
        wait_until_drained(redis_client, key_prefix, workspace, timeout_s=30)
        assert redis_client.scard(ready_key(key_prefix, workspace)) == 0
    # And no drain task was ever written to the cluster itself
    assert redis_client.exists(drain_queue(key_prefix)) == 0
    # And `cio-fleet status`, given the cluster URL, reads every workspace's keys and the worker's heartbeat
    env = {**os.environ, **fleet.worker_env()}
    done = subprocess.run([*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert sorted(ws["name"] for ws in status["workspaces"]) == ["wsa", "wsb"]
    assert status["workers_alive"] == 1


def test_on_a_cluster_a_kicked_event_is_delivered_by_the_relay_long_before_the_next_sweep(
    stand_in, make_fleet, redis_client, redis_url, key_prefix, broker
):
    # Given a worker on the cluster whose sweeper rounds are ten minutes apart (its first one is done once it is
    # registered), so only its ready relay can publish a kick in the meantime
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_BROKER_URL=TEST_REDIS_URL)
    fleet.start(1, CIO_SWEEP_INTERVAL_S="600")
    # When a producer enqueues events, kicking their partitions
    with fleet.producer("wsa") as producer:
        events = [{"type": "track", "userId": f"u{n}", "event": "Woken", "messageId": f"woken-{n}"} for n in range(5)]
        assert producer.enqueue_many(events).enqueued == 5
    # Then they are delivered, once each, well before any second sweep
    wait_for(functools.partial(accepted_at_least, stand_in, "site-a", 5), 60, "the events to be delivered")
    assert sorted(op["operation"]["id"] for op in stand_in.accepted("site-a")) == [f"woken-{n}" for n in range(5)]
    wait_until_drained(redis_client, key_prefix, "wsa", timeout_s=30)
    assert redis_client.llen(kicks_key(key_prefix, "wsa")) == 0


def test_a_worker_refuses_a_redis_cluster_as_its_celery_broker(stand_in, make_fleet, redis_url, tmp_path):
    # Given a cluster URL and no CIO_BROKER_URL, when a worker starts, then it exits naming the setting
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), broker="unset")
    env = {**os.environ, **fleet.worker_env()}
    done = subprocess.run(worker_command(1), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "CIO_BROKER_URL" in done.stderr and "a Redis Cluster cannot be the Celery broker" in done.stderr
    assert sync_client(redis_url).ping()
