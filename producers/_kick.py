"""The enqueue round trip and the kick that follows it.

Events are prepared (checked, stamped, serialised, their person key hashed) in chunks. ``ENQUEUE_SCRIPT`` checks
that the producer's partition count is the one the workers published, appends the events to their partition
streams, applies backpressure and claims the kick of each partition that was idle, all in one round trip.
``Kicker`` then queues a drain task for each claimed partition.

The script sets the partition's lease to ``kicked`` with ``SET NX``, so exactly one producer kicks each idle
partition. ``Kicker`` only publishes the Celery message, by task name, so that producers never import the
worker. Celery is imported on the first kick, never at import time.

The ``kicked`` lease lives as long as the queued task may wait (``KICK_TTL_MS``), so that nobody queues a second
task for the partition meanwhile. A failed publish is logged and swallowed: the event is safely in its stream;
the ``kicked`` lease is dropped, so that the workers' sweeper queues the drain task at its next sweep (if Redis
cannot be reached for that either, the sweeper finds the lost kick after ``KICK_GRACE_MS``). Raising would make
callers enqueue again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import redis
from pydantic import BaseModel

from producers._events import InvalidEventError, encode_event, event_dict, find_problem, now_iso
from producers.keys import config_key, drain_queue, enqueued_key, lease_key, stream_key
from producers.wire import (
    DEFAULT_PARTITIONS,
    DRAIN_TASK,
    FORMAT_VERSION,
    KICK_TTL_MS,
    KICKED,
    partition_of,
    person_hash,
)

logger = logging.getLogger("producers")

#: The most partitions a workspace may have (as ``WorkspaceConfig.partitions`` allows).
MAX_PARTITIONS: Final = 1024
#: Events per script call of ``enqueue_many``.
CHUNK_EVENTS: Final = 1_000
#: Serialised bytes per script call of ``enqueue_many`` (a call blocks Redis while it runs).
CHUNK_BYTES: Final = 1_000_000

#: What ``enqueue`` accepts: a plain event or one of the event models.
EventLike = Mapping[str, Any] | BaseModel


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


class Kicker:
    """Publishes ``worker.drain(workspace, partition)`` on the ``{prefix}.drain`` queue.

    Args:
        broker_url: The Redis URL of the Celery broker (the producer's Redis).
        prefix: The key prefix; the queue is ``{prefix}.drain``.
        workspace: The workspace whose partitions are kicked.
    """

    def __init__(self, broker_url: str, prefix: str, workspace: str) -> None:
        self._broker_url = broker_url
        self._prefix = prefix
        self._queue = drain_queue(prefix)
        self._workspace = workspace
        self._app: Any = None
        self._redis: redis.Redis[bytes] | None = None
        self._lock = threading.Lock()

    def _celery(self) -> Any:
        with self._lock:
            if self._app is None:
                import celery  # lazy: only producers that kick pay for importing Celery

                self._app = celery.Celery(broker=self._broker_url, set_as_current=False)
            return self._app

    def kick(self, partitions: Iterable[int]) -> None:
        """Queue one drain task per partition; failures are logged, never raised."""
        for partition in partitions:
            try:
                self._celery().send_task(
                    DRAIN_TASK, args=[self._workspace, partition], queue=self._queue, serializer="json"
                )
            except Exception as exc:  # the event is stored; the sweeper kicks the partition later
                logger.warning(
                    "could not queue a drain task for workspace %s partition %d (%s); the sweeper will pick it up",
                    self._workspace,
                    partition,
                    self._scrub(str(exc)),
                )
                self._forget(partition)

    def _forget(self, partition: int) -> None:
        """Drop the ``kicked`` lease of a partition whose drain task was not queued (best effort)."""
        try:
            with self._lock:
                if self._redis is None:
                    self._redis = redis.Redis.from_url(self._broker_url, socket_connect_timeout=5.0, socket_timeout=5.0)
                client = self._redis
            lease = lease_key(self._prefix, self._workspace, partition)
            client.execute_command("EVAL", FORGET_SCRIPT, 1, lease, KICKED)
        except Exception:  # best effort: the sweeper finds the lost kick after KICK_GRACE_MS anyway
            logger.warning("could not drop the kick of workspace %s partition %d", self._workspace, partition)

    def _scrub(self, text: str) -> str:
        password = urlsplit(self._broker_url).password
        return text.replace(password, "***") if password else text

    def close(self) -> None:
        """Release the Celery app's broker connections and the Redis client, if they were made."""
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None
            if self._redis is not None:
                self._redis.close()
                self._redis = None


#: Drops a ``kicked`` lease (KEYS[1]) if it still is one (ARGV[1]).
FORGET_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


#: Appends events and claims the kick in one round trip.
#: KEYS: the P partition streams, then the P partition leases, then the workspace's enqueued-by-type hash, then its
#: config hash.
#: ARGV: P, backlog cap (-1: none), lease TTL ms, lease value, format version, kick (1/0), the index
#: ("partition:length:type,..." in input order), the events' JSON concatenated in that order, and the highest valid
#: partition count. Two arguments for the whole chunk instead of two per event: argument packing is the client's
#: largest cost.
#: First the layout check: when the workers published a partition count other than P, nothing is written and the
#: script returns {0, 0, {}, published}: the caller's layout is stale, it must partition again and retry. So no
#: producer writes to a partition the workers stopped draining once they published their count. While no count is
#: published, the script raises the config's ``span`` to P, which tells the workers that streams 0..P-1 may hold
#: events (they drain every stream below the span).
#: Events are appended in order until the workspace's backlog (the sum of XLEN) reaches the cap; the rest are
#: left out. Each partition that received an event and has no lease gets ``kicked`` with ``SET NX PX``.
#: Returns {appended, backlog after (0 without a cap), {kicked partitions}}. Its cost grows with P: one XLEN
#: per partition, and the 2 * P key names travel with every call.
ENQUEUE_SCRIPT: Final = """
local p = tonumber(ARGV[1])
local config = KEYS[2 * p + 2]
local raw = redis.call('HGET', config, 'partitions')
local published = raw and string.match(raw, '^%s*%d+%s*$') and tonumber(raw)
if published and (published < 1 or published > tonumber(ARGV[9])) then
  published = nil
end
if published and published ~= p then
  return {0, 0, {}, published}
end
if not published and (tonumber(redis.call('HGET', config, 'span')) or 0) < p then
  redis.call('HSET', config, 'span', p)
end
local cap = tonumber(ARGV[2])
local backlog = 0
if cap >= 0 then
  for i = 1, p do
    backlog = backlog + redis.call('XLEN', KEYS[i])
  end
end
local added = 0
local touched = {}
local types = {}
local blob = ARGV[8]
local pos = 1
for partition, length, kind in string.gmatch(ARGV[7], '(%d+):(%d+):(%a+)') do
  if cap >= 0 and backlog >= cap then
    break
  end
  local n = tonumber(partition) + 1
  local stop = pos + tonumber(length)
  redis.call('XADD', KEYS[n], '*', 'v', ARGV[5], 'event', string.sub(blob, pos, stop - 1))
  pos = stop
  backlog = backlog + 1
  added = added + 1
  touched[n] = true
  types[kind] = (types[kind] or 0) + 1
end
for kind, count in pairs(types) do
  redis.call('HINCRBY', KEYS[2 * p + 1], kind, count)
end
local kicked = {}
if ARGV[6] == '1' then
  for n in pairs(touched) do
    if redis.call('SET', KEYS[p + n], ARGV[4], 'NX', 'PX', ARGV[3]) then
      kicked[#kicked + 1] = n - 1
    end
  end
end
return {added, backlog, kicked}
"""
#: The script's SHA1, for EVALSHA.
ENQUEUE_SHA: Final = hashlib.sha1(ENQUEUE_SCRIPT.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Layout:
    """The keys and fixed script arguments of one workspace, once its partition count is known."""

    partitions: int
    keys: tuple[str, ...]
    header: tuple[int | str, ...]

    @classmethod
    def build(cls, prefix: str, workspace: str, partitions: int, *, cap: int | None, kick: bool) -> Layout:
        """The layout of ``partitions`` partitions."""
        streams = tuple(stream_key(prefix, workspace, n) for n in range(partitions))
        leases = tuple(lease_key(prefix, workspace, n) for n in range(partitions))
        header = (partitions, -1 if cap is None else cap, KICK_TTL_MS, KICKED, FORMAT_VERSION, int(kick))
        keys = (*streams, *leases, enqueued_key(prefix, workspace), config_key(prefix, workspace))
        return cls(partitions, keys, header)

    @property
    def streams(self) -> tuple[str, ...]:
        """The partition streams, in partition order."""
        return self.keys[: self.partitions]

    def evalsha_args(self, chunk: Chunk) -> list[Any]:
        """The arguments of ``EVALSHA`` for the prepared events of ``chunk``, partitioned by this layout."""
        index = ",".join(chunk.index_for(self.partitions))
        return [ENQUEUE_SHA, len(self.keys), *self.keys, *self.header, index, b"".join(chunk.blobs), MAX_PARTITIONS]


@dataclass(frozen=True)
class Reply:
    """What the enqueue script did; ``published`` is set (and nothing was written) when the layout was stale."""

    added: int
    backlog: int
    kicked: list[int]
    published: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Reply:
        """Read the script's ``{added, backlog, kicked}``, or ``{0, 0, {}, published}`` for a stale layout."""
        published = int(raw[3]) if len(raw) > 3 else None
        return cls(int(raw[0]), int(raw[1]), [int(n) for n in raw[2]], published)


def parse_partitions(raw: bytes | str | None, fallback: int = DEFAULT_PARTITIONS) -> int:
    """The partition count published in the workspace's config hash, else ``fallback``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text is not None and text.strip().isdigit() and 1 <= int(text) <= MAX_PARTITIONS:
        return int(text)
    return fallback


@dataclass(frozen=True, slots=True)
class Prepared:
    """One event, checked, stamped and serialised, with the hash of its person key (its partition in any layout)."""

    message_id: str
    person: int | None
    data: bytes
    kind: str

    def index(self, partitions: int) -> str:
        """The event's entry in the enqueue script's index: ``partition:length:type``."""
        return f"{partition_of(self.person, partitions)}:{len(self.data)}:{self.kind}"


def prepare(event: EventLike, now: str) -> Prepared:
    """Check, stamp and serialise one event and hash its person key.

    Raises:
        InvalidEventError: The event is refused.
    """
    if isinstance(event, BaseModel):
        event = event_dict(event)
    problem = find_problem(event)
    if problem is not None:
        raise problem
    message_id, data = encode_event(event, now=now)
    return Prepared(message_id, person_hash(event), data, str(event["type"]))


@dataclass
class Chunk:
    """Consecutive input events, prepared for one script call."""

    start: int
    message_ids: list[str | None] = field(default_factory=list)
    errors: dict[int, InvalidEventError] = field(default_factory=dict)
    prepared: list[Prepared] = field(default_factory=list)
    good: list[int] = field(default_factory=list)
    size: int = 0

    @classmethod
    def of(cls, prepared: Prepared) -> Chunk:
        """A chunk of one prepared event."""
        chunk = cls(0)
        chunk.append(prepared)
        return chunk

    def add(self, event: Any, now: str) -> None:
        """Prepare the next input event, or record why it is refused."""
        index = self.start + len(self.message_ids)
        try:
            prepared = prepare(event, now)
        except InvalidEventError as exc:
            self.errors[index] = exc.at(index)
            self.message_ids.append(None)
            return
        self.append(prepared)

    def append(self, prepared: Prepared) -> None:
        """Add an event that passed the checks."""
        self.good.append(len(self.message_ids))
        self.message_ids.append(prepared.message_id)
        self.prepared.append(prepared)
        self.size += len(prepared.data)

    @property
    def blobs(self) -> list[bytes]:
        """The good events' JSON, in input order."""
        return [prepared.data for prepared in self.prepared]

    def index_for(self, partitions: int) -> list[str]:
        """The good events' index entries (``partition:length:type``) among ``partitions`` partitions."""
        return [prepared.index(partitions) for prepared in self.prepared]

    @property
    def full(self) -> bool:
        """Whether the chunk reached ``CHUNK_EVENTS`` or ``CHUNK_BYTES``."""
        return len(self.message_ids) >= CHUNK_EVENTS or self.size >= CHUNK_BYTES


def chunks(events: Iterable[Any]) -> Iterator[Chunk]:
    """Prepare ``events`` lazily, one chunk at a time (one stamp time per chunk)."""
    chunk, now = Chunk(0), now_iso()
    for event in events:
        chunk.add(event, now)
        if chunk.full:
            yield chunk
            chunk, now = Chunk(chunk.start + len(chunk.message_ids)), now_iso()
    if chunk.message_ids:
        yield chunk
