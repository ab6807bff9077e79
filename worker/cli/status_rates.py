"""Rates between two readings of the fleet, and the backlog's sparkline: the arithmetic of ``status --watch``.

Pure: no Redis, no clock, no printing. ``status_watch`` reads the counters and hands them here.

Every rate is an increase of a monotonic counter divided by the time between the two readings (Redis time):

* **events out/s**: events that left the workspace's streams (delivered, skipped or dead-lettered) =
  increase of the streams' ``entries-added`` minus the increase of the backlog;
* **dead letters/min**: increase of the dead-letter stream's ``entries-added`` (a replay or purge that empties
  the queue does not make it negative);
* **delivered/s**: events out minus dead letters;
* **requests/s**: increase of ``cio_fleet_requests_total`` of the scraped workers; **budget**: requests/s over
  the workspace's ``rate_limit_rps``.

A counter that went down was reset (a worker restarted, a stream was deleted): as Prometheus's ``rate`` does,
its increase is then its new value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Counts", "Rates", "Snapshot", "backlog_history", "increase", "rates", "sparkline"]

#: Bars of a sparkline, lowest first.
BARS: Final = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class Counts:
    """The counters of one workspace at one instant."""

    #: Events ever appended to the workspace's streams.
    enqueued: int
    #: Events waiting in them.
    backlog: int
    #: Entries ever appended to its dead-letter queue.
    dead_lettered: int
    #: Track API requests counted by the scraped workers; None when no worker was scraped.
    requests: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every workspace's counters at ``at_ms`` (Redis time)."""

    at_ms: int
    workspaces: Mapping[str, Counts]


@dataclass(frozen=True, slots=True)
class Rates:
    """One workspace's rates between two snapshots."""

    events_out_per_s: float
    delivered_per_s: float
    dead_letters_per_min: float
    #: None when no worker was scraped.
    requests_per_s: float | None
    #: Requests/s over ``rate_limit_rps`` (1.0 = the whole budget); None without requests or a budget.
    budget_share: float | None


def increase(before: float, after: float) -> float:
    """How much a counter grew; a counter that went down was reset, so it grew by its new value."""
    return after - before if after >= before else after


def _requests_per_s(before: Counts, after: Counts, seconds: float) -> float | None:
    if before.requests is None or after.requests is None:
        return None
    return increase(before.requests, after.requests) / seconds


def _workspace_rates(before: Counts, after: Counts, seconds: float, budget_rps: float | None) -> Rates:
    out = max(0.0, increase(before.enqueued, after.enqueued) - (after.backlog - before.backlog)) / seconds
    dead = increase(before.dead_lettered, after.dead_lettered) / seconds
    requests = _requests_per_s(before, after, seconds)
    share = requests / budget_rps if requests is not None and budget_rps else None
    return Rates(out, max(0.0, out - dead), dead * 60, requests, share)


def rates(before: Snapshot, after: Snapshot, budgets: Mapping[str, float]) -> dict[str, Rates]:
    """Each workspace's rates from ``before`` to ``after``; empty when no time passed between them.

    Args:
        before: The earlier snapshot.
        after: The later snapshot.
        budgets: Workspace → its ``rate_limit_rps``.

    Returns:
        Rates of the workspaces present in both snapshots.
    """
    seconds = (after.at_ms - before.at_ms) / 1_000
    if seconds <= 0:
        return {}
    return {
        name: _workspace_rates(before.workspaces[name], counts, seconds, budgets.get(name))
        for name, counts in after.workspaces.items()
        if name in before.workspaces
    }


def sparkline(values: Sequence[float], width: int) -> str:
    """The last ``width`` values as bars scaled from 0 to their maximum (all lowest bars when all are 0).

    Args:
        values: Oldest first; negative values count as 0.
        width: Most bars shown (>= 1).

    Returns:
        One bar per value, at most ``width`` of them.
    """
    shown = [max(0.0, float(value)) for value in values[-width:]]
    top = max(shown, default=0.0)
    if top == 0:
        return BARS[0] * len(shown)
    return "".join(BARS[round(value / top * (len(BARS) - 1))] for value in shown)


def backlog_history(
    history: Mapping[str, Sequence[int]], backlog: Mapping[str, int], keep: int
) -> dict[str, tuple[int, ...]]:
    """``history`` with each workspace's current backlog appended, keeping its last ``keep`` values."""
    return {name: (*history.get(name, ()), count)[-keep:] for name, count in backlog.items()}
