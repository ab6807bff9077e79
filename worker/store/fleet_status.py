"""What the fleet is doing right now, read from Redis: the data behind ``cio-fleet status``.

``read_fleet`` is the one reader of fleet state: one pipelined round trip that hands its replies to pure functions.
``gather_status`` folds it for the command, and the metrics collector (``worker.ops.metrics``) for its gauges.
Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import redis

from producers.connect import is_cluster
from producers.keys import (
    authpause_key,
    dlq_key,
    enqueued_key,
    lease_key,
    pause_key,
    retry_key,
    stream_key,
    workers_key,
)
from producers.wire import KICKED
from worker.store.clock import entry_id_ms, time_reply_ms
from worker.store.layout import scan_streams
from worker.store.partitions import PARKED

#: A worker whose last heartbeat is older than this is counted as gone.
WORKER_ALIVE_S: Final = 30.0
#: A heartbeat older than this is removed by the sweeper (a worker gone for good is forgotten).
WORKER_FORGET_S: Final = 3_600.0
#: Lease value of a partition waiting for its retry timer.
RETRY_LEASE: Final = "retry"


@dataclass(frozen=True, slots=True)
class PartitionFacts:
    """The raw state of one partition."""

    backlog: int
    oldest_ms: int | None
    lease: str | None
    has_retry: bool
    #: Entries ever appended to the stream (``entries-added``), whoever wrote them.
    added: int = 0

    @property
    def busy(self) -> bool:
        """A drainer holds the lease (an owner token, not ``kicked``, ``parked`` nor ``retry``)."""
        return self.lease is not None and self.lease not in (KICKED, PARKED, RETRY_LEASE)

    @property
    def retrying(self) -> bool:
        """The partition waits for a retry timer."""
        return self.lease == RETRY_LEASE or self.has_retry


@dataclass(frozen=True, slots=True)
class WorkspaceStatus:
    """One workspace at a glance."""

    name: str
    partitions: int
    backlog: int
    oldest_age_s: float | None
    busy: int
    retrying: int
    paused: str | None
    pause_reason: str | None
    pause_remaining_s: float | None
    auth_status: int | None
    auth_since_ms: int | None
    dead_letters: int
    #: Events in streams at or above ``partitions`` (left by a larger count; drained first), part of ``backlog``.
    out_of_range_events: int = 0


@dataclass(frozen=True, slots=True)
class UnconfiguredStatus:
    """A workspace that is not configured but whose streams hold events: no worker delivers them."""

    name: str
    partitions: tuple[int, ...]
    backlog: int
    oldest_age_s: float | None


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker process by its heartbeat."""

    id: str
    last_heartbeat_s: float
    age_s: float
    alive: bool


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """The whole fleet at ``at_ms`` (Redis server time)."""

    at_ms: int
    workspaces: tuple[WorkspaceStatus, ...]
    workers: tuple[WorkerStatus, ...]
    unconfigured: tuple[UnconfiguredStatus, ...] = ()

    @property
    def workers_alive(self) -> int:
        """Workers with a heartbeat within ``WORKER_ALIVE_S``."""
        return sum(worker.alive for worker in self.workers)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "at_ms": self.at_ms,
            "workers_alive": self.workers_alive,
            "workspaces": [asdict(ws) for ws in self.workspaces],
            "workers": [asdict(worker) for worker in self.workers],
            "unconfigured": [asdict(ws) for ws in self.unconfigured],
        }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(_text(value) or "")
    except ValueError:
        return None


def _stream_reading(info: Any) -> tuple[int, int, int | None]:
    """(entries added, length, first entry ms) from an XINFO STREAM reply; a missing stream reads as zeros."""
    if not isinstance(info, Mapping):
        return 0, 0, None
    length = int(info.get("length") or 0)
    first = info.get("first-entry")
    first_id = first[0] if first else info.get("recorded-first-entry-id")
    first_ms = entry_id_ms(first_id) if length and first_id else None
    return int(info.get("entries-added") or 0), length, first_ms


def partition_facts(stream_info: Any, lease: Any, retry_exists: Any) -> PartitionFacts:
    """Turn the replies about one partition (``XINFO STREAM``, ``GET`` lease, ``EXISTS`` retry) into facts."""
    added, length, oldest = _stream_reading(stream_info)
    return PartitionFacts(length, oldest, _text(lease), retry_exists is True or retry_exists == 1, added)


def summarise_workspace(
    name: str, reading: WorkspaceReading, now_ms: int, partitions: int | None = None
) -> WorkspaceStatus:
    """Fold a workspace's reading into one ``WorkspaceStatus`` (pure).

    ``reading.partitions`` beyond the first ``partitions`` (all by default) are streams above the partition count.
    """
    facts = reading.partitions
    count = len(facts) if partitions is None else partitions
    oldest = [f.oldest_ms for f in facts if f.oldest_ms is not None]
    reason, ttl_ms = _text(reading.pause_reason), reading.pause_ttl_ms
    auth_fields = reading.auth
    paused = "unauthorized" if auth_fields else ("throttled" if ttl_ms > 0 or ttl_ms == -1 else None)
    return WorkspaceStatus(
        name=name,
        partitions=count,
        backlog=sum(f.backlog for f in facts),
        oldest_age_s=_age_s(oldest, now_ms),
        busy=sum(f.busy for f in facts),
        retrying=sum(f.retrying for f in facts),
        paused=paused,
        pause_reason=auth_fields.get("reason") if auth_fields else reason,
        pause_remaining_s=ttl_ms / 1_000 if paused == "throttled" and ttl_ms > 0 else None,
        auth_status=_int(auth_fields.get("status")),
        auth_since_ms=_int(auth_fields.get("since")),
        dead_letters=reading.dead_letters,
        out_of_range_events=sum(f.backlog for f in facts[count:]),
    )


def _age_s(oldest: Sequence[int], now_ms: int) -> float | None:
    return max(0.0, (now_ms - min(oldest)) / 1_000) if oldest else None


def summarise_unconfigured(
    name: str, partitions: Sequence[int], facts: Sequence[PartitionFacts], now_ms: int
) -> UnconfiguredStatus:
    """The streams of a workspace nobody is configured for, folded into one ``UnconfiguredStatus`` (pure)."""
    oldest = [f.oldest_ms for f in facts if f.oldest_ms is not None]
    waiting = tuple(n for n, f in zip(partitions, facts, strict=True) if f.backlog)
    return UnconfiguredStatus(name, waiting, sum(f.backlog for f in facts), _age_s(oldest, now_ms))


def summarise_workers(heartbeats: Mapping[Any, Any], now_ms: int) -> tuple[WorkerStatus, ...]:
    """Workers by id with their heartbeat age, newest first (pure)."""
    workers = []
    for key, value in heartbeats.items():
        try:
            seen = float(_text(value) or "0")
        except ValueError:
            seen = 0.0
        age = max(0.0, now_ms / 1_000 - seen)
        workers.append(WorkerStatus(_text(key) or "", seen, age, age <= WORKER_ALIVE_S))
    return tuple(sorted(workers, key=lambda worker: (worker.age_s, worker.id)))


@dataclass(frozen=True, slots=True)
class WorkspaceReading:
    """What Redis holds for one workspace at one instant: the raw facts behind status and the metrics."""

    partitions: tuple[PartitionFacts, ...]
    pause_reason: bytes | str | None = None
    #: ``PTTL`` of the 429 pause key: -2 without a pause.
    pause_ttl_ms: int = -2
    #: The credentials pause's fields; empty without one.
    auth: Mapping[str | None, str | None] = field(default_factory=dict)
    dead_letters: int = 0
    #: The producers' count of enqueued events by type, as stored.
    enqueued_by_type: Mapping[Any, Any] = field(default_factory=dict)


def _as_int(reply: Any, default: int) -> int:
    """An integer reply, or ``default`` when the command failed (``execute(raise_on_error=False)``)."""
    return reply if isinstance(reply, int) and not isinstance(reply, bool) else default


def _as_mapping(reply: Any) -> Mapping[Any, Any]:
    return reply if isinstance(reply, Mapping) else {}


#: Replies per partition and per workspace in ``read_fleet``'s pipeline.
_PER_PARTITION: Final = 3
_PER_WORKSPACE: Final = 5


def read_fleet(
    client: redis.Redis, prefix: str, partitions: Mapping[str, Sequence[int]]
) -> tuple[int, dict[str, WorkspaceReading]]:
    """Redis's time in ms and the reading of each workspace's partitions, in one pipelined round trip.

    The one reader of fleet state: ``cio-fleet status`` (``gather_status``) and the metrics collector fold it.

    Args:
        client: A Redis client (``decode_responses=False``).
        prefix: The key prefix.
        partitions: Workspace name → the partitions to read.

    Raises:
        RedisError: Redis did not answer.
    """
    pipe = client.pipeline(transaction=False)
    cluster = is_cluster(client)  # a cluster's pipelines take no keyless command: TIME is read on its own there
    if not cluster:
        pipe.time()
    for name, numbers in partitions.items():
        for n in numbers:
            pipe.xinfo_stream(stream_key(prefix, name, n))
            pipe.get(lease_key(prefix, name, n))
            pipe.exists(retry_key(prefix, name, n))
        pipe.get(pause_key(prefix, name))
        pipe.pttl(pause_key(prefix, name))
        pipe.hgetall(authpause_key(prefix, name))
        pipe.xlen(dlq_key(prefix, name))
        pipe.hgetall(enqueued_key(prefix, name))
    replies = pipe.execute(raise_on_error=False)
    if cluster:
        replies = [client.time(), *replies]
    if isinstance(replies[0], Exception):
        raise replies[0]
    readings, at = {}, 1
    for name, numbers in partitions.items():
        end = at + _PER_PARTITION * len(numbers)
        facts = tuple(partition_facts(*replies[i : i + _PER_PARTITION]) for i in range(at, end, _PER_PARTITION))
        readings[name] = _reading(facts, replies[end : end + _PER_WORKSPACE])
        at = end + _PER_WORKSPACE
    return time_reply_ms(replies[0]), readings


def _reading(facts: tuple[PartitionFacts, ...], replies: Sequence[Any]) -> WorkspaceReading:
    reason, ttl, auth, dlq, enqueued = replies
    return WorkspaceReading(
        partitions=facts,
        pause_reason=None if isinstance(reason, Exception) else reason,
        pause_ttl_ms=_as_int(ttl, -2),
        auth={_text(k): _text(v) for k, v in _as_mapping(auth).items()},
        dead_letters=_as_int(dlq, 0),
        enqueued_by_type=_as_mapping(enqueued),
    )


def gather_status(
    client: redis.Redis,
    prefix: str,
    workspaces: Mapping[str, int],
    *,
    now_ms: int | None = None,
    scan: bool = True,
) -> FleetStatus:
    """Read the state of every workspace and worker.

    Args:
        client: A Redis client (``decode_responses=False``).
        prefix: The key prefix.
        workspaces: Workspace name → partition count.
        now_ms: The time to measure ages against; Redis ``TIME`` by default (the clock stream ids use).
        scan: Also ``SCAN`` for every stream of the prefix: streams above a workspace's count count in its
            backlog, and workspaces that are not configured but hold events are listed in ``unconfigured``.
    """
    found = scan_streams(client, prefix) if scan else {}
    numbers = {name: [*range(n), *sorted(p for p in found.get(name, ()) if p >= n)] for name, n in workspaces.items()}
    strays = {name: sorted(found[name]) for name in found.keys() - workspaces}
    server_ms, readings = read_fleet(client, prefix, {**numbers, **strays})
    now_ms = server_ms if now_ms is None else now_ms
    states = tuple(summarise_workspace(name, readings[name], now_ms, n) for name, n in sorted(workspaces.items()))
    unconfigured = (
        summarise_unconfigured(name, strays[name], readings[name].partitions, now_ms) for name in sorted(strays)
    )
    workers = summarise_workers(client.hgetall(workers_key(prefix)), now_ms)
    return FleetStatus(now_ms, states, workers, tuple(stray for stray in unconfigured if stray.backlog))
