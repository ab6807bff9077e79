"""A chunk of prepared events: the script call's arguments, as the pure code writes them (no Redis)."""

from __future__ import annotations

import os
import struct
import uuid
from typing import Any

import pytest

from producers import InvalidEventError, Track, partition_for
from producers._chunk import CHUNK_BYTES, CHUNK_EVENTS, Chunk, chunks
from producers._events import EVENT_TYPES, Stamps, current_stamps, encode_event, message_ids, now_iso
from producers._kick import TASK_IDS, Layout, TaskIds

NOW = "2026-01-02T03:04:05.678Z"

#: Every way an event names its person (or does not), as ids of several types.
EVENTS: list[dict[str, Any]] = [
    {"type": "track", "userId": "u1", "event": "Signed Up"},
    {"type": "track", "userId": 42, "event": "Clicked"},
    {"type": "track", "userId": "", "anonymousId": "a-1", "event": "Clicked"},
    {"type": "identify", "anonymousId": 7},
    {"type": "identify", "email": "e@example.com"},
    {"type": "identify", "traits": {"email": "t@example.com"}},
    {"type": "page", "context": {"traits": {"email": "c@example.com"}}},
    {"type": "group", "groupId": "g-1"},
    {"type": "group", "groupId": 12},
    {"type": "alias", "previousId": "old", "userId": "new"},
    {"type": "screen", "userId": "ü-ñ", "name": "Home"},
    {"type": "track", "userId": "  ", "anonymousId": "a-2", "event": "Blank user"},
    *({"type": "track", "userId": f"user-{n}", "event": "Bought"} for n in range(300)),
]


def bulk_strings(body: bytes | bytearray) -> list[bytes]:
    """The bulk strings of a chunk's body, read back from their protocol framing."""
    found, at = [], 0
    while at < len(body):
        assert body[at : at + 1] == b"$"
        end = body.index(b"\r\n", at)
        size = int(body[at + 1 : end])
        found.append(bytes(body[end + 2 : end + 2 + size]))
        assert body[end + 2 + size : end + 4 + size] == b"\r\n"
        at = end + 4 + size
    return found


@pytest.mark.parametrize("count", [1, 2, 7, 16, 255, 256, 300, 1024])
def test_the_partition_argument_is_partition_for_of_every_event(count: int) -> None:
    chunk = Chunk(0, Stamps.at(NOW))
    for event in EVENTS:
        chunk.push(event)

    written = struct.unpack(f">{len(EVENTS)}H", chunk.partitions(count))

    assert list(written) == [partition_for(event, count) for event in EVENTS]


def test_the_body_holds_each_event_as_encode_event_writes_it_and_the_types_their_codes() -> None:
    chunk = Chunk(0, Stamps.at(NOW), message_ids())
    given = [*EVENTS[:12], {"type": "track", "userId": "u", "event": "x", "messageId": None, "sentAt": "old"}]
    ids = [chunk.push(event) for event in given]

    expected = [encode_event({**event, "messageId": ids[n]}, now=NOW)[1] for n, event in enumerate(given)]
    assert bulk_strings(chunk.body) == expected
    assert list(chunk.types) == [EVENT_TYPES.index(event["type"]) + 1 for event in given]


def test_a_refused_event_adds_nothing_to_the_chunk_and_is_reported_by_its_input_index() -> None:
    chunk = Chunk(10, Stamps.at(NOW))
    chunk.add(EVENTS[0])
    before = (bytes(chunk.body), bytes(chunk.types), list(chunk.persons), list(chunk.good))

    for event in ({"type": "track", "userId": "u"}, {"type": "track", "userId": "u", "event": "x", "p": "a" * 40_000}):
        with pytest.raises(InvalidEventError):
            chunk.push(event)
        chunk.add(event)

    assert (bytes(chunk.body), bytes(chunk.types), list(chunk.persons), list(chunk.good)) == before
    assert chunk.message_ids[1:] == [None, None]
    assert {index: error.field for index, error in chunk.errors.items()} == {11: "event", 12: "(event)"}


def test_a_call_shape_goes_through_its_model_when_the_plain_checks_cannot_vouch_for_a_value() -> None:
    chunk = Chunk(0, Stamps.at(NOW))
    chunk.push_shape(Track, {"userId": "u", "event": "x", "properties": {"n": 1}})
    chunk.push_shape(Track, {"userId": "u", "event": "x", "properties": {"tags": {"a"}}})  # a set: the model's JSON

    assert [data.count(b'"tags":["a"]') for data in bulk_strings(chunk.body)] == [0, 1]


def test_chunks_close_at_the_event_count_or_the_byte_size() -> None:
    many = [{"type": "track", "userId": f"u{n}", "event": "x"} for n in range(CHUNK_EVENTS + 5)]
    big = [{"type": "track", "userId": "u", "event": "x", "p": "a" * 30_000} for _ in range(40)]

    assert [len(chunk.message_ids) for chunk in chunks(many)] == [CHUNK_EVENTS, 5]
    sized = list(chunks(big))
    assert len(sized) == 2 and len(sized[0].body) >= CHUNK_BYTES > len(sized[0].body) - 30_100
    assert [chunk.start for chunk in sized] == [0, len(sized[0].message_ids)]


def test_message_ids_are_distinct_version_4_uuids_with_a_new_random_prefix_every_4096() -> None:
    new_id = message_ids()
    ids = [new_id() for _ in range(3 * 4_096)]

    assert len(set(ids)) == len(ids)
    for message_id in ids[::97]:
        parsed = uuid.UUID(message_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, message_id)
    assert len({message_id[:33] for message_id in ids}) == 3


def test_the_shared_stamps_are_the_stamps_of_the_current_millisecond() -> None:
    before = now_iso()
    first, second = current_stamps(), current_stamps()
    after = now_iso()
    assert before <= first.now <= second.now <= after
    assert first == Stamps.at(first.now)


def test_a_chunk_without_stamps_takes_the_current_ones() -> None:
    before = now_iso()
    stamp = Chunk().stamps.now
    assert before <= stamp <= now_iso()


def test_kick_task_ids_are_distinct_version_4_uuids_once_the_partition_is_added() -> None:
    ids = [TaskIds().next() for _ in range(3)] + [TASK_IDS.next() for _ in range(1_000)]
    parsed = [uuid.UUID(raw.decode() + "00ff") for raw in ids]
    assert {value.version for value in parsed} == {4}
    assert {value.variant for value in parsed} == {uuid.RFC_4122}
    assert len(set(parsed)) == len(ids)


def test_a_forked_child_makes_kick_task_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without pytest's exit handlers
        os.write(write, TASK_IDS.next())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    ours = TASK_IDS.next()
    assert len(child) == len(ours) == 32
    assert child[:24] != ours[:24]


def command_strings(command: bytes) -> tuple[int, list[bytes]]:
    """The array length a Redis command announces, and its bulk strings."""
    header, _, rest = command.partition(b"\r\n")
    return int(header.removeprefix(b"*")), bulk_strings(rest)


@pytest.mark.parametrize("narrow", [True, False])
def test_a_one_event_call_declares_its_partitions_keys_only_when_narrow(narrow: bool) -> None:
    layout = Layout.build("cio", "acme", 8, cap=100, kick=True)
    chunk = Chunk(0, Stamps.at(NOW))
    chunk.push({"type": "track", "userId": "u1", "event": "x"})
    announced, strings = command_strings(b"".join(layout.packed(chunk, narrow=narrow)))
    partition = partition_for({"userId": "u1"}, 8)
    keys = strings[3 : 3 + int(strings[2])]
    assert announced == len(strings)
    if narrow:
        assert keys == [k.encode() for k in (layout.keys[partition], layout.keys[8 + partition], *layout.keys[16:])]
    else:
        assert keys == [k.encode() for k in layout.keys]
    assert strings[-1].startswith(b'{"type":"track"')
