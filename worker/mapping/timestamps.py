"""Dates to integer unix seconds, the only time format the Customer.io Track API accepts (pure).

Two parsers:

* :func:`parse_iso8601` accepts only strict ISO-8601: ``YYYY-MM-DD``, optionally followed by
  ``THH:MM[:SS][.fraction]`` and an offset (``Z``, ``±hh:mm``, ``±hhmm``). No offset means UTC.
* :func:`event_time` reads an event's own time: a number, a digit string (already unix seconds) or an ISO-8601
  string (a space may stand for the ``T``). A value that is none of these is not a time (``None``): the caller
  decides what to do with it, and never refuses the event for it.

Fractions are floored, so ``…:00.999Z`` is the same second as ``…:00Z``. Nothing here reads a clock.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

_ISO: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?"
)
_DIGITS: Final = re.compile(r"\d+(?:\.\d+)?")
#: ``date.toordinal()`` of 1970-01-01.
_EPOCH_ORDINAL: Final = 719_163
#: 9999-12-31T23:59:59Z: a time past this is a mistake (milliseconds sent as seconds, say), not a date.
_MAX_SECONDS: Final = 253_402_300_799
#: Shortest and longest strings :data:`_ISO` can match; a cheap filter before the regex.
_ISO_MIN_LEN: Final = 10
_ISO_MAX_LEN: Final = 35
#: Where an event's own time is read, in order.
TIME_FIELDS: Final = ("timestamp", "originalTimestamp", "receivedAt")
#: Where an identify's ``created_at`` is read, in its traits (then at the event's top level).
CREATED_AT_TRAITS: Final = ("created_at", "createdAt")
#: The operation fields whose time may be unreadable: left out (``timestamp``, ``device.last_used``) or passed
#: as given (``created_at``). The values of the ``field`` label of ``cio_fleet_timestamps_dropped_total``.
DROPPED_FIELDS: Final = ("timestamp", "created_at", "device.last_used")


def parse_iso8601(text: str) -> int | None:
    """Unix seconds of a strict ISO-8601 date or date-time, or ``None`` when ``text`` is not one.

    Args:
        text: The candidate string, for example ``"2022-11-24T22:56:14.144Z"`` or ``"2024-02-29"``.

    Returns:
        The floored unix time in seconds, or ``None`` for anything else (including impossible dates).
    """
    if not _ISO_MIN_LEN <= len(text) <= _ISO_MAX_LEN or text[4] != "-":
        return None
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    _, _, _, hour, minute, second, offset = match.groups()
    days = _days_since_epoch(text[:10])
    if days is None:
        return None
    clock = _seconds_of_day(hour, minute, second)
    shift = _offset_seconds(offset)
    if clock is None or shift is None:
        return None
    return days * 86_400 + clock - shift


@functools.lru_cache(maxsize=4_096)
def _days_since_epoch(day: str) -> int | None:
    """Days from 1970-01-01 to ``day`` (``YYYY-MM-DD``, digits checked by the caller), or None for no such day.

    Cached: the events of a batch fall on a few days, and building a ``date`` was a third of parsing a time.
    """
    try:
        return date(int(day[:4]), int(day[5:7]), int(day[8:10])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


def _seconds_of_day(hour: str | None, minute: str | None, second: str | None) -> int | None:
    if hour is None or minute is None:
        return 0
    h, m, s = int(hour), int(minute), int(second or 0)
    if h > 23 or m > 59 or s > 59:
        return None
    return h * 3600 + m * 60 + s


def _offset_seconds(offset: str | None) -> int | None:
    if offset is None or offset == "Z":
        return 0
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        return None
    seconds = hours * 3600 + minutes * 60
    return -seconds if offset[0] == "-" else seconds


def event_time(value: object) -> int | None:
    """An event's own time as unix seconds, or ``None`` when the value cannot be read as a time.

    Args:
        value: A number of seconds, a digit string, or an ISO-8601 string; anything else is not a time.

    Returns:
        The floored unix time in seconds, or ``None`` (``"yesterday"``, ``"… PDT"``, ``true``, milliseconds…).
    """
    if isinstance(value, str):
        seconds = _text_time(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = math.floor(value)
    else:
        return None
    return None if seconds is None or abs(seconds) > _MAX_SECONDS else seconds


def first_given(source: Mapping[str, Any], fields: tuple[str, ...]) -> tuple[str, object] | None:
    """The first of ``fields`` that ``source`` holds (not null, not empty), and its value as given.

    Args:
        source: A JSON object, such as the event or its traits.
        fields: The keys to try, in order.

    Returns:
        ``(key, value)``, or ``None`` when no field holds a value.
    """
    for field in fields:
        value = source.get(field)
        if value is not None and value != "":
            return field, value
    return None


def event_timestamp(event: Mapping[str, Any], dropped: list[str]) -> int | None:
    """The event's time (:data:`TIME_FIELDS`) in unix seconds, whatever the workspace's options.

    Args:
        event: The Segment event.
        dropped: Gets ``"timestamp"`` appended when the time is present but unreadable.

    Returns:
        Unix seconds, or ``None`` to leave the time out (Customer.io then uses the time it receives it).
    """
    for field in TIME_FIELDS:  # first_given, inlined: this runs for almost every event
        value = event.get(field)
        if value is not None and value != "":
            seconds = event_time(value)
            if seconds is None:
                dropped.append("timestamp")
            return seconds
    return None


def device_last_used(event: Mapping[str, Any], convert: bool, dropped: list[str]) -> int | None:
    """A device's ``last_used``: the event's time, converted or, with ``convert`` off, as given.

    As given, only an integer passes: Customer.io's schema takes nothing else for ``last_used``, and a value
    it refuses would cost the event. Anything else is left out (Customer.io uses the time of the request).

    Args:
        event: The Segment track event.
        convert: The workspace's ``convert_timestamps``.
        dropped: Gets ``"device.last_used"`` appended when a time is present but left out.

    Returns:
        The integer to send, or ``None`` to leave ``last_used`` out.
    """
    given = first_given(event, TIME_FIELDS)
    if given is None:
        return None
    value = given[1]
    if convert:
        seconds = event_time(value)
    else:
        seconds = value if isinstance(value, int) and not isinstance(value, bool) else None
    if seconds is None:
        dropped.append("device.last_used")
    return seconds


def identify_created_at(
    event: Mapping[str, Any], traits: Mapping[str, Any], convert: bool, dropped: list[str]
) -> object | None:
    """``traits.created_at`` ?? ``traits.createdAt`` ?? the top-level ``created_at``.

    With ``convert`` it becomes unix seconds (a digit string is sent as that integer); without, it passes as
    given. A value that is not a time passes as given either way.

    Args:
        event: The Segment identify event.
        traits: Its traits.
        convert: The workspace's ``convert_timestamps``.
        dropped: Gets ``"created_at"`` appended when the value is converted but is not a time.

    Returns:
        The value to send as ``attributes.created_at``, or ``None`` when the event has none.
    """
    given = first_given(traits, CREATED_AT_TRAITS) or first_given(event, ("created_at",))
    if given is None:
        return None
    value = given[1]
    if not convert:
        return value
    seconds = event_time(value)
    if seconds is None:
        dropped.append("created_at")
        return value
    return seconds


def _text_time(text: str) -> int | None:
    if _DIGITS.fullmatch(text):
        whole = text.partition(".")[0]
        return int(whole) if len(whole) <= 12 else None
    if len(text) > 10 and text[10] == " ":
        text = f"{text[:10]}T{text[11:]}"
    return parse_iso8601(text)


def convert_dates(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``attributes`` where every ISO-8601 string, in nested objects too, is unix seconds.

    Arrays, and strings that are not strict ISO-8601 (``"25 Mar 2015"``, ``"01/01/2019"``), are kept as they are.

    Args:
        attributes: A JSON object.

    Returns:
        A new dict; ``attributes`` is not modified.
    """
    converted: dict[str, Any] = {}
    for key, value in attributes.items():
        if isinstance(value, str):
            seconds = parse_iso8601(value)
            converted[key] = value if seconds is None else seconds
        elif isinstance(value, dict):
            converted[key] = convert_dates(value)
        else:
            converted[key] = value
    return converted
