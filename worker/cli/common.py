"""What every ``cio-fleet`` command shares: one exit-code table, one ``fail()``, the shared options, loading the
settings, and connecting to Redis without ever showing its password.
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

from producers.connect import sync_client
from worker.settings import ConfigError, Settings, load_settings
from worker.store.slots import check_startup


class Exit(IntEnum):
    """The exit codes of every command: one meaning each (the README and ``cio-fleet --help`` show the table)."""

    OK = 0
    #: Done in part: some input lines were rejected (``send``), some events had no outcome in time (``demo``).
    INCOMPLETE = 1
    USAGE = 2
    REDIS_UNREACHABLE = 3
    NOT_FOUND = 4
    QUEUE_FULL = 5
    ABORTED = 6
    #: Stopped by Ctrl-C after the chunk in hand (128 + SIGINT, as shells report it); the summary says what was done.
    INTERRUPTED = 130


#: The exit-code table, shown once by ``cio-fleet --help``.
EXIT_CODES_HELP = (
    "Exit codes of every command: 0 done (an empty result is not an error); 1 done in part (send: some lines "
    "rejected, the others enqueued; demo: some events without an outcome in time); 2 bad option, configuration "
    "or input file; 3 Redis unreachable; 4 no such dead letter; 5 the workspace's backlog is full (send: the "
    "lines before are enqueued, none after); 6 aborted at the confirmation prompt; 130 stopped by Ctrl-C after the "
    "chunk in hand (the summary and `dlq audit` say what was done)."
)

WorkspacesFile = Annotated[
    Path | None,
    typer.Option("--workspaces", help="Workspaces TOML file (default: $CIO_WORKSPACES_FILE).", show_default=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

# The dead-letter filters (``cio-fleet dlq``).
Workspace = Annotated[str | None, typer.Option("--workspace", "-w", help="Only this workspace.")]
OutcomeOpt = Annotated[str | None, typer.Option("--outcome", help="rejected, failed_after_retries or item_rejected.")]
Reason = Annotated[str | None, typer.Option("--reason", help="Reason contains this text (any case).")]
Status = Annotated[int | None, typer.Option("--status", help="HTTP status.")]
EventType = Annotated[str | None, typer.Option("--type", help="Event type (track, identify, …).")]
EventName = Annotated[str | None, typer.Option("--event", help="Track event name.")]
Since = Annotated[str | None, typer.Option("--since", help="Dead-lettered since: 1h, 7d, ISO-8601 or unix s.")]
Until = Annotated[str | None, typer.Option("--until", help="Dead-lettered until: 1h, 7d, ISO-8601 or unix s.")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="At most this many entries.")]


def fail(message: str, code: Exit) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


def load(workspaces_file: Path | None) -> Settings:
    """The settings; ``--workspaces`` replaces ``$CIO_WORKSPACES_FILE`` when given. Exit 2 on a configuration error."""
    try:
        overrides = {} if workspaces_file is None else {"workspaces_file": workspaces_file}
        settings = load_settings(**overrides)
        check_startup(settings)
        return settings
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)


def endpoint(client: redis.Redis) -> str:
    """``host:port`` (or the socket path) of a client, never its password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"


@contextmanager
def redis_errors(client: redis.Redis) -> Iterator[None]:
    """Turn Redis connection problems into exit 3 with a message naming host:port and nothing secret."""
    try:
        yield
    except redis.AuthenticationError:
        fail(f"Redis at {endpoint(client)} refused the credentials", Exit.REDIS_UNREACHABLE)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        fail(f"cannot reach Redis at {endpoint(client)} ({type(exc).__name__})", Exit.REDIS_UNREACHABLE)


def connect(settings: Settings) -> redis.Redis:
    """A checked Redis client for ``settings.redis_url``; exit 3 when Redis does not answer."""
    try:
        client: redis.Redis = sync_client(
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
