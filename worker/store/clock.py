"""Redis's clock and stream entry ids, as unix milliseconds: the one conversion of each (pure).

The fleet measures time by Redis ``TIME`` (one clock for every worker) and stream entry ids (``<ms>-<seq>``,
stamped by that clock), so ages, retry windows and lag agree across hosts.
"""

from __future__ import annotations

from typing import Any, Protocol


class HasTime(Protocol):
    """A Redis client: its ``TIME`` command answers ``(seconds, microseconds)``."""

    def time(self) -> Any:
        """Redis ``TIME``."""


def time_reply_ms(reply: Any) -> int:
    """Unix milliseconds of a Redis ``TIME`` reply ``(seconds, microseconds)``."""
    seconds, micros = reply
    return int(seconds) * 1_000 + int(micros) // 1_000


def server_ms(client: HasTime) -> int:
    """Redis's clock now, in unix milliseconds (one round trip)."""
    return time_reply_ms(client.time())


def entry_id_ms(entry_id: str | bytes) -> int:
    """When Redis appended a stream entry, in unix ms: the millisecond part of its id (``<ms>-<seq>``).

    Raises:
        ValueError: The id has no millisecond part.
    """
    text = entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])
