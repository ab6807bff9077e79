"""worker.mapping.timestamps: strict ISO-8601 and event times to integer unix seconds; an unreadable time never
raises."""

from __future__ import annotations

import pytest

from worker.mapping.timestamps import (
    TIME_FIELDS,
    convert_dates,
    device_last_used,
    event_time,
    event_timestamp,
    first_given,
    identify_created_at,
    parse_iso8601,
)


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
    ],
)
def test_event_time_accepts_iso_numbers_and_digit_strings(value: object, seconds: int) -> None:
    assert event_time(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "25 Mar 2015",
        "2018-03-04T12:08:56.235 PDT",
        True,
        [1],
        {"a": 1},
        float("nan"),
        float("inf"),
        10**20,
        1_700_000_000_000,
        "9" * 5000,
        None,
        "",
    ],
)
def test_event_time_is_none_for_what_is_not_a_time_and_never_raises(value: object) -> None:
    assert event_time(value) is None


def test_first_given_takes_the_first_field_holding_a_value_as_given() -> None:
    event = {"timestamp": None, "originalTimestamp": "", "receivedAt": "yesterday"}
    assert first_given(event, TIME_FIELDS) == ("receivedAt", "yesterday")
    assert first_given({}, ("timestamp",)) is None


@pytest.mark.parametrize(
    ("event", "seconds", "dropped"),
    [
        ({"timestamp": "2024-01-01"}, 1704067200, []),
        ({"originalTimestamp": 1704067200.5, "receivedAt": "2020-01-01"}, 1704067200, []),
        ({"sentAt": "2024-01-01"}, None, []),
        ({"timestamp": "2018-03-04T12:08:56.235 PDT"}, None, ["timestamp"]),
        ({"timestamp": "yesterday", "receivedAt": "2024-01-01"}, None, ["timestamp"]),
    ],
)
def test_an_unreadable_event_time_is_left_out_and_named(event: dict, seconds: int | None, dropped: list) -> None:
    names: list[str] = []
    assert event_timestamp(event, names) == seconds
    assert names == dropped


@pytest.mark.parametrize(
    ("timestamp", "convert", "last_used", "dropped"),
    [
        ("2024-01-01", True, 1704067200, []),
        ("yesterday", True, None, ["device.last_used"]),
        (1704067200, False, 1704067200, []),
        ("2024-01-01", False, None, ["device.last_used"]),
        ("1704067200", False, None, ["device.last_used"]),
        (1704067200.5, False, None, ["device.last_used"]),
        (None, False, None, []),
    ],
)
def test_device_last_used_is_converted_or_passes_as_given_only_when_customerio_takes_it(
    timestamp: object, convert: bool, last_used: int | None, dropped: list
) -> None:
    names: list[str] = []
    assert device_last_used({"timestamp": timestamp}, convert, names) == last_used
    assert names == dropped


@pytest.mark.parametrize(
    ("traits", "event", "convert", "created_at", "dropped"),
    [
        ({"created_at": "2024-01-01", "createdAt": "2020-01-01"}, {}, True, 1704067200, []),
        ({"createdAt": "1679407797"}, {}, True, 1679407797, []),
        ({}, {"created_at": "1679407797"}, True, 1679407797, []),
        ({"created_at": ""}, {"created_at": "2024-01-01"}, True, 1704067200, []),
        ({"createdAt": "soon"}, {}, True, "soon", ["created_at"]),
        ({"createdAt": "2024-01-01"}, {}, False, "2024-01-01", []),
        ({}, {"created_at": "1679407797"}, False, "1679407797", []),
        ({}, {}, True, None, []),
    ],
)
def test_created_at_is_converted_or_passes_as_given(
    traits: dict, event: dict, convert: bool, created_at: object, dropped: list
) -> None:
    names: list[str] = []
    assert identify_created_at(event, traits, convert, names) == created_at
    assert names == dropped


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
