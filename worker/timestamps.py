"""Dates to integer unix seconds, the only time format the Customer.io Track API accepts (pure).

Two parsers:

* :func:`parse_iso8601` accepts only strict ISO-8601: ``YYYY-MM-DD``, optionally followed by
  ``THH:MM[:SS][.fraction]`` and an offset (``Z``, ``±hh:mm``, ``±hhmm``). No offset means UTC.
* :func:`event_time` reads an event's own time: a number, a digit string (already unix seconds) or an ISO-8601
  string (a space may stand for the ``T``).

Fractions are floored, so ``…:00.999Z`` is the same second as ``…:00Z``. Nothing here reads a clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from worker.errors import InvalidEvent

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
    year, month, day, hour, minute, second, offset = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    clock = _seconds_of_day(hour, minute, second)
    shift = _offset_seconds(offset)
    if clock is None or shift is None:
        return None
    return days * 86_400 + clock - shift


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


def event_time(value: object, field: str) -> int | None:
    """An event's own time as unix seconds.

    Args:
        value: ``None`` (absent), a number of seconds, a digit string, or an ISO-8601 string.
        field: The field the value came from, named in the error.

    Returns:
        The floored unix time in seconds, or ``None`` when the value is absent or empty.

    Raises:
        InvalidEvent: The value is present but is not a time.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        seconds = _text_time(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = math.floor(value)
    else:
        seconds = None
    if seconds is None or abs(seconds) > _MAX_SECONDS:
        raise InvalidEvent(f"{field}: not ISO-8601 or unix seconds")
    return seconds


def first_time(source: Mapping[str, Any], fields: tuple[str, ...], prefix: str = "") -> int | None:
    """The time in the first of ``fields`` that ``source`` holds (not null, not empty), as unix seconds.

    Args:
        source: A JSON object, such as the event or its traits.
        fields: The keys to try, in order.
        prefix: Put before the key in error messages (``"traits."``).

    Returns:
        Unix seconds, or ``None`` when no field holds a value.

    Raises:
        InvalidEvent: The first field holding a value does not hold a time.
    """
    for field in fields:
        value = source.get(field)
        if value is not None and value != "":
            return event_time(value, prefix + field)
    return None


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
