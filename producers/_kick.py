"""The enqueue round trip, the kick it makes, and the checks it runs first.

Events are prepared in chunks (``producers._chunk``). ``ENQUEUE_SCRIPT`` checks
that the fleet knows the workspace and that the producer's partition count is the one the workers published,
appends the events to their partition streams, applies backpressure and kicks each partition that was idle, all in
one round trip.

The kick is in the script too: it sets the partition's lease to ``kicked`` with ``SET NX`` (so exactly one producer
kicks each idle partition) and pushes the Celery task message ``worker.drain(workspace, partition)`` onto the
``{prefix}.drain`` list, as kombu's Redis transport would (the workers' broker is the Redis of the streams). So
producers never import Celery, and a kick can no longer be lost between the ``SET`` and its task: both happen or
neither. The ``kicked`` lease lives as long as the queued task may wait (``KICK_TTL_MS``), so that nobody queues a
second task for the partition meanwhile.

The script call's fixed part (the sha, the key names, the fixed arguments) is packed into Redis protocol bytes
once per layout (``Layout.head``): packing 2 * P key names on every call was the client's largest cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from producers._chunk import Chunk
from producers._events import EVENT_TYPES, new_message_id
from producers.keys import config_key, drain_queue, enqueued_key, lease_key, stream_key, workspaces_key
from producers.wire import DEFAULT_PARTITIONS, DRAIN_TASK, FORMAT_VERSION, KICK_TTL_MS, KICKED

#: The most partitions a workspace may have (as ``WorkspaceConfig.partitions`` allows).
MAX_PARTITIONS: Final = 1024
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
#: KEYS: the P partition streams, then the P partition leases, then the workspace's enqueued-by-type hash, its
#: config hash, the fleet's workspaces hash and the drain queue.
#: ARGV: P, backlog cap (-1: none), lease TTL ms, lease value, format version, kick (1/0), the highest valid
#: partition count, the workspace, the drain message template and its body template (``drain_message_template``),
#: then per call: a task id (a uuid; the last 4 hex digits become the partition's), the events' partitions (two
#: bytes each, big-endian, 0-based), their type codes (a byte each: the 1-based place of the type in
#: ``EVENT_TYPES``) and each event's JSON, in that order. The client packs them into protocol bytes itself, so many
#: arguments cost it little; byte strings cost the script one ``string.byte`` per event where text to match cost it
#: a pattern match and a number conversion.
#: First the workspace check: when the workers published the workspaces they serve and this one is not among
#: them, nothing is written and the script returns {0, 0, {}, 0, {known workspaces}}. While none is published
#: (no worker ever started), every workspace is accepted.
#: Then the layout check: when the workers published a partition count other than P, nothing is written and the
#: script returns {0, 0, {}, published}: the caller's layout is stale, it must partition again and retry. So no
#: producer writes to a partition the workers stopped draining once they published their count. While no count is
#: published, the script raises the config's ``span`` to P, which tells the workers that streams 0..P-1 may hold
#: events (they drain every stream below the span).
#: Events are appended in order until the workspace's backlog (the sum of XLEN) reaches the cap; the rest are
#: left out. Each partition that received an event and has no lease gets ``kicked`` with ``SET NX PX``, and its
#: drain task message is pushed on the drain queue.
#: Returns {appended, backlog after (0 without a cap), {kicked partitions}}. Its cost grows with P: one XLEN
#: per partition.
ENQUEUE_SCRIPT: Final = """
local p = tonumber(ARGV[1])
local known = KEYS[2 * p + 3]
if redis.call('HEXISTS', known, ARGV[8]) == 0 and redis.call('EXISTS', known) == 1 then
  return {0, 0, {}, 0, redis.call('HKEYS', known)}
end
local config = KEYS[2 * p + 2]
local raw = redis.call('HGET', config, 'partitions')
local published = raw and string.match(raw, '^%s*%d+%s*$') and tonumber(raw)
if published and (published < 1 or published > tonumber(ARGV[7])) then
  published = nil
end
if published and published ~= p then
  return {0, 0, {}, published}
end
if not published and (tonumber(redis.call('HGET', config, 'span')) or 0) < p then
  redis.call('HSET', config, 'span', p)
end
local count = #ARGV[13]
local cap = tonumber(ARGV[2])
local backlog = 0
if cap >= 0 then
  for i = 1, p do
    backlog = backlog + redis.call('XLEN', KEYS[i])
  end
  if backlog + count > cap then
    count = math.max(cap - backlog, 0)
  end
end
local call, byte = redis.call, string.byte
local partitions, codes, version = ARGV[12], ARGV[13], ARGV[5]
local touched = {}
local types = {}
for i = 1, count do
  local high, low = byte(partitions, 2 * i - 1, 2 * i)
  local n = high * 256 + low + 1
  call('XADD', KEYS[n], '*', 'v', version, 'event', ARGV[13 + i])
  touched[n] = true
  local code = byte(codes, i)
  types[code] = (types[code] or 0) + 1
end
backlog = backlog + count
local names = {NAMES}
for code, n in pairs(types) do
  redis.call('HINCRBY', KEYS[2 * p + 1], names[code], n)
end
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
local kicked = {}
if ARGV[6] == '1' then
  for n in pairs(touched) do
    if redis.call('SET', KEYS[p + n], ARGV[4], 'NX', 'PX', ARGV[3]) then
      local partition = tostring(n - 1)
      local fill = {
        ['\\1'] = base64((string.gsub(ARGV[10], '\\2', partition))),
        ['\\2'] = partition,
        ['\\3'] = string.sub(ARGV[11], 1, 32) .. string.format('%04x', n - 1),
      }
      redis.call('LPUSH', KEYS[2 * p + 4], (string.gsub(ARGV[9], '[\\1\\2\\3]', fill)))
      kicked[#kicked + 1] = n - 1
    end
  end
end
return {count, backlog, kicked}
""".replace("{NAMES}", "{" + ", ".join(f"'{kind}'" for kind in EVENT_TYPES) + "}")
#: The script's SHA1, for EVALSHA.
ENQUEUE_SHA: Final = hashlib.sha1(ENQUEUE_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def resp(*args: bytes) -> bytes:
    """Arguments of a Redis command as protocol bytes (bulk strings), without the array header."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


def _raw(value: int | str | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass(frozen=True)
class Layout:
    """The keys and fixed script arguments of one workspace, once its partition count is known.

    ``head`` is the ``EVALSHA`` call's arguments up to the per-call ones, already in Redis protocol bytes, and
    ``fixed`` their number.
    """

    partitions: int
    keys: tuple[str, ...]
    head: bytes
    fixed: int

    @classmethod
    def build(cls, prefix: str, workspace: str, partitions: int, *, cap: int | None, kick: bool) -> Layout:
        """The layout of ``partitions`` partitions."""
        streams = tuple(stream_key(prefix, workspace, n) for n in range(partitions))
        leases = tuple(lease_key(prefix, workspace, n) for n in range(partitions))
        keys = (*streams, *leases, enqueued_key(prefix, workspace), config_key(prefix, workspace))
        keys += (workspaces_key(prefix), drain_queue(prefix))
        header = (partitions, -1 if cap is None else cap, KICK_TTL_MS, KICKED, FORMAT_VERSION, int(kick))
        fixed: tuple[int | str, ...] = (*header, MAX_PARTITIONS, workspace)
        templates = (drain_message_template(prefix, workspace), drain_body_template(workspace))
        args = [b"EVALSHA", _raw(ENQUEUE_SHA), _raw(len(keys)), *map(_raw, (*keys, *fixed)), *templates]
        return cls(partitions, keys, resp(*args), len(args))

    @property
    def streams(self) -> tuple[str, ...]:
        """The partition streams, in partition order."""
        return self.keys[: self.partitions]

    def packed(self, chunk: Chunk) -> list[bytes | bytearray]:
        """The whole ``EVALSHA`` command for the good events of ``chunk``, partitioned by this layout.

        A large chunk's ``body`` is the second part, sent as it is rather than copied into one buffer; a small one
        is joined to the first part, so that the command is one write (two writes cost a single event about 20 µs:
        Redis wakes up for each).
        """
        per_call = resp(new_message_id().encode(), chunk.partitions(self.partitions), bytes(chunk.types))
        head = b"*%d\r\n" % (self.fixed + 3 + chunk.count) + self.head + per_call
        if len(chunk.body) < JOINED_BYTES:
            return [head + chunk.body]
        return [head, chunk.body]


@dataclass(frozen=True)
class Reply:
    """What the enqueue script did.

    ``published`` is set (and nothing was written) when the layout was stale; ``known`` is set (and nothing was
    written) when the fleet does not know the workspace: it holds the workspaces the fleet knows.
    """

    added: int
    backlog: int
    kicked: list[int]
    published: int | None = None
    known: list[str] | None = None

    @classmethod
    def parse(cls, raw: Sequence[Any]) -> Reply:
        """Read the script's ``{added, backlog, kicked}``, ``{0, 0, {}, published}`` or ``{0, 0, {}, 0, known}``."""
        if len(raw) > 4:
            names = sorted(name.decode() if isinstance(name, bytes) else str(name) for name in raw[4])
            return cls(0, 0, [], None, names)
        published = int(raw[3]) if len(raw) > 3 else None
        return cls(int(raw[0]), int(raw[1]), [int(n) for n in raw[2]], published)


def parse_partitions(raw: bytes | str | None, fallback: int = DEFAULT_PARTITIONS) -> int:
    """The partition count published in the workspace's config hash, else ``fallback``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text is not None and text.strip().isdigit() and 1 <= int(text) <= MAX_PARTITIONS:
        return int(text)
    return fallback
