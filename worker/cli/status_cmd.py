"""`cio-fleet status`: backlog, retries, pauses and dead letters per workspace, and the workers alive.

Also home of what the Redis-reading commands share (``status`` and ``dlq``): exit codes, loading the settings,
and connecting to Redis without ever showing its password.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import redis
import typer
from rich.console import Console
from rich.table import Table

from worker.settings import ConfigError, Settings, load_settings, read_workspaces_file
from worker.store.fleet_status import FleetStatus, WorkspaceStatus, gather_status


class Exit(IntEnum):
    """Exit codes of ``cio-fleet status`` and ``cio-fleet dlq``."""

    OK = 0
    ABORTED = 1
    USAGE = 2
    REDIS_UNREACHABLE = 3
    NOT_FOUND = 4


#: The exit codes, as the commands' help shows them.
EXIT_CODES_HELP = (
    "Exit codes: 0 done (an empty result is not an error); 1 aborted at the confirmation prompt; "
    "2 bad option, configuration or input file; 3 Redis unreachable; 4 no such dead letter."
)

WorkspacesFile = Annotated[
    Path | None,
    typer.Option("--workspaces", help="Workspaces TOML file (default: $CIO_WORKSPACES_FILE).", show_default=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: Exit) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


def load(workspaces_file: Path | None) -> Settings:
    """The settings, with the workspaces of ``--workspaces`` when given; exit 2 on a configuration error."""
    try:
        if workspaces_file is not None:
            return load_settings(workspaces=read_workspaces_file(workspaces_file))
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)


def endpoint(client: redis.Redis[bytes]) -> str:
    """``host:port`` (or the socket path) of a client, never its password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"


@contextmanager
def redis_errors(client: redis.Redis[bytes]) -> Iterator[None]:
    """Turn Redis connection problems into exit 3 with a message naming host:port and nothing secret."""
    try:
        yield
    except redis.AuthenticationError:
        fail(f"Redis at {endpoint(client)} refused the credentials", Exit.REDIS_UNREACHABLE)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        fail(f"cannot reach Redis at {endpoint(client)} ({type(exc).__name__})", Exit.REDIS_UNREACHABLE)


def connect(settings: Settings) -> redis.Redis[bytes]:
    """A checked Redis client for ``settings.redis_url``; exit 3 when Redis does not answer."""
    try:
        client: redis.Redis[bytes] = redis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_connect_timeout=5, socket_timeout=30
        )
    except ValueError:
        fail("CIO_REDIS_URL is not a Redis URL", Exit.USAGE)
    with redis_errors(client):
        client.ping()
    return client


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n")


def when(ms: int | None) -> str:
    """A unix-ms time as ISO-8601 UTC, or ``-``."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(seconds: float | None) -> str:
    """A duration in the largest sensible unit (``42s``, ``7m``, ``3.5h``, ``2.0d``), or ``-``."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


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
    console.print(table)
    console.print("No worker delivers these events: configure the workspaces, or remove their streams.", style="red")


def render(status: FleetStatus, console: Console) -> None:
    """Print the status as tables."""
    table = Table(title="Workspaces")
    for column in ("workspace", "backlog", "oldest", "busy", "retrying", "paused", "dead letters"):
        table.add_column(column, justify="left" if column in ("workspace", "paused") else "right")
    for ws in status.workspaces:
        table.add_row(
            ws.name, _backlog_text(ws), age(ws.oldest_age_s), f"{ws.busy}/{ws.partitions}", str(ws.retrying),
            _pause_text(ws), str(ws.dead_letters),
        )  # fmt: skip
    console.print(table)
    render_unconfigured(status, console)
    alive = [worker.id for worker in status.workers if worker.alive]
    console.print(f"Workers alive: {len(alive)}" + (f" ({', '.join(alive)})" if alive else ""))


def status(workspaces_file: WorkspacesFile = None, as_json: JsonFlag = False) -> None:
    """Show backlog, oldest waiting event, busy and retrying partitions, pauses and dead letters per workspace.

    Every stream of the key prefix is looked at: events in streams above a workspace's partition count count in
    its backlog, and workspaces that are not configured but hold events are listed as unconfigured.
    """
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client):
        fleet = gather_status(client, settings.key_prefix, {n: ws.partitions for n, ws in settings.workspaces.items()})
    if as_json:
        print_json(fleet.as_dict())
    else:
        render(fleet, Console())


def register(app: typer.Typer) -> None:
    """Add ``status`` to ``app``."""
    app.command(name="status", epilog=EXIT_CODES_HELP)(status)
