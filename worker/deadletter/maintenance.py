"""Purge, export and import of dead letters.

Export writes JSON Lines, one object per entry, oldest first: the id, every record field, the event as text
(``event``) or, when it is not valid UTF-8, as base64 (``event_b64``), so the bytes survive exactly, and the
original stream entry's fields (``entry``: ``[name, value]`` pairs, a value as text or ``{"b64": ...}``, null
for the entry's ``event``, which is the record's ``event``).
Import writes such lines back as new entries with the same fields; a line whose record is already in its
workspace's queue is skipped, so importing a file twice adds nothing the second time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

import orjson
import redis

from producers.keys import dlq_key
from worker.deadletter.audit import Actor, record_audit
from worker.deadletter.filters import DeadLetterFilter
from worker.deadletter.records import OUTCOMES, DeadLetter, DeadLetterEntry
from worker.deadletter.store import dlq_workspaces, iter_entries, scan_stream
from worker.store.replies import entry_fields

#: Entries deleted or written per Redis round trip.
WRITE_CHUNK: Final = 500


class ImportFormatError(ValueError):
    """A line of an import file is not an exported dead letter; the message gives the line number."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did."""

    imported: int
    skipped: int
    #: Stopped part way (Ctrl-C, between chunks): ``imported`` counts what was written before.
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge did: ``matched`` dead letters, ``removed`` (or that would be, dry), ``interrupted`` by Ctrl-C."""

    matched: int
    removed: int
    interrupted: bool = False


def purge(
    client: redis.Redis,
    prefix: str,
    flt: DeadLetterFilter,
    *,
    workspaces: Sequence[str] | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    actor: Actor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PurgeResult:
    """Delete the matching dead letters for good; say how many were deleted (or would be, when dry).

    The caller decides whether an empty filter (everything) is allowed; this function does as told. It stops
    between chunks once ``should_stop()`` (Ctrl-C), and the audit record says so.
    """
    names = dlq_workspaces(client, prefix) if workspaces is None else workspaces
    ids = [(e.letter.workspace, e.stream_id) for e in iter_entries(client, prefix, names, flt, limit)]
    removed = len(ids) if dry_run else 0
    interrupted = False
    for start in range(0, 0 if dry_run else len(ids), WRITE_CHUNK):
        if should_stop():
            interrupted = True
            break
        pipe = client.pipeline(transaction=False)
        for workspace, stream_id in ids[start : start + WRITE_CHUNK]:
            pipe.xdel(dlq_key(prefix, workspace), stream_id)
        removed += sum(int(count) for count in pipe.execute())
    record_audit(
        client, prefix, action="purge", filters=flt.describe(), count=removed, dry_run=dry_run, actor=actor,
        interrupted=interrupted,
    )  # fmt: skip
    return PurgeResult(matched=len(ids), removed=removed, interrupted=interrupted)


def entry_to_json(entry: DeadLetterEntry) -> dict[str, Any]:
    """The export object of one entry (also what ``dlq list --json`` and ``dlq show --json`` print)."""
    letter = entry.letter
    data: dict[str, Any] = {
        "id": entry.id,
        "workspace": letter.workspace,
        "partition": letter.partition,
        "outcome": letter.outcome,
        "reason": letter.reason,
        "status": letter.status,
        "response": letter.response,
        "attempts": letter.attempts,
        "first_failed_at": letter.first_failed_at_ms,
        "last_failed_at": letter.last_failed_at_ms,
        "dead_lettered_at": entry.dead_lettered_at_ms,
        "host": letter.host,
        "message_id": letter.message_id,
        "type": letter.event_type,
        "name": letter.event_name,
    }
    try:
        data["event"] = letter.event.decode("utf-8")
    except UnicodeDecodeError:
        data["event_b64"] = base64.b64encode(letter.event).decode("ascii")
    data["entry"] = [
        [_json_bytes(name), None if name == b"event" and value == letter.event else _json_bytes(value)]
        for name, value in letter.entry_fields
    ]
    return data


def _json_bytes(value: bytes) -> str | dict[str, str]:
    """Bytes as JSON: the text when they are UTF-8, else ``{"b64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def _bytes_from_json(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            pass
    raise ValueError("field 'entry' must hold [name, value] pairs of text or {\"b64\": ...}")


def _entry_fields(data: dict[str, Any], event: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The original entry's fields of an export object; a null value is the record's event."""
    pairs = data.get("entry", [])
    if not isinstance(pairs, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
        raise ValueError("field 'entry' must be a list of [name, value] pairs")
    return tuple((_bytes_from_json(name), event if value is None else _bytes_from_json(value)) for name, value in pairs)


def letter_from_json(data: Any) -> DeadLetter:
    """Rebuild a record from an export object.

    Raises:
        ValueError: A field is missing or has the wrong type.
    """
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("outcome") not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    status = data.get("status")
    event = _event_bytes(data)
    return DeadLetter(
        workspace=_text(data, "workspace", required=True),
        partition=_number(data, "partition", 0),
        event=event,
        outcome=data["outcome"],
        reason=_text(data, "reason"),
        status=None if status is None else _number(data, "status", 0),
        response=_text(data, "response"),
        attempts=_number(data, "attempts", 1),
        first_failed_at_ms=_number(data, "first_failed_at", 0),
        last_failed_at_ms=_number(data, "last_failed_at", 0),
        host=_text(data, "host"),
        message_id=data.get("message_id") or None,
        event_type=data.get("type") or None,
        event_name=data.get("name") or None,
        entry_fields=_entry_fields(data, event),
    )


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"field {name!r} must be a {'non-empty ' if required else ''}string")
    return value


def _number(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {name!r} must be an integer")
    return value


def _event_bytes(data: dict[str, Any]) -> bytes:
    if isinstance(data.get("event"), str):
        return str(data["event"]).encode("utf-8")
    if isinstance(data.get("event_b64"), str):
        try:
            return base64.b64decode(str(data["event_b64"]), validate=True)
        except binascii.Error:
            raise ValueError("field 'event_b64' is not base64") from None
    raise ValueError("field 'event' (or 'event_b64') is missing")


def export(
    client: redis.Redis,
    prefix: str,
    flt: DeadLetterFilter,
    out: TextIO,
    *,
    workspaces: Sequence[str] | None = None,
    limit: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Write the matching dead letters to ``out`` as JSON Lines, oldest first; return how many (whole lines only).

    It stops before the next line once ``should_stop()`` (Ctrl-C).
    """
    names = dlq_workspaces(client, prefix) if workspaces is None else workspaces
    count = 0
    for entry in iter_entries(client, prefix, names, flt, limit, newest_first=False):
        if should_stop():
            break
        out.write(orjson.dumps(entry_to_json(entry)).decode("utf-8") + "\n")
        count += 1
    return count


def parse_lines(lines: Iterable[str]) -> list[DeadLetter]:
    """Every record of an export file, checked before anything is written.

    Raises:
        ImportFormatError: A line is not an exported dead letter; the message gives its number.
    """
    letters = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            letters.append(letter_from_json(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise ImportFormatError(f"line {number}: {exc}") from None
    return letters


def _digest(letter: DeadLetter) -> bytes:
    fields = letter.to_fields()
    hasher = hashlib.blake2b(digest_size=16)
    for name in sorted(fields):
        value = fields[name]
        hasher.update(name.encode() + b"\0" + (value if isinstance(value, bytes) else value.encode()) + b"\0")
    return hasher.digest()


def _existing_digests(client: redis.Redis, prefix: str, workspace: str) -> set[bytes]:
    entries = scan_stream(client, prefix, workspace, DeadLetterFilter(), newest_first=False)
    return {_digest(entry.letter) for entry in entries}


def _fresh_letters(client: redis.Redis, prefix: str, letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    known: dict[str, set[bytes]] = {}
    fresh = []
    for letter in letters:
        if letter.workspace not in known:
            known[letter.workspace] = _existing_digests(client, prefix, letter.workspace)
        digest = _digest(letter)
        if digest not in known[letter.workspace]:
            known[letter.workspace].add(digest)
            fresh.append(letter)
    return fresh


def import_(
    client: redis.Redis,
    prefix: str,
    lines: Iterable[str],
    *,
    source: str = "-",
    actor: Actor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ImportResult:
    """Write exported dead letters back into their workspaces' queues, skipping those already there.

    Args:
        client: A Redis client.
        prefix: The key prefix.
        lines: The lines of an export file.
        source: The file's name, for the audit record.
        actor: Who imports, for the audit record.
        should_stop: Asked between chunks: True stops the import there (Ctrl-C); a rerun skips what was written.

    Raises:
        ImportFormatError: A line is not an exported dead letter (nothing is written then).
    """
    letters = parse_lines(lines)
    fresh = _fresh_letters(client, prefix, letters)
    written = 0
    for start in range(0, len(fresh), WRITE_CHUNK):
        if should_stop():
            break
        pipe = client.pipeline(transaction=False)
        for letter in fresh[start : start + WRITE_CHUNK]:
            pipe.xadd(dlq_key(prefix, letter.workspace), entry_fields(letter.to_fields()))
        written += len(pipe.execute())
    interrupted = written < len(fresh)
    record_audit(
        client,
        prefix,
        action="import",
        filters=f"file={source}",
        count=written,
        dry_run=False,
        actor=actor,
        interrupted=interrupted,
    )
    return ImportResult(imported=written, skipped=len(letters) - len(fresh), interrupted=interrupted)
