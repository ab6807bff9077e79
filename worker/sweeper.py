"""The sweeper: finds partitions with waiting events and no drainer, and kicks them.

Every worker process runs one sweeper thread; a short Redis lock lets only one of them sweep per interval across
the fleet. A sweep also publishes each workspace's partition count for producers and the worker's heartbeat.
It is what makes raw ``XADD`` producers, crashed workers and expired retry timers work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

import redis

from producers._wire import KICK_GRACE_MS, KICK_TTL_MS, drain_queue
from worker.broker import queued_partitions
from worker.partitions import PartitionStore
from worker.ratelimit import WorkspaceLimiter, credentials_fingerprint
from worker.settings import Settings, WorkspaceConfig

log = logging.getLogger("cio_fleet.sweeper")

Kick = Callable[[str, int], None]

#: How often the dead-letter alarm is logged again while it lasts.
ALARM_EVERY_S: Final = 60.0


def workers_key(prefix: str) -> str:
    """The hash of live workers: ``host:pid`` → last heartbeat (unix seconds)."""
    return f"{prefix}:workers"


def resume_if_credentials_changed(limiter: WorkspaceLimiter, store: PartitionStore, workspace: WorkspaceConfig) -> bool:
    """Lift a 401/403 pause whose credentials are not the configured ones any more; True when lifted."""
    pause = limiter.auth_pause(workspace.name)
    if pause is None:
        return False
    current = credentials_fingerprint(workspace.site_id, workspace.api_key.get_secret_value())
    if pause.fingerprint == current:
        return False
    limiter.clear_auth_pause(workspace.name)
    store.end_retry_timers(workspace.name, workspace.partitions)
    log.info("credentials changed; resuming the paused workspace", extra={"workspace": workspace.name})
    return True


def dead_letter_alarms(settings: Settings, store: PartitionStore) -> list[tuple[str, int]]:
    """Workspaces whose dead-letter queue is past the alarm threshold, with their sizes."""
    threshold = settings.dlq_max_entries * settings.dlq_alarm_ratio
    sizes = [(name, store.dead_letter_count(name)) for name in settings.workspaces]
    return [(name, size) for name, size in sizes if size >= threshold]


def kick_lost(settings: Settings, store: PartitionStore, kick: Kick, queued: Callable[[], set[tuple[str, int]]]) -> int:
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


def sweep_once(settings: Settings, store: PartitionStore, limiter: WorkspaceLimiter, kick: Kick) -> int:
    """Kick every partition that has entries and no lease; returns how many were kicked."""
    kicked = 0
    for name, workspace in settings.workspaces.items():
        store.publish_partitions(name, workspace.partitions)
        resume_if_credentials_changed(limiter, store, workspace)
        for partition, length, leased in store.pending(name, workspace.partitions):
            if length and not leased and store.kick_if_idle(name, partition, KICK_TTL_MS):
                kick(name, partition)
                kicked += 1
    return kicked


class Sweeper:
    """A daemon thread that sweeps every ``sweep_interval_s`` while it holds the fleet-wide sweep lock."""

    def __init__(self, settings: Settings, client: redis.Redis[bytes], kick: Kick, identity: str) -> None:
        self.settings = settings
        self.client = client
        self.store = PartitionStore(client, settings.key_prefix)
        self.limiter = WorkspaceLimiter(client, settings.key_prefix)
        self.kick = kick
        self.identity = identity
        self._stop = threading.Event()
        self._alarmed: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="cio-fleet-sweeper", daemon=True)

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
        self.client.hset(workers_key(prefix), self.identity, int(time.time()))
        interval_ms = max(int(self.settings.sweep_interval_s * 900), 1)
        if not self.client.set(f"{prefix}:sweeper", self.identity, nx=True, px=interval_ms):
            return 0
        self._alarm_dead_letters()
        kicked = sweep_once(self.settings, self.store, self.limiter, self.kick)
        return kicked + kick_lost(self.settings, self.store, self.kick, self._queued)

    def _queued(self) -> set[tuple[str, int]]:
        """The partitions that have a drain task in the queue now."""
        return queued_partitions(self.client.lrange(drain_queue(self.settings.key_prefix), 0, -1))

    def _alarm_dead_letters(self) -> None:
        """Log an error, at most once a minute per workspace, while its dead-letter queue is past the alarm."""
        now = time.monotonic()
        for name, size in dead_letter_alarms(self.settings, self.store):
            if now - self._alarmed.get(name, -ALARM_EVERY_S) >= ALARM_EVERY_S:
                self._alarmed[name] = now
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
            if kicked:
                log.info("sweeper kicked idle partitions", extra={"kicked": kicked})
            if self._stop.wait(self.settings.sweep_interval_s):
                return
