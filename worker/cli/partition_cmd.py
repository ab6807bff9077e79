"""`cio-fleet partition`: which partition (and stream) a person's events go to, for producers outside Python.

A raw ``XADD`` producer must write each person's events to the partition the README's formula gives, or that
person's order is lost against events from the Python producer. This command computes it from a shell with the
very function the producer uses, and the partition count the producer would use: ``--partitions`` when given,
else the count the workers published in Redis, else the configured one, else the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import orjson
import redis
import typer

from producers.connect import sync_client
from producers.keys import config_key, stream_key
from producers.wire import DEFAULT_PARTITIONS, partition_for
from worker.cli.common import Exit, JsonFlag, WorkspacesFile, fail, load, redis_errors
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class PartitionCount:
    """A workspace's partition count and where it comes from."""

    count: int
    source: str


def published_count(client: redis.Redis, prefix: str, workspace: str) -> int | None:
    """The partition count the workers published for ``workspace``, if any."""
    raw = client.hget(config_key(prefix, workspace), "partitions")
    try:
        count = int(raw) if raw is not None else 0
    except ValueError:
        return None
    return count if count >= 1 else None


def resolve_count(settings: Settings, workspace: str, given: int | None) -> PartitionCount:
    """The count a producer would use now: given, published by the workers, configured, or the default."""
    if given is not None:
        return PartitionCount(given, "--partitions")
    client: redis.Redis = sync_client(settings.redis_url.get_secret_value())
    with redis_errors(client):
        published = published_count(client, settings.key_prefix, workspace)
    client.close()
    if published is not None:
        return PartitionCount(published, "published by the workers")
    configured = settings.workspaces.get(workspace)
    if configured is not None:
        return PartitionCount(configured.partitions, "configured (no worker has published a count yet)")
    return PartitionCount(DEFAULT_PARTITIONS, "default (neither published nor configured)")


def locate(person_key: str, prefix: str, workspace: str, count: int) -> dict[str, str | int]:
    """The partition and stream key of one person key."""
    number = partition_for({"userId": person_key}, count)
    return {"person_key": person_key, "partition": number, "stream": stream_key(prefix, workspace, number)}


def partition(
    person_keys: Annotated[list[str], typer.Argument(help="Person keys: userId, else anonymousId, else email.")],
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The workspace the events go to.")],
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions", min=1, max=1024, help="Use this count instead of the fleet's.", show_default=False
        ),
    ] = None,
    workspaces_file: WorkspacesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the partition and stream of each person key, as the producer computes them."""
    if not person_keys:
        fail("give at least one person key", Exit.USAGE)
    settings = load(workspaces_file)
    count = resolve_count(settings, workspace, partitions)
    rows = [locate(key, settings.key_prefix, workspace, count.count) for key in person_keys]
    if as_json:
        document = {"workspace": workspace, "partitions": count.count, "source": count.source, "keys": rows}
        typer.echo(orjson.dumps(document).decode())
        return
    typer.echo(f"workspace {workspace}: {count.count} partitions ({count.source})")
    for row in rows:
        typer.echo(f"{row['person_key']}\tpartition {row['partition']}\t{row['stream']}")


def register(app: typer.Typer) -> None:
    """Add ``partition`` to ``app``."""
    app.command(name="partition")(partition)
