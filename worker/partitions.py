"""The Redis side of a partition: its stream, its lease, its retry state, and settling entries.

The lease (``{prefix}:lease:{ws}:{n}``) holds ``kicked`` (a drain task is queued), ``parked`` (waiting in a worker
process for a thread of its workspace, no task queued), ``retry`` (waiting for a retry timer; it expires when the
timer does) or the owner token of the drainer. Every change is a Lua script, so two
workers never both own a partition and an event written while a drainer releases is never stranded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from producers._wire import KICKED, config_key, lease_key, stream_key
from worker.deadletter.records import dlq_key

#: Lease value of a partition waiting for its retry timer.
RETRY: Final = "retry"
#: Lease value of a partition parked in a worker process (``worker.slots``), and how long it lives unless the
#: process refreshes it: a partition parked by a process that died is kicked again by the sweeper soon after.
PARKED: Final = "parked"
PARK_TTL_MS: Final = 5_000

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


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: its id and its decoded fields."""

    id: str
    fields: Mapping[bytes, bytes]

    @property
    def enqueued_at_ms(self) -> int:
        """When the entry was written: the millisecond part of its stream id."""
        return int(self.id.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class LeaseRefusal:
    """The partition is not free: a retry timer runs (``retry_timer``) or another drainer owns it."""

    retry_timer: bool
    remaining_ms: int


@dataclass(frozen=True, slots=True)
class RetryState:
    """A partition's current run of transient failures."""

    attempts: int
    first_failed_at_ms: int


class PartitionStore:
    """Streams, leases and retry state of every partition under one key prefix."""

    def __init__(self, client: redis.Redis[bytes], prefix: str) -> None:
        self._redis = client
        self.prefix = prefix
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._defer = client.register_script(_DEFER)

    def stream(self, workspace: str, partition: int) -> str:
        """The partition's stream key."""
        return stream_key(self.prefix, workspace, partition)

    def lease(self, workspace: str, partition: int) -> str:
        """The partition's lease key."""
        return lease_key(self.prefix, workspace, partition)

    def retry_key(self, workspace: str, partition: int) -> str:
        """The partition's retry-state hash."""
        return f"{self.prefix}:retry:{workspace}:{partition}"

    def now_ms(self) -> int:
        """Redis's clock, shared by the whole fleet."""
        seconds, micros = self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

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

    def _script(self, source: str) -> Any:
        return self._redis.register_script(source)

    def read(self, workspace: str, partition: int, count: int) -> list[Entry]:
        """The oldest ``count`` entries of the partition, in order."""
        rows: list[tuple[bytes, dict[bytes, bytes]]] = self._redis.xrange(
            self.stream(workspace, partition), count=count
        )
        return [Entry(entry_id.decode(), fields) for entry_id, fields in rows]

    def retry_state(self, workspace: str, partition: int) -> RetryState | None:
        """The partition's current failure run, if any."""
        raw: dict[bytes, bytes] = self._redis.hgetall(self.retry_key(workspace, partition))
        if not raw:
            return None
        return RetryState(int(raw.get(b"attempts", b"0")), int(raw.get(b"first_failed_at", b"0")))

    def record_failure(self, workspace: str, partition: int, state: RetryState, error: str) -> None:
        """Remember a transient failure (kept until the partition delivers again)."""
        mapping: dict[str | bytes, str | int] = {
            "attempts": state.attempts,
            "first_failed_at": state.first_failed_at_ms,
            "last_error": error[:500],
        }
        self._redis.hset(self.retry_key(workspace, partition), mapping=mapping)

    def settle(
        self,
        workspace: str,
        partition: int,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]] = (),
        *,
        clear_retry: bool = False,
    ) -> None:
        """In one transaction: delete settled entries and write dead letters (key, fields) for the failed ones."""
        if not done_ids and not dead_letters and not clear_retry:
            return
        pipe = self._redis.pipeline(transaction=True)
        for dlq, fields in dead_letters:
            pipe.xadd(dlq, dict(fields))
        if done_ids:
            pipe.xdel(self.stream(workspace, partition), *done_ids)
        if clear_retry:
            pipe.delete(self.retry_key(workspace, partition))
        pipe.execute()

    def end_retry_timers(self, workspace: str, partitions: int) -> None:
        """Free every partition of the workspace that waits for a retry timer (its cause went away)."""
        for partition in range(partitions):
            key = self.lease(workspace, partition)
            if self._redis.get(key) == RETRY.encode():
                self._redis.delete(key)
        self._redis.delete(f"{self.prefix}:authprobe:{workspace}")

    def claim_probe(self, workspace: str, interval_ms: int) -> float | None:
        """Claim the right to probe a credentials-paused workspace: None if claimed, else seconds to wait."""
        key = f"{self.prefix}:authprobe:{workspace}"
        if self._redis.set(key, "1", nx=True, px=interval_ms):
            return None
        return max(int(self._redis.pttl(key)), 1) / 1000

    def hold_probe(self, workspace: str, interval_ms: int) -> None:
        """No probe of a credentials-paused workspace for ``interval_ms``."""
        self._redis.set(f"{self.prefix}:authprobe:{workspace}", "1", px=interval_ms)

    def dead_letter_count(self, workspace: str) -> int:
        """Entries in the workspace's dead-letter queue."""
        return int(self._redis.xlen(dlq_key(self.prefix, workspace)))

    def publish_partitions(self, workspace: str, partitions: int) -> None:
        """Tell producers how many partitions the workspace has."""
        self._redis.hset(config_key(self.prefix, workspace), "partitions", partitions)

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
