"""Issue 9.3 with real worker processes: a partition count cut from 16 to 8, raised from 16 to the default (issue 12),
and a workspace nobody configured."""

from __future__ import annotations

import pytest
import redis

from producers.keys import config_key, stream_key
from producers.wire import partition_for
from tests.e2e.conftest import standin_workspaces, wait_for
from tests.e2e.test_observability import scrape, value
from worker.local.demo import free_port
from worker.store.replies import byte_strings

pytestmark = pytest.mark.e2e

PEOPLE = [f"person-{n}" for n in range(12)]
STEPS = 6


def per_person(accepted: list[dict]) -> dict[str, list[str]]:
    """Each person's event ids in the order Customer.io accepted them (a redelivery counted once)."""
    seen: dict[str, list[str]] = {}
    for request in accepted:
        event_id = request["operation"]["id"]
        person, _, _ = event_id.rpartition("-")
        if event_id not in seen.setdefault(person, []):
            seen[person].append(event_id)
    return seen


def track_steps(producer, steps: range) -> None:
    """Each person's events of ``steps``, person after person, with ids ``<person>-<step>``."""
    for step in steps:
        for person in PEOPLE:
            producer.track(person, "Step", {"step": step}, message_id=f"{person}-{step}")


def deliver_across_a_count_change(fleet, stand_in, redis_client: redis.Redis, key_prefix: str, new_count: int) -> None:
    """Half the events written with 16 partitions while Customer.io answers 503 (so the old streams still hold them),
    the workers started with ``new_count``, the other half written by the same producer; then every event delivered,
    each person's in the order it was enqueued."""
    redis_client.hset(config_key(key_prefix, "wsa"), "partitions", "16")
    stand_in.set_faults([{"force_status": 503}])
    with fleet.producer("wsa") as producer:
        track_steps(producer, range(STEPS // 2))
        fleet.start(1)
        published = str(new_count).encode()
        wait_for(lambda: redis_client.hget(config_key(key_prefix, "wsa"), "partitions") == published, 20, "new count")
        track_steps(producer, range(STEPS // 2, STEPS))
    stand_in.set_faults([])
    wait_for(
        lambda: sum(len(ids) for ids in per_person(stand_in.accepted()).values()) == STEPS * len(PEOPLE),
        30,
        "every event delivered",
    )
    assert per_person(stand_in.accepted()) == {p: [f"{p}-{s}" for s in range(STEPS)] for p in PEOPLE}


RETRY_FAST = {"CIO_RETRY__BASE_S": "0.05", "CIO_RETRY__CAP_S": "0.3"}


def test_a_count_cut_from_16_to_8_strands_nothing_and_keeps_each_persons_order(
    stand_in, make_fleet, redis_client: redis.Redis, key_prefix: str
):
    # Given some people whose partition at 16 is above 8, and workers configured with 8 partitions
    assert any(partition_for({"userId": person}, 16) >= 8 for person in PEOPLE)
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=8), **RETRY_FAST)
    # When a producer that cached 16 writes half the events before they start and half after
    # Then every event is delivered in each person's order
    deliver_across_a_count_change(fleet, stand_in, redis_client, key_prefix, 8)
    # And no stream holds any
    wait_for(
        lambda: sum(int(redis_client.xlen(stream_key(key_prefix, "wsa", n))) for n in range(16)) == 0,
        10,
        "every stream settled",
    )


def test_a_count_raised_from_16_to_the_default_strands_nothing_and_keeps_each_persons_order(
    stand_in, make_fleet, redis_client: redis.Redis, key_prefix: str
):
    # Given some people whose partition moves between 16 and 60, and workers with the default (60 at 100 requests/s)
    assert any(partition_for({"userId": p}, 16) != partition_for({"userId": p}, 60) for p in PEOPLE)
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), **RETRY_FAST)
    # When a producer that cached 16 writes half the events before they start and half after
    # Then every event is delivered in each person's order
    deliver_across_a_count_change(fleet, stand_in, redis_client, key_prefix, 60)
    # And no fence is left
    wait_for(
        lambda: not [f for f in byte_strings(redis_client.hkeys(config_key(key_prefix, "wsa"))) if b"fence:" in f],
        10,
        "the fences to go",
    )


def test_events_of_an_unconfigured_workspace_are_scraped_as_stranded(
    stand_in, make_fleet, redis_client: redis.Redis, key_prefix: str
):
    # Given events in the streams of a workspace the workers are not configured for
    for n in range(3):
        redis_client.xadd(stream_key(key_prefix, "ghost", n), {"v": "1", "event": b'{"type":"track"}'})
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_METRICS_PORT=str(port))
    # When a worker runs
    fleet.start(1)
    # Then its metrics show them as stranded, and not as anybody's backlog
    wait_for(lambda: value(scrape(port), "cio_fleet_stranded_events", workspace="ghost") == 3, 20, "stranded 3")
    assert value(scrape(port), "cio_fleet_backlog_events", workspace="ghost") == 0
    assert "events wait in the streams of a workspace that is not configured" in fleet.logs()
