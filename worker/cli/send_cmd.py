"""`cio-fleet send`: enqueue Segment events from a JSON Lines file (or stdin) into a workspace's streams.

Each non-blank line is one event. Lines are checked and enqueued by ``producers.Producer`` in chunks (one Redis
round trip per chunk); every refused line is reported on stderr as ``line K: <reason>`` and the good ones are
enqueued all the same.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final, NoReturn
from urllib.parse import urlsplit

import orjson
import redis
import typer

from producers import EnqueueResult, Producer, QueueFull
from worker.cli.status_cmd import WorkspacesFile, load
from worker.settings import ConfigError, Settings

#: Exit codes of ``cio-fleet send``.
EXIT_REJECTED: Final = 1
EXIT_CONFIG: Final = 2
EXIT_REDIS_UNREACHABLE: Final = 3
EXIT_QUEUE_FULL: Final = 4
#: Lines handed to the producer per call (one Redis round trip per call).
CHUNK_LINES: Final = 1_000

EXIT_CODES_HELP: Final = (
    "Exit codes: 0 all lines enqueued; 1 some lines rejected (the others are enqueued); 2 bad option, "
    "configuration or input file; 3 Redis unreachable; 4 the workspace's backlog is full (the lines before "
    "are enqueued, none after)."
)


def safe_url(url: str) -> str:
    """The Redis URL with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unparsable URL)"
    if not password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


@dataclass
class Tally:
    """What the command has done so far."""

    enqueued: int = 0
    rejected: int = 0


@dataclass
class Batch:
    """Parsed events of consecutive lines, and the lines that are not JSON."""

    line_numbers: list[int] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)


def batches(lines: Iterable[bytes]) -> Iterator[Batch]:
    """Group non-blank lines into batches of ``CHUNK_LINES`` events, decoding each line's JSON."""
    batch = Batch()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            batch.events.append(orjson.loads(line))
            batch.line_numbers.append(number)
        except orjson.JSONDecodeError as exc:
            batch.problems[number] = f"not valid JSON ({exc})"
        if len(batch.events) >= CHUNK_LINES:
            yield batch
            batch = Batch()
    if batch.events or batch.problems:
        yield batch


def report(problems: dict[int, str], tally: Tally) -> None:
    """Print rejected lines on stderr, in line order."""
    for number in sorted(problems):
        typer.echo(f"line {number}: {problems[number]}", err=True)
    tally.rejected += len(problems)


def settle(batch: Batch, result: EnqueueResult | None, tally: Tally) -> None:
    """Count what a batch enqueued and report its rejected lines."""
    problems = dict(batch.problems)
    if result is not None:
        tally.enqueued += result.enqueued
        problems.update({batch.line_numbers[index]: str(error) for index, error in result.errors.items()})
    report(problems, tally)


def send_lines(producer: Producer, lines: Iterable[bytes], tally: Tally) -> None:
    """Enqueue the events of ``lines``, reporting rejected lines as it goes.

    Raises:
        QueueFull: The backlog cap was hit; ``tally`` counts what was enqueued before.
    """
    for batch in batches(lines):
        try:
            result = producer.enqueue_many(batch.events)
        except QueueFull as exc:
            settle(batch, exc.result, tally)
            raise
        settle(batch, result, tally)


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def opened(source: str) -> Iterator[BinaryIO]:
    """The input file (``-``: stdin) in binary mode; exit 2 when it cannot be read."""
    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        with Path(source).open("rb") as handle:
            yield handle
    except OSError as exc:
        fail(f"cannot read {source!r}: {exc.strerror}", EXIT_CONFIG)


def make_producer(settings: Settings, workspace: str) -> Producer:
    """A producer for ``workspace`` as configured; exit 2 when it is not configured."""
    try:
        config = settings.workspace(workspace)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    return Producer(
        settings.redis_url.get_secret_value(),
        workspace,
        key_prefix=settings.key_prefix,
        partitions=config.partitions,
        backlog_cap=settings.backlog_cap,
    )


def send(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The configured workspace to send to.")],
    source: Annotated[str, typer.Argument(help="JSON Lines file, or - for stdin.", show_default=True)] = "-",
    workspaces_file: WorkspacesFile = None,
) -> None:
    """Enqueue Segment events (one JSON object per line) for delivery to a workspace."""
    settings = load(workspaces_file)
    producer = make_producer(settings, workspace)
    tally = Tally()
    try:
        with opened(source) as handle:
            send_lines(producer, handle, tally)
    except QueueFull as exc:
        typer.echo(f"enqueued {tally.enqueued} event(s)")
        fail(f"{exc}; stopped there", EXIT_QUEUE_FULL)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        url = safe_url(settings.redis_url.get_secret_value())
        message = f"cannot reach Redis at {url} ({type(exc).__name__}); enqueued {tally.enqueued} event(s) before"
        fail(message, EXIT_REDIS_UNREACHABLE)
    finally:
        producer.close()
    typer.echo(f"enqueued {tally.enqueued} event(s)")
    if tally.rejected:
        raise typer.Exit(EXIT_REJECTED)


def register(app: typer.Typer) -> None:
    """Add ``send`` to ``app``."""
    app.command(name="send", epilog=EXIT_CODES_HELP)(send)
