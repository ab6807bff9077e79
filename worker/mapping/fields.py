"""Reading and checking the fields of a Segment event: objects, names and attributes (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.errors import InvalidEvent
from worker.mapping.identifiers import utf8_len
from worker.mapping.timestamps import convert_dates

#: Customer.io's limit on an event name.
MAX_EVENT_NAME_BYTES: Final = 100
#: Customer.io's limit on an attribute name.
MAX_ATTRIBUTE_NAME_BYTES: Final = 150


def object_field(source: Mapping[str, Any], key: str, field: str | None = None) -> dict[str, Any]:
    """A JSON-object field; absent, null and ``[]`` (PHP's empty map) are ``{}``.

    Raises:
        InvalidEvent: The field holds something else; ``field`` (else ``key``) is named.
    """
    value = source.get(key)
    if isinstance(value, dict):
        return value
    if value is None or value == []:
        return {}
    raise InvalidEvent(f"{field or key}: must be an object")


def check_names(source: Mapping[str, Any], field: str) -> None:
    """Every attribute name of ``source`` is a string of at most 150 bytes.

    Raises:
        InvalidEvent: A name is not a string or is too long.
    """
    for name in source:
        if not isinstance(name, str):
            raise InvalidEvent(f"{field}: attribute names must be strings")
        if len(name) > MAX_ATTRIBUTE_NAME_BYTES // 4 and utf8_len(name) > MAX_ATTRIBUTE_NAME_BYTES:
            raise InvalidEvent(f"{field}: attribute name longer than {MAX_ATTRIBUTE_NAME_BYTES} bytes")


def convertible_attributes(source: Mapping[str, Any], field: str, convert: bool) -> dict[str, Any]:
    """``source`` as Customer.io attributes: names checked, dates converted when ``convert``, else as given."""
    check_names(source, field)
    return convert_dates(source) if convert else dict(source)


def required_name(value: object, field: str, required_for: str) -> str:
    """A required event, page or screen name.

    Raises:
        InvalidEvent: The name is absent, empty or not a string.
    """
    if value is None or value == "":
        raise InvalidEvent(f"{field}: required for {required_for}")
    if not isinstance(value, str):
        raise InvalidEvent(f"{field}: must be a string")
    return value


def checked_event_name(value: str, field: str) -> str:
    """``value``, if it fits Customer.io's limit on event names.

    Raises:
        InvalidEvent: The name is longer than 100 bytes.
    """
    if len(value) > MAX_EVENT_NAME_BYTES // 4 and utf8_len(value) > MAX_EVENT_NAME_BYTES:
        raise InvalidEvent(f"{field}: longer than {MAX_EVENT_NAME_BYTES} bytes")
    return value
