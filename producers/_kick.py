"""The enqueue round trip, the kick it makes, and the checks it runs first.

Events are prepared in chunks (``producers._chunk``). ``ENQUEUE_SCRIPT`` checks that a worker serves the workspace
(its ``served`` key) and that the producer's partition count is the one the workers published, appends the events
to their partition streams, applies backpressure and kicks each partition that was idle, all in one round trip.

The kick is in the script too: it sets the partition's lease to ``kicked`` with ``SET NX`` (so exactly one producer
kicks each idle partition) and pushes the Celery task message ``worker.drain(workspace, partition)`` onto the
``{prefix}.drain`` list, as kombu's Redis transport would (the workers' broker is the Redis of the streams). So
producers never import Celery, and a kick can no longer be lost between the ``SET`` and its task: both happen or
neither. The ``kicked`` lease lives as long as the queued task may wait (``KICK_TTL_MS``), so that nobody queues a
second task for the partition meanwhile.

On a Redis Cluster the drain queue is not in the workspace's slot (nor on the cluster: the broker is elsewhere), so
the script sets the ``kicked`` lease and adds the partition to the workspace's ``ready`` set instead (kick mode 2),
and wakes the workers' relay with an entry on the workspace's ``kicks`` list (both keys in the workspace's slot):
the relay (``worker.pipeline.relay.ReadyRelay``) publishes those tasks within milliseconds, and the workers'
sweeper publishes any it left (``worker.pipeline.sweeper.relay_ready``) every sweep.

The script call's fixed part (the sha, the key names, the fixed arguments) is packed into Redis protocol bytes
once per layout (``Layout.head``): packing 2 * P key names on every call was the client's largest cost. A call of
one event (``track``) declares only its own partition's stream and lease (``Layout.narrow_head``): parsing 2 * P
keys it does not touch cost Redis more than the append.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from producers._chunk import Chunk
from producers._events import EVENT_TYPES, new_message_id
from producers.keys import (
    backlog_key,
    config_key,
    drain_queue,
    enqueued_key,
    kicks_key,
    lease_key,
    ready_key,
    served_key,
    stream_key,
)
from producers.wire import DEFAULT_PARTITIONS, DRAIN_TASK, FORMAT_VERSION, KICK_TTL_MS, KICKED

#: The most partitions a workspace may have (as ``WorkspaceConfig.partitions`` allows).
MAX_PARTITIONS: Final = 1024
#: Kick modes of the enqueue script: none, queue the drain task on the drain queue, mark the partition ready.
KICK_NONE: Final = 0
KICK_QUEUE: Final = 1
KICK_READY: Final = 2
#: Events' bytes below which a call is sent in one write (joined); above, copying them costs more than a write.
JOINED_BYTES: Final = 65_536


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


# Placeholders of the drain task message template, filled in by the script (JSON text never holds a raw control
# character, so they cannot clash with the template's own text).
_BODY: Final = "\x01"
_PARTITION: Final = "\x02"
_TASK_ID: Final = "\x03"
_EMBED: Final = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def drain_body_template(workspace: str) -> bytes:
    """The body of ``worker.drain(workspace, <partition>)`` (Celery protocol 2: args, kwargs, embed)."""
    return b"[[" + orjson.dumps(workspace) + b"," + _PARTITION.encode() + b"],{}," + orjson.dumps(_EMBED) + b"]"


def drain_message_template(prefix: str, workspace: str) -> bytes:
    """The kombu Redis message of a drain task, as Celery's ``send_task`` writes it, with placeholders.

    The script replaces ``\\x01`` with the base64 body, ``\\x02`` with the partition and ``\\x03`` with the task id.
    The workers' broker (kombu's Redis transport) reads it from the ``{prefix}.drain`` list; so does
    ``worker.broker.queued_partitions``.
    """
    queue = drain_queue(prefix)
    headers: dict[str, Any] = {
        "lang": "py",
        "task": DRAIN_TASK,
        "id": _TASK_ID,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": _TASK_ID,
        "parent_id": None,
        "argsrepr": _PARTITION,
        "kwargsrepr": "{}",
        "origin": "cio-fleet producer",
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": _TASK_ID,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": _TASK_ID,
    }
    message = {
        "body": _BODY,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    argsrepr = orjson.dumps(f"[{workspace!r}, ")[:-1] + _PARTITION.encode() + b']"'
    encoded = orjson.dumps(message).replace(b'"\\u0002"', argsrepr, 1)
    for placeholder in (_BODY, _TASK_ID):
        encoded = encoded.replace(orjson.dumps(placeholder), b'"' + placeholder.encode() + b'"')
    return encoded


#: Appends events and kicks idle partitions in one round trip.
#: KEYS (all in the workspace's slot, ``producers.keys``): the P partition streams, then the P partition leases
#: (a narrow call, whose events are all of one partition: that partition's stream and lease only), then the
#: workspace's enqueued-by-type hash, its config hash, its ``served`` key, the kick target (the drain
#: queue when the workers' broker is this Redis, kick mode 1, else the workspace's ``ready`` set, kick mode 2),
#: its backlog bound hash (``backlog_key``) and, in kick mode 2 only, its ``kicks`` list (the relay's wake-up).
#: ARGV: P, backlog cap (-1: none), lease TTL ms, lease value, format version, kick mode (0: none, 1: queue the
#: drain task, 2: mark the partition ready), the highest valid partition count, the workspace, the drain message
#: template and its body template (``drain_message_template``), then per call: a task id (``TaskIds``: the
#: first 32 characters of a uuid, to which the script adds the partition's 4 hex digits), the events' partitions
#: (two bytes each, big-endian, 0-based), their type codes (a byte each: the 1-based place of the type in
#: ``EVENT_TYPES``), whether to check that a worker serves the workspace (1/0) and each event's JSON, in that order.
#: The client packs them into protocol bytes itself, so many arguments cost it little; byte strings cost the script
#: one ``string.byte`` per event where text to match cost it a pattern match and a number conversion.
#: First the workspace check: when no worker serves the workspace now (no ``served`` key), nothing is written and
#: the script returns {0, 0, {}, 0, {}}; the producer then reads the fleet's workspaces hash (a key of another
#: slot) and either refuses the workspace or, when no worker ever published any, calls again without the check.
#: Then the layout check: when the workers published a partition count other than P, nothing is written and the
#: script returns {0, 0, {}, published}: the caller's layout is stale, it must partition again and retry. So no
#: producer writes to a partition the workers stopped draining once they published their count. While no count is
#: published, the script raises the config's ``span`` to P, which tells the workers that streams 0..P-1 may hold
#: events (they drain every stream below the span).
#: Events are appended in order until the workspace's backlog (the sum of XLEN over the P streams) reaches the
#: cap; the rest are left out. The sum is read only when it matters: the backlog bound hash holds ``events``, an
#: upper bound of the waiting events in streams ``0..streams-1``. While ``streams`` >= P and ``events`` plus the
#: call's events stays within the cap, the cap cannot be reached and the script appends without reading a stream;
#: otherwise (the hash or a field is missing, it covers fewer streams, or the cap may be reached) it sums XLEN,
#: applies the cap exactly and sets the bound to the exact sum. Every call, with or without a cap, adds what it
#: appended to ``events`` (an ``HINCRBY`` on a missing hash makes one without ``streams``, which means "unknown").
#: Deliveries only lower the backlog, so the bound stays above it; the workers' sweeper sets it to the exact sum
#: on each round (``worker.store.layout.reset_backlog_bound``), and a dead letter replayed adds one. A raw
#: ``XADD`` does not add to it: its events count from the next sweeper round (README, "Any language").
#: Each partition that received an event and has no lease gets ``kicked`` with ``SET NX PX``, and its drain task
#: message is pushed on the drain queue (kick mode 1) or the partition is added to the ``ready`` set (kick mode 2,
#: for the workers to queue its task), and then, when the ``kicks`` list is empty, one entry is pushed onto it: it
#: wakes a worker's relay, blocked in ``BRPOP`` on that list, which takes the ``ready`` set.
#: A narrow call cannot sum the backlog: where the full call would, it writes nothing and returns {0, 0, {}, -1},
#: and the producer sends the call again with every key.
#: Returns {appended, backlog after, {kicked partitions}}: without a cap the backlog after is the call's count;
#: with one, it is exact when the cap stopped the call and may be an upper bound otherwise. With a cap, one call
#: in many reads P stream lengths (near the cap, every call does).
ENQUEUE_SCRIPT: Final = """
local p = tonumber(ARGV[1])
local k = (#KEYS - (ARGV[6] == '2' and 6 or 5)) / 2
if ARGV[14] == '1' and redis.call('EXISTS', KEYS[2 * k + 3]) == 0 then
  return {0, 0, {}, 0, {}}
end
local config = KEYS[2 * k + 2]
local layout = redis.call('HMGET', config, 'partitions', 'span')
local raw = layout[1]
local published = raw and string.match(raw, '^%s*%d+%s*$') and tonumber(raw)
if published and (published < 1 or published > tonumber(ARGV[7])) then
  published = nil
end
if published and published ~= p then
  return {0, 0, {}, published}
end
if not published and (tonumber(layout[2]) or 0) < p then
  redis.call('HSET', config, 'span', p)
end
local count = #ARGV[13]
local cap = tonumber(ARGV[2])
local bound = KEYS[2 * k + 5]
local backlog = 0
local exact = false
if cap >= 0 then
  local held = redis.call('HMGET', bound, 'events', 'streams')
  backlog = tonumber(held[1])
  local streams = tonumber(held[2])
  if not (backlog and streams and streams >= p and backlog + count <= cap) then
    if k < p then
      return {0, 0, {}, -1}
    end
    backlog = 0
    for i = 1, p do
      backlog = backlog + redis.call('XLEN', KEYS[i])
    end
    if backlog + count > cap then
      count = math.max(cap - backlog, 0)
    end
    exact = true
  end
end
local call, byte = redis.call, string.byte
local partitions, codes, version = ARGV[12], ARGV[13], ARGV[5]
local touched = {}
local types = {}
for i = 1, count do
  local high, low = byte(partitions, 2 * i - 1, 2 * i)
  local n = high * 256 + low + 1
  local at = k < p and 1 or n
  call('XADD', KEYS[at], '*', 'v', version, 'event', ARGV[14 + i])
  touched[at] = n
  local code = byte(codes, i)
  types[code] = (types[code] or 0) + 1
end
if exact then
  redis.call('HSET', bound, 'events', backlog + count, 'streams', p)
elseif count > 0 then
  redis.call('HINCRBY', bound, 'events', count)
end
backlog = backlog + count
local names = {NAMES}
for code, n in pairs(types) do
  redis.call('HINCRBY', KEYS[2 * k + 1], names[code], n)
end
local kicked = {}
if ARGV[6] == '2' then
  for at, n in pairs(touched) do
    if redis.call('SET', KEYS[k + at], ARGV[4], 'NX', 'PX', ARGV[3]) then
      redis.call('SADD', KEYS[2 * k + 4], n - 1)
      kicked[#kicked + 1] = n - 1
    end
  end
  if #kicked > 0 and redis.call('LLEN', KEYS[2 * k + 6]) == 0 then
    redis.call('LPUSH', KEYS[2 * k + 6], '1')
  end
elseif ARGV[6] == '1' then
  local digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  local function base64(text)
    local out = {}
    for i = 1, #text, 3 do
      local a, b, c = string.byte(text, i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      local s = {}
      for k = 1, 4 do
        local d = math.floor(v / 64 ^ (4 - k)) % 64
        s[k] = string.sub(digits, d + 1, d + 1)
      end
      if not c then s[4] = '=' end
      if not b then s[3] = '=' end
      out[#out + 1] = table.concat(s)
    end
    return table.concat(out)
  end
  for at, n in pairs(touched) do
    if redis.call('SET', KEYS[k + at], ARGV[4], 'NX', 'PX', ARGV[3]) then
      local partition = tostring(n - 1)
      local fill = {
        ['\\1'] = base64((string.gsub(ARGV[10], '\\2', partition))),
        ['\\2'] = partition,
        ['\\3'] = string.sub(ARGV[11], 1, 32) .. string.format('%04x', n - 1),
      }
      redis.call('LPUSH', KEYS[2 * k + 4], (string.gsub(ARGV[9], '[\\1\\2\\3]', fill)))
      kicked[#kicked + 1] = n - 1
    end
  end
end
return {count, backlog, kicked}
""".replace("{NAMES}", "{" + ", ".join(f"'{kind}'" for kind in EVENT_TYPES) + "}")
#: The script's SHA1, for EVALSHA.
ENQUEUE_SHA: Final = hashlib.sha1(ENQUEUE_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class TaskIds:
    """Drain task ids for the kicks: a random version 4 UUID prefix (72 random bits) and a counter, renewed in a
    forked child (which would otherwise repeat its parent's ids). The script makes the last 4 hex digits the
    partition's, so each id is a version 4 UUID string. A ``getrandom`` per call cost more than the rest of it.
    """

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        """A new random prefix and counter."""
        self._prefix = new_message_id()[:24].encode()  # 'xxxxxxxx-xxxx-4xxx-yxxx-'
        self._counter = itertools.count()

    def next(self) -> bytes:
        """32 characters: the prefix and 8 hex digits of the counter (the script adds 4)."""
        return b"%b%08x" % (self._prefix, next(self._counter) & 0xFFFFFFFF)


#: The task ids of this process.
TASK_IDS: Final = TaskIds()


def resp(*args: bytes) -> bytes:
    """Arguments of a Redis command as protocol bytes (bulk strings), without the array header."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


def _raw(value: int | str | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass(frozen=True)
class Layout:
    """The keys and fixed script arguments of one workspace, once its partition count is known.

    ``head`` is the ``EVALSHA`` call's arguments up to the per-call ones, already in Redis protocol bytes, and
    ``fixed`` their number; ``tail`` is the part of ``head`` after the keys. A call of one event declares only its
    partition's stream and lease (``narrow_head``): Redis then parses 7 keys instead of 2 * P + 5.
    """

    partitions: int
    keys: tuple[str, ...]
    head: bytes
    fixed: int
    tail: bytes = b""
    _narrow: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls, prefix: str, workspace: str, partitions: int, *, cap: int | None, kick: bool, relay: bool = False
    ) -> Layout:
        """The layout of ``partitions`` partitions.

        With ``relay`` (the workers' broker is not this Redis: a Redis Cluster), a kick marks the partition in the
        workspace's ``ready`` set instead of queueing its drain task, and wakes the workers' relay through the
        workspace's ``kicks`` list; the workers queue the task.
        """
        streams = tuple(stream_key(prefix, workspace, n) for n in range(partitions))
        leases = tuple(lease_key(prefix, workspace, n) for n in range(partitions))
        target = ready_key(prefix, workspace) if relay else drain_queue(prefix)
        keys = (*streams, *leases, enqueued_key(prefix, workspace), config_key(prefix, workspace))
        keys += (served_key(prefix, workspace), target, backlog_key(prefix, workspace))
        mode = KICK_NONE if not kick else KICK_READY if relay else KICK_QUEUE
        if mode == KICK_READY:
            keys += (kicks_key(prefix, workspace),)
        header = (partitions, -1 if cap is None else cap, KICK_TTL_MS, KICKED, FORMAT_VERSION, mode)
        fixed: tuple[int | str, ...] = (*header, MAX_PARTITIONS, workspace)
        templates = (drain_message_template(prefix, workspace), drain_body_template(workspace))
        if relay:
            templates = (b"", b"")
        tail = resp(*map(_raw, fixed), *templates)
        head = _call_head(keys) + tail
        return cls(partitions, keys, head, 3 + len(keys) + len(fixed) + len(templates), tail)

    @property
    def streams(self) -> tuple[str, ...]:
        """The partition streams, in partition order."""
        return self.keys[: self.partitions]

    def narrow_head(self, partition: int) -> bytes:
        """``head`` for a call whose events are all of ``partition``: its stream, its lease and the workspace's keys.

        The script writes what a call with every key would (it reads which partition from the events' partition
        argument, as always), but it cannot sum the workspace's backlog: when the cap may be reached, it writes
        nothing and asks for the whole layout (``Reply.wide``).
        """
        head = self._narrow.get(partition)
        if head is None:
            count = self.partitions
            keys = (self.keys[partition], self.keys[count + partition], *self.keys[2 * count :])
            head = self._narrow[partition] = _call_head(keys) + self.tail
        return head

    def packed(self, chunk: Chunk, *, check: bool = True, narrow: bool = True) -> list[bytes | bytearray]:
        """The whole ``EVALSHA`` command for the good events of ``chunk``, partitioned by this layout.

        A large chunk's ``body`` is the second part, sent as it is rather than copied into one buffer; a small one
        is joined to the first part, so that the command is one write (two writes cost a single event about 20 µs:
        Redis wakes up for each). ``check``: refuse the call when no worker serves the workspace (off for a while
        once the fleet is known to serve it or to have published no workspace at all). ``narrow``: a chunk of one
        event declares only its partition's keys (``narrow_head``).
        """
        flag = b"1" if check else b"0"
        per_call = resp(TASK_IDS.next(), chunk.partitions(self.partitions), bytes(chunk.types), flag)
        count = self.partitions
        if narrow and count > 1 and len(chunk.persons) == 1:
            head = b"*%d\r\n" % (self.fixed - 2 * count + 6 + chunk.count) + self.narrow_head(chunk.persons[0] % count)
        else:
            head = b"*%d\r\n" % (self.fixed + 4 + chunk.count) + self.head
        head += per_call
        if len(chunk.body) < JOINED_BYTES:
            return [head + chunk.body]
        return [head, chunk.body]


def _call_head(keys: Sequence[str]) -> bytes:
    """``EVALSHA``, the script's sha and ``keys``, in protocol bytes."""
    return resp(b"EVALSHA", _raw(ENQUEUE_SHA), _raw(len(keys)), *(key.encode() for key in keys))


@dataclass(frozen=True)
class Reply:
    """What the enqueue script did.

    ``published`` is set (and nothing was written) when the layout was stale; ``known`` is set (and nothing was
    written) when the fleet does not know the workspace: it holds the workspaces the fleet knows; ``wide`` is set
    (and nothing was written) when a narrow call (``Layout.narrow_head``) must be sent with every key.
    """

    added: int
    backlog: int
    kicked: list[int]
    published: int | None = None
    known: list[str] | None = None
    wide: bool = False

    @classmethod
    def parse(cls, raw: Sequence[Any]) -> Reply:
        """Read the script's ``{added, backlog, kicked}``, ``{0, 0, {}, published}`` (-1: ``wide``) or
        ``{0, 0, {}, 0, known}``."""
        if len(raw) > 4:
            names = sorted(name.decode() if isinstance(name, bytes) else str(name) for name in raw[4])
            return cls(0, 0, [], None, names)
        published = int(raw[3]) if len(raw) > 3 else None
        if published == -1:
            return cls(0, 0, [], wide=True)
        return cls(int(raw[0]), int(raw[1]), [int(n) for n in raw[2]], published)


def parse_partitions(raw: bytes | str | None, fallback: int = DEFAULT_PARTITIONS) -> int:
    """The partition count published in the workspace's config hash, else ``fallback``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text is not None and text.strip().isdigit() and 1 <= int(text) <= MAX_PARTITIONS:
        return int(text)
    return fallback
