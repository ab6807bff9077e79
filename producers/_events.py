"""Segment-spec events: typed models to build them, and the fast checks made before one is enqueued.

Two ways in, one set of rules:

* ``validate_event(mapping)`` checks a plain dict (the ``enqueue`` path) with plain dict look-ups, because the
  producer has a budget of a few microseconds per event.
* The pydantic models (``Identify``, ``Track``, ``Page``, ``Screen``, ``Group``, ``Alias``, and the
  ``SegmentEvent`` union discriminated on ``type``) give typed construction; they run the same rules, so a model
  that builds is an event the producer accepts. Unknown fields are kept (``extra="allow"``).

The edge judges only what it can: a known ``type``, the fields each type needs, the JSON types of the common
fields and the serialised size. Everything else (a page without a URL, a device without a token) is the
worker's call, which dead-letters it with the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticSerializationError

#: Largest serialised event (with the producer's stamps) accepted: Segment's per-message cap and Customer.io's
#: per-operation limit.
MAX_EVENT_BYTES: Final = 32_000
#: The Segment event types the worker can deliver.
EVENT_TYPES: Final = ("alias", "group", "identify", "page", "screen", "track")
#: The field name used by errors about the event as a whole.
WHOLE_EVENT: Final = "(event)"

_ID_FIELDS: Final = ("userId", "anonymousId")
_OBJECT_FIELDS: Final = ("context", "integrations", "traits", "properties")
_TIME_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
_TIME_TYPES: Final = (str, int, float, dt.datetime)


class ProducerError(Exception):
    """Base of every error the producer raises on purpose."""


class InvalidEventError(ProducerError, ValueError):
    """An event the edge refuses; nothing of it was enqueued.

    Attributes:
        field: The offending field (dotted for nested ones), or ``"(event)"`` for the event as a whole.
        reason: Why, in a few words.
        index: The event's position in an ``enqueue_many`` call, else ``None``.
    """

    def __init__(self, field: str, reason: str, *, index: int | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_invalid, (self.field, self.reason, self.index))

    def at(self, index: int) -> InvalidEventError:
        """The same error, tagged with the event's position in a batch."""
        return InvalidEventError(self.field, self.reason, index=index)


def _rebuild_invalid(field: str, reason: str, index: int | None) -> InvalidEventError:
    return InvalidEventError(field, reason, index=index)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_id(value: Any) -> bool:
    """A usable identifier: a non-blank string or an integer (not a bool)."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool)


def _has_email(event: Mapping[str, Any]) -> bool:
    context = event.get("context")
    for holder in (event, event.get("traits"), context.get("traits") if isinstance(context, Mapping) else None):
        if isinstance(holder, Mapping) and isinstance(holder.get("email"), str) and holder["email"].strip():
            return True
    return False


def _has_person(event: Mapping[str, Any]) -> bool:
    return _is_id(event.get("userId")) or _is_id(event.get("anonymousId")) or _has_email(event)


def _person_rule(kind: str) -> Callable[[Mapping[str, Any]], InvalidEventError | None]:
    def rule(event: Mapping[str, Any]) -> InvalidEventError | None:
        if _has_person(event):
            return None
        return InvalidEventError("userId", f"userId, anonymousId or email required for {kind}")

    return rule


_track_person_rule: Final = _person_rule("track")


def _required_id(event: Mapping[str, Any], field: str, kind: str) -> InvalidEventError | None:
    value = event.get(field)
    if value is None or value == "":
        return InvalidEventError(field, f"required for {kind}")
    if not _is_id(value):
        return InvalidEventError(field, "must be a non-blank string or an integer")
    return None


def _track_rule(event: Mapping[str, Any]) -> InvalidEventError | None:
    name = event.get("event")
    if name is None or (isinstance(name, str) and not name.strip()):
        return InvalidEventError("event", "required for track")
    if not isinstance(name, str):
        return InvalidEventError("event", "must be a string")
    return _track_person_rule(event)


def _group_rule(event: Mapping[str, Any]) -> InvalidEventError | None:
    return _required_id(event, "groupId", "group")


def _alias_rule(event: Mapping[str, Any]) -> InvalidEventError | None:
    return _required_id(event, "userId", "alias") or _required_id(event, "previousId", "alias")


_RULES: Final[dict[str, Callable[[Mapping[str, Any]], InvalidEventError | None]]] = {
    "identify": _person_rule("identify"),
    "track": _track_rule,
    "page": _person_rule("page"),
    "screen": _person_rule("screen"),
    "group": _group_rule,
    "alias": _alias_rule,
}


def _type_problem(kind: Any) -> InvalidEventError:
    if kind is None:
        return InvalidEventError("type", "required")
    return InvalidEventError("type", f"unknown event type {_short(kind)} (expected one of {', '.join(EVENT_TYPES)})")


def _id_type_problem(name: str, value: Any) -> InvalidEventError | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return InvalidEventError(name, "must be a string or an integer")
    return None


def _object_problem(name: str, value: Any) -> InvalidEventError | None:
    if type(value) is dict or isinstance(value, Mapping):
        return None
    return InvalidEventError(name, "must be an object")


def _time_problem(name: str, value: Any) -> InvalidEventError | None:
    if isinstance(value, bool) or not isinstance(value, _TIME_TYPES):
        return InvalidEventError(name, "must be an ISO-8601 string or unix seconds")
    return None


def _message_id_problem(name: str, value: Any) -> InvalidEventError | None:
    if isinstance(value, str) and value:
        return None
    return InvalidEventError(name, "must be a non-empty string")


#: The JSON type check of each common field, when present and not null.
_FIELD_CHECKS: Final[dict[str, Callable[[str, Any], InvalidEventError | None]]] = {
    **dict.fromkeys(_ID_FIELDS, _id_type_problem),
    **dict.fromkeys(_OBJECT_FIELDS, _object_problem),
    **dict.fromkeys(_TIME_FIELDS, _time_problem),
    "messageId": _message_id_problem,
}
_FIELD_CHECK_ITEMS: Final = tuple(_FIELD_CHECKS.items())


#: The exact types that pass ``_FIELD_CHECKS`` at a glance, per common field (``messageId`` must also be non-empty).
_PLAIN_TYPES: Final[dict[str, tuple[type, ...]]] = {
    **dict.fromkeys(_ID_FIELDS, (str, int)),
    **dict.fromkeys(_OBJECT_FIELDS, (dict,)),
    **dict.fromkeys(_TIME_FIELDS, (str, int, float)),
    "messageId": (str,),
}


def _plainly_fine(event: Mapping[str, Any]) -> bool:
    """Whether each common field present is null or of a plain type that passes its check (the usual case).

    One pass over the event's own fields; anything else is left to the full checks, which name the problem.
    """
    for name, value in event.items():
        allowed = _PLAIN_TYPES.get(name)
        if allowed is not None and value is not None and (type(value) not in allowed or value == ""):
            return False
    return True


def _shape_problem(event: Mapping[str, Any]) -> InvalidEventError | None:
    """The JSON types of the common fields that are present, in a fixed order."""
    if _plainly_fine(event):
        return None
    for name, check in _FIELD_CHECK_ITEMS:
        value = event.get(name)
        problem = None if value is None else check(name, value)
        if problem is not None:
            return problem
    return None


def find_problem(event: Any) -> InvalidEventError | None:
    """The first thing wrong with an event's fields, or ``None`` (size is checked when it is serialised)."""
    if type(event) is not dict and not isinstance(event, Mapping):  # the fast test first: most events are dicts
        return InvalidEventError(WHOLE_EVENT, "must be a JSON object")
    kind = event.get("type")
    rule = _RULES.get(kind) if isinstance(kind, str) else None
    if rule is None:
        return _type_problem(kind)
    return _shape_problem(event) or rule(event)


#: The RFC 4122 variant nibble (``10xx``) for each random hex digit.
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4_text(h: str) -> str:
    """The version 4 UUID string of 32 random hex digits (two of them overwritten by the version and variant)."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def new_message_id() -> str:
    """A random (version 4) UUID string, built about three times faster than ``str(uuid.uuid4())``."""
    return _uuid4_text(os.urandom(16).hex())


#: Ids per random prefix of ``message_ids``.
_ID_RUN: Final = 4_096


def message_ids() -> Callable[[], str]:
    """A maker of version 4 UUID strings for one caller at a time, half of ``new_message_id``'s cost each.

    Each run of 4,096 ids shares a fresh random prefix (the first 33 characters of a version 4 UUID: 110 random
    bits) and ends with a 3-digit hex counter; so two ids are equal only if two draws of 110 random bits are (a
    random UUID has 122).
    """

    def runs() -> Iterator[str]:
        while True:
            prefix = new_message_id()[:33]
            for n in range(_ID_RUN):
                yield f"{prefix}{n:03x}"

    return runs().__next__


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds and a ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Stamps:
    """One stamp time and the JSON tails that add it to an event, encoded once for many events.

    ``sent`` closes an event that keeps its ``timestamp`` (``,"sentAt":"…"}``), ``both`` one that gets the stamp
    time as its ``timestamp`` too.
    """

    now: str
    sent: bytes
    both: bytes

    @classmethod
    def at(cls, now: str) -> Stamps:
        """The stamps of ``now`` (from ``now_iso()``)."""
        sent = f',"sentAt":"{now}"}}'
        return cls(now, sent.encode(), f',"timestamp":"{now}"{sent}'.encode())


#: The stamps of the latest millisecond asked for, with that millisecond (Unix time): one call in a burst builds
#: them, the others in the same millisecond share them (a tuple, so a thread reads both halves from one store).
_LATEST: tuple[int, Stamps] = (-1, Stamps.at("1970-01-01T00:00:00.000Z"))


def current_stamps() -> Stamps:
    """``Stamps.at(now_iso())``, built once per millisecond: a lone call (``track``) pays 2 µs less."""
    global _LATEST  # a cache: two threads racing only build the same stamps twice
    ms = time.time_ns() // 1_000_000
    latest = _LATEST
    if latest[0] == ms:
        return latest[1]
    seconds, milli = divmod(ms, 1_000)
    stamps = Stamps.at(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{milli:03d}Z")
    _LATEST = (ms, stamps)
    return stamps


def encode_parts(
    event: Mapping[str, Any], stamps: Stamps, new_id: Callable[[], str] = new_message_id
) -> tuple[str, bytes, bytes]:
    """Stamp an event and serialise it, as the producer writes it, in two parts to join.

    ``messageId`` (a version 4 UUID from ``new_id``) and ``timestamp`` are added when absent or null; ``sentAt`` is
    always set. All other fields are written as given, in the given order, and the added ones after them.

    Args:
        event: An event that passed ``find_problem``.
        stamps: The stamp time.
        new_id: Makes the messageId of an event without one.

    Returns:
        The event's messageId, its JSON as given and the tail that replaces the JSON's closing brace (the JSON
        written is ``data[:-1] + tail``: the stamps are appended to the object, so the event is not copied).

    Raises:
        InvalidEventError: The event is not JSON-serialisable or is larger than ``MAX_EVENT_BYTES``.
    """
    if type(event) is dict and event and "sentAt" not in event:
        message_id = event.get("messageId", "")
        if message_id is not None and event.get("timestamp", "") is not None:  # the stamps only add fields
            try:
                data = orjson.dumps(event, None, orjson.OPT_UTC_Z)
            except orjson.JSONEncodeError as exc:
                raise _unserialisable(exc) from None
            tail = stamps.sent if "timestamp" in event else stamps.both
            if "messageId" not in event:
                message_id = new_id()
                tail = b',"messageId":"%b"%b' % (message_id.encode(), tail)
        else:
            message_id, data, tail = _stamped_copy(event, stamps, new_id)
    else:
        message_id, data, tail = _stamped_copy(event, stamps, new_id)
    size = len(data) - 1 + len(tail)
    if size > MAX_EVENT_BYTES:
        raise InvalidEventError(WHOLE_EVENT, f"serialised size {size} bytes exceeds {MAX_EVENT_BYTES}")
    return str(message_id), data, tail


def _stamped_copy(event: Mapping[str, Any], stamps: Stamps, new_id: Callable[[], str]) -> tuple[Any, bytes, bytes]:
    """A stamp replaces a field (or the event is not a plain dict): stamp a copy, then serialise it."""
    stamped = dict(event)
    message_id = stamped.get("messageId")
    if message_id is None:
        message_id = stamped["messageId"] = new_id()
    if stamped.get("timestamp") is None:
        stamped["timestamp"] = stamps.now
    stamped["sentAt"] = stamps.now
    return message_id, _dumps(stamped), b"}"


def encode_event(
    event: Mapping[str, Any], *, now: str, new_id: Callable[[], str] = new_message_id
) -> tuple[str, bytes]:
    """``encode_parts`` joined: the event's messageId and its JSON bytes (``now`` from ``now_iso()``).

    Raises:
        InvalidEventError: The event is not JSON-serialisable or is larger than ``MAX_EVENT_BYTES``.
    """
    message_id, data, tail = encode_parts(event, Stamps.at(now), new_id)
    return message_id, data[:-1] + tail


def _dumps(event: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(event, None, orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError as exc:
        raise _unserialisable(exc) from None


def _unserialisable(exc: orjson.JSONEncodeError) -> InvalidEventError:
    return InvalidEventError(WHOLE_EVENT, f"cannot be serialised as JSON ({exc})")


def validate_event(event: Any) -> None:
    """Check an event as the producer does before enqueueing it.

    Args:
        event: A Segment event as a mapping.

    Raises:
        InvalidEventError: The first problem found, naming the field, for example ``event: required for track``.
    """
    problem = find_problem(event)
    if problem is not None:
        raise problem
    encode_event(event, now=now_iso())


class _Event(BaseModel):
    """Fields common to every Segment event."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    type: str
    messageId: str | None = None
    userId: str | int | None = None
    anonymousId: str | int | None = None
    timestamp: dt.datetime | str | int | float | None = None
    originalTimestamp: dt.datetime | str | int | float | None = None
    sentAt: dt.datetime | str | int | float | None = None
    receivedAt: dt.datetime | str | int | float | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    email: str | None = None
    projectId: str | None = None
    created_at: str | int | float | None = None

    @model_validator(mode="before")
    @classmethod
    def _edge_rules(cls, data: Any) -> Any:
        """Run the producer's rules on the input, so that a model that builds is an event it accepts."""
        if isinstance(data, Mapping):
            problem = find_problem({"type": cls.model_fields["type"].default, **data})
            if problem is not None:
                raise problem
        return data


class Identify(_Event):
    """Who the person is and what we know about them."""

    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = None


class Track(_Event):
    """Something the person did."""

    type: Literal["track"] = "track"
    event: str
    properties: dict[str, Any] | None = None


class Page(_Event):
    """A web page the person viewed."""

    type: Literal["page"] = "page"
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class Screen(_Event):
    """A mobile screen the person viewed."""

    type: Literal["screen"] = "screen"
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class Group(_Event):
    """The person belongs to a group (a Customer.io object)."""

    type: Literal["group"] = "group"
    groupId: str | int
    traits: dict[str, Any] | None = None


class Alias(_Event):
    """Two identities of one person: ``previousId`` is merged into ``userId``."""

    type: Literal["alias"] = "alias"
    previousId: str | int


#: Any Segment event, told apart by ``type``.
SegmentEvent = Annotated[Identify | Track | Page | Screen | Group | Alias, Field(discriminator="type")]
_EVENT_ADAPTER: Final[TypeAdapter[Identify | Track | Page | Screen | Group | Alias]] = TypeAdapter(SegmentEvent)


def _from_validation_error(exc: ValidationError, *, tagged: bool = False) -> InvalidEventError:
    error = exc.errors(include_url=False, include_input=False)[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidEventError):
        return cause
    location = error["loc"][1:] if tagged else error["loc"]
    field = ".".join(str(part) for part in location) or WHOLE_EVENT
    return InvalidEventError(field, error["msg"].lower())


def parse_event(data: Mapping[str, Any]) -> Identify | Track | Page | Screen | Group | Alias:
    """A typed model of a raw event.

    Raises:
        InvalidEventError: The event breaks a rule or a field has the wrong type.
    """
    problem = find_problem(data)
    if problem is not None:
        raise problem
    try:
        return _EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, tagged=True) from None


#: The exact Python types the call shapes take without their model, per typed field (pydantic's lax rules, such as
#: accepting any mapping as an object, are left to the model). ``userId`` and the like are ``find_problem``'s.
_COMMON_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "messageId": (str,),
    "userId": (str, int),
    "anonymousId": (str, int),
    **dict.fromkeys(_TIME_FIELDS, (str, int, float, dt.datetime)),
    "context": (dict,),
    "integrations": (dict,),
    "email": (str,),
    "projectId": (str,),
    "created_at": (str, int, float),
}
_SHAPE_TYPES: Final[dict[str, dict[str, tuple[type, ...]]]] = {
    "identify": {**_COMMON_TYPES, "traits": (dict,)},
    "track": {**_COMMON_TYPES, "event": (str,), "properties": (dict,)},
    "page": {**_COMMON_TYPES, "name": (str,), "category": (str,), "properties": (dict,)},
    "screen": {**_COMMON_TYPES, "name": (str,), "category": (str,), "properties": (dict,)},
    "group": {**_COMMON_TYPES, "groupId": (str, int), "traits": (dict,)},
    "alias": {**_COMMON_TYPES, "previousId": (str, int)},
}


def plain_fits(kind: str, event: Mapping[str, Any]) -> bool:
    """Whether every typed field of the ``kind`` model holds exactly a type the model keeps as it is.

    Such an event needs no model: its plain dict is what the model would dump. Anything else (a subclass, a mapping
    that is not a dict, a wrong type) goes through the model, which converts it or names the error.
    """
    types = _SHAPE_TYPES[kind]
    for name, value in event.items():
        allowed = types.get(name)
        if allowed is not None and type(value) not in allowed:
            return False
    return True


def shape_event(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The plain event of one call shape, without its model: ``type`` first, ``None`` values left out."""
    event = {"type": kind}
    for key, value in fields.items():
        if value is not None:
            event[key] = value
    return event


def build_event(model: type[_Event], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The plain event of one call shape: ``fields`` checked by ``model``, ``None`` values left out.

    Raises:
        InvalidEventError: A rule or a field type is broken.
    """
    given = {key: value for key, value in fields.items() if value is not None}
    try:
        return event_dict(model(**given))
    except ValidationError as exc:
        raise _from_validation_error(exc) from None


def event_dict(event: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a model, without its ``None`` fields.

    Raises:
        InvalidEventError: An extra field holds a value JSON cannot represent.
    """
    try:
        return event.model_dump(mode="json", exclude_none=True)
    except PydanticSerializationError as exc:
        raise InvalidEventError(WHOLE_EVENT, f"cannot be serialised as JSON ({exc})") from None
