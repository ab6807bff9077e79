"""`cio-fleet status`: backlog, retries, pauses and dead letters per workspace, and the workers alive."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from worker.cli.common import Exit, JsonFlag, WorkspacesFile, age, connect, fail, load, print_json, redis_errors, when
from worker.cli.tables import print_table
from worker.store.fleet_status import FleetStatus, WorkspaceStatus, gather_status

WatchFlag = Annotated[
    bool, typer.Option("--watch", help="Refresh a live view, with rates and the backlog's trend, until Ctrl-C.")
]
IntervalOption = Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between refreshes of --watch.")]
MetricsOption = Annotated[
    list[str] | None,
    typer.Option("--metrics", help="A worker's /metrics URL, for requests/s in --watch (repeatable)."),
]


def _pause_text(ws: WorkspaceStatus) -> str:
    if ws.paused == "unauthorized":
        return f"unauthorized ({ws.auth_status or '?'} since {when(ws.auth_since_ms)}): {ws.pause_reason or ''}"
    if ws.paused == "throttled":
        return f"throttled for {age(ws.pause_remaining_s)}: {ws.pause_reason or ''}"
    return "no"


def _backlog_text(ws: WorkspaceStatus) -> str:
    if not ws.out_of_range_events:
        return str(ws.backlog)
    return f"{ws.backlog} ({ws.out_of_range_events} in partitions >= {ws.partitions}, delivered first)"


def render_unconfigured(status: FleetStatus, console: Console) -> None:
    """Print the workspaces that are not configured but hold events, loudly: no worker delivers them."""
    if not status.unconfigured:
        return
    table = Table(title="UNCONFIGURED WORKSPACES (events stranded)", style="bold red")
    for column in ("workspace", "backlog", "oldest", "partitions holding events"):
        table.add_column(column, justify="left" if column == "workspace" else "right")
    for ws in status.unconfigured:
        table.add_row(ws.name, str(ws.backlog), age(ws.oldest_age_s), ",".join(map(str, ws.partitions)))
    print_table(console, table)
    console.print("No worker delivers these events: configure the workspaces, or remove their streams.", style="red")


def render(status: FleetStatus, console: Console) -> None:
    """Print the status as tables (no workspace table when none is configured)."""
    if status.workspaces:
        render_workspaces(status, console)
    render_unconfigured(status, console)
    alive = [worker.id for worker in status.workers if worker.alive]
    console.print(f"Workers alive: {len(alive)}" + (f" ({', '.join(alive)})" if alive else ""))


def render_workspaces(status: FleetStatus, console: Console) -> None:
    """The configured workspaces, one row each."""
    table = Table(title="Workspaces")
    for column in ("workspace", "backlog", "oldest", "busy", "retrying", "paused", "dead letters"):
        table.add_column(column, justify="left" if column in ("workspace", "paused") else "right")
    for ws in status.workspaces:
        table.add_row(
            ws.name, _backlog_text(ws), age(ws.oldest_age_s), f"{ws.busy}/{ws.partitions}", str(ws.retrying),
            _pause_text(ws), str(ws.dead_letters),
        )  # fmt: skip
    print_table(console, table)


def status(
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
    watch: WatchFlag = False,
    interval: IntervalOption = 2.0,
    metrics: MetricsOption = None,
) -> None:
    """Show backlog, oldest waiting event, busy and retrying partitions, pauses and dead letters per workspace.

    Every stream of the key prefix is looked at: events in streams above a workspace's partition count count in
    its backlog, and workspaces that are not configured but hold events are listed as unconfigured.
    """
    if watch and as_json:
        fail("--watch cannot be combined with --json (--json prints one snapshot)", Exit.USAGE)
    settings = load(workspaces_file)
    client = connect(settings)
    if watch:
        from worker.cli.status_watch import watch_status  # here: status_watch imports this module

        with redis_errors(client):
            watch_status(settings, client, interval, metrics or [], Console())
        return
    with redis_errors(client):
        fleet = gather_status(client, settings.key_prefix, {n: ws.partitions for n, ws in settings.workspaces.items()})
    if as_json:
        print_json(fleet.as_dict())
    else:
        render(fleet, Console())
    if not settings.workspaces:
        fail(NOTHING_CONFIGURED, Exit.USAGE)


#: What ``status`` says when no workspace is configured (it still lists streams it finds).
NOTHING_CONFIGURED = (
    "no workspace is configured, so no backlog can be shown for one: set CIO_WORKSPACES_FILE (or pass "
    "--workspaces FILE) or CIO_WORKSPACES__NAME__SITE_ID and __API_KEY, as the workers have them "
    "(README, 'Configuration')"
)


def register(app: typer.Typer) -> None:
    """Add ``status`` to ``app``."""
    app.command(name="status")(status)
