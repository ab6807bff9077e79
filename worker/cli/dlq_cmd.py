"""`cio-fleet dlq …`: inspect, replay, purge, export and import dead letters, and read the audit trail.

The work is done by ``worker.deadletter``; this module parses options, asks for confirmation and prints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from producers.connect import is_cluster_url
from producers.keys import drain_queue
from producers.wire import DRAIN_TASK
from worker.cli.common import (
    EventName,
    EventType,
    Exit,
    JsonFlag,
    Limit,
    OutcomeOpt,
    Reason,
    Since,
    Status,
    Until,
    Workspace,
    WorkspacesFile,
    connect,
    fail,
    load,
    print_json,
    redis_errors,
    when,
)
from worker.cli.interrupts import interruptible
from worker.cli.tables import print_table
from worker.deadletter import api as dl
from worker.settings import Settings
from worker.store.clock import server_ms

dlq_app = typer.Typer(
    name="dlq",
    help="Inspect and drain the dead-letter queue.",
    no_args_is_help=True,
)


def _filter(
    workspace: str | None,
    outcome: str | None,
    reason: str | None,
    status: int | None,
    event_type: str | None,
    event_name: str | None,
    since: str | None,
    until: str | None,
) -> dl.DeadLetterFilter:
    now_ms = int(time.time() * 1_000)
    try:
        return dl.DeadLetterFilter(
            workspace=workspace,
            outcome=outcome,
            reason_contains=reason,
            status=status,
            event_type=event_type,
            event_name=event_name,
            since_ms=None if since is None else dl.parse_time(since, option="--since", now_ms=now_ms),
            until_ms=None if until is None else dl.parse_time(until, option="--until", now_ms=now_ms),
        )
    except dl.FilterError as exc:
        fail(str(exc), Exit.USAGE)


def _workspaces(client: Any, settings: Settings) -> list[str]:
    return dl.dlq_workspaces(client, settings.key_prefix, settings.workspaces)


@dlq_app.command()
def stats(workspaces_file: WorkspacesFile = None, as_json: JsonFlag = False) -> None:
    """Count dead letters by workspace, outcome, reason, HTTP status and age."""
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client):
        result = dl.stats(client, settings.key_prefix, _workspaces(client, settings), now_ms=server_ms(client))
    data = result.as_dict()
    data["alarm"] = sorted(
        ws for ws, size in result.by_workspace.items()
        if dl.over_alarm(size, settings.dlq_max_entries, settings.dlq_alarm_ratio)
    )  # fmt: skip
    if as_json:
        print_json(data)
        return
    console = Console()
    console.print(f"Dead letters: {result.total}  (oldest {when(result.oldest_ms)}, newest {when(result.newest_ms)})")
    for title in ("by_workspace", "by_outcome", "by_status", "by_age", "by_reason"):
        print_table(console, _count_table(title.removeprefix("by_"), data[title]))
    for ws in data["alarm"]:
        console.print(f"[bold red]ALARM[/]: {ws} holds {result.by_workspace[ws]} dead letters")


def _count_table(title: str, counts: dict[str, int], top: int = 20) -> Table:
    table = Table(title=title)
    table.add_column(title)
    table.add_column("count", justify="right")
    for name, count in list(counts.items())[:top]:
        table.add_row(name, str(count))
    if len(counts) > top:
        table.add_row(f"… {len(counts) - top} more", str(sum(list(counts.values())[top:])))
    return table


@dlq_app.command(name="list")
def list_(
    workspace: Workspace = None,
    outcome: OutcomeOpt = None,
    reason: Reason = None,
    status: Status = None,
    event_type: EventType = None,
    event: EventName = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters, newest first."""
    flt = _filter(workspace, outcome, reason, status, event_type, event, since, until)
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client):
        entries = list(dl.iter_entries(client, settings.key_prefix, _workspaces(client, settings), flt, limit))
    if as_json:
        print_json([dl.entry_to_json(entry) for entry in entries])
        return
    table = Table(title=f"{len(entries)} dead letter(s)")
    for column in ("id", "dead-lettered", "outcome", "status", "type", "event", "attempts", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "dead-lettered"))
    for entry in entries:
        letter = entry.letter
        table.add_row(
            entry.id, when(entry.dead_lettered_at_ms), letter.outcome, str(letter.status or "-"),
            letter.event_type or "-", letter.event_name or "-", str(letter.attempts), letter.reason[:120],
        )  # fmt: skip
    print_table(Console(), table)


@dlq_app.command()
def show(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="WORKSPACE/STREAM-ID, as `dlq list` shows.")],
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one dead letter: the original event, what it maps to now, and its failure history."""
    try:
        dl.split_id(dead_letter_id)
    except ValueError as exc:
        fail(str(exc), Exit.USAGE)
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client):
        entry = dl.get_entry(client, settings.key_prefix, dead_letter_id)
    if entry is None:
        fail(f"no dead letter {dead_letter_id} (replayed or purged?)", Exit.NOT_FOUND)
    data = dl.entry_to_json(entry)
    data["maps_to"] = dl.map_now(entry.letter.event, settings.workspaces.get(entry.letter.workspace))
    if as_json:
        print_json(data)
    else:
        _render_entry(data, Console())


def _render_entry(data: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]{data['id']}[/]  {data['outcome']}: {data['reason']}")
    console.print(f"  status {data['status'] or '-'}, attempts {data['attempts']}, host {data['host'] or '-'}")
    console.print(f"  first failure {when(data['first_failed_at'])}, last failure {when(data['last_failed_at'])}")
    console.print(f"  message id {data['message_id'] or '-'}, type {data['type'] or '-'}, event {data['name'] or '-'}")
    if data["entry"]:
        console.print("[bold]Stream entry fields[/]")
        _print_whole(console, _entry_line(data["entry"]))
    if data["response"]:
        console.print("[bold]Response excerpt[/]")
        _print_whole(console, data["response"])
    console.print("[bold]Event[/]")
    event = data.get("event")
    _print_whole(console, event if event is not None else f"(not UTF-8; base64) {data['event_b64']}")
    console.print("[bold]Maps to now[/]")
    _print_whole(console, orjson.dumps(data["maps_to"]).decode())


def _print_whole(console: Console, text: str) -> None:
    """Print ``text`` as it is: never wrapped or highlighted by rich, so JSON copied from it stays JSON."""
    console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)


def _entry_line(pairs: list[list[Any]]) -> str:
    """``name=value`` for each field of the original entry, the event shown below it."""
    return ", ".join(f"{name}={'(the event below)' if value is None else value}" for name, value in pairs)


def _partitions_of(client: Any, settings: Settings) -> Callable[[str], int]:
    configured = {name: ws.partitions for name, ws in settings.workspaces.items()}
    return dl.partitions_lookup(client, settings.key_prefix, configured)


def celery_sender(settings: Settings) -> Callable[[str, int], None]:
    """Send ``worker.drain(workspace, partition)`` on the drain queue of the events Redis, as producers do (with
    another broker, ``CIO_BROKER_URL``, that list is the workers' relay list: they publish it to the broker). A Redis
    Cluster holds no drain queue: there the task goes to the broker itself."""
    from celery import Celery  # lazy: only a replay that kicks pays for the import

    events = settings.redis_url.get_secret_value()
    app = Celery(broker=settings.broker() if is_cluster_url(events) else events, set_as_current=False)

    def send(workspace: str, partition: int) -> None:
        app.send_task(DRAIN_TASK, args=[workspace, partition], queue=drain_queue(settings.key_prefix))

    return send


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip


@dlq_app.command()
def replay(
    workspace: Workspace = None,
    outcome: OutcomeOpt = None,
    reason: Reason = None,
    status: Status = None,
    event_type: EventType = None,
    event: EventName = None,
    since: Since = None,
    until: Until = None,
    rate: Annotated[float, typer.Option("--rate", min=0, help="Events per second (0: no cap).")] = 0,
    limit: Limit = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; move nothing.")] = False,
    kick: Annotated[bool, typer.Option(help="Queue drain tasks for the partitions at once.")] = True,
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Move dead letters back to their partition streams (oldest first); the workers deliver them again."""
    flt = _filter(workspace, outcome, reason, status, event_type, event, since, until)
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client), _progress_bar() as bar, interruptible() as stop:
        task = bar.add_task("replay", total=None)
        result = dl.replay(
            client, settings.key_prefix, flt, _partitions_of(client, settings), rate, limit, dry_run,
            lambda done, total: bar.update(task, completed=done, total=total),
            workspaces=_workspaces(client, settings), should_stop=stop,
        )  # fmt: skip
    with redis_errors(client):
        kicked = (
            dl.kick_partitions(client, settings.key_prefix, result.partitions, celery_sender(settings)) if kick else 0
        )
    if as_json:
        print_json({"matched": result.matched, "moved": result.moved, "missing": result.missing,
                    "dry_run": dry_run, "kicked_partitions": kicked, "interrupted": result.interrupted})  # fmt: skip
    elif dry_run:
        typer.echo(f"would replay {result.matched} dead letter(s) (dry run; nothing moved)")
    else:
        gone = f", {result.missing} already gone" if result.missing else ""
        stopped = "; interrupted, the rest stay in the dead-letter queue" if result.interrupted else ""
        typer.echo(f"moved {result.moved} of {result.matched} dead letter(s) back to their partitions{gone}{stopped}")
    if result.interrupted:
        raise typer.Exit(Exit.INTERRUPTED)


@dlq_app.command()
def purge(
    workspace: Workspace = None,
    outcome: OutcomeOpt = None,
    reason: Reason = None,
    status: Status = None,
    event_type: EventType = None,
    event: EventName = None,
    since: Since = None,
    until: Until = None,
    all_: Annotated[bool, typer.Option("--all", help="Allow purging without a filter.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; delete nothing.")] = False,
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete dead letters for good. Needs a filter, or --all; asks for confirmation unless --yes."""
    flt = _filter(workspace, outcome, reason, status, event_type, event, since, until)
    if flt.is_empty() and not all_:
        fail("refusing to purge every dead letter: give a filter, or --all", Exit.USAGE)
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client):
        names = _workspaces(client, settings)
        if not (yes or dry_run):
            count = sum(1 for _ in dl.iter_entries(client, settings.key_prefix, names, flt))
            if count == 0:
                if as_json:
                    print_json({"matched": 0, "removed": 0, "dry_run": dry_run, "interrupted": False})
                else:
                    typer.echo("removed 0 dead letter(s): nothing matched")
                return
            if not typer.confirm(f"Delete {count} dead letter(s) ({flt.describe()}) for good?", default=False):
                fail("aborted; nothing deleted", Exit.ABORTED)
        with interruptible() as stop:
            result = dl.purge(client, settings.key_prefix, flt, workspaces=names, dry_run=dry_run, should_stop=stop)
    if as_json:
        print_json({"matched": result.matched, "removed": result.removed, "dry_run": dry_run,
                    "interrupted": result.interrupted})  # fmt: skip
    elif dry_run:
        typer.echo(f"would remove {result.removed} dead letter(s) (dry run)")
    else:
        stopped = f" of {result.matched}; interrupted, the rest are kept" if result.interrupted else ""
        typer.echo(f"removed {result.removed} dead letter(s){stopped}")
    if result.interrupted:
        raise typer.Exit(Exit.INTERRUPTED)


@dlq_app.command()
def export(
    workspace: Workspace = None,
    outcome: OutcomeOpt = None,
    reason: Reason = None,
    status: Status = None,
    event_type: EventType = None,
    event: EventName = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
    workspaces_file: WorkspacesFile = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stderr (stdout holds the lines).")
    ] = False,
) -> None:
    """Write dead letters as JSON Lines, oldest first (the event kept byte for byte)."""
    flt = _filter(workspace, outcome, reason, status, event_type, event, since, until)
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client), interruptible() as stop:
        names = _workspaces(client, settings)
        if out is None:
            count = dl.export(client, settings.key_prefix, flt, sys.stdout, workspaces=names, limit=limit,
                              should_stop=stop)  # fmt: skip
        else:
            with out.open("w", encoding="utf-8") as handle:
                count = dl.export(client, settings.key_prefix, flt, handle, workspaces=names, limit=limit,
                                  should_stop=stop)  # fmt: skip
    if as_json:
        typer.echo(orjson.dumps({"exported": count, "interrupted": stop()}).decode(), err=True)
    else:
        typer.echo(f"exported {count} dead letter(s)" + ("; interrupted" if stop() else ""), err=True)
    if stop():
        raise typer.Exit(Exit.INTERRUPTED)


@dlq_app.command(name="import")
def import_(
    file: Annotated[Path, typer.Argument(help="A file written by `dlq export`.")],
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Put exported dead letters back into the queue; entries already there are skipped."""
    settings = load(workspaces_file)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot be read ({type(exc).__name__})", Exit.USAGE)
    client = connect(settings)
    try:
        with redis_errors(client), interruptible() as stop:
            result = dl.import_(client, settings.key_prefix, lines, source=str(file), should_stop=stop)
    except dl.ImportFormatError as exc:
        fail(f"{file}: {exc}; nothing imported", Exit.USAGE)
    if as_json:
        print_json({"imported": result.imported, "skipped": result.skipped, "interrupted": result.interrupted})
    else:
        stopped = "; interrupted, run it again to import the rest" if result.interrupted else ""
        typer.echo(f"imported {result.imported} dead letter(s), skipped {result.skipped} already in the queue{stopped}")
    if result.interrupted:
        raise typer.Exit(Exit.INTERRUPTED)


@dlq_app.command()
def audit(
    limit: Annotated[int, typer.Option("--limit", min=1, help="The latest N records.")] = 20,
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Who replayed, purged or imported what, and when (newest first)."""
    settings = load(workspaces_file)
    client = connect(settings)
    with redis_errors(client):
        records = dl.audit(client, settings.key_prefix, limit)
    if as_json:
        print_json([record.as_dict() for record in records])
        return
    table = Table(title="Dead-letter audit")
    for column in ("when", "who", "action", "count", "dry run", "filters"):
        table.add_column(column, overflow="fold")
    for rec in records:
        who = f"{rec.user}@{rec.host}"
        count = f"{rec.count} (interrupted)" if rec.interrupted else str(rec.count)
        table.add_row(when(rec.at_ms), who, rec.action, count, "yes" if rec.dry_run else "", rec.filters)
    print_table(Console(), table)


def register(app: typer.Typer) -> None:
    """Add the ``dlq`` command group to ``app``."""
    app.add_typer(dlq_app, name="dlq")


__all__ = ["dlq_app", "register"]
