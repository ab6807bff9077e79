"""Issue 16: Redis Cluster URLs, the one-slot check of every script's keys, and the broker a cluster needs."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from producers import Producer
from producers.connect import RedisUrlError, is_cluster_url, node_url
from producers.keys import dlq_key, kicks_key, lease_key, parse_dlq_key, parse_stream_key, ready_key, stream_key, tag
from worker.pipeline.relay import slot_groups
from worker.settings import ConfigError, Settings, load_settings
from worker.store.slots import check_key_prefix, check_slots, script_key_sets, spanning

WORKSPACE = {"site_id": "s", "api_key": "k"}


@pytest.mark.parametrize(
    ("url", "cluster", "node"),
    [
        ("redis://127.0.0.1:6379/0", False, "redis://127.0.0.1:6379/0"),
        ("redis+cluster://127.0.0.1:7100", True, "redis://127.0.0.1:7100"),
        ("rediss+cluster://:secret@cache.example:6380/0", True, "rediss://:secret@cache.example:6380"),
        ("REDIS+CLUSTER://node-0:6379/", True, "redis://node-0:6379"),
    ],
)
def test_cluster_urls_name_one_node_of_the_cluster(url: str, cluster: bool, node: str) -> None:
    assert is_cluster_url(url) is cluster
    assert node_url(url) == node


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379", r"'http://' is not one of redis://, rediss://, unix://, redis\+cluster://"),
        ("redis+cluster://127.0.0.1:7100/2", "a Redis Cluster has only database 0"),
        ("redis+cluster:///0", "must name one of the cluster's nodes"),
    ],
)
def test_a_url_that_cannot_be_used_is_refused_by_name(url: str, problem: str) -> None:
    with pytest.raises(RedisUrlError, match=problem):
        node_url(url)


def test_every_key_of_a_workspace_holds_it_as_a_hash_tag_and_parses_back() -> None:
    assert tag("acme") == "{acme}"
    assert stream_key("cio", "acme", 3) == "cio:s:{acme}:3"
    assert parse_stream_key("cio", "cio:s:{acme}:3") == ("acme", 3)
    assert parse_stream_key("cio", "cio:s:acme:3") is None  # a key of the layout before tags: not ours
    assert parse_dlq_key("cio", dlq_key("cio", "a.b-c")) == "a.b-c"
    slots = {key_slot(key.encode()) for key in (stream_key("p", "w", 0), lease_key("p", "w", 9), ready_key("p", "w"))}
    assert len(slots) == 1


def test_every_script_touches_one_slot_for_any_workspace_and_partition_count() -> None:
    for workspace, partitions in (("acme", 1), ("we ird.ws-1", 16), ("ü", 1024)):
        assert spanning(script_key_sets("cio", workspace, partitions)) == []
    # while a fleet key with a workspace key would not: the check sees it
    assert spanning({"mixed": (stream_key("cio", "acme", 0), "cio.drain")}) == ["mixed"]


def test_the_slot_check_covers_the_one_round_trip_and_fence_scripts() -> None:
    # The reservation that renews the drainer's lease, the settle that reads the next batch, the credentials
    # requeue, the RabbitMQ kick mark and the partition-count publish that fences the old streams
    sets = script_key_sets("cio", "acme", 60)
    names = {"settle and read", "fenced rate limit", "kick retry timer", "mark published", "pass fences"}
    assert names | {"publish partitions (with fences)"} <= set(sets)
    assert lease_key("cio", "acme", 0) in sets["fenced rate limit"]
    assert spanning(sets) == []


def test_a_workspace_whose_keys_would_span_slots_is_refused_at_startup() -> None:
    settings = Settings(workspaces={"}": WORKSPACE, "ok": WORKSPACE})
    with pytest.raises(ConfigError, match=r"workspace '}': the keys of enqueue, settle.* more than one Redis Cluster"):
        check_slots(settings)
    check_slots(Settings(workspaces={"ok": WORKSPACE}))


def test_a_key_prefix_with_a_brace_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"setting 'key_prefix': 'a\{b' must not hold"):
        check_key_prefix("a{b")
    with pytest.raises(ValueError, match="key_prefix must not hold"):
        Producer("redis://127.0.0.1:1", "acme", key_prefix="{cio}")
    with pytest.raises(ValueError, match=r"workspace must be a non-empty name without ':', '\{' or '\}'"):
        Producer("redis://127.0.0.1:1", "ac}me")


def test_a_redis_cluster_is_never_the_celery_broker() -> None:
    assert Settings().broker() == "redis://127.0.0.1:6379/0"
    apart = Settings(redis_url="redis+cluster://10.0.0.1:6379", broker_url="redis://broker:6379/0")
    assert apart.broker() == "redis://broker:6379/0"
    with pytest.raises(ConfigError, match=r"CIO_BROKER_URL is required .*a Redis Cluster cannot be the Celery broker"):
        load_settings(redis_url="redis+cluster://10.0.0.1:6379")
    with pytest.raises(ConfigError, match="CIO_BROKER_URL must be a redis://, rediss://, amqp:// or amqps:// URL"):
        load_settings(broker_url="redis+cluster://10.0.0.1:6379")


def test_the_relay_waits_on_the_kicks_lists_of_one_slot_per_blocking_call() -> None:
    # Given workspaces of which two share a slot (their names differ, their tags hash alike)
    slot = key_slot(kicks_key("cio", "acme").encode())
    twin = next(f"w{n}" for n in range(100_000) if key_slot(kicks_key("cio", f"w{n}").encode()) == slot)
    # When the relay groups them, then each group is one slot, and the twins share one
    groups = slot_groups("cio", ["acme", "beta", twin, "gamma"])
    assert sorted(map(sorted, groups)) == sorted([sorted(["acme", twin]), ["beta"], ["gamma"]])
    for group in groups:
        assert len({key_slot(kicks_key("cio", name).encode()) for name in group}) == 1
    # And the wake-up list is in its workspace's slot, with the ready set the enqueue script fills
    assert key_slot(kicks_key("cio", "acme").encode()) == key_slot(ready_key("cio", "acme").encode())
