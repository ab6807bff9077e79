"""The dead-letter record: what the pipeline writes, field by field (docs/architecture.md).

Pure: no Redis here. ``DeadLetter.to_fields`` gives the stream entry fields, ``from_fields`` reads them back,
and ``DeadLetterEntry`` pairs a record with its place in the dead-letter stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, get_args

import orjson

from producers._events import MAX_EVENT_BYTES
from worker.store.clock import entry_id_ms

_T = TypeVar("_T")

Outcome = Literal["rejected", "failed_after_retries", "item_rejected"]

#: Every outcome a dead letter may carry.
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)
#: The response excerpt kept in a record, in characters.
RESPONSE_EXCERPT_CHARS: Final = 1_000
#: Prefix of the record fields that hold the original stream entry's fields, one record field each.
ENTRY_FIELD_PREFIX: Final = "entry."
#: The same, for a field whose name is not UTF-8: the name follows in hexadecimal.
ENTRY_HEX_FIELD_PREFIX: Final = "entryhex."
#: The original entry's ``event`` field, as stored when its value is the record's ``event`` (kept only once).
_SAME_AS_EVENT: Final = b""

#: A stream entry's fields, in order: (name, value) pairs of bytes.
EntryFields = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event that could not be delivered, with why and when.

    Attributes:
        workspace: The workspace the event belongs to.
        partition: The partition stream it was read from.
        event: The original raw event, byte for byte.
        outcome: ``rejected``, ``failed_after_retries`` or ``item_rejected``.
        reason: Why it failed, in words.
        status: The HTTP status, if a response came back.
        response: A response excerpt (truncated to 1,000 characters when written).
        attempts: Delivery attempts made.
        first_failed_at_ms: First failure, unix milliseconds.
        last_failed_at_ms: Last failure, unix milliseconds.
        host: The worker host that gave up.
        message_id: The event's ``messageId``, when it has one.
        event_type: The event's ``type``.
        event_name: The track event's ``event`` name.
        entry_fields: Every field of the original stream entry, in order (``v``, ``event``, and any other),
            so that replay writes back what was there; empty for records written before they were kept.
    """

    workspace: str
    partition: int
    event: bytes
    outcome: Outcome
    reason: str
    status: int | None = None
    response: str = ""
    attempts: int = 1
    first_failed_at_ms: int = 0
    last_failed_at_ms: int = 0
    host: str = ""
    message_id: str | None = None
    event_type: str | None = None
    event_name: str | None = None
    entry_fields: EntryFields = ()

    def to_fields(self) -> dict[str, bytes | str]:
        """The dead-letter stream entry fields of docs/architecture.md.

        The original entry's fields follow as ``entry.{name}``; its ``event`` is stored empty when it is the
        record's ``event``, so that the event's bytes are held once.
        """
        fields: dict[str, bytes | str] = {
            "event": self.event,
            "workspace": self.workspace,
            "partition": str(self.partition),
            "outcome": self.outcome,
            "reason": self.reason,
            "status": "" if self.status is None else str(self.status),
            "response": self.response[:RESPONSE_EXCERPT_CHARS],
            "attempts": str(self.attempts),
            "first_failed_at": str(self.first_failed_at_ms),
            "last_failed_at": str(self.last_failed_at_ms),
            "host": self.host,
            "message_id": self.message_id or "",
            "type": self.event_type or "",
            "name": self.event_name or "",
        }
        for name, value in self.entry_fields:
            same = name == b"event" and value == self.event
            fields[_entry_field_name(name)] = _SAME_AS_EVENT if same else value
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> DeadLetter:
        """Read a record back from its stream entry fields; missing or odd fields get defaults."""

        def text(name: str) -> str:
            return fields.get(name.encode(), b"").decode("utf-8", "replace")

        outcome = text("outcome")
        return cls(
            workspace=text("workspace"),
            partition=_int(text("partition"), 0),
            event=fields.get(b"event", b""),
            outcome=outcome if outcome in OUTCOMES else "rejected",  # type: ignore[arg-type]
            reason=text("reason"),
            status=_int(text("status"), None),
            response=text("response"),
            attempts=_int(text("attempts"), 1),
            first_failed_at_ms=_int(text("first_failed_at"), 0),
            last_failed_at_ms=_int(text("last_failed_at"), 0),
            host=text("host"),
            message_id=text("message_id") or None,
            event_type=text("type") or None,
            event_name=text("name") or None,
            entry_fields=_entry_fields(fields),
        )


def _entry_field_name(name: bytes) -> str:
    """The record field holding the original entry's field ``name``."""
    try:
        return ENTRY_FIELD_PREFIX + name.decode("utf-8")
    except UnicodeDecodeError:
        return ENTRY_HEX_FIELD_PREFIX + name.hex()


def _original_name(field: bytes) -> bytes | None:
    """The original entry's field name a record field holds, or None for the record's own fields."""
    text = field.decode("utf-8", "replace")
    if text.startswith(ENTRY_FIELD_PREFIX):
        return field[len(ENTRY_FIELD_PREFIX) :]
    if text.startswith(ENTRY_HEX_FIELD_PREFIX):
        try:
            return bytes.fromhex(text[len(ENTRY_HEX_FIELD_PREFIX) :])
        except ValueError:
            return None
    return None


def _entry_fields(fields: Mapping[bytes, bytes]) -> EntryFields:
    """The original entry's fields kept in a record's stream fields, in order."""
    event = fields.get(b"event", b"")
    kept = []
    for field, value in fields.items():
        name = _original_name(field)
        if name is not None:
            kept.append((name, event if name == b"event" and value == _SAME_AS_EVENT else value))
    return tuple(kept)


def _int(text: str, default: _T) -> int | _T:
    try:
        return int(text)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A dead letter and its place: the stream entry id in the workspace's dead-letter stream."""

    stream_id: str
    letter: DeadLetter

    @property
    def id(self) -> str:
        """The dead-letter id the CLI shows: ``{workspace}/{stream-entry-id}``."""
        return f"{self.letter.workspace}/{self.stream_id}"

    @property
    def dead_lettered_at_ms(self) -> int:
        """When the entry entered the dead-letter stream (the time part of its id), unix ms."""
        return stream_id_ms(self.stream_id)


def stream_id_ms(stream_id: str) -> int:
    """The millisecond part of a stream entry id such as ``1700000000000-3``."""
    try:
        return entry_id_ms(stream_id)
    except ValueError:
        return 0


def split_id(dead_letter_id: str) -> tuple[str, str]:
    """Split ``{workspace}/{stream-entry-id}`` into its two parts.

    Raises:
        ValueError: The text is not a dead-letter id.
    """
    workspace, sep, stream_id = dead_letter_id.rpartition("/")
    ms, dash, seq = stream_id.partition("-")
    if not (sep and workspace and ms.isdigit() and dash and seq.isdigit()):
        raise ValueError(f"{dead_letter_id!r} is not a dead-letter id (expected WORKSPACE/MS-SEQ)")
    return workspace, stream_id


def over_alarm(size: int, max_entries: int, ratio: float) -> bool:
    """Whether a dead-letter queue of ``size`` entries has reached its alarm level.

    Args:
        size: Entries in the queue.
        max_entries: The queue's nominal capacity (``Settings.dlq_max_entries``); nothing is evicted past it.
        ratio: The fraction of ``max_entries`` that raises the alarm (``Settings.dlq_alarm_ratio``).
    """
    return size >= max_entries * ratio


def describe_event(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """Best-effort ``(messageId, type, event name)`` of a raw event; never raises.

    An event over ``MAX_EVENT_BYTES`` is not parsed (it is dead-lettered for its size): all three are None.
    """
    if len(raw) > MAX_EVENT_BYTES:
        return None, None, None
    try:
        event: Any = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return None, None, None
    if not isinstance(event, dict):
        return None, None, None
    return _short(event.get("messageId")), _short(event.get("type")), _short(event.get("event"))


def _short(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value)[:200] or None
    return None
