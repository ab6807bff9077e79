"""Which dead letters a command acts on: a filter value object and the parsers of its time options. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Final

from worker.deadletter.records import OUTCOMES, DeadLetterEntry

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_MS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class FilterError(ValueError):
    """A filter option has a bad value; the message names the option."""


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Conditions a dead letter must all meet; ``None`` means "any".

    Time bounds apply to when the entry entered the dead-letter stream (its id), inclusive.
    """

    workspace: str | None = None
    outcome: str | None = None
    reason_contains: str | None = None
    status: int | None = None
    event_type: str | None = None
    event_name: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise FilterError(f"--outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        if self.since_ms is not None and self.until_ms is not None and self.since_ms > self.until_ms:
            raise FilterError("--since must not be later than --until")

    def is_empty(self) -> bool:
        """Whether the filter selects every dead letter."""
        return all(getattr(self, field.name) is None for field in fields(self))

    def describe(self) -> str:
        """The filter as text for audit records, e.g. ``workspace=acme status=400``; ``all`` when empty."""
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) is not None]
        return " ".join(parts) or "all"

    def matches(self, entry: DeadLetterEntry) -> bool:
        """Whether ``entry`` meets every condition."""
        letter = entry.letter
        reason = self.reason_contains
        checks = (
            self.workspace is None or letter.workspace == self.workspace,
            self.outcome is None or letter.outcome == self.outcome,
            reason is None or reason.casefold() in letter.reason.casefold(),
            self.status is None or letter.status == self.status,
            self.event_type is None or letter.event_type == self.event_type,
            self.event_name is None or letter.event_name == self.event_name,
        )
        return all(checks) and self.covers_ms(entry.dead_lettered_at_ms)

    def covers_ms(self, at_ms: int) -> bool:
        """Whether a dead-lettering time falls inside the time bounds."""
        return (self.since_ms is None or at_ms >= self.since_ms) and (self.until_ms is None or at_ms <= self.until_ms)


def parse_time(text: str, *, option: str, now_ms: int) -> int:
    """Parse a time option into unix milliseconds.

    Accepts a duration back from now (``90s``, ``15m``, ``1h``, ``7d``), an ISO-8601 time
    (``2026-11-28T10:00:00Z``; without a zone it is UTC) or unix seconds (``1764324000``).

    Args:
        text: The option's value.
        option: The option's name, for the error message (``--since``).
        now_ms: The current time, unix milliseconds.

    Raises:
        FilterError: The value is none of the accepted forms; the message names ``option``.
    """
    duration = _DURATION.match(text)
    if duration:
        return now_ms - int(float(duration.group(1)) * _UNIT_MS[duration.group(2)])
    stripped = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", stripped):
        return int(float(stripped) * 1_000)
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise FilterError(
            f"{option}: {text!r} is not a time; use a duration (30s, 15m, 1h, 7d), "
            "an ISO-8601 time (2026-11-28T10:00:00Z) or unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000)
