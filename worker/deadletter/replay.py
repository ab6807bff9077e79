"""Replay: move dead letters back to their partition streams, so that the workers deliver them again.

The matching entries are listed first (a snapshot), so an entry that fails again during the replay and
comes back to the dead-letter queue with a new id is not replayed a second time by the same run. Each entry
then moves in one Lua script: ``XADD`` to its partition stream and ``XDEL`` from the dead-letter stream
together, and nothing at all if the entry is already gone. A replay killed at any instant therefore loses
nothing and duplicates nothing, and running it again finishes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import orjson
import redis

from producers.connect import is_cluster
from producers.keys import backlog_key, config_key, dlq_key, lease_key, stream_key
from producers.wire import DEFAULT_PARTITIONS, KICK_TTL_MS, KICKED, partition_for
from worker.deadletter.audit import Actor, record_audit
from worker.deadletter.filters import DeadLetterFilter
from worker.deadletter.records import DeadLetter
from worker.deadletter.store import dlq_workspaces, iter_entries

#: Most entries moved per Redis round trip.
MOVE_CHUNK: Final = 500
#: How long a kicked lease waits for its drain task before the sweeper may take over, in ms.
KICK_LEASE_MS: Final = KICK_TTL_MS

#: KEYS: dead-letter stream, partition stream, the workspace's backlog bound (``producers.keys.backlog_key``: the
#: event moved back adds one to it, as an enqueue would). ARGV: entry id. Returns 1 moved, 0 already gone.
#: The entry written back holds the original entry's fields in order (``entry.*``, or ``entryhex.*`` for a name
#: that is not UTF-8; an empty ``entry.event`` stands for the record's event), or ``v``=1 and ``event`` for records
#: that did not keep them; then the record's ``attempts`` and ``first_failed_at`` (the next failure counts on).
_MOVE_LUA: Final = """
local rows = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #rows == 0 then return 0 end
local f = rows[1][2]
local event, attempts, first, original = nil, '1', '0', {}
for i = 1, #f, 2 do
  local name, value = f[i], f[i + 1]
  if name == 'event' then event = value
  elseif name == 'attempts' then attempts = value
  elseif name == 'first_failed_at' then first = value
  elseif string.sub(name, 1, 6) == 'entry.' then original[#original + 1] = {string.sub(name, 7), value}
  elseif string.sub(name, 1, 9) == 'entryhex.' then
    local hex = string.sub(name, 10)
    original[#original + 1] = {hex:gsub('..', function(h) return string.char(tonumber(h, 16)) end), value}
  end
end
if event == nil then return 0 end
local out = {}
if #original == 0 then out = {'v', '1', 'event', event} end
for _, pair in ipairs(original) do
  local name, value = pair[1], pair[2]
  if name == 'event' and value == '' then value = event end
  if name ~= 'attempts' and name ~= 'first_failed_at' then
    out[#out + 1] = name
    out[#out + 1] = value
  end
end
out[#out + 1] = 'attempts'
out[#out + 1] = attempts
out[#out + 1] = 'first_failed_at'
out[#out + 1] = first
redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('HINCRBY', KEYS[3], 'events', 1)
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
"""

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    """Where one dead letter goes back to."""

    workspace: str
    stream_id: str
    partition: int


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did: ``matched`` entries in the snapshot, ``moved`` back, ``missing`` already gone (not tried
    when interrupted)."""

    matched: int
    moved: int
    missing: int
    dry_run: bool
    partitions: frozenset[tuple[str, int]]
    #: Stopped part way (Ctrl-C, between chunks): ``moved`` counts what went back before.
    interrupted: bool = False


def target_partition(letter: DeadLetter, partitions: int) -> int:
    """The partition a dead letter returns to: recomputed from its event, else the recorded one."""
    try:
        event = orjson.loads(letter.event)
    except orjson.JSONDecodeError:
        return letter.partition
    if not isinstance(event, dict):
        return letter.partition
    return partition_for(event, partitions)


def snapshot(
    client: redis.Redis,
    prefix: str,
    flt: DeadLetterFilter,
    partitions_of: Callable[[str], int],
    *,
    workspaces: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ReplayTarget]:
    """The matching entries, oldest first, each with the partition it returns to."""
    names = dlq_workspaces(client, prefix) if workspaces is None else workspaces
    entries = iter_entries(client, prefix, names, flt, limit, newest_first=False)
    return [
        ReplayTarget(e.letter.workspace, e.stream_id, target_partition(e.letter, partitions_of(e.letter.workspace)))
        for e in entries
    ]


class _Pacer:
    """Spaces chunks so that no more than ``rate`` entries per second go out (0: no cap)."""

    def __init__(self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.started = clock()
        self.chunk = MOVE_CHUNK if rate <= 0 else max(1, min(MOVE_CHUNK, int(rate / 10)))

    def wait_for(self, sent: int) -> None:
        """Sleep until ``sent`` entries are within the rate."""
        if self.rate > 0:
            delay = self.started + sent / self.rate - self.clock()
            if delay > 0:
                self.sleep(delay)


def _move_keys(prefix: str, target: ReplayTarget) -> list[str]:
    """The keys of ``_MOVE_LUA`` for one target: all in the target workspace's slot."""
    workspace = target.workspace
    return [dlq_key(prefix, workspace), stream_key(prefix, workspace, target.partition), backlog_key(prefix, workspace)]


def move_chunk(client: redis.Redis, prefix: str, targets: Sequence[ReplayTarget]) -> int:
    """Move ``targets`` back to their partition streams in one round trip; return how many moved.

    On a Redis Cluster (whose pipelines take no scripts) each move is a call of its own, to its workspace's node.
    """
    script = client.register_script(_MOVE_LUA)
    if is_cluster(client):
        moves = (script(keys=_move_keys(prefix, target), args=[target.stream_id]) for target in targets)
        return sum(int(moved) for moved in moves)
    pipe = client.pipeline(transaction=False)
    for target in targets:
        script(keys=_move_keys(prefix, target), args=[target.stream_id], client=pipe)
    return sum(int(moved) for moved in pipe.execute())


def _move_all(
    client: redis.Redis,
    prefix: str,
    targets: Sequence[ReplayTarget],
    pacer: _Pacer,
    progress: Progress | None,
    should_stop: Callable[[], bool],
) -> tuple[int, int]:
    """Move the targets chunk by chunk; returns (moved, tried). Stops between chunks once ``should_stop()``."""
    moved = tried = 0
    for start in range(0, len(targets), pacer.chunk):
        if should_stop():
            break
        pacer.wait_for(start)
        chunk = targets[start : start + pacer.chunk]
        moved += move_chunk(client, prefix, chunk)
        tried += len(chunk)
        if progress:
            progress(tried, len(targets))
    return moved, tried


def replay(
    client: redis.Redis,
    prefix: str,
    flt: DeadLetterFilter,
    partitions_of: Callable[[str], int],
    rate: float = 0,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    *,
    workspaces: Sequence[str] | None = None,
    actor: Actor | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReplayResult:
    """Move the matching dead letters back to their partition streams, at most ``rate`` per second.

    Args:
        client: A Redis client.
        prefix: The key prefix.
        flt: Which dead letters.
        partitions_of: The partition count of a workspace.
        rate: Entries per second (0: as fast as Redis takes them).
        limit: Replay at most this many (oldest first).
        dry_run: Count and audit, move nothing.
        progress: Called with (done, total) at the start and after each chunk.
        workspaces: Workspaces to scan when ``flt`` names none (default: every one with a dead-letter stream).
        actor: Who replays, for the audit record.
        clock: Monotonic clock, for the rate.
        sleep: How to wait, for the rate.
        should_stop: Asked between chunks (a chunk is never cut): True stops the replay there (Ctrl-C).

    Returns:
        The counts, and the partitions that received entries (to kick their drain tasks).
    """
    targets = snapshot(client, prefix, flt, partitions_of, workspaces=workspaces, limit=limit)
    if progress:
        progress(0, len(targets))
    pacer = _Pacer(rate, clock, sleep)
    moved, tried = (0, 0) if dry_run else _move_all(client, prefix, targets, pacer, progress, should_stop)
    interrupted = not dry_run and tried < len(targets)
    count = len(targets) if dry_run else moved
    record_audit(
        client, prefix, action="replay", filters=flt.describe(), count=count, dry_run=dry_run, actor=actor,
        interrupted=interrupted,
    )  # fmt: skip
    touched = frozenset((t.workspace, t.partition) for t in targets[:tried])
    return ReplayResult(len(targets), moved, tried - moved, dry_run, touched, interrupted)


def kick_partitions(
    client: redis.Redis,
    prefix: str,
    partitions: Iterable[tuple[str, int]],
    send: Callable[[str, int], None],
) -> int:
    """Queue a drain task for each idle partition, as a producer does; return how many were kicked.

    A partition whose lease is held (a drainer, a queued task or a retry timer) is left alone. When ``send``
    fails, the lease just taken is given back so that the sweeper picks the partition up.
    """
    kicked = 0
    for workspace, partition in sorted(partitions):
        key = lease_key(prefix, workspace, partition)
        if not client.set(key, KICKED, nx=True, px=KICK_LEASE_MS):
            continue
        try:
            send(workspace, partition)
        except Exception:
            if client.get(key) == KICKED.encode():
                client.delete(key)
            raise
        kicked += 1
    return kicked


def partitions_lookup(client: redis.Redis, prefix: str, configured: Mapping[str, int]) -> Callable[[str], int]:
    """A cached ``partitions_of``: the configured count, else the one the workers publish, else the default."""

    @cache
    def partitions_of(workspace: str) -> int:
        if workspace in configured:
            return configured[workspace]
        published = client.hget(config_key(prefix, workspace), "partitions")
        return int(published) if published and published.isdigit() else DEFAULT_PARTITIONS

    return partitions_of
