"""The wire format: key names, the person key and the documented partition formula (no Redis)."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from producers import DEFAULT_PARTITIONS, FORMAT_VERSION, partition_for, person_key
from producers.keys import config_key, drain_queue, lease_key, stream_key
from producers.wire import DRAIN_TASK, KICK_GRACE_MS, KICK_TTL_MS, KICKED


def test_key_names_follow_the_documented_layout() -> None:
    assert stream_key("cio", "acme", 3) == "cio:s:{acme}:3"
    assert lease_key("cio", "acme", 3) == "cio:lease:{acme}:3"
    assert config_key("cio", "acme") == "cio:config:{acme}"
    assert drain_queue("cio") == "cio.drain"


def test_protocol_constants_are_the_documented_ones() -> None:
    assert (FORMAT_VERSION, KICKED, DRAIN_TASK, DEFAULT_PARTITIONS) == ("1", "kicked", "worker.drain", 16)
    assert (KICK_TTL_MS, KICK_GRACE_MS) == (3_600_000, 5_000)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ({"userId": "u1", "anonymousId": "a1", "email": "e@x.io"}, "u1"),
        ({"userId": 42}, "42"),
        ({"userId": 42.0}, "42"),
        ({"userId": "", "anonymousId": "a1"}, "a1"),
        ({"userId": True, "anonymousId": "a1"}, "a1"),
        ({"anonymousId": 7, "email": "e@x.io"}, "7"),
        ({"email": "e@x.io", "traits": {"email": "t@x.io"}}, "e@x.io"),
        ({"traits": {"email": "t@x.io"}, "context": {"traits": {"email": "c@x.io"}}}, "t@x.io"),
        ({"context": {"traits": {"email": "c@x.io"}}, "groupId": "g"}, "c@x.io"),
        ({"groupId": "g", "traits": "not an object"}, "g"),
        ({"type": "track", "event": "x"}, None),
    ],
)
def test_the_person_key_is_the_first_present_of_the_documented_fields(event: dict[str, Any], key: str | None) -> None:
    assert person_key(event) == key


@pytest.mark.parametrize("key", ["u1", "user-ü", "42", "someone@example.com"])
@pytest.mark.parametrize("partitions", [1, 2, 16, 1024])
def test_the_partition_is_crc32_of_the_utf8_person_key_modulo_partitions(key: str, partitions: int) -> None:
    expected = zlib.crc32(key.encode("utf-8")) % partitions
    assert partition_for({"userId": key}, partitions) == expected


def test_one_persons_events_go_to_one_partition_whatever_the_event() -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "userId": "u-77", "traits": {"email": "x@y.io"}},
        {"type": "track", "userId": "u-77", "event": "A", "anonymousId": "other"},
        {"type": "page", "userId": "u-77"},
    ]
    assert len({partition_for(event, 16) for event in events}) == 1


def test_an_event_without_a_person_key_goes_to_partition_zero() -> None:
    assert partition_for({"type": "track", "event": "x"}, 16) == 0


@pytest.mark.parametrize(("key", "partition"), [("u1", 6), ("u2", 12), ("alice", 7)])
def test_known_partitions_are_stable_across_releases(key: str, partition: int) -> None:
    # Non-Python producers must agree: crc32("u1") = 0x424F9F76, crc32("u2") = 0xDB46CECC, crc32("alice") = 0x278EBC47.
    assert partition_for({"userId": key}, 16) == partition
