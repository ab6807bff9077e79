"""The dead-letter record, its ids and its export form: pure, no Redis."""

from __future__ import annotations

from dataclasses import replace

import pytest

from producers.keys import dlq_key
from producers.wire import partition_for
from worker.deadletter.api import (
    DeadLetter,
    DeadLetterEntry,
    describe_event,
    entry_to_json,
    letter_from_json,
    over_alarm,
    split_id,
    target_partition,
)

FULL = DeadLetter(
    workspace="acme",
    partition=7,
    event=b'{"type":"track","event":"Signed Up","userId":"u1","messageId":"m1"}',
    outcome="item_rejected",
    reason="batch item 3: attribute too long",
    status=207,
    response='{"errors":[{"batch_index":3}]}',
    attempts=4,
    first_failed_at_ms=1_700_000_000_000,
    last_failed_at_ms=1_700_000_100_000,
    host="worker-1",
    message_id="m1",
    event_type="track",
    event_name="Signed Up",
)
MINIMAL = DeadLetter(workspace="beta", partition=0, event=b"\xff\xfe not json", outcome="rejected", reason="not JSON")


def as_redis(fields: dict[str, bytes | str]) -> dict[bytes, bytes]:
    """What redis-py gives back for fields written with ``to_fields``."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


@pytest.mark.parametrize("letter", [FULL, MINIMAL], ids=["full", "minimal"])
def test_a_record_survives_its_stream_fields(letter: DeadLetter) -> None:
    assert DeadLetter.from_fields(as_redis(letter.to_fields())) == letter


def test_stream_fields_are_the_documented_ones() -> None:
    assert set(FULL.to_fields()) == {
        "event", "workspace", "partition", "outcome", "reason", "status", "response", "attempts",
        "first_failed_at", "last_failed_at", "host", "message_id", "type", "name",
    }  # fmt: skip


def test_the_event_is_written_byte_for_byte() -> None:
    assert MINIMAL.to_fields()["event"] == b"\xff\xfe not json"


def test_the_response_excerpt_is_cut_at_1000_characters() -> None:
    letter = DeadLetter("acme", 0, b"{}", "rejected", "too big", response="x" * 5_000)
    assert letter.to_fields()["response"] == "x" * 1_000


def test_a_missing_status_is_written_empty_and_read_as_none() -> None:
    fields = MINIMAL.to_fields()
    assert fields["status"] == ""
    assert DeadLetter.from_fields(as_redis(fields)).status is None


def test_odd_fields_fall_back_to_defaults_instead_of_raising() -> None:
    letter = DeadLetter.from_fields({b"event": b"{}", b"outcome": b"weird", b"attempts": b"x", b"partition": b""})
    assert (letter.outcome, letter.attempts, letter.partition, letter.status) == ("rejected", 1, 0, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"messageId":"m1","type":"track","event":"Order Completed"}', ("m1", "track", "Order Completed")),
        (b'{"messageId":42,"type":"identify"}', ("42", "identify", None)),
        (b'{"type":["track"],"event":{"x":1},"messageId":true}', (None, None, None)),
        (b"[1,2,3]", (None, None, None)),
        (b"not json", (None, None, None)),
        (b"\xff\xfe", (None, None, None)),
        (b"", (None, None, None)),
    ],
)
def test_describe_event_is_best_effort_and_never_raises(
    raw: bytes, expected: tuple[str | None, str | None, str | None]
) -> None:
    assert describe_event(raw) == expected


def test_the_dead_letter_stream_key_is_per_workspace() -> None:
    assert dlq_key("cio", "acme") == "cio:dlq:{acme}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("acme/1700000000000-0", ("acme", "1700000000000-0")), ("a/b/17-3", ("a/b", "17-3"))],
)
def test_a_dead_letter_id_splits_into_workspace_and_stream_id(text: str, expected: tuple[str, str]) -> None:
    assert split_id(text) == expected


@pytest.mark.parametrize("text", ["acme", "acme/", "/17-0", "acme/17", "acme/x-1", "acme/17-x", ""])
def test_a_malformed_dead_letter_id_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a dead-letter id"):
        split_id(text)


def test_an_entry_knows_its_id_and_when_it_was_dead_lettered() -> None:
    entry = DeadLetterEntry("1700000000123-4", FULL)
    assert (entry.id, entry.dead_lettered_at_ms) == ("acme/1700000000123-4", 1_700_000_000_123)


@pytest.mark.parametrize(
    ("size", "max_entries", "ratio", "alarm"),
    [(0, 100, 0.8, False), (79, 100, 0.8, False), (80, 100, 0.8, True), (150, 100, 0.8, True), (100, 100, 1, True)],
)
def test_the_alarm_rises_at_the_ratio_of_the_capacity(size: int, max_entries: int, ratio: float, alarm: bool) -> None:
    assert over_alarm(size, max_entries, ratio) is alarm


@pytest.mark.parametrize("letter", [FULL, MINIMAL], ids=["utf8-event", "binary-event"])
def test_the_export_form_gives_back_the_same_record(letter: DeadLetter) -> None:
    data = entry_to_json(DeadLetterEntry("17-0", letter))
    assert letter_from_json(data) == letter


def test_a_binary_event_is_exported_as_base64() -> None:
    data = entry_to_json(DeadLetterEntry("17-0", MINIMAL))
    assert "event" not in data
    assert data["event_b64"] == "//4gbm90IGpzb24="


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a JSON object"),
        ({"workspace": "a", "outcome": "nope", "event": "{}"}, "outcome"),
        ({"workspace": "", "outcome": "rejected", "event": "{}"}, "workspace"),
        ({"workspace": "a", "outcome": "rejected"}, "event"),
        ({"workspace": "a", "outcome": "rejected", "event_b64": "***"}, "base64"),
        ({"workspace": "a", "outcome": "rejected", "event": "{}", "attempts": "3"}, "attempts"),
    ],
)
def test_a_bad_export_object_is_refused_with_the_field_named(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        letter_from_json(data)


def test_a_replayed_event_goes_to_the_partition_of_its_person() -> None:
    assert target_partition(FULL, 16) == partition_for({"userId": "u1"}, 16)


@pytest.mark.parametrize("event", [b"not json", b"[1]", b"\xff"])
def test_an_event_that_is_not_a_json_object_goes_back_to_its_recorded_partition(event: bytes) -> None:
    letter = DeadLetter("acme", 5, event, "rejected", "bad")
    assert target_partition(letter, 16) == 5


#: A dead letter of an entry without an ``event`` field, one field name not UTF-8.
NO_EVENT = DeadLetter(
    "acme",
    3,
    b"",
    "rejected",
    "event: missing from the stream entry",
    entry_fields=((b"v", b"1"), (b"foo", b"bar"), (b"\xffname", b"\x00\xfe")),
)
#: A dead letter of an ordinary entry that was replayed once already.
KEPT = replace(FULL, entry_fields=((b"v", b"1"), (b"event", FULL.event), (b"attempts", b"3")))


@pytest.mark.parametrize("letter", [NO_EVENT, KEPT], ids=["no-event", "replayed"])
def test_a_record_keeps_every_field_of_its_original_entry(letter: DeadLetter) -> None:
    assert DeadLetter.from_fields(as_redis(letter.to_fields())).entry_fields == letter.entry_fields
    assert letter_from_json(entry_to_json(DeadLetterEntry("17-0", letter))) == letter


def test_the_original_entrys_event_is_held_once() -> None:
    fields = KEPT.to_fields()
    assert (fields["event"], fields["entry.event"]) == (FULL.event, b"")
    assert entry_to_json(DeadLetterEntry("17-0", KEPT))["entry"] == [["v", "1"], ["event", None], ["attempts", "3"]]


def test_an_event_over_the_size_limit_is_not_parsed_to_describe_it() -> None:
    padded = b'{"messageId":"m1","type":"track","pad":"' + b"p" * 40_000 + b'"}'
    assert describe_event(padded) == (None, None, None)
