"""`cio-fleet status --watch`: the figures of ``status``, refreshed in place, with rates and the backlog's trend.

Each refresh reads the fleet status (as ``status`` does) and a snapshot of counters: the streams' and the
dead-letter queues' ``entries-added`` and backlog from Redis, and, with ``--metrics URL``, the requests the
scraped workers counted. ``status_rates`` turns two successive snapshots into rates. Ctrl-C stops the view and
exits 0 with the terminal restored (rich's ``Live`` shows the cursor again on the way out).

On a terminal the view is redrawn in place; when the output is a file or a pipe, each refresh is printed after
the previous one, so ``status --watch > log`` keeps a readable record.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import redis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from producers.keys import dlq_key
from worker.cli.common import age
from worker.cli.status_rates import Counts, Rates, Snapshot, backlog_history, rates, sparkline
from worker.ops.metrics import read_state
from worker.settings import Settings
from worker.store.fleet_status import FleetStatus, WorkspaceStatus, gather_status
from worker.store.layout import read_strays

__all__ = ["WatchView", "render_frame", "watch_status"]

#: Backlog readings kept per workspace for its sparkline.
TREND_WIDTH: Final = 24
#: Seconds to wait for one worker's ``/metrics``.
SCRAPE_TIMEOUT_S: Final = 5.0
_REQUESTS: Final = "cio_fleet_requests_total"
_COLUMNS: Final = (
    "workspace", "backlog", "trend", "oldest", "out/s", "delivered/s", "requests/s", "budget",
    "dead letters", "dead/min", "busy", "retrying", "paused",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WatchView:
    """Everything one frame shows."""

    status: FleetStatus
    rates: Mapping[str, Rates]
    history: Mapping[str, Sequence[int]]
    budgets: Mapping[str, float]
    refreshes: int
    interval_s: float
    scraping: bool = False
    problems: tuple[str, ...] = ()


@dataclass
class _Watch:
    """What the loop reads with, and carries from one refresh to the next."""

    client: redis.Redis
    settings: Settings
    interval_s: float
    metrics: Sequence[str]
    previous: Snapshot | None = None
    rates: Mapping[str, Rates] = field(default_factory=dict)
    history: Mapping[str, Sequence[int]] = field(default_factory=dict)
    refreshes: int = 0


def scrape_requests(urls: Sequence[str]) -> tuple[dict[str, float] | None, tuple[str, ...]]:
    """Requests counted by the workers at ``urls``, summed per workspace, and the URLs that could not be read.

    Returns None as the counts when any URL failed: a partial sum would read as a drop in requests.
    """
    totals: dict[str, float] = {}
    failed = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
                text = response.read().decode("utf-8")
        except (OSError, ValueError) as exc:
            failed.append(f"cannot scrape {url} ({type(exc).__name__})")
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == _REQUESTS:
                    workspace = sample.labels.get("workspace", "")
                    totals[workspace] = totals.get(workspace, 0.0) + sample.value
    return (None if failed else totals), tuple(failed)


def _dead_letters_added(client: redis.Redis, prefix: str, workspaces: Sequence[str]) -> dict[str, int]:
    """Entries ever appended to each workspace's dead-letter stream (0 when it does not exist)."""
    pipe = client.pipeline(transaction=False)
    for workspace in workspaces:
        pipe.xinfo_stream(dlq_key(prefix, workspace))
    replies = pipe.execute(raise_on_error=False)
    return {
        workspace: int(reply.get("entries-added") or 0) if isinstance(reply, Mapping) else 0
        for workspace, reply in zip(workspaces, replies, strict=True)
    }


def read_snapshot(
    client: redis.Redis, prefix: str, partitions: Mapping[str, int], requests: Mapping[str, float] | None
) -> Snapshot:
    """The counters of every configured workspace, read from Redis (``requests``: from the scraped workers)."""
    strays = read_strays(client, prefix)
    above = {workspace: strays[workspace] for workspace in strays if workspace in partitions}
    at_ms, states = read_state(client, prefix, partitions, above)
    dead = _dead_letters_added(client, prefix, sorted(partitions))
    counts = {
        name: Counts(
            state.enqueued,
            state.backlog,
            dead[name],
            None if requests is None else requests.get(name, 0.0),
        )
        for name, state in states.items()
    }
    return Snapshot(at_ms, counts)


def _per_s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _share(value: float | None) -> Text:
    if value is None:
        return Text("-")
    style = "red" if value >= 0.95 else ("yellow" if value >= 0.8 else "green")
    return Text(f"{value:.0%}", style=style)


def _paused(ws: WorkspaceStatus) -> Text:
    if ws.paused == "unauthorized":
        return Text(f"unauthorized ({ws.auth_status or '?'})", style="bold red")
    if ws.paused == "throttled":
        return Text(f"throttled {age(ws.pause_remaining_s)}", style="yellow")
    return Text("no")


def _backlog(ws: WorkspaceStatus) -> str:
    if not ws.out_of_range_events:
        return f"{ws.backlog:,}"
    return f"{ws.backlog:,} ({ws.out_of_range_events:,} in partitions >= {ws.partitions})"


def _row(ws: WorkspaceStatus, view: WatchView) -> list[RenderableType]:
    rate = view.rates.get(ws.name)
    trend = sparkline(view.history.get(ws.name, ()), TREND_WIDTH)
    return [
        ws.name, _backlog(ws), Text(trend, style="cyan"), age(ws.oldest_age_s),
        _per_s(rate.events_out_per_s if rate else None), _per_s(rate.delivered_per_s if rate else None),
        _per_s(rate.requests_per_s if rate else None), _share(rate.budget_share if rate else None),
        f"{ws.dead_letters:,}", _per_s(rate.dead_letters_per_min if rate else None),
        f"{ws.busy}/{ws.partitions}", str(ws.retrying), _paused(ws),
    ]  # fmt: skip


def _table(view: WatchView) -> Table:
    table = Table(title="Workspaces", title_justify="left")
    for column in _COLUMNS:
        left = column in ("workspace", "trend", "paused")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for ws in view.status.workspaces:
        table.add_row(*_row(ws, view))
    return table


def _footer(view: WatchView) -> list[RenderableType]:
    alive = [worker.id for worker in view.status.workers if worker.alive]
    at = datetime.fromtimestamp(view.status.at_ms / 1_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines: list[RenderableType] = [Text(f"Workers alive: {len(alive)}" + (f" ({', '.join(alive)})" if alive else ""))]
    if not view.scraping:
        lines.append(Text("requests/s and budget: add --metrics http://<worker>:9808/metrics (repeatable)", "dim"))
    lines += [Text(problem, style="red") for problem in view.problems]
    lines.append(Text(f"refresh #{view.refreshes} at {at}, every {view.interval_s:g} s; Ctrl-C to quit", "dim"))
    return lines


def _unconfigured(status: FleetStatus) -> list[RenderableType]:
    return [
        Text(f"UNCONFIGURED WORKSPACE {ws.name}: {ws.backlog:,} events stranded, no worker delivers them", "bold red")
        for ws in status.unconfigured
    ]


def render_frame(view: WatchView) -> RenderableType:
    """One frame of the live view (pure: builds rich renderables, prints nothing)."""
    return Group(_table(view), *_unconfigured(view.status), *_footer(view))


def _refresh(watch: _Watch) -> WatchView:
    """Read the fleet once, update the rates and the trend, and return the frame to show."""
    settings, prefix = watch.settings, watch.settings.key_prefix
    partitions = {name: ws.partitions for name, ws in settings.workspaces.items()}
    budgets = {name: ws.rate_limit_rps for name, ws in settings.workspaces.items()}
    requests, problems = scrape_requests(watch.metrics) if watch.metrics else (None, ())
    snapshot = read_snapshot(watch.client, prefix, partitions, requests)
    status = gather_status(watch.client, prefix, partitions)
    if watch.previous is not None:
        watch.rates = rates(watch.previous, snapshot, budgets)
    watch.previous = snapshot
    watch.history = backlog_history(watch.history, {ws.name: ws.backlog for ws in status.workspaces}, TREND_WIDTH)
    watch.refreshes += 1
    scraping = bool(watch.metrics)
    return WatchView(status, watch.rates, watch.history, budgets, watch.refreshes, watch.interval_s, scraping, problems)


def watch_status(
    settings: Settings, client: redis.Redis, interval_s: float, metrics: Sequence[str], console: Console
) -> None:
    """Refresh the view every ``interval_s`` seconds until Ctrl-C, which ends it cleanly.

    Args:
        settings: The settings (workspaces, their partitions and ``rate_limit_rps``, the key prefix).
        client: A checked Redis client.
        interval_s: Seconds between refreshes.
        metrics: ``/metrics`` URLs of workers whose requests are counted.
        console: Where to draw.
    """
    watch = _Watch(client, settings, interval_s, metrics)
    try:
        if console.is_terminal:
            _redraw(watch, console)
        else:
            _print_each(watch, console)
    except KeyboardInterrupt:
        return


def _redraw(watch: _Watch, console: Console) -> None:
    """Redraw the frame in place; leaving ``Live`` (Ctrl-C included) shows the cursor again."""
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(render_frame(_refresh(watch)), refresh=True)
            time.sleep(watch.interval_s)


def _print_each(watch: _Watch, console: Console) -> None:
    """Print one frame after the other (output to a file or a pipe)."""
    while True:
        console.print(render_frame(_refresh(watch)))
        console.print()
        time.sleep(watch.interval_s)
