"""Filters of the dead-letter commands and their time options: pure, no Redis."""

from __future__ import annotations

from dataclasses import replace

import pytest

from worker.deadletter.api import DeadLetter, DeadLetterEntry, DeadLetterFilter, FilterError, parse_time

NOW_MS = 1_764_324_000_000  # 2025-11-28T10:00:00Z
LETTER = DeadLetter(
    workspace="acme",
    partition=1,
    event=b"{}",
    outcome="rejected",
    reason="HTTP 400: Attribute 'plan' too long",
    status=400,
    event_type="track",
    event_name="Plan Changed",
)
ENTRY = DeadLetterEntry(f"{NOW_MS - 60_000}-0", LETTER)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW_MS - 90_000),
        ("15m", NOW_MS - 900_000),
        ("1h", NOW_MS - 3_600_000),
        ("1.5h", NOW_MS - 5_400_000),
        ("7d", NOW_MS - 7 * 86_400_000),
        ("2025-11-28T09:00:00Z", NOW_MS - 3_600_000),
        ("2025-11-28T09:00:00+00:00", NOW_MS - 3_600_000),
        ("2025-11-28T10:00:00+01:00", NOW_MS - 3_600_000),
        ("2025-11-28T09:00:00", NOW_MS - 3_600_000),
        ("2025-11-28", NOW_MS - 10 * 3_600_000),
        ("1764320400", NOW_MS - 3_600_000),
    ],
)
def test_time_options_accept_durations_iso_times_and_unix_seconds(text: str, expected: int) -> None:
    assert parse_time(text, option="--since", now_ms=NOW_MS) == expected


@pytest.mark.parametrize("text", ["yesterday", "1w", "-1h", "", "2025-13-01T00:00:00Z"])
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_time_is_refused_naming_the_option(text: str, option: str) -> None:
    with pytest.raises(FilterError, match=f"^{option}: "):
        parse_time(text, option=option, now_ms=NOW_MS)


def test_an_unknown_outcome_is_refused_naming_the_option() -> None:
    with pytest.raises(FilterError, match="--outcome must be one of"):
        DeadLetterFilter(outcome="lost")


def test_since_after_until_is_refused() -> None:
    with pytest.raises(FilterError, match="--since must not be later than --until"):
        DeadLetterFilter(since_ms=2, until_ms=1)


@pytest.mark.parametrize(
    ("flt", "matches"),
    [
        (DeadLetterFilter(), True),
        (DeadLetterFilter(workspace="acme"), True),
        (DeadLetterFilter(workspace="beta"), False),
        (DeadLetterFilter(outcome="rejected"), True),
        (DeadLetterFilter(outcome="failed_after_retries"), False),
        (DeadLetterFilter(reason_contains="too long"), True),
        (DeadLetterFilter(reason_contains="TOO LONG"), True),
        (DeadLetterFilter(reason_contains="timeout"), False),
        (DeadLetterFilter(status=400), True),
        (DeadLetterFilter(status=500), False),
        (DeadLetterFilter(event_type="track"), True),
        (DeadLetterFilter(event_type="identify"), False),
        (DeadLetterFilter(event_name="Plan Changed"), True),
        (DeadLetterFilter(event_name="plan changed"), False),
        (DeadLetterFilter(since_ms=NOW_MS - 60_000), True),
        (DeadLetterFilter(since_ms=NOW_MS - 59_999), False),
        (DeadLetterFilter(until_ms=NOW_MS - 60_000), True),
        (DeadLetterFilter(until_ms=NOW_MS - 60_001), False),
        (DeadLetterFilter(workspace="acme", status=400, event_type="track", since_ms=0, until_ms=NOW_MS), True),
        (DeadLetterFilter(workspace="acme", status=400, event_type="identify"), False),
    ],
)
def test_a_filter_matches_only_entries_meeting_every_condition(flt: DeadLetterFilter, matches: bool) -> None:
    assert flt.matches(ENTRY) is matches


def test_a_filter_on_status_does_not_match_an_entry_without_status() -> None:
    entry = DeadLetterEntry("1-0", replace(LETTER, status=None))
    assert not DeadLetterFilter(status=400).matches(entry)


def test_only_the_empty_filter_is_empty() -> None:
    assert DeadLetterFilter().is_empty()
    assert not DeadLetterFilter(status=400).is_empty()


@pytest.mark.parametrize(
    ("flt", "text"),
    [
        (DeadLetterFilter(), "all"),
        (DeadLetterFilter(workspace="acme", status=400), "workspace=acme status=400"),
        (DeadLetterFilter(reason_contains="too long"), "reason_contains=too long"),
    ],
)
def test_a_filter_describes_itself_for_the_audit(flt: DeadLetterFilter, text: str) -> None:
    assert flt.describe() == text
