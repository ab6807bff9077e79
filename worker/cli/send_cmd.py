"""`cio-fleet send`: enqueue Segment events from a JSON Lines file (or stdin) into a workspace's streams.

Each line is one event. Lines are checked and enqueued by ``producers.Producer`` in chunks (one Redis round trip
per chunk); every refused line (a blank line included, as ``cio-fleet transform`` reports it) is reported on stderr
as ``line K: <reason>``, K counting lines of the input file from 1, and the good ones are enqueued all the same.
With ``--check`` each event is also mapped first, and an event the workers would reject is refused here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final, NoReturn
from urllib.parse import urlsplit

import orjson
import redis
import typer

from producers import EnqueueResult, Producer, QueueFull, UnknownWorkspace
from worker.cli.common import Exit, WorkspacesFile, fail, load
from worker.cli.interrupts import interruptible
from worker.cli.transform_cmd import EMPTY_LINE_REASON
from worker.mapping.transform import Reject, TransformOptions, transform
from worker.settings import ConfigError, Settings, WorkspaceConfig

#: Lines handed to the producer per call (one Redis round trip per call).
CHUNK_LINES: Final = 1_000


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
    #: ``--json``: rejected lines are collected for the summary instead of printed as they come.
    keep_problems: bool = False
    problems: list[dict[str, Any]] = field(default_factory=list)
    #: The last input line handled (enqueued or rejected).
    last_line: int = 0


@dataclass
class Batch:
    """Parsed events of consecutive lines, and the lines that are not JSON."""

    line_numbers: list[int] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)


def json_problem(exc: orjson.JSONDecodeError) -> str:
    """Why a line is not JSON, with the column in the line (never a line number of its own)."""
    return f"not valid JSON: {exc.msg} at column {exc.pos + 1}"


def batches(lines: Iterable[bytes], check: Callable[[Any], str | None] | None = None) -> Iterator[Batch]:
    """Group lines into batches of ``CHUNK_LINES`` events, decoding each line's JSON.

    A blank line is a problem (``line is empty``), as in ``cio-fleet transform``; ``check`` returns why an event
    must be refused before it is enqueued, or None.
    """
    batch = Batch()
    for number, line in enumerate(lines, start=1):
        problem = line_problem(line.strip(), check)
        if isinstance(problem, str):
            batch.problems[number] = problem
        else:
            batch.events.append(problem.event)
            batch.line_numbers.append(number)
        if len(batch.events) >= CHUNK_LINES:
            yield batch
            batch = Batch()
    if batch.events or batch.problems:
        yield batch


@dataclass(frozen=True, slots=True)
class Parsed:
    """A line's event, decoded."""

    event: Any


def line_problem(line: bytes, check: Callable[[Any], str | None] | None) -> Parsed | str:
    """The line's event, or why it is refused."""
    if not line:
        return EMPTY_LINE_REASON
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return json_problem(exc)
    problem = check(event) if check is not None else None
    return problem if problem is not None else Parsed(event)


def mapping_check(options: TransformOptions) -> Callable[[Any], str | None]:
    """``--check``: refuse an event that the workers' mapping would reject, with the mapping's reason."""

    def check(event: Any) -> str | None:
        outcome = transform(event, options)
        return f"the mapping rejects it: {outcome.reason}" if isinstance(outcome, Reject) else None

    return check


def report(problems: dict[int, str], tally: Tally) -> None:
    """Print rejected lines on stderr (or keep them for ``--json``), in line order."""
    for number in sorted(problems):
        if tally.keep_problems:
            tally.problems.append({"line": number, "reason": problems[number]})
        else:
            typer.echo(f"line {number}: {problems[number]}", err=True)
    tally.rejected += len(problems)


def settle(batch: Batch, result: EnqueueResult | None, tally: Tally) -> None:
    """Count what a batch enqueued and report its rejected lines."""
    problems = dict(batch.problems)
    if result is not None:
        tally.enqueued += result.enqueued
        problems.update({batch.line_numbers[index]: str(error) for index, error in result.errors.items()})
    report(problems, tally)


def send_lines(
    producer: Producer,
    lines: Iterable[bytes],
    tally: Tally,
    check: Callable[[Any], str | None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Enqueue the events of ``lines``, reporting rejected lines as it goes; stop between chunks on ``should_stop()``.

    Raises:
        QueueFull: The backlog cap was hit; ``tally`` counts what was enqueued before.
    """
    for batch in batches(lines, check):
        if should_stop():
            return
        tally.last_line = max([*batch.line_numbers, *batch.problems, tally.last_line])
        try:
            result = producer.enqueue_many(batch.events)
        except QueueFull as exc:
            settle(batch, exc.result, tally)
            raise
        settle(batch, result, tally)


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
        fail(f"cannot read {source!r}: {exc.strerror}", Exit.USAGE)


def workspace_config(settings: Settings, workspace: str) -> WorkspaceConfig:
    """The workspace's configuration; exit 2 when it is not configured."""
    try:
        return settings.workspace(workspace)
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)


def make_producer(settings: Settings, config: WorkspaceConfig) -> Producer:
    """A producer for the configured workspace."""
    workspace = config.name
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
    check: Annotated[
        bool, typer.Option("--check", help="Map each event first; refuse those the workers would reject.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary (rejected lines included).")] = False,
) -> None:
    """Enqueue Segment events (one JSON object per line) for delivery to a workspace."""
    settings = load(workspaces_file)
    config = workspace_config(settings, workspace)
    producer = make_producer(settings, config)
    tally = Tally(keep_problems=as_json)
    checker = mapping_check(TransformOptions.for_workspace(config)) if check else None
    try:
        with opened(source) as handle, interruptible() as stop:
            send_lines(producer, handle, tally, checker, stop)
        if stop():
            message = f"interrupted (Ctrl-C): lines 1 to {tally.last_line} were handled, none after"
            finish(tally, as_json, Exit.INTERRUPTED, message)
    except QueueFull as exc:
        finish(tally, as_json, Exit.QUEUE_FULL, f"{exc}; stopped there")
    except UnknownWorkspace as exc:  # configured here, but the running workers do not serve it
        finish(tally, as_json, Exit.USAGE, str(exc))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        url = safe_url(settings.redis_url.get_secret_value())
        message = f"cannot reach Redis at {url} ({type(exc).__name__}); enqueued {tally.enqueued} event(s) before"
        finish(tally, as_json, Exit.REDIS_UNREACHABLE, message)
    finally:
        producer.close()
    finish(tally, as_json, Exit.INCOMPLETE if tally.rejected else Exit.OK)


def finish(tally: Tally, as_json: bool, code: Exit, error: str | None = None) -> NoReturn:
    """Print the summary (text, or one JSON object) and exit with ``code``."""
    if as_json:
        summary = {"enqueued": tally.enqueued, "rejected": tally.problems, "exit_code": int(code), "error": error}
        typer.echo(orjson.dumps(summary).decode())
    else:
        typer.echo(f"enqueued {tally.enqueued} event(s)")
        if error is not None:
            typer.echo(f"error: {error}", err=True)
    raise typer.Exit(int(code))


def register(app: typer.Typer) -> None:
    """Add ``send`` to ``app``."""
    app.command(name="send")(send)
