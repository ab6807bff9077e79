"""worker.timestamps: strict ISO-8601 and event times to integer unix seconds."""

from __future__ import annotations

import pytest

from worker.errors import InvalidEvent
from worker.timestamps import convert_dates, event_time, first_time, parse_iso8601


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2022-11-24T22:48:17.593Z", 1669330097),
        ("2024-01-01T00:00:00Z", 1704067200),
        ("2024-01-01", 1704067200),
        ("2024-01-01T00:00", 1704067200),
        ("2024-01-01T00:00:00", 1704067200),
        ("2024-02-29T12:30:00+02:00", 1709202600),
        ("2024-02-29T12:30+0530", 1709190000),
        ("2015-03-25T10:00:00-07:00", 1427302800),
        ("2021-06-01T08:00:00.123456789Z", 1622534400),
        ("1969-12-31T23:59:59.5Z", -1),
    ],
)
def test_strict_iso8601_becomes_floored_unix_seconds_utc_when_no_offset(text: str, seconds: int) -> None:
    assert parse_iso8601(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "25 Mar 2015",
        "01/01/2019",
        "2018-03-04T12:08:56.235 PDT",
        "2024-02-30",
        "2023-13-01",
        "2024-01-01T24:00:00Z",
        "2024-01-01T10:61Z",
        "2024-01-01T10:00:00+25:00",
        "2024-01-01T10",
        "2024-01-01t10:00:00z",
        "2024-1-01",
        "20240101",
        "2021-06-01T08:00:00.1234567890Z",
        "hello world, 2024-01-01",
        "",
    ],
)
def test_anything_else_is_not_an_iso8601_date(text: str) -> None:
    assert parse_iso8601(text) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2022-11-24T22:48:17.593Z", 1669330097),
        ("2022-11-24 22:48:17Z", 1669330097),
        ("1679407797", 1679407797),
        ("1679407797.9", 1679407797),
        (1679407797, 1679407797),
        (1679407797.9, 1679407797),
        (None, None),
        ("", None),
    ],
)
def test_event_time_accepts_iso_numbers_and_digit_strings(value: object, seconds: int | None) -> None:
    assert event_time(value, "timestamp") == seconds


@pytest.mark.parametrize(
    "value", ["yesterday", "25 Mar 2015", True, [1], {"a": 1}, float("nan"), float("inf"), 10**20, "9" * 5000]
)
def test_event_time_rejects_what_is_not_a_time_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidEvent, match=r"^originalTimestamp: not ISO-8601 or unix seconds$"):
        event_time(value, "originalTimestamp")


def test_first_time_takes_the_first_field_holding_a_value() -> None:
    event = {"timestamp": None, "originalTimestamp": "", "receivedAt": "2024-01-01"}
    assert first_time(event, ("timestamp", "originalTimestamp", "receivedAt")) == 1704067200
    assert first_time({}, ("timestamp",)) is None


def test_first_time_names_the_prefixed_field_in_errors() -> None:
    with pytest.raises(InvalidEvent, match=r"^traits\.createdAt: "):
        first_time({"createdAt": "soon"}, ("created_at", "createdAt"), prefix="traits.")


def test_convert_dates_walks_nested_objects_but_not_arrays_and_copies() -> None:
    attributes = {
        "at": "2024-01-01",
        "nested": {"deeper": {"at": "2024-01-01T00:00:00Z"}, "text": "25 Mar 2015"},
        "list": ["2024-01-01", {"at": "2024-01-01"}],
        "n": 3,
    }
    converted = convert_dates(attributes)
    assert converted == {
        "at": 1704067200,
        "nested": {"deeper": {"at": 1704067200}, "text": "25 Mar 2015"},
        "list": ["2024-01-01", {"at": "2024-01-01"}],
        "n": 3,
    }
    assert attributes["at"] == "2024-01-01"
