"""The wire format: where events wait in Redis and how they are written there (the keys: ``producers.keys``).

Format version 1 (documented in the README, "Wire format"):

* One Redis Stream per (workspace, partition): ``{prefix}:s:{workspace}:{partition}``.
* ``partition = crc32(person_key as UTF-8) % partitions``, where the person key is ``userId``, else
  ``anonymousId``, else an email (``email``, ``traits.email``, ``context.traits.email``), else ``groupId``;
  an event without any of them goes to partition 0. Numbers are written in decimal.
* Each entry has the fields ``v`` (``"1"``) and ``event`` (the raw Segment JSON, UTF-8). Entries that come back
  from the dead-letter queue also carry ``attempts`` and ``first_failed_at`` (unix ms).
* ``{prefix}:lease:{workspace}:{partition}`` holds ``kicked`` while a drain task is queued for the partition,
  or the owner token of the worker draining it. A producer that finds no lease sets ``kicked`` (``SET NX PX``
  ``KICK_TTL_MS``) and queues a drain task; a raw ``XADD`` may skip that step, and the workers' sweeper then
  picks the partition up. Only the one who set ``kicked`` queues a task, so a partition has at most one queued.
* ``{prefix}:enqueued:{workspace}`` is a hash of event type → events enqueued, kept by the Python producer
  (optional for other producers: their events are counted as type ``other`` in metrics).
* ``{prefix}:config:{workspace}`` is a hash that workers keep up to date with the workspace's ``partitions``, and
  ``span``: streams ``0..span-1`` may hold events (more than ``partitions`` while streams of an older, larger
  count still hold events).
* ``{prefix}:workspaces`` is a hash of the workspaces the workers serve (workspace → when a worker last said so,
  unix ms). Producers refuse a workspace missing from it; while it does not exist (no worker has started yet),
  they accept any.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final

#: The version written in every entry's ``v`` field.
FORMAT_VERSION: Final = "1"
#: Entry field holding the raw event JSON.
EVENT_FIELD: Final = "event"
#: Entry field holding the format version.
VERSION_FIELD: Final = "v"
#: Lease value meaning "a drain task is queued, nobody owns the partition yet".
KICKED: Final = "kicked"
#: The Celery task that drains one partition, called by name so that producers never import the worker.
DRAIN_TASK: Final = "worker.drain"
#: How long a ``kicked`` lease lives at most (an hour, the broker's visibility timeout). It stands for the queued
#: drain task, which may wait long for a thread: it must not expire meanwhile, or the sweeper would queue a second
#: task. A kick whose task is lost (a failed publish, a worker killed as it took the task) is found by the sweeper
#: after ``KICK_GRACE_MS``: its task is not in the queue.
KICK_TTL_MS: Final = 3_600_000
#: How long a ``kicked`` lease stands unchecked: older, with events waiting, the workers' sweeper looks for its
#: drain task in the queue and kicks the partition again if it is not there.
KICK_GRACE_MS: Final = 5_000
#: Partitions per workspace when neither the caller nor the workers said otherwise.
DEFAULT_PARTITIONS: Final = 16
#: Key prefix when none is configured.
DEFAULT_PREFIX: Final = "cio"


#: The person key's first candidates, looked at before the nested ones (most events stop here).
_TOP_LEVEL_PERSON_FIELDS: Final = ("userId", "anonymousId", "email")


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _nested(event: Mapping[str, Any], *path: str) -> Any:
    node: Any = event
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def person_key(event: Mapping[str, Any]) -> str | None:
    """The key that keeps one person's events in one partition, in order."""
    for field in _TOP_LEVEL_PERSON_FIELDS:
        text = _as_text(event.get(field))
        if text is not None:
            return text
    for candidate in (
        _nested(event, "traits", "email"),
        _nested(event, "context", "traits", "email"),
        event.get("groupId"),
    ):
        text = _as_text(candidate)
        if text is not None:
            return text
    return None


def person_hash(event: Mapping[str, Any]) -> int | None:
    """The stable hash of an event's person key (crc32 of its UTF-8), or None when it has none."""
    key = person_key(event)
    return None if key is None else zlib.crc32(key.encode("utf-8"))


def partition_of(hashed: int | None, partitions: int) -> int:
    """The partition of a person hash among ``partitions`` (0 without a person key)."""
    if hashed is None or partitions <= 1:
        return 0
    return hashed % partitions


def partition_for(event: Mapping[str, Any], partitions: int) -> int:
    """The partition of an event: a stable hash of its person key."""
    return partition_of(person_hash(event), partitions)
