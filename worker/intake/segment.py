"""Segment's Tracking API payloads turned into the events the producer enqueues.

* A single-call endpoint (``/v1/track``, ``/v1/t``…) carries one event; its ``type`` is the endpoint's.
* ``/v1/batch`` and ``/v1/import`` carry ``batch``: a list of events. The request's top-level ``context`` and
  ``integrations`` are merged into each event, the event's own keys winning, as Segment does.
* Clock skew, as Segment corrects it: when the client says when it sent the request (``sentAt``, the event's or the
  request's), the event's client-side time becomes ``originalTimestamp`` and its ``timestamp`` becomes
  ``receivedAt - (sentAt - originalTimestamp)``. ``receivedAt`` is the intake's clock.
* ``writeKey`` is a credential and never enqueued.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from worker.intake.errors import HttpError

#: The endpoint names (after ``/v1/``) of single calls, and the event type each one carries.
SINGLE_CALLS: Final = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
#: The endpoint names of batch calls.
BATCH_CALLS: Final = frozenset({"batch", "b", "import"})
#: Top-level fields of a batch request merged into each of its events.
MERGED_FIELDS: Final = ("context", "integrations")
#: Fields of a request that are not event data.
CREDENTIAL_FIELDS: Final = ("writeKey",)


def is_endpoint(name: str) -> bool:
    """Whether ``/v1/{name}`` is a Tracking API endpoint."""
    return name in SINGLE_CALLS or name in BATCH_CALLS


def events_of(name: str, body: Mapping[str, Any], received: dt.datetime) -> list[Any]:
    """The events a request to ``/v1/{name}`` carries, merged and skew-corrected, in request order.

    Items of a batch that are not objects are passed through as they are: the producer refuses them by index.

    Raises:
        HttpError: 400 when a batch request has no ``batch`` list or a top-level field has the wrong type.
    """
    clock = Clock(received)
    if name in SINGLE_CALLS:
        event = {**body, "type": SINGLE_CALLS[name]}
        return [clock.stamp(_without_credentials(event), None)]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise HttpError(400, "batch: must be a list of events")
    shared = _shared_fields(body)
    sent_at = body.get("sentAt")
    return [_batch_event(item, shared, sent_at, clock) for item in batch]


def _shared_fields(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    shared = {}
    for name in MERGED_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise HttpError(400, f"{name}: must be an object")
        shared[name] = value
    return shared


def _batch_event(item: Any, shared: Mapping[str, dict[str, Any]], sent_at: Any, clock: Clock) -> Any:
    if not isinstance(item, dict):
        return item
    event = _without_credentials(item)
    for name, value in shared.items():
        own = event.get(name)
        if own is None:
            event[name] = value
        elif isinstance(own, dict):
            event[name] = {**value, **own}
    return clock.stamp(event, sent_at)


def _without_credentials(event: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key not in CREDENTIAL_FIELDS}


class Clock:
    """The receipt time of one request, formatted once, and the ``sentAt`` values it has parsed."""

    def __init__(self, received: dt.datetime) -> None:
        self.received = received
        self.received_iso = iso(received)
        self._parsed: dict[str, dt.datetime | None] = {}

    def sent(self, value: Any) -> dt.datetime | None:
        """``parse_time`` of a ``sentAt``, once per distinct value (a batch's events share one)."""
        if not isinstance(value, str):
            return None
        if value not in self._parsed:
            self._parsed[value] = parse_time(value)
        return self._parsed[value]

    def stamp(self, event: dict[str, Any], request_sent_at: Any) -> dict[str, Any]:
        """``stamp_received`` at this clock's time."""
        return stamp_received(event, request_sent_at, self)


def stamp_received(event: dict[str, Any], request_sent_at: Any, clock: Clock) -> dict[str, Any]:
    """Set ``receivedAt`` and correct ``timestamp`` for the client's clock skew, as Segment does.

    Nothing but ``receivedAt`` changes when ``sentAt`` (the event's, else the request's) or the client-side time
    (``originalTimestamp``, else ``timestamp``) is missing or not an ISO-8601 time with a zone.
    """
    received = clock.received
    event["receivedAt"] = clock.received_iso
    sent = clock.sent(event.get("sentAt", request_sent_at))
    original_raw = event.get("originalTimestamp", event.get("timestamp"))
    original = parse_time(original_raw)
    if sent is None or original is None:
        return event
    try:
        corrected = iso(received - (sent - original))
    except (OverflowError, ValueError):  # a skew beyond the calendar: keep the client's time
        return event
    event["originalTimestamp"] = original_raw
    event["timestamp"] = corrected
    return event


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO-8601 time with a zone, else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def iso(moment: dt.datetime) -> str:
    """UTC ISO-8601 with milliseconds and a ``Z``, as the producer stamps times."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
