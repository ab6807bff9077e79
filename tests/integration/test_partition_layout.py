"""Issue 9.3: events in any stream of the prefix are delivered or shown (real Redis, the stand-in, no Celery).

A partition count that went down (16 → 8), a producer that wrote with the default count before any worker
published one, a raw XADD above the count, a workspace nobody configured; and the workers' heartbeats.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import orjson
import pytest
import redis

from producers.keys import backlog_key, config_key, lease_key, stream_key, workers_key
from producers.wire import partition_for
from tests.integration.test_cli_dlq import cli_environment, run

# The stand-in and the autouse fixture closing the HTTP clients of ``make_deps``:
from tests.integration.test_pipeline import close_http_clients as close_http_clients
from tests.integration.test_pipeline import make_deps
from tests.integration.test_pipeline import stand_in as stand_in
from worker.ops.metrics import FleetMetrics
from worker.pipeline.drain import drain
from worker.pipeline.sweeper import Sweeper, sweep_once
from worker.store.fleet_status import gather_status
from worker.store.layout import publish

pytestmark = pytest.mark.single_and_cluster

WS = "ws"


def person_in(old: int, new: int, *, above: bool) -> str:
    """A user id whose partition among ``old`` is at or above ``new`` (``above``), or below it."""
    return next(
        user for user in (f"user-{n}" for n in range(1_000)) if (partition_for({"userId": user}, old) >= new) == above
    )


def event(user: str, n: int) -> bytes:
    return orjson.dumps({"type": "track", "userId": user, "event": "Step", "messageId": f"{user}-{n}"})


def xadd(client: redis.Redis, prefix: str, partition: int, *events: bytes, workspace: str = WS) -> None:
    for raw in events:
        client.xadd(stream_key(prefix, workspace, partition), {"v": "1", "event": raw})


def delivered_ids(stand_in) -> list[str]:
    return [r["operation"]["id"] for r in stand_in.accepted()]


def drain_until_done(deps, partition: int, timeout_s: float = 10) -> None:
    """Run drains of one partition until it is done (a held partition comes back after its one-second timer)."""
    deadline = time.monotonic() + timeout_s
    while drain(deps, WS, partition).action != "done":
        assert time.monotonic() < deadline, f"partition {partition} never finished"
        time.sleep(0.1)


def test_a_sweep_sets_the_backlog_bound_to_the_backlog(redis_client, key_prefix, stand_in):
    # Given a bound left high by deliveries (500) and 2 events waiting in stream 3
    redis_client.hset(backlog_key(key_prefix, WS), mapping={"events": 500, "streams": 8})
    xadd(redis_client, key_prefix, 3, event("u", 0), event("u", 1))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    # When the sweeper runs its round
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, n: None)
    # Then the bound is the backlog of the 8 streams
    assert redis_client.hmget(backlog_key(key_prefix, WS), ["events", "streams"]) == [b"2", b"8"]


def test_a_stream_above_the_count_left_by_the_old_count_is_drained(redis_client, key_prefix, stand_in):
    # Given the old workers published 16 partitions and left events in stream 12; the workers now have 8
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    user = person_in(16, 8, above=True)
    old = partition_for({"userId": user}, 16)
    xadd(redis_client, key_prefix, old, event(user, 0), event(user, 1))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    # When its partition is drained
    drain_until_done(deps, old)
    # Then its events were delivered, in order
    assert delivered_ids(stand_in) == [f"{user}-0", f"{user}-1"]
    assert redis_client.xlen(stream_key(key_prefix, WS, old)) == 0


def test_a_partition_below_the_count_waits_until_the_older_streams_are_empty(redis_client, key_prefix, stand_in):
    # Given a person's older events in stream 12 (count 16) and newer ones in stream 4 (count 8)
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    user = person_in(16, 8, above=True)
    old, new = partition_for({"userId": user}, 16), partition_for({"userId": user}, 8)
    xadd(redis_client, key_prefix, old, event(user, 0), event(user, 1))
    xadd(redis_client, key_prefix, new, event(user, 2))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    # When the newer partition is drained first, it waits (a retry timer) and delivers nothing
    assert drain(deps, WS, new).action == "later"
    assert delivered_ids(stand_in) == []
    assert redis_client.get(lease_key(key_prefix, WS, new)) == b"retry"
    # Then the older stream drains, and only after it the newer partition: the person's order holds
    drain_until_done(deps, old)
    drain_until_done(deps, new)
    assert delivered_ids(stand_in) == [f"{user}-0", f"{user}-1", f"{user}-2"]


def test_a_sweep_kicks_the_streams_above_the_count_and_lowers_the_span_once_they_are_empty(
    redis_client, key_prefix, stand_in
):
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    xadd(redis_client, key_prefix, 12, event("someone", 0))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    kicked: list[tuple[str, int]] = []
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, n: kicked.append((ws, n)))
    assert kicked == [(WS, 12)]
    assert redis_client.hgetall(config_key(key_prefix, WS)) == {b"partitions": b"8", b"span": b"16"}
    drain_until_done(deps, 12)
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, n: kicked.append((ws, n)))
    assert redis_client.hgetall(config_key(key_prefix, WS)) == {b"partitions": b"8", b"span": b"8"}


def test_streams_a_producer_wrote_with_its_default_count_before_any_publish_are_drained(
    redis_client, key_prefix, stand_in, redis_url
):
    from producers import Producer

    user = person_in(16, 8, above=True)
    with Producer(redis_url, WS, key_prefix=key_prefix, kick=False) as producer:
        producer.track(user, "Step", message_id=f"{user}-0")
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    kicked: list[tuple[str, int]] = []
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, n: kicked.append((ws, n)))
    assert kicked == [(WS, partition_for({"userId": user}, 16))]
    drain_until_done(deps, kicked[0][1])
    assert delivered_ids(stand_in) == [f"{user}-0"]


def moving_person(old: int, new: int) -> str:
    """A user id whose partition among ``new`` differs from the one among ``old``."""
    return next(
        user
        for user in (f"user-{n}" for n in range(1_000))
        if partition_for({"userId": user}, old) != partition_for({"userId": user}, new)
    )


def test_a_count_going_up_fences_the_old_streams_and_holds_the_newer_events_until_the_old_ones_are_delivered(
    redis_client, key_prefix, stand_in
):
    # Given a person's older events in their stream of count 8, and the workers now have 16
    redis_client.hset(config_key(key_prefix, WS), "partitions", "8")
    user = moving_person(8, 16)
    old, new = partition_for({"userId": user}, 8), partition_for({"userId": user}, 16)
    xadd(redis_client, key_prefix, old, event(user, 0), event(user, 1))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 16})
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, n: None)
    # (the old stream is fenced at its last entry; a producer now writes the person's next event with 16)
    last_old = redis_client.xrevrange(stream_key(key_prefix, WS, old), count=1)[0][0]
    assert redis_client.hget(config_key(key_prefix, WS), f"fence:{old}") == last_old
    xadd(redis_client, key_prefix, new, event(user, 2))
    # When the newer partition is drained first, it waits (a retry timer) and delivers nothing
    assert drain(deps, WS, new).action == "later"
    assert delivered_ids(stand_in) == []
    # Then the old stream drains, its fence goes, and only then the newer partition: the person's order holds
    drain_until_done(deps, old)
    drain_until_done(deps, new)
    assert delivered_ids(stand_in) == [f"{user}-0", f"{user}-1", f"{user}-2"]
    assert not [f for f in redis_client.hkeys(config_key(key_prefix, WS)) if f.startswith(b"fence:")]


def test_a_fenced_stream_delivers_its_old_entries_and_keeps_the_newer_ones_behind_the_fence(
    redis_client, key_prefix, stand_in
):
    # Given stream 0 fenced after its old entries, with a newer entry written after the count went up
    redis_client.hset(config_key(key_prefix, WS), "partitions", "8")
    xadd(redis_client, key_prefix, 0, event("a", 0), event("a", 1))
    xadd(redis_client, key_prefix, 1, event("b", 0))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 16})
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, n: None)
    xadd(redis_client, key_prefix, 0, event("c", 5))
    # When stream 0 is drained while stream 1 still holds an old entry
    drain(deps, WS, 0)
    # Then only the old entries went; the newer one waits for stream 1's, then goes
    assert delivered_ids(stand_in) == ["a-0", "a-1"]
    drain_until_done(deps, 1)
    drain_until_done(deps, 0)
    assert delivered_ids(stand_in) == ["a-0", "a-1", "b-0", "c-5"]


def test_the_first_publish_above_a_producers_default_count_fences_what_it_wrote(redis_client, key_prefix, redis_url):
    from producers import Producer

    # Given a producer wrote with its default count (16) before any worker published one
    with Producer(redis_url, WS, key_prefix=key_prefix, kick=False) as producer:
        producer.track("someone", "Step", message_id="someone-0")
    written = partition_for({"userId": "someone"}, 16)
    # When workers with the default count of a 100 requests/s workspace publish it
    publish(redis_client, key_prefix, WS, 60)
    # Then the stream the producer wrote is fenced; publishing the same count again changes nothing
    config = redis_client.hgetall(config_key(key_prefix, WS))
    assert {k: v for k, v in config.items() if k.startswith(b"fence:")} == {
        f"fence:{written}".encode(): redis_client.xrevrange(stream_key(key_prefix, WS, written), count=1)[0][0]
    }
    redis_client.xadd(stream_key(key_prefix, WS, 3), {"v": "1", "event": b"{}"})
    publish(redis_client, key_prefix, WS, 60)
    assert redis_client.hgetall(config_key(key_prefix, WS)) == config


def test_the_same_or_a_lower_count_fences_nothing(redis_client, key_prefix):
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    xadd(redis_client, key_prefix, 3, event("a", 0))
    publish(redis_client, key_prefix, WS, 16)
    publish(redis_client, key_prefix, WS, 8)
    assert not [f for f in redis_client.hkeys(config_key(key_prefix, WS)) if f.startswith(b"fence:")]


def sweeper_for(deps, client: redis.Redis, kicked: list[tuple[str, int]], identity: str = "host:1") -> Sweeper:
    return Sweeper(deps.settings, client, lambda ws, n: kicked.append((ws, n)), identity)


def test_the_scan_covers_a_raw_xadd_above_the_count_so_it_is_drained(redis_client, key_prefix, stand_in):
    xadd(redis_client, key_prefix, 20, event("raw", 0))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    kicked: list[tuple[str, int]] = []
    sweeper_for(deps, redis_client, kicked).tick()
    assert (WS, 20) in kicked
    drain_until_done(deps, 20)
    assert delivered_ids(stand_in) == ["raw-0"]


def test_events_of_an_unconfigured_workspace_are_counted_logged_and_scraped(redis_client, key_prefix, stand_in, caplog):
    # Given events in two streams of a workspace no worker is configured for
    xadd(redis_client, key_prefix, 3, event("a", 0), event("a", 1), workspace="ghost")
    xadd(redis_client, key_prefix, 5, event("b", 0), workspace="ghost")
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    # When a sweep scans the prefix
    with caplog.at_level(logging.ERROR, logger="cio_fleet.sweeper"):
        sweeper_for(deps, redis_client, []).tick()
    # Then they are recorded, logged, and scraped as stranded
    assert redis_client.smembers(f"{key_prefix}:strays") == {b"ghost:3", b"ghost:5"}
    assert any(getattr(r, "workspace", None) == "ghost" for r in caplog.records)
    metrics = FleetMetrics()
    metrics.watch_redis(redis_client, key_prefix, {WS: 1}, dlq_max_entries=10, dlq_alarm_ratio=0.5)
    assert metrics.registry.get_sample_value("cio_fleet_stranded_events", {"workspace": "ghost"}) == 3
    assert metrics.registry.get_sample_value("cio_fleet_stranded_events", {"workspace": WS}) == 0
    assert metrics.registry.get_sample_value("cio_fleet_backlog_events", {"workspace": WS}) == 0


def test_the_backlog_metric_counts_streams_above_the_count(redis_client, key_prefix, stand_in):
    redis_client.hset(config_key(key_prefix, WS), "partitions", "16")
    xadd(redis_client, key_prefix, 12, event("x", 0), event("x", 1))
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 8})
    sweeper_for(deps, redis_client, []).tick()
    metrics = FleetMetrics()
    metrics.watch_redis(redis_client, key_prefix, {WS: 8}, dlq_max_entries=10, dlq_alarm_ratio=0.5)
    assert metrics.registry.get_sample_value("cio_fleet_backlog_events", {"workspace": WS}) == 2
    assert metrics.registry.get_sample_value("cio_fleet_oldest_event_age_seconds", {"workspace": WS}) is not None


def test_status_counts_streams_above_the_count_and_lists_unconfigured_workspaces(redis_client, key_prefix):
    xadd(redis_client, key_prefix, 12, event("x", 0), event("x", 1))
    xadd(redis_client, key_prefix, 0, event("y", 0))
    xadd(redis_client, key_prefix, 7, event("g", 0), workspace="ghost")
    fleet = gather_status(redis_client, key_prefix, {WS: 8})
    [ws] = fleet.workspaces
    assert (ws.partitions, ws.backlog, ws.out_of_range_events) == (8, 3, 2)
    [ghost] = fleet.unconfigured
    assert (ghost.name, ghost.partitions, ghost.backlog) == ("ghost", (7,), 1)
    assert ghost.oldest_age_s is not None


def test_the_status_command_shows_unconfigured_workspaces_in_text_and_json(
    tmp_path: Path, redis_url: str, redis_client, key_prefix: str
):
    env = cli_environment(tmp_path, redis_url, key_prefix)
    xadd(redis_client, key_prefix, 2, event("g", 0), event("g", 1), workspace="ghost")
    data = json.loads(run(env, "status", "--json").stdout)
    assert [(ws["name"], ws["backlog"], ws["partitions"]) for ws in data["unconfigured"]] == [("ghost", 2, [2])]
    out = run(env, "status").stdout
    assert "UNCONFIGURED WORKSPACES" in out
    assert "ghost" in out


def redis_time_s(client: redis.Redis) -> int:
    return int(client.time()[0])


def test_a_heartbeat_is_written_in_redis_time_whatever_the_worker_clock(
    redis_client, key_prefix, stand_in, monkeypatch: pytest.MonkeyPatch
):
    # Given a worker whose clock is an hour ahead of Redis's
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    sweeper = sweeper_for(deps, redis_client, [])
    skewed = time.time() + 3_600
    monkeypatch.setattr(time, "time", lambda: skewed)
    # When it beats
    sweeper.tick()
    monkeypatch.undo()
    # Then its heartbeat is Redis's time, and status counts it alive
    beat = int(redis_client.hget(workers_key(key_prefix), "host:1"))
    assert abs(beat - redis_time_s(redis_client)) <= 2
    assert gather_status(redis_client, key_prefix, {WS: 1}).workers_alive == 1


def test_heartbeats_of_workers_gone_for_long_are_forgotten_by_the_sweep(redis_client, key_prefix, stand_in):
    now = redis_time_s(redis_client)
    redis_client.hset(
        workers_key(key_prefix),
        mapping={"gone:1": str(now - 2 * 86_400), "recent:2": str(now - 120), "junk:3": "x"},
    )
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    sweeper_for(deps, redis_client, []).tick()
    assert set(redis_client.hkeys(workers_key(key_prefix))) == {b"recent:2", b"host:1"}
