"""Issue 13.2: a producer refuses a workspace the fleet does not serve (real Redis; the sweeper publishes them)."""

from __future__ import annotations

import asyncio

import pytest
import redis

from producers import AsyncProducer, Producer, UnknownWorkspace
from producers.keys import drain_queue, stream_key, workspaces_key
from tests.integration.test_partition_layout import sweeper_for

# The stand-in and the autouse fixture closing the HTTP clients of ``make_deps``:
from tests.integration.test_pipeline import close_http_clients as close_http_clients
from tests.integration.test_pipeline import make_deps
from tests.integration.test_pipeline import stand_in as stand_in
from worker.store.layout import WORKSPACE_FORGET_MS, publish_workspaces

pytestmark = pytest.mark.single_and_cluster


def written(client: redis.Redis, prefix: str, workspace: str) -> int:
    return sum(int(client.xlen(stream_key(prefix, workspace, n))) for n in range(4))


def test_a_workspace_the_fleet_does_not_serve_is_refused_and_nothing_is_enqueued(redis_client, redis_url, key_prefix):
    # Given workers that serve acme and beta
    publish_workspaces(redis_client, key_prefix, ["beta", "acme"])
    # When a producer enqueues to a mistyped workspace, one event or many
    with Producer(redis_url, "acmee", key_prefix=key_prefix, partitions=4) as producer:
        with pytest.raises(UnknownWorkspace) as caught:
            producer.track("u1", "Signed Up")
        with pytest.raises(UnknownWorkspace):
            producer.enqueue_many([{"type": "track", "userId": "u1", "event": "x"}] * 3)
    # Then it is told which workspaces exist, and nothing was written or kicked
    assert (caught.value.workspace, caught.value.known) == ("acmee", ["acme", "beta"])
    assert str(caught.value) == (
        "workspace 'acmee' is not served by the fleet (it serves: acme, beta); nothing enqueued"
    )
    assert written(redis_client, key_prefix, "acmee") == 0
    assert redis_client.exists(drain_queue(key_prefix)) == 0


def test_the_async_producer_refuses_it_too(redis_client, redis_url, key_prefix):
    publish_workspaces(redis_client, key_prefix, ["acme"])

    async def main() -> None:
        async with AsyncProducer(redis_url, "nosuchws", key_prefix=key_prefix, partitions=4) as producer:
            with pytest.raises(UnknownWorkspace, match="nosuchws"):
                await producer.track("u1", "x")

    asyncio.run(main())
    assert written(redis_client, key_prefix, "nosuchws") == 0


def test_a_served_workspace_is_accepted(redis_client, redis_url, key_prefix):
    publish_workspaces(redis_client, key_prefix, ["acme"])
    with Producer(redis_url, "acme", key_prefix=key_prefix, partitions=4) as producer:
        producer.track("u1", "x")
    assert written(redis_client, key_prefix, "acme") == 1


def test_before_any_worker_published_its_workspaces_every_workspace_is_accepted(redis_client, redis_url, key_prefix):
    assert redis_client.exists(workspaces_key(key_prefix)) == 0
    with Producer(redis_url, "early", key_prefix=key_prefix, partitions=4) as producer:
        producer.track("u1", "x")
    assert written(redis_client, key_prefix, "early") == 1


def test_every_sweeper_round_publishes_the_workers_workspaces_and_forgets_stale_ones(
    redis_client, redis_url, key_prefix, stand_in
):
    # Given a workspace no worker has served for longer than the forget time
    seconds, micros = redis_client.time()
    stale = seconds * 1000 + micros // 1000 - WORKSPACE_FORGET_MS - 60_000
    redis_client.hset(workspaces_key(key_prefix), "retired", stale)
    # When a worker's sweeper goes round (whether or not it holds the sweep lock)
    redis_client.set(f"{key_prefix}:sweeper", "another worker")
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    sweeper_for(deps, redis_client, []).tick()
    # Then the fleet serves its workspace and no longer the retired one; producers follow
    assert set(redis_client.hkeys(workspaces_key(key_prefix))) == {b"ws"}
    with (
        Producer(redis_url, "retired", key_prefix=key_prefix, partitions=4) as producer,
        pytest.raises(UnknownWorkspace),
    ):
        producer.track("u1", "x")
