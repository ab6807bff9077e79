"""The sweeper: finds partitions with waiting events and no drainer, and kicks them.

Every worker process runs one sweeper thread; a short Redis lock lets only one of them sweep per interval across
the fleet. A sweep also publishes each workspace's partition count for producers (and drains every stream below
the workspace's span, ``worker.store.layout``), forgets the heartbeats of workers gone for ``WORKER_FORGET_S``,
and every ``SCAN_EVERY_SWEEPS`` intervals scans for stray streams. Each tick writes the worker's heartbeat in Redis
time and the workspaces it serves (``{prefix}:workspaces``, which producers check).
It is what makes raw ``XADD`` producers, crashed workers and expired retry timers work. On a Redis Cluster each
tick also queues the drain tasks of the partitions producers marked ready (``relay_ready``): the broker is not the
cluster, so the enqueue script cannot queue them. The workers' ready relay (``worker.pipeline.relay.ReadyRelay``)
publishes them within milliseconds as producers wake it; the tick is the safety net for what it left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

import redis

from producers._kick import MAX_PARTITIONS
from producers.connect import is_cluster
from producers.keys import scan_key, stream_key, sweeper_key, workers_key
from producers.wire import KICK_GRACE_MS, KICK_TTL_MS
from worker.broker import QueuedPartitions
from worker.deadletter.records import over_alarm
from worker.pipeline.credentials import resume_if_credentials_changed
from worker.settings import Settings
from worker.store import layout
from worker.store.fleet_status import WORKER_FORGET_S
from worker.store.partitions import PartitionStore
from worker.store.ratelimit import WorkspaceLimiter

log = logging.getLogger("cio_fleet.sweeper")

Kick = Callable[[str, int], None]
#: The partitions that have a drain task waiting (``worker.broker.QueuedPartitions``).
Queued = Callable[[], set[tuple[str, int]]]

#: How often the dead-letter alarm is logged again while it lasts.
ALARM_EVERY_S: Final = 60.0

# KEYS[1]: the workers hash. ARGV[1]: this worker. The heartbeat is Redis's clock, the one status compares it with.
_HEARTBEAT = """
local now = redis.call('TIME')[1]
redis.call('HSET', KEYS[1], ARGV[1], now)
return now
"""

# KEYS[1]: the workers hash. ARGV[1]: seconds. Removes heartbeats older than that (by Redis's clock).
_FORGET = """
local now = tonumber(redis.call('TIME')[1])
local fields = redis.call('HGETALL', KEYS[1])
local removed = 0
for i = 1, #fields, 2 do
  local seen = tonumber(fields[i + 1])
  if seen == nil or now - seen > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], fields[i])
    removed = removed + 1
  end
end
return removed
"""


def dead_letter_alarms(settings: Settings, store: PartitionStore) -> list[tuple[str, int]]:
    """Workspaces whose dead-letter queue is past the alarm threshold, with their sizes."""
    sizes = [(name, store.dead_letter_count(name)) for name in settings.workspaces]
    return [
        (name, size) for name, size in sizes if over_alarm(size, settings.dlq_max_entries, settings.dlq_alarm_ratio)
    ]


def kick_lost(settings: Settings, store: PartitionStore, kick: Kick, queued: Queued) -> int:
    """Kick again every partition whose ``kicked`` lease is older than ``KICK_GRACE_MS`` and whose drain task is
    not in the queue: it was lost (a failed publish, a worker killed as it took the task). Returns how many.

    A kick whose task waits in the queue, however long, is left alone: at most one queued task per partition.
    """
    old = {
        (name, partition)
        for name, workspace in settings.workspaces.items()
        for partition in store.old_kicks(name, workspace.partitions, KICK_TTL_MS, KICK_GRACE_MS)
    }
    if not old:
        return 0
    kicked = 0
    for name, partition in sorted(old - queued()):
        if store.kick_again(name, partition, KICK_TTL_MS, KICK_GRACE_MS):
            log.info("drain task lost; kicking the partition again", extra={"workspace": name, "partition": partition})
            kick(name, partition)
            kicked += 1
    return kicked


def relay_ready(settings: Settings, store: PartitionStore, kick: Kick) -> int:
    """Queue the drain tasks of the partitions producers marked ready (on a Redis Cluster the broker is elsewhere,
    so the enqueue script cannot queue them itself); returns how many."""
    relayed = 0
    for name in settings.workspaces:
        for partition in store.take_ready(name):
            kick(name, partition)
            relayed += 1
    return relayed


def sweep_once(settings: Settings, store: PartitionStore, limiter: WorkspaceLimiter, kick: Kick) -> int:
    """Kick every stream below the span that has entries and no lease; returns how many were kicked.

    Each workspace's backlog bound is set back to its exact backlog first (producers check the cap against it).
    """
    kicked = 0
    for name, workspace in settings.workspaces.items():
        span = store.publish_partitions(name, workspace.partitions)
        store.reset_backlog_bound(name, span)
        resume_if_credentials_changed(limiter, store, workspace, span)
        for partition, length, leased in store.pending(name, span):
            if length and not leased and store.kick_if_idle(name, partition, KICK_TTL_MS):
                kick(name, partition)
                kicked += 1
    return kicked


def cover_strays(client: redis.Redis, prefix: str, above: Mapping[str, tuple[int, ...]]) -> None:
    """Raise the span of each workspace over its non-empty streams above the count, so the fleet drains them.

    Streams at or above ``MAX_PARTITIONS`` are left out (no producer writes there; a span that large would make every
    drain look at thousands of streams): they stay in ``{prefix}:strays`` and in the workspace's backlog metric.
    """
    for workspace, numbers in above.items():
        partitions = [n for n in numbers if n < MAX_PARTITIONS]
        pipe = client.pipeline(transaction=False)
        for n in partitions:
            pipe.xlen(stream_key(prefix, workspace, n))
        waiting = [n for n, length in zip(partitions, pipe.execute(), strict=True) if int(length)]
        if waiting:
            layout.cover(client, prefix, workspace, max(waiting) + 1)


def scan_strays(settings: Settings, client: redis.Redis) -> dict[str, int]:
    """Find streams outside the configured layouts, record them, cover those of configured workspaces.

    Returns:
        Waiting events per unconfigured workspace (nobody drains them).
    """
    prefix = settings.key_prefix
    configured = {name: workspace.partitions for name, workspace in settings.workspaces.items()}
    found = layout.outside(layout.scan_streams(client, prefix), configured)
    layout.record_strays(client, prefix, found)
    cover_strays(client, prefix, found.above)
    return layout.stream_lengths(client, prefix, found.unconfigured)


class Sweeper:
    """A daemon thread that sweeps every ``sweep_interval_s`` while it holds the fleet-wide sweep lock."""

    def __init__(
        self, settings: Settings, client: redis.Redis, kick: Kick, identity: str, queued: Queued | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = PartitionStore(client, settings.key_prefix)
        self.limiter = WorkspaceLimiter(client, settings.key_prefix)
        self.kick = kick
        self.identity = identity
        self.queued = queued or QueuedPartitions(settings, client)
        self._stop = threading.Event()
        self._alarmed: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="cio-fleet-sweeper", daemon=True)
        #: Called after every round, failed or not (the health check's beat: the loop is alive).
        self.on_round: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Start sweeping in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current sweep and forget this worker's heartbeat."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.client.hdel(workers_key(self.settings.key_prefix), self.identity)
        except redis.RedisError:
            log.warning("could not remove the worker heartbeat")

    def tick(self) -> int:
        """One round: heartbeat, then a sweep if no other worker swept in this interval."""
        prefix = self.settings.key_prefix
        self.client.register_script(_HEARTBEAT)(keys=[workers_key(prefix)], args=[self.identity])
        layout.publish_workspaces(self.client, prefix, self.settings.workspaces)
        relayed = relay_ready(self.settings, self.store, self.kick) if is_cluster(self.client) else 0
        interval_ms = max(int(self.settings.sweep_interval_s * 900), 1)
        if not self.client.set(sweeper_key(prefix), self.identity, nx=True, px=interval_ms):
            return relayed
        self.client.register_script(_FORGET)(keys=[workers_key(prefix)], args=[int(WORKER_FORGET_S)])
        if self.client.set(scan_key(prefix), self.identity, nx=True, px=interval_ms * layout.SCAN_EVERY_SWEEPS):
            self._alarm_stranded(scan_strays(self.settings, self.client))
        self._alarm_dead_letters()
        kicked = sweep_once(self.settings, self.store, self.limiter, self.kick)
        return relayed + kicked + kick_lost(self.settings, self.store, self.kick, self.queued)

    def _alarm_stranded(self, stranded: Mapping[str, int]) -> None:
        """Log an error, at most once a minute per workspace, while an unconfigured workspace holds events."""
        for name, events in stranded.items():
            if events and self._due(f"stranded:{name}"):
                log.error(
                    "events wait in the streams of a workspace that is not configured; no worker delivers them: "
                    "configure the workspace or remove its streams",
                    extra={"workspace": name, "stranded_events": events},
                )

    def _due(self, alarm: str) -> bool:
        """Whether the alarm may be logged again (``ALARM_EVERY_S`` since its last time)."""
        now = time.monotonic()
        if now - self._alarmed.get(alarm, -ALARM_EVERY_S) < ALARM_EVERY_S:
            return False
        self._alarmed[alarm] = now
        return True

    def _alarm_dead_letters(self) -> None:
        """Log an error, at most once a minute per workspace, while its dead-letter queue is past the alarm."""
        for name, size in dead_letter_alarms(self.settings, self.store):
            if self._due(name):
                log.error(
                    "dead-letter queue near its limit: drain it with `cio-fleet dlq`",
                    extra={"workspace": name, "dead_letters": size, "limit": self.settings.dlq_max_entries},
                )

    def _loop(self) -> None:
        while True:
            try:
                kicked = self.tick()
            except Exception:
                log.exception("sweep failed; trying again next interval")
                kicked = 0
            self.on_round()
            if kicked:
                log.info("sweeper kicked idle partitions", extra={"kicked": kicked})
            if self._stop.wait(self.settings.sweep_interval_s):
                return
