"""The audit trail of the dead-letter queue: who replayed, purged or imported what, and when."""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass
from typing import Any

import redis

from producers.keys import audit_key
from worker.store.replies import entry_fields, stream_rows


@dataclass(frozen=True, slots=True)
class Actor:
    """Who runs a command: the operating-system user and the host."""

    user: str
    host: str

    @classmethod
    def current(cls) -> Actor:
        """The user and host of this process (``unknown`` when the system cannot tell)."""
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
        return cls(user=user, host=socket.gethostname() or "unknown")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited action."""

    id: str
    at_ms: int
    user: str
    host: str
    action: str
    filters: str
    count: int
    dry_run: bool
    #: The command was stopped by Ctrl-C part way: ``count`` is what it did before.
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "id": self.id,
            "at_ms": self.at_ms,
            "user": self.user,
            "host": self.host,
            "action": self.action,
            "filters": self.filters,
            "count": self.count,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
        }


def record_audit(
    client: redis.Redis,
    prefix: str,
    *,
    action: str,
    filters: str,
    count: int,
    dry_run: bool,
    actor: Actor | None = None,
    interrupted: bool = False,
) -> str:
    """Append one record to ``{prefix}:dlq-audit`` (never trimmed) and return its stream id.

    Args:
        client: A Redis client.
        prefix: The key prefix.
        action: ``replay``, ``purge`` or ``import``.
        filters: The filter as text (``DeadLetterFilter.describe()``) or the imported file's name.
        count: Entries acted on (or that would be, in a dry run).
        dry_run: Whether nothing was changed.
        actor: Who acted; the current user and host by default.
        interrupted: The action was stopped part way (Ctrl-C); ``count`` is what was done.
    """
    who = actor or Actor.current()
    fields: dict[str, str] = {
        "at": str(int(time.time() * 1_000)),
        "user": who.user,
        "host": who.host,
        "action": action,
        "filters": filters,
        "count": str(count),
        "dry_run": "1" if dry_run else "0",
        "interrupted": "1" if interrupted else "0",
    }
    stream_id = client.xadd(audit_key(prefix), entry_fields(fields))
    return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)


def audit(client: redis.Redis, prefix: str, limit: int = 50) -> list[AuditRecord]:
    """The latest ``limit`` audit records, newest first."""
    rows = stream_rows(client.xrevrange(audit_key(prefix), count=limit))
    return [_record(stream_id.decode(), fields) for stream_id, fields in rows]


def _record(stream_id: str, fields: dict[bytes, bytes]) -> AuditRecord:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode("utf-8", "replace")

    return AuditRecord(
        id=stream_id,
        at_ms=int(text("at") or 0),
        user=text("user"),
        host=text("host"),
        action=text("action"),
        filters=text("filters"),
        count=int(text("count") or 0),
        dry_run=text("dry_run") == "1",
        interrupted=text("interrupted") == "1",
    )
