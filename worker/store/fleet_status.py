"""What the fleet is doing right now, read from Redis: the data behind ``cio-fleet status``.

``gather_status`` makes one pipelined round trip per workspace and hands the raw replies to pure functions,
so the metrics collector can reuse it. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import redis

from producers.keys import authpause_key, dlq_key, lease_key, pause_key, retry_key, stream_key, workers_key
from producers.wire import KICKED
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


def partition_facts(xlen: Any, head: Any, lease: Any, retry_exists: Any) -> PartitionFacts:
    """Turn the replies about one partition (``XLEN``, ``XRANGE - + COUNT 1``, ``GET`` lease, ``EXISTS``)."""
    oldest = _int((_text(head[0][0]) or "").partition("-")[0]) if head else None
    return PartitionFacts(int(xlen), oldest, _text(lease), bool(retry_exists))


def summarise_workspace(
    name: str,
    facts: Sequence[PartitionFacts],
    pause: tuple[Any, Any],
    auth: Mapping[Any, Any],
    dlq: Any,
    now_ms: int,
    partitions: int | None = None,
) -> WorkspaceStatus:
    """Fold the partitions' facts and the pause keys into one ``WorkspaceStatus`` (pure).

    ``facts`` beyond the first ``partitions`` (all by default) are streams above the partition count.
    """
    count = len(facts) if partitions is None else partitions
    oldest = [f.oldest_ms for f in facts if f.oldest_ms is not None]
    reason, ttl_ms = _text(pause[0]), int(pause[1])
    auth_fields = {_text(k): _text(v) for k, v in auth.items()}
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
        dead_letters=int(dlq),
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


def _queue_partition(pipe: Any, prefix: str, name: str, n: int) -> None:
    pipe.xlen(stream_key(prefix, name, n))
    pipe.xrange(stream_key(prefix, name, n), count=1)
    pipe.get(lease_key(prefix, name, n))
    pipe.exists(retry_key(prefix, name, n))


def _workspace(
    client: redis.Redis[bytes], prefix: str, name: str, partitions: int, now_ms: int, extra: Iterable[int] = ()
) -> WorkspaceStatus:
    numbers = [*range(partitions), *sorted(n for n in extra if n >= partitions)]
    pipe = client.pipeline(transaction=False)
    for n in numbers:
        _queue_partition(pipe, prefix, name, n)
    pipe.get(pause_key(prefix, name))
    pipe.pttl(pause_key(prefix, name))
    pipe.hgetall(authpause_key(prefix, name))
    pipe.xlen(dlq_key(prefix, name))
    replies = pipe.execute()
    facts = [partition_facts(*replies[i : i + 4]) for i in range(0, 4 * len(numbers), 4)]
    pause, pttl, auth, dlq = replies[4 * len(numbers) :]
    return summarise_workspace(name, facts, (pause, pttl), auth, dlq, now_ms, partitions)


def _unconfigured(
    client: redis.Redis[bytes], prefix: str, name: str, partitions: Iterable[int], now_ms: int
) -> UnconfiguredStatus:
    numbers = sorted(partitions)
    pipe = client.pipeline(transaction=False)
    for n in numbers:
        _queue_partition(pipe, prefix, name, n)
    replies = pipe.execute()
    facts = [partition_facts(*replies[i : i + 4]) for i in range(0, 4 * len(numbers), 4)]
    return summarise_unconfigured(name, numbers, facts, now_ms)


def gather_status(
    client: redis.Redis[bytes],
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
    if now_ms is None:
        seconds, micros = client.time()
        now_ms = int(seconds) * 1_000 + int(micros) // 1_000
    found = scan_streams(client, prefix) if scan else {}
    states = tuple(
        _workspace(client, prefix, name, n, now_ms, found.get(name, ())) for name, n in sorted(workspaces.items())
    )
    strays = (_unconfigured(client, prefix, name, found[name], now_ms) for name in sorted(found.keys() - workspaces))
    workers = summarise_workers(client.hgetall(workers_key(prefix)), now_ms)
    return FleetStatus(now_ms, states, workers, tuple(stray for stray in strays if stray.backlog))
