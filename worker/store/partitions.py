"""The Redis side of a partition: its stream, its lease, its retry state, and settling entries.

The lease (``{prefix}:lease:{ws}:{n}``) holds ``kicked`` (a drain task is queued), ``parked`` (waiting in a worker
process for a thread of its workspace, no task queued), ``retry`` (waiting for a retry timer; it expires when the
timer does) or the owner token of the drainer. Every change is a Lua script, so two
workers never both own a partition and an event written while a drainer releases is never stranded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import redis
from redis.typing import EncodableT

from producers.keys import authprobe_key, dlq_key, lease_key, ready_key, retry_key, stream_key
from producers.wire import KICKED
from worker.store import layout
from worker.store.clock import entry_id_ms, server_ms
from worker.store.replies import byte_strings, hash_fields

#: Lease value of a partition waiting for its retry timer.
RETRY: Final = "retry"
#: Lease value of a partition parked in a worker process (``worker.pipeline.slots``), and how long it lives unless the
#: process refreshes it: a partition parked by a process that died is kicked again by the sweeper soon after.
PARKED: Final = "parked"
PARK_TTL_MS: Final = 5_000
#: The most ready partitions one sweeper round takes from a workspace's ``ready`` set (the rest wait a round).
MAX_READY_POP: Final = 1_024

# Returns {0, 0} when taken, {1, pttl} while a retry timer runs, {2, pttl} while another drainer owns it.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[3] or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {0, 0}
end
if current == ARGV[4] then return {1, redis.call('PTTL', KEYS[1])} end
return {2, redis.call('PTTL', KEYS[1])}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1
end
return 0
"""

# Release when the stream is empty; otherwise hand the partition back as 'kicked' so that the caller re-queues it.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('XLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

_DEFER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Compare-and-delete: free the partitions (KEYS) whose lease is still the retry timer (ARGV[1]), in one step, so a
# drainer that took a lease over meanwhile keeps it. Returns how many were freed.
_END_RETRY_TIMERS = """
local freed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    freed = freed + 1
  end
end
return freed
"""


# KEYS[1]: the stream. ARGV: most entries, byte budget. The oldest entries in order, as XRANGE gives them, stopping
# before the entry that would take the size of their fields (names and values) past the budget; the first entry
# is always returned, however large. Entries are fetched in chunks sized by the average so far (at most 16, in
# case the next entries are much larger), so that Redis does not hold much more than the budget either.
_READ_ENTRIES = """
local function read_entries(stream, count, budget)
local out, total, start = {}, 0, '-'
while #out < count and total < budget do
  local want = 1
  if #out > 0 then
    local average = math.max(total / #out, 1)
    want = math.min(count - #out, 16, math.max(math.floor((budget - total) / average), 1))
  end
  local rows = redis.call('XRANGE', stream, start, '+', 'COUNT', want)
  for _, row in ipairs(rows) do
    local size = 0
    for _, part in ipairs(row[2]) do size = size + #part end
    if #out > 0 and total + size > budget then return out end
    out[#out + 1] = row
    total = total + size
  end
  if #rows < want then break end
  start = '(' .. rows[#rows][1]
end
return out
end
"""
_READ = _READ_ENTRIES + "return read_entries(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))"

# The hot path's read, in one round trip: fenced by the lease (renewed), the next entries as ``_READ`` gives them,
# the partition's retry state and Redis's clock. KEYS: lease, stream, retry hash. ARGV: token, ttl, most entries,
# byte budget. Returns nil when the lease is not the token's (nothing renewed), else {now_ms, retry fields, rows}.
_READ_HEAD = (
    _READ_ENTRIES
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('HGETALL', KEYS[3]), read_entries(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))}
"""
)


# Fenced failure record. KEYS: lease, retry hash. ARGV: token, attempts, first failure (ms), head limit, last error.
_RECORD_FAILURE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'attempts', ARGV[2], 'first_failed_at', ARGV[3], 'head_limit', ARGV[4],
  'last_error', ARGV[5])
return 1
"""


# Fenced settle: nothing changes unless the lease still holds the drainer's token.
# KEYS: lease, stream, retry hash, then one dead-letter stream per dead letter.
# ARGV: token, clear retry ('1'/'0'), number of ids, the ids, then per dead letter: field count, fields and values.
# Returns 1 when settled, 0 when the lease is lost (nothing written).
_SETTLE_STEPS = """
local ids = tonumber(ARGV[3])
local at = 4 + ids
for key = 4, #KEYS do
  local fields = tonumber(ARGV[at])
  redis.call('XADD', KEYS[key], '*', unpack(ARGV, at + 1, at + 2 * fields))
  at = at + 1 + 2 * fields
end
for first = 4, 3 + ids, 1000 do
  redis.call('XDEL', KEYS[2], unpack(ARGV, first, math.min(first + 999, 3 + ids)))
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[3]) end
"""
_SETTLE = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n" + _SETTLE_STEPS + "return 1\n"

# The hot path's settle, in one round trip with the next read: ``_SETTLE``, then the lease renewed and what
# ``_READ_HEAD`` returns. KEYS and ARGV as ``_SETTLE``'s, then three more ARGV: ttl, most entries, byte budget.
# Returns nil when the lease is not the token's (nothing written), else ``_READ_HEAD``'s reply.
_SETTLE_AND_READ = (
    _READ_ENTRIES
    + "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end\n"
    + _SETTLE_STEPS
    + """
local n = #ARGV
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[n - 2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('HGETALL', KEYS[3]), read_entries(KEYS[2], tonumber(ARGV[n - 1]), tonumber(ARGV[n]))}
"""
)


class Entry(NamedTuple):
    """One stream entry: its id and its decoded fields.

    A named tuple rather than a frozen dataclass: one is built for every entry read, and a frozen dataclass's
    ``__init__`` costs three times as much (it sets each field through ``object.__setattr__``).
    """

    id: str
    fields: Mapping[bytes, bytes]

    @property
    def enqueued_at_ms(self) -> int:
        """When the entry was written: the millisecond part of its stream id."""
        return entry_id_ms(self.id)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields from Redis's flat ``[name, value, ...]`` reply (two fields, ``v`` and ``event``, the
    common case, without slicing: this ran for every entry read)."""
    if len(flat) == 4:
        return {flat[0]: flat[1], flat[2]: flat[3]}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _retry_state(raw: Mapping[bytes, bytes]) -> RetryState | None:
    """A retry-state hash's fields as a ``RetryState``; None when the hash is empty (no run of failures)."""
    if not raw:
        return None
    fields = (raw.get(b"attempts", b"0"), raw.get(b"first_failed_at", b"0"), raw.get(b"head_limit", b"0"))
    return RetryState(*(int(value) for value in fields))


def _head(reply: list[Any] | None) -> Head | None:
    """``_READ_HEAD``'s reply as a ``Head``; None for nil (the lease was not the caller's)."""
    if reply is None:
        return None
    now_ms, retry_flat, rows = reply
    entries = [Entry(entry_id.decode(), _pairs(flat)) for entry_id, flat in rows]
    return Head(entries, _retry_state(_pairs(retry_flat)), int(now_ms))


class LeaseLost(Exception):
    """Another worker took the partition over (this one stalled past the lease TTL): send and settle nothing."""


@dataclass(frozen=True, slots=True)
class LeaseRefusal:
    """The partition is not free: a retry timer runs (``retry_timer``) or another drainer owns it."""

    retry_timer: bool
    remaining_ms: int


@dataclass(frozen=True, slots=True)
class ReadStep:
    """How a drainer reads its next entries: the lease's TTL to renew, most entries, byte budget."""

    ttl_ms: int
    count: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Head:
    """What a drainer reads before a batch (``PartitionStore.read_head``): the next entries, the partition's retry
    state, and Redis's clock when they were read."""

    entries: list[Entry]
    retry: RetryState | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class RetryState:
    """A partition's current run of transient failures of its head entry.

    ``head_limit`` is the most entries the next attempt sends from the head (0: a full batch): a batch that keeps
    failing is split to isolate the event that fails (``worker.pipeline.retry.head_batch_limit``).
    """

    attempts: int
    first_failed_at_ms: int
    head_limit: int = 0


class PartitionStore:
    """Streams, leases and retry state of every partition under one key prefix."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self.prefix = prefix
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._defer = client.register_script(_DEFER)
        self._end_retry_timers = client.register_script(_END_RETRY_TIMERS)
        self._read = client.register_script(_READ)
        self._read_head = client.register_script(_READ_HEAD)
        self._settle = client.register_script(_SETTLE)
        self._settle_and_read = client.register_script(_SETTLE_AND_READ)
        self._record_failure = client.register_script(_RECORD_FAILURE)

    def stream(self, workspace: str, partition: int) -> str:
        """The partition's stream key."""
        return stream_key(self.prefix, workspace, partition)

    def lease(self, workspace: str, partition: int) -> str:
        """The partition's lease key."""
        return lease_key(self.prefix, workspace, partition)

    def retry_key(self, workspace: str, partition: int) -> str:
        """The partition's retry-state hash."""
        return retry_key(self.prefix, workspace, partition)

    def now_ms(self) -> int:
        """Redis's clock, shared by the whole fleet."""
        return server_ms(self._redis)

    def take_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> LeaseRefusal | None:
        """Own the partition; None on success, else why not and for how long."""
        keys = [self.lease(workspace, partition)]
        status, pttl = self._take(keys=keys, args=[token, ttl_ms, KICKED, RETRY])
        if int(status) == 0:
            return None
        return LeaseRefusal(retry_timer=int(status) == 1, remaining_ms=max(int(pttl), 0))

    def renew_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> bool:
        """Extend the lease; False when it was lost to another worker."""
        return bool(self._renew(keys=[self.lease(workspace, partition)], args=[token, ttl_ms]))

    def release_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> bool:
        """Give the partition up; True when work remains (the lease is now ``kicked``: queue a task)."""
        keys = [self.lease(workspace, partition), self.stream(workspace, partition)]
        return int(self._release(keys=keys, args=[token, KICKED, ttl_ms])) == 1

    def defer(self, workspace: str, partition: int, token: str, delay_ms: int) -> bool:
        """Hold the partition back for ``delay_ms``: nobody drains it until the lease expires."""
        keys = [self.lease(workspace, partition)]
        return bool(self._defer(keys=keys, args=[token, RETRY, max(int(delay_ms), 1)]))

    def kick_retry_timer(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        """Turn the partition's retry timer into a kick (``kicked`` for ``ttl_ms``) before it runs out.

        Returns:
            True when the caller must queue the drain task; False when the lease is not a retry timer any more.
        """
        keys = [self.lease(workspace, partition)]
        return bool(self._script(_SWAP)(keys=keys, args=[RETRY, KICKED, ttl_ms]))

    def kick_if_idle(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        """Mark an idle partition ``kicked``; True when the caller must queue a drain task."""
        return bool(self._redis.set(self.lease(workspace, partition), KICKED, nx=True, px=ttl_ms))

    def park(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        """Mark a partition whose queued task found no thread ``parked``; False when it is not ours to park.

        Ours: ``kicked`` (the task that was queued for it is the caller) or no lease at all.
        """
        keys = [self.lease(workspace, partition)]
        return bool(self._script(_PARK)(keys=keys, args=[KICKED, PARKED, ttl_ms]))

    def unpark(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        """Turn a ``parked`` partition ``kicked``; True when the caller must queue its drain task."""
        keys = [self.lease(workspace, partition)]
        return bool(self._script(_SWAP)(keys=keys, args=[PARKED, KICKED, ttl_ms]))

    def refresh_parked(self, workspace: str, partitions: Sequence[int], ttl_ms: int) -> None:
        """Extend the ``parked`` leases of partitions parked in this process."""
        if partitions:
            keys = [self.lease(workspace, partition) for partition in partitions]
            self._script(_REFRESH)(keys=keys, args=[PARKED, ttl_ms])

    def forget_kick(self, workspace: str, partition: int) -> bool:
        """Drop a ``kicked`` lease whose drain task could not be queued, so that the sweeper kicks it at once."""
        return bool(self._script(_FORGET)(keys=[self.lease(workspace, partition)], args=[KICKED]))

    def old_kicks(self, workspace: str, partitions: int, ttl_ms: int, grace_ms: int) -> list[int]:
        """Partitions with waiting events whose ``kicked`` lease (set for ``ttl_ms``) is older than ``grace_ms``."""
        leases = [self.lease(workspace, partition) for partition in range(partitions)]
        streams = [self.stream(workspace, partition) for partition in range(partitions)]
        found = self._script(_OLD_KICKS)(keys=[*leases, *streams], args=[KICKED, ttl_ms - grace_ms])
        return [int(index) for index in found]

    def kick_again(self, workspace: str, partition: int, ttl_ms: int, grace_ms: int) -> bool:
        """Renew a ``kicked`` lease older than ``grace_ms`` whose task is lost; True when the caller must queue one."""
        keys = [self.lease(workspace, partition)]
        return bool(self._script(_KICK_AGAIN)(keys=keys, args=[KICKED, ttl_ms - grace_ms, ttl_ms]))

    def take_ready(self, workspace: str) -> list[int]:
        """Take the partitions producers marked ready (kicked without a queued drain task): the caller queues them.

        ``SPOP`` hands each to one worker; one lost between the pop and its task is found by ``old_kicks``.
        """
        popped = self._redis.spop(ready_key(self.prefix, workspace), MAX_READY_POP)
        return sorted(int(member) for member in byte_strings(popped or []))

    def _script(self, source: str) -> Any:
        return self._redis.register_script(source)

    def read(self, workspace: str, partition: int, count: int, max_bytes: int) -> list[Entry]:
        """The oldest entries of the partition, in order: at most ``count``, and at most ``max_bytes`` of fields.

        The first entry is returned whatever its size, so a read step holds at most the budget plus one entry.
        """
        rows: list[list[Any]] = self._read(keys=[self.stream(workspace, partition)], args=[count, max_bytes])
        return [Entry(entry_id.decode(), _pairs(flat)) for entry_id, flat in rows]

    def read_head(
        self, workspace: str, partition: int, token: str, ttl_ms: int, count: int, max_bytes: int
    ) -> Head | None:
        """In one round trip: renew the lease and read like ``read``, with the retry state and Redis's clock.

        Returns:
            None when the lease no longer holds ``token`` (nothing was renewed or read).
        """
        keys = [
            self.lease(workspace, partition),
            self.stream(workspace, partition),
            self.retry_key(workspace, partition),
        ]
        return _head(self._read_head(keys=keys, args=[token, ttl_ms, count, max_bytes]))

    def retry_state(self, workspace: str, partition: int) -> RetryState | None:
        """The partition's current failure run, if any."""
        raw = hash_fields(self._redis.hgetall(self.retry_key(workspace, partition)))
        return _retry_state(raw)

    def record_failure(self, workspace: str, partition: int, token: str, state: RetryState, error: str) -> bool:
        """Remember a transient failure (kept until the head entry is settled), fenced like ``settle``.

        Returns:
            False when the lease no longer holds ``token``: nothing was written (the new owner keeps its run).
        """
        keys = [self.lease(workspace, partition), self.retry_key(workspace, partition)]
        args: list[EncodableT] = [token, state.attempts, state.first_failed_at_ms, state.head_limit, error[:500]]
        return bool(self._record_failure(keys=keys, args=args))

    def end_retry_run(self, workspace: str, partition: int) -> None:
        """Forget the partition's failure run: the next transient failure starts a new one."""
        self._redis.delete(self.retry_key(workspace, partition))

    def settle(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]] = (),
        *,
        clear_retry: bool = False,
    ) -> bool:
        """Atomically, if the lease still holds ``token``: write dead letters (key, fields), delete settled entries
        and, with ``clear_retry``, end the partition's retry state.

        Returns:
            False when the lease was lost to another drainer: then nothing was written or deleted.
        """
        if not done_ids and not dead_letters and not clear_retry:
            return True
        keys, args = self._settle_call(workspace, partition, token, done_ids, dead_letters, clear_retry)
        return bool(self._settle(keys=keys, args=args))

    def settle_and_read(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        clear_retry: bool,
        read: ReadStep,
    ) -> Head | None:
        """``settle``, then ``read_head``, in one round trip and one atomic step.

        Returns:
            None when the lease was lost to another drainer: then nothing was written, deleted or read.
        """
        keys, args = self._settle_call(workspace, partition, token, done_ids, dead_letters, clear_retry)
        reply = self._settle_and_read(keys=keys, args=[*args, read.ttl_ms, read.count, read.max_bytes])
        return _head(reply)

    def _settle_call(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]],
        clear_retry: bool,
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of ``_SETTLE`` (and of the settle in ``_SETTLE_AND_READ``)."""
        keys = [
            self.lease(workspace, partition),
            self.stream(workspace, partition),
            self.retry_key(workspace, partition),
        ]
        args: list[Any] = [token, "1" if clear_retry else "0", len(done_ids), *done_ids]
        for dlq, fields in dead_letters:
            keys.append(dlq)
            args.append(len(fields))
            for name, value in fields.items():
                args += [name, value]
        return keys, args

    def end_retry_timers(self, workspace: str, partitions: int) -> int:
        """Free every partition of the workspace that waits for a retry timer, and end every failure run.

        For a workspace whose credentials changed: the pause that held its partitions went away, and so did the
        runs of failures that began before it. A lease another drainer holds is never touched.

        Returns:
            How many partitions were freed.
        """
        leases = [self.lease(workspace, partition) for partition in range(partitions)]
        freed = int(self._end_retry_timers(keys=leases, args=[RETRY]))
        runs = [self.retry_key(workspace, partition) for partition in range(partitions)]
        self._redis.delete(authprobe_key(self.prefix, workspace), *runs)
        return freed

    def claim_probe(self, workspace: str, interval_ms: int) -> float | None:
        """Claim the right to probe a credentials-paused workspace: None if claimed, else seconds to wait."""
        key = authprobe_key(self.prefix, workspace)
        if self._redis.set(key, "1", nx=True, px=interval_ms):
            return None
        return max(int(self._redis.pttl(key)), 1) / 1000

    def hold_probe(self, workspace: str, interval_ms: int) -> None:
        """No probe of a credentials-paused workspace for ``interval_ms``."""
        self._redis.set(authprobe_key(self.prefix, workspace), "1", px=interval_ms)

    def dead_letter_count(self, workspace: str) -> int:
        """Entries in the workspace's dead-letter queue."""
        return int(self._redis.xlen(dlq_key(self.prefix, workspace)))

    def publish_partitions(self, workspace: str, partitions: int) -> int:
        """Tell producers how many partitions the workspace has; returns the span to drain (``worker.store.layout``)."""
        return layout.publish(self._redis, self.prefix, workspace, partitions)

    def reset_backlog_bound(self, workspace: str, span: int) -> int:
        """Set the backlog bound producers check to the exact backlog of streams ``0..span-1``; returns it."""
        return layout.reset_backlog_bound(self._redis, self.prefix, workspace, span)

    def span(self, workspace: str, partitions: int) -> int:
        """Streams ``0..span-1`` of the workspace may hold events; at least ``partitions``."""
        return layout.read_span(self._redis, self.prefix, workspace, partitions)

    def older_streams_wait(self, workspace: str, partitions: int, span: int) -> bool:
        """True while a stream from the partition count up to ``span`` holds events (``worker.store.layout``)."""
        return layout.older_streams_wait(self._redis, self.prefix, workspace, partitions, span)

    def fences(self, workspace: str) -> dict[int, str]:
        """The streams still fenced after the partition count went up, with their fences (``worker.store.layout``)."""
        return layout.fences(self._redis, self.prefix, workspace)

    def pending(self, workspace: str, partitions: int) -> list[tuple[int, int, bool]]:
        """(partition, stream length, has a lease) for every partition of the workspace."""
        pipe = self._redis.pipeline(transaction=False)
        for partition in range(partitions):
            pipe.xlen(self.stream(workspace, partition))
            pipe.exists(self.lease(workspace, partition))
        replies = pipe.execute()
        return [(p, int(replies[2 * p]), bool(replies[2 * p + 1])) for p in range(partitions)]


# The kick-mark scripts (``kicked`` and ``parked`` leases); the lease value compared is always an argument.

# KEYS: lease. ARGV: kicked, parked, ttl. Park when kicked or free.
_PARK = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: expected value, new value, ttl.
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS: leases. ARGV: parked, ttl.
_REFRESH = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0
"""

# KEYS: lease. ARGV: kicked.
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the P leases, then the P streams. ARGV: kicked, the PTTL at or below which a kick is old.
# Returns the partitions with entries whose lease is an old kick (no TTL counts as old).
_OLD_KICKS = """
local p = #KEYS / 2
local old = {}
for i = 1, p do
  if redis.call('GET', KEYS[i]) == ARGV[1] and redis.call('PTTL', KEYS[i]) <= tonumber(ARGV[2])
      and redis.call('XLEN', KEYS[p + i]) > 0 then
    old[#old + 1] = i - 1
  end
end
return old
"""

# KEYS: lease. ARGV: kicked, the PTTL at or below which a kick is old, ttl.
_KICK_AGAIN = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('PTTL', KEYS[1]) <= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
"""
