"""The relay: moves kicks from the events Redis to a broker of their own (``CIO_BROKER_URL``).

Producers kick a partition inside their enqueue script: they set its lease ``kicked`` and push a ready-made drain
task message on the ``{prefix}.drain`` list of the events Redis, atomically, without Celery. When the broker is that
Redis, the list is Celery's queue. When it is not (a standalone Redis, RabbitMQ), the list holds the kicks waiting
to be published, and every worker process runs this relay: a thread that waits on the list (``BRPOP``, so a kick is
published within milliseconds) and publishes each kick's drain task to the broker.

No kick is lost: a publish that fails puts the message back at the end the relay takes from, and the relay tries
again after a pause (growing to ``MAX_PAUSE_S``) while its lease stays ``kicked``, so nobody queues a second task.
A relay killed between taking a kick and publishing it leaves a ``kicked`` lease whose task is in neither the list
nor the broker: the sweeper kicks it again after ``KICK_GRACE_MS`` (``worker.broker``, ``worker.store.kicks``).

On a Redis Cluster there is no such list: a script runs in one slot, and the fleet's list would be in another. A
producer marks the kicked partition in its workspace's ``ready`` set and, when the workspace's ``kicks`` list is
empty, pushes one entry onto it (both in the workspace's slot). Every worker process runs a ``ReadyRelay``: one
thread per hash slot of its configured workspaces (in practice one per workspace), each blocked in ``BRPOP`` on the
``kicks`` lists of its slot, on the master that owns it. The worker that takes the entry takes the ``ready`` set
(``SPOP``: each partition goes to one worker) and publishes the drain tasks, within milliseconds of the enqueue.
The sweeper still publishes what is left in the ``ready`` sets every sweep (``relay_ready``): an entry a relay
took and died with, or a kick made while no relay ran. A relay killed after the ``SPOP`` and before publishing
leaves ``kicked`` leases whose task is nowhere, which the sweeper kicks again after ``KICK_GRACE_MS``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import redis
from redis.crc import key_slot

from producers.keys import kicks_key, ready_key
from worker.broker import drain_target
from worker.store.partitions import PartitionStore
from worker.store.replies import string

log = logging.getLogger("cio_fleet.relay")

Publish = Callable[[str, int], None]

#: How long one ``BRPOP`` waits before the loop looks at its stop flag again.
BLOCK_S: Final = 1
#: The pause after a failure doubles from ``MIN_PAUSE_S`` up to this.
MIN_PAUSE_S: Final = 0.2
MAX_PAUSE_S: Final = 5.0


class Relay:
    """A daemon thread that publishes the kicks waiting in ``inbox`` (a list of the events Redis) to the broker."""

    def __init__(self, client: redis.Redis, inbox: str, publish: Publish) -> None:
        self.client = client
        self.inbox = inbox
        self.publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cio-fleet-relay", daemon=True)
        #: Called after every round, failed or not (the health check's beat: the loop is alive).
        self.on_round: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Start relaying in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the kick in hand (within ``BLOCK_S`` when idle)."""
        self._stop.set()
        self._thread.join(timeout=BLOCK_S + MAX_PAUSE_S + 1)

    def relay_once(self) -> int:
        """Wait up to ``BLOCK_S`` for one kick and publish it; returns how many were published (0 or 1).

        Raises:
            Exception: the publish failed (the kick is back in the list) or Redis did not answer.
        """
        popped = self.client.brpop([self.inbox], timeout=BLOCK_S)
        if popped is None:
            return 0
        raw = string(popped[1])
        target = drain_target(raw)
        if target is None:
            log.warning("not a drain task in the kick list; dropped", extra={"queue": self.inbox})
            return 0
        try:
            self.publish(*target)
        except Exception:
            # Back where the relay takes from: it is the next one tried, and its lease stays 'kicked' meanwhile.
            self.client.rpush(self.inbox, raw)
            raise
        return 1

    def _loop(self) -> None:
        relay_until_stopped(self.relay_once, self._stop, lambda: self.on_round(), "relaying a kick to the broker")


def relay_until_stopped(
    relay_once: Callable[[], object], stop: threading.Event, on_round: Callable[[], None], what: str
) -> None:
    """Call ``relay_once`` until ``stop`` is set, backing off (``MIN_PAUSE_S`` doubling to ``MAX_PAUSE_S``) while it
    fails, and ``on_round`` after every round, failed or not."""
    pause = MIN_PAUSE_S
    while not stop.is_set():
        try:
            relay_once()
            pause = MIN_PAUSE_S
        except Exception:
            log.exception(f"{what} failed; trying again", extra={"retry_in_s": pause})
            stop.wait(pause)
            pause = min(pause * 2, MAX_PAUSE_S)
        on_round()


def slot_groups(prefix: str, workspaces: Iterable[str]) -> list[list[str]]:
    """The workspaces grouped by the hash slot of their keys: one ``BRPOP`` may wait on one slot's lists only."""
    groups: dict[int, list[str]] = {}
    for name in sorted(workspaces):
        groups.setdefault(key_slot(kicks_key(prefix, name).encode()), []).append(name)
    return list(groups.values())


class ReadyRelay:
    """On a Redis Cluster: daemon threads, one per slot group of the workspaces, that publish the partitions
    producers marked ready as soon as a producer wakes them (``kicks`` lists)."""

    def __init__(self, client: redis.Redis, prefix: str, workspaces: Iterable[str], publish: Publish) -> None:
        self.client = client
        self.prefix = prefix
        self.publish = publish
        self.store = PartitionStore(client, prefix)
        self.groups = slot_groups(prefix, workspaces)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(group,), name=f"cio-fleet-relay-{n}", daemon=True)
            for n, group in enumerate(self.groups)
        ]
        #: Called after every round of any thread, failed or not (the health check's beat).
        self.on_round: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Start relaying in the background."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop after the kicks in hand (within ``BLOCK_S`` when idle)."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=BLOCK_S + MAX_PAUSE_S + 1)

    def relay_once(self, group: Sequence[str]) -> int:
        """Wait up to ``BLOCK_S`` for a wake-up of one of the group's workspaces, then publish its ready partitions;
        returns how many were published.

        Raises:
            Exception: a publish failed (the partitions not yet published are back in the ready set) or Redis did
                not answer.
        """
        keys = {kicks_key(self.prefix, name): name for name in group}
        popped = self.client.brpop(list(keys), timeout=BLOCK_S)
        if popped is None:
            return 0
        workspace = keys[string(popped[0]).decode()]
        ready = self.store.take_ready(workspace)
        for done, partition in enumerate(ready):
            try:
                self.publish(workspace, partition)
            except Exception:
                # The rest go back to the ready set for the next wake-up or sweep; the failed one's kick is
                # dropped by the publish (``worker.tasks.kick``) or found lost later.
                if ready[done + 1 :]:
                    self.client.sadd(ready_key(self.prefix, workspace), *ready[done + 1 :])
                raise
        return len(ready)

    def _loop(self, group: Sequence[str]) -> None:
        relay_until_stopped(
            functools.partial(self.relay_once, group), self._stop, lambda: self.on_round(), "relaying ready partitions"
        )
