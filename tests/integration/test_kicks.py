"""Kicks: at most one queued drain task per partition, and none lost (real Redis, no Celery worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from producers.keys import lease_key, stream_key
from producers.wire import KICK_GRACE_MS, KICK_TTL_MS
from tests.e2e.conftest import wait_for
from worker.delivery import CustomerIOClient
from worker.pipeline.drain import drain
from worker.pipeline.ports import Deps
from worker.pipeline.slots import WorkspaceSlots
from worker.pipeline.sweeper import kick_lost, sweep_once
from worker.settings import Settings
from worker.store.fleet_status import PartitionFacts
from worker.store.partitions import PARK_TTL_MS, PartitionStore
from worker.store.ratelimit import WorkspaceLimiter
from worker.store.replies import optional_string

pytestmark = pytest.mark.single_and_cluster

WS = "ws"


@pytest.fixture
def settings(key_prefix: str) -> Settings:
    workspace = {"site_id": "site", "api_key": "key", "track_url": "http://127.0.0.1:9/", "partitions": 4}
    return Settings(key_prefix=key_prefix, workspaces={WS: workspace}, batching={"linger_ms": 0})


@pytest.fixture
def deps(settings: Settings, redis_client: redis.Redis) -> Iterator[Deps]:
    """Ports with one drain slot per workspace; the streams stay empty, so no request is ever sent."""
    http = CustomerIOClient(settings.http)
    yield Deps(
        settings=settings,
        store=PartitionStore(redis_client, settings.key_prefix),
        limiter=WorkspaceLimiter(redis_client, settings.key_prefix),
        client=http,
        sleep=lambda _: None,
        slots=WorkspaceSlots(1),
    )
    http.close()


def lease(client: redis.Redis, prefix: str, partition: int) -> bytes | None:
    return optional_string(client.get(lease_key(prefix, WS, partition)))


def pttl(client: redis.Redis, prefix: str, partition: int) -> int:
    return int(client.pttl(lease_key(prefix, WS, partition)))


def kick_as_a_producer(client: redis.Redis, prefix: str, partition: int, age_ms: int = 0) -> None:
    """A ``kicked`` lease as the enqueue script sets it, ``age_ms`` ago."""
    client.set(lease_key(prefix, WS, partition), "kicked", px=KICK_TTL_MS - age_ms)


def park_while_the_slot_is_taken(deps: Deps, *partitions: int) -> list[str]:
    with deps.slots.hold(WS):
        return [drain(deps, WS, partition).action for partition in partitions]


# Parking


def test_a_task_that_finds_no_slot_parks_its_partition_under_a_short_parked_lease(deps, redis_client, key_prefix):
    kick_as_a_producer(redis_client, key_prefix, 1)
    assert park_while_the_slot_is_taken(deps, 1) == ["parked"]
    assert lease(redis_client, key_prefix, 1) == b"parked"
    assert 0 < pttl(redis_client, key_prefix, 1) <= PARK_TTL_MS
    assert deps.slots.parked(WS) == (1,)


def test_the_next_drain_to_finish_hands_the_parked_partition_back_kicked(deps, redis_client, key_prefix):
    kick_as_a_producer(redis_client, key_prefix, 1)
    park_while_the_slot_is_taken(deps, 1)
    result = drain(deps, WS, 0)
    assert result.unparked == (1,)
    assert lease(redis_client, key_prefix, 1) == b"kicked"
    assert pttl(redis_client, key_prefix, 1) > KICK_TTL_MS - 60_000


def test_a_parked_partition_kicked_by_the_sweeper_meanwhile_is_not_queued_twice(deps, redis_client, key_prefix):
    # Given a parked partition whose parked lease ran out, and which the sweeper kicked since
    kick_as_a_producer(redis_client, key_prefix, 1)
    park_while_the_slot_is_taken(deps, 1)
    kick_as_a_producer(redis_client, key_prefix, 1)
    # When a drain of the workspace finishes, then the partition is not handed back (its task is already queued)
    assert drain(deps, WS, 0).unparked == ()
    assert lease(redis_client, key_prefix, 1) == b"kicked"


def test_a_task_does_not_park_a_partition_another_drainer_owns(deps, redis_client, key_prefix):
    redis_client.set(lease_key(key_prefix, WS, 1), "owner-token", px=30_000)
    assert park_while_the_slot_is_taken(deps, 1) == ["busy"]
    assert lease(redis_client, key_prefix, 1) == b"owner-token"
    assert deps.slots.parked(WS) == ()


def test_parked_leases_are_refreshed_whenever_a_drain_of_the_workspace_finishes(deps, redis_client, key_prefix):
    # Given two parked partitions, the second one's parked lease about to run out
    for partition in (1, 2):
        kick_as_a_producer(redis_client, key_prefix, partition)
    park_while_the_slot_is_taken(deps, 1, 2)
    redis_client.pexpire(lease_key(key_prefix, WS, 2), 100)
    # When a drain finishes (it hands partition 1 back)
    assert drain(deps, WS, 0).unparked == (1,)
    # Then partition 2 is still parked, its lease renewed
    assert lease(redis_client, key_prefix, 2) == b"parked"
    assert pttl(redis_client, key_prefix, 2) > 1_000


def test_a_stopping_worker_hands_every_parked_partition_back_kicked(deps, redis_client, key_prefix):
    for partition in (1, 2):
        kick_as_a_producer(redis_client, key_prefix, partition)
    park_while_the_slot_is_taken(deps, 1, 2)
    deps.stopping = lambda: True
    assert drain(deps, WS, 0).unparked == (1, 2)
    assert [lease(redis_client, key_prefix, partition) for partition in (1, 2)] == [b"kicked", b"kicked"]


# Lost kicks (the sweeper)


class Kicks:
    """The sweeper's ports: kicks recorded, and the partitions whose task is in the queue."""

    def __init__(self, queued: set[tuple[str, int]] | None = None) -> None:
        self.kicked: list[tuple[str, int]] = []
        self.queued_partitions = queued or set()
        self.looked_at_queue = 0

    def kick(self, workspace: str, partition: int) -> None:
        self.kicked.append((workspace, partition))

    def queued(self) -> set[tuple[str, int]]:
        self.looked_at_queue += 1
        return self.queued_partitions


def with_an_event(client: redis.Redis, prefix: str, partition: int) -> None:
    client.xadd(stream_key(prefix, WS, partition), {"v": "1", "event": b"{}"})


def test_an_old_kick_whose_task_is_not_in_the_queue_is_kicked_again(settings, deps, redis_client, key_prefix):
    with_an_event(redis_client, key_prefix, 2)
    kick_as_a_producer(redis_client, key_prefix, 2, age_ms=KICK_GRACE_MS + 1_000)
    ports = Kicks()
    assert kick_lost(settings, deps.store, ports.kick, ports.queued) == 1
    assert ports.kicked == [(WS, 2)]
    assert pttl(redis_client, key_prefix, 2) > KICK_TTL_MS - 60_000


def test_an_old_kick_whose_task_waits_in_the_queue_is_left_alone(settings, deps, redis_client, key_prefix):
    with_an_event(redis_client, key_prefix, 2)
    kick_as_a_producer(redis_client, key_prefix, 2, age_ms=10 * 60_000)
    ports = Kicks(queued={(WS, 2)})
    assert kick_lost(settings, deps.store, ports.kick, ports.queued) == 0
    assert ports.kicked == []


def test_a_recent_kick_is_not_looked_for_in_the_queue(settings, deps, redis_client, key_prefix):
    with_an_event(redis_client, key_prefix, 2)
    kick_as_a_producer(redis_client, key_prefix, 2, age_ms=KICK_GRACE_MS - 2_000)
    ports = Kicks()
    assert kick_lost(settings, deps.store, ports.kick, ports.queued) == 0
    assert (ports.kicked, ports.looked_at_queue) == ([], 0)


@pytest.mark.parametrize("value", ["parked", "retry", "owner-token"])
def test_only_kicked_leases_are_looked_for(settings, deps, redis_client, key_prefix, value):
    with_an_event(redis_client, key_prefix, 2)
    redis_client.set(lease_key(key_prefix, WS, 2), value, px=1_000)
    ports = Kicks()
    assert kick_lost(settings, deps.store, ports.kick, ports.queued) == 0
    assert ports.looked_at_queue == 0


def test_an_old_kick_of_an_empty_partition_is_left_alone(settings, deps, redis_client, key_prefix):
    kick_as_a_producer(redis_client, key_prefix, 2, age_ms=KICK_GRACE_MS + 1_000)
    ports = Kicks()
    assert kick_lost(settings, deps.store, ports.kick, ports.queued) == 0


def test_a_stopping_worker_parks_nothing(deps, redis_client, key_prefix):
    kick_as_a_producer(redis_client, key_prefix, 1)
    deps.stopping = lambda: True
    with deps.slots.hold(WS):
        result = drain(deps, WS, 1)
    assert result.unparked == (1,)
    assert lease(redis_client, key_prefix, 1) == b"kicked"
    assert deps.slots.parked(WS) == ()


@pytest.mark.parametrize(("value", "busy"), [("parked", False), ("kicked", False), ("retry", False), ("token", True)])
def test_status_counts_only_drainers_as_busy(value, busy):
    assert PartitionFacts(backlog=3, oldest_ms=None, lease=value, has_retry=False).busy is busy


def test_a_partition_parked_by_a_process_that_died_is_kicked_once_its_parked_lease_runs_out(
    settings, deps, redis_client, key_prefix
):
    # Given a partition with events parked by a process that then died (nobody refreshes its parked lease)
    with_an_event(redis_client, key_prefix, 1)
    kick_as_a_producer(redis_client, key_prefix, 1)
    park_while_the_slot_is_taken(deps, 1)
    ports = Kicks()
    assert sweep_once(settings, deps.store, deps.limiter, ports.kick) == 0
    # When the parked lease runs out, then the next sweep kicks the partition
    redis_client.pexpire(lease_key(key_prefix, WS, 1), 1)
    wait_for(lambda: lease(redis_client, key_prefix, 1) is None, 5, "the parked lease to run out")
    assert sweep_once(settings, deps.store, deps.limiter, ports.kick) == 1
    assert ports.kicked == [(WS, 1)]
    assert lease(redis_client, key_prefix, 1) == b"kicked"
