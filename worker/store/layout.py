"""A workspace's stream layout: its partition count, the span of streams that may hold events, and stray streams.

The workers publish a workspace's ``partitions`` in ``{prefix}:config:{ws}``; producers check it on every enqueue
(``producers._kick.ENQUEUE_SCRIPT``). The same hash holds the ``span``: streams ``0..span-1`` may hold events. It is
more than ``partitions`` after the count went down (16 → 8) until the streams of the old count are empty, or when a
producer wrote with its default count before any worker published one. Workers drain every stream below the span,
and a partition of the current count waits while a stream at or above the count still holds events: those are
older (no producer writes there once the count is published), so one person's events keep their order across the
change. A count going up fences the streams of the old count at their last entry (``fence:<n>`` fields of the
same hash): the fenced entries are delivered before any other entry of the workspace (``fences``).
``docs/architecture.md`` ("Changing the partition count") explains why.

A periodic ``SCAN`` of ``{prefix}:s:*`` finds what no layout covers: streams written by a raw ``XADD`` above the
span (the span is raised to cover them) and streams of workspaces that are not configured at all (nobody drains
them: status, metrics and an alert show them). The sweeper records them in ``{prefix}:strays`` for the metrics.

Every worker also publishes the workspaces it serves, on each sweeper round, so that producers refuse a workspace
the fleet does not serve instead of stranding its events: a ``served`` key per workspace, in the workspace's slot
(the enqueue script reads it), and their names in ``{prefix}:workspaces`` (the names a refusal lists).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis

from producers.keys import (
    backlog_key,
    config_key,
    parse_stream_key,
    served_key,
    strays_key,
    stream_key,
    stream_pattern,
    workspaces_key,
)
from worker.store.replies import byte_strings, hash_fields

#: Config hash field: the workspace's partition count, as the workers publish it.
PARTITIONS_FIELD: Final = "partitions"
#: Config hash field: streams ``0..span-1`` may hold events.
SPAN_FIELD: Final = "span"
#: Config hash fields ``fence:<n>``: the last entry of stream n written with the partition count before it went up.
FENCE_FIELD_PREFIX: Final = "fence:"
#: How many sweep intervals apart the sweeper scans the key space for stray streams.
SCAN_EVERY_SWEEPS: Final = 10

# KEYS[1]: the config hash, then the streams partitions..S-1 for the span S the caller read (``read_span``), then
# the streams 0..B-1 of the layout before (``fence_candidates``). ARGV[1]: the partition count, ARGV[2]: how many
# streams above the count follow KEYS[1]. Publishes the count; the span becomes the largest of the count, the
# recorded span and the count published before (a config written before spans existed); it comes down to the count
# when the streams above the count are all empty (none can fill again: producers check the published count).
# A count going up (above the one published before; with none, above the span producers wrote with) fences each of
# the old layout's streams that holds events at its last entry id (``fence:<n>``): those entries are older than any
# a producer writes from now on. Returns the span.
_PUBLISH = """
local p = tonumber(ARGV[1])
local above = tonumber(ARGV[2])
local prev = tonumber(redis.call('HGET', KEYS[1], 'partitions'))
local span = math.max(tonumber(redis.call('HGET', KEYS[1], 'span')) or 0, prev or 0)
if (prev and p > prev) or (not prev and p > span) then
  for i = 2 + above, #KEYS do
    local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
    if #last > 0 then redis.call('HSET', KEYS[1], 'fence:' .. (i - 2 - above), last[1][1]) end
  end
end
redis.call('HSET', KEYS[1], 'partitions', p)
if span > p and span == p + above then
  local empty = true
  for i = 2, 1 + above do
    if redis.call('XLEN', KEYS[i]) > 0 then empty = false break end
  end
  if empty then span = p end
end
span = math.max(span, p)
redis.call('HSET', KEYS[1], 'span', span)
return span
"""

# KEYS[1]: the config hash, then the fenced streams. ARGV: their partition numbers, then their fences, in the same
# order. Drops each fence its stream has passed (empty, or its first entry newer than the fence); returns the fences
# left as {partition, id, ...}.
_PASS_FENCES = """
local function newer(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local n = #KEYS - 1
local left = {}
for i = 1, n do
  local partition, fence = ARGV[i], ARGV[n + i]
  local first = redis.call('XRANGE', KEYS[1 + i], '-', '+', 'COUNT', 1)
  if #first == 0 or newer(first[1][1], fence) then
    redis.call('HDEL', KEYS[1], 'fence:' .. partition)
  else
    table.insert(left, partition)
    table.insert(left, fence)
  end
end
return left
"""

# KEYS[1]: the config hash. ARGV[1]: a span that must be covered. Raises the span, never lowers it.
_RAISE = """
local span = tonumber(redis.call('HGET', KEYS[1], 'span')) or 0
local wanted = tonumber(ARGV[1])
if span < wanted then redis.call('HSET', KEYS[1], 'span', wanted) return wanted end
return span
"""


#: How long a workspace stays in ``{prefix}:workspaces`` after the last worker that serves it said so: long enough
#: for a rolling update, after which producers refuse a workspace no worker serves any more.
WORKSPACE_FORGET_MS: Final = 600_000

# KEYS[1]: the workspaces hash. ARGV[1]: forget after (ms), ARGV[2..]: the workspaces this worker serves. Stamps
# them with the Redis time and drops the ones nobody stamped for the forget time.
_SERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], now)
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if now - (tonumber(all[i + 1]) or 0) > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
"""


def publish_workspaces(client: redis.Redis, prefix: str, workspaces: Iterable[str]) -> None:
    """Say which workspaces this worker serves, so producers refuse any other name: each one's ``served`` key (in
    its own slot, read by the enqueue script) and the fleet's ``{prefix}:workspaces`` (the names a refusal lists)."""
    names = sorted(workspaces)
    if names:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.set(served_key(prefix, name), "1", px=WORKSPACE_FORGET_MS)
        pipe.execute()
        client.register_script(_SERVE)(keys=[workspaces_key(prefix)], args=[WORKSPACE_FORGET_MS, *names])


def _number(raw: Any) -> int:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return int(text) if isinstance(text, str) and text.strip().isdigit() else 0


def span_of(partitions: int, raw_span: Any, raw_published: Any) -> int:
    """The span from the config hash's fields, never below ``partitions`` (pure)."""
    return max(partitions, _number(raw_span), _number(raw_published))


def read_span(client: redis.Redis, prefix: str, workspace: str, partitions: int) -> int:
    """Streams ``0..span-1`` of the workspace may hold events; at least ``partitions``."""
    raw_span, raw_published = client.hmget(config_key(prefix, workspace), [SPAN_FIELD, PARTITIONS_FIELD])
    return span_of(partitions, raw_span, raw_published)


def publish(client: redis.Redis, prefix: str, workspace: str, partitions: int) -> int:
    """Publish the workspace's partition count for producers; returns the span the workers must drain.

    A count going up fences the old layout's streams (``fences``), so that their events go before any written with
    the new count.
    """
    raw_span, raw_published = client.hmget(config_key(prefix, workspace), [SPAN_FIELD, PARTITIONS_FIELD])
    span = span_of(partitions, raw_span, raw_published)
    before = fence_candidates(partitions, raw_span, raw_published)
    above = [stream_key(prefix, workspace, n) for n in range(partitions, span)]
    old = [stream_key(prefix, workspace, n) for n in range(before)]
    keys = [config_key(prefix, workspace), *above, *old]
    return int(client.register_script(_PUBLISH)(keys=keys, args=[partitions, len(above)]))


def fence_candidates(partitions: int, raw_span: Any, raw_published: Any) -> int:
    """How many streams of the layout before hold events to fence when ``partitions`` is published (pure): all
    those below the span when the count goes up, none otherwise."""
    published, span = _number(raw_published), max(_number(raw_span), _number(raw_published))
    going_up = partitions > published if published else partitions > span
    return span if going_up else 0


def entry_after(entry_id: str, fence: str) -> bool:
    """True when the stream entry ``entry_id`` was written after the entry ``fence`` (``ms-seq`` ids; pure)."""
    ms, _, seq = entry_id.partition("-")
    fence_ms, _, fence_seq = fence.partition("-")
    return (int(ms), int(seq or 0)) > (int(fence_ms), int(fence_seq or 0))


def fences(client: redis.Redis, prefix: str, workspace: str) -> dict[int, str]:
    """The streams still fenced after the partition count went up, each with its fence: the last entry written
    with the old count. A fence the stream has passed (its older entries all settled) is dropped here.

    While any stream is fenced, its entries up to the fence are the only ones a drainer may deliver: any other entry
    of the workspace was written with the new count, so it may be a newer event of a person whose older ones wait
    behind a fence.
    """
    found: dict[int, str] = {}
    for field, value in hash_fields(client.hgetall(config_key(prefix, workspace))).items():
        name = field.decode()
        number = name.removeprefix(FENCE_FIELD_PREFIX)
        if name.startswith(FENCE_FIELD_PREFIX) and number.isdigit():
            found[int(number)] = value.decode()
    if not found:
        return {}
    numbers = sorted(found)
    keys = [config_key(prefix, workspace), *(stream_key(prefix, workspace, n) for n in numbers)]
    left = byte_strings(client.register_script(_PASS_FENCES)(keys=keys, args=[*numbers, *(found[n] for n in numbers)]))
    return {int(number): fence.decode() for number, fence in zip(left[::2], left[1::2], strict=True)}


def cover(client: redis.Redis, prefix: str, workspace: str, span: int) -> int:
    """Raise the workspace's span to at least ``span`` (a stray stream was found); returns the span."""
    return int(client.register_script(_RAISE)(keys=[config_key(prefix, workspace)], args=[span]))


# KEYS[1]: the workspace's backlog bound hash, then its streams 0..S-1. Sets the bound to their exact length sum,
# covering S streams, in one atomic step with every enqueue (computing it outside and setting it after could erase
# what an enqueue added in between). Returns the sum.
_RESET_BOUND = """
local events = 0
for i = 2, #KEYS do
  events = events + redis.call('XLEN', KEYS[i])
end
redis.call('HSET', KEYS[1], 'events', events, 'streams', #KEYS - 1)
return events
"""


def reset_backlog_bound(client: redis.Redis, prefix: str, workspace: str, span: int) -> int:
    """Lower the workspace's backlog bound to its exact backlog over streams ``0..span-1``; returns that backlog.

    The enqueue script only raises the bound (``producers._kick.ENQUEUE_SCRIPT``); deliveries lower the backlog
    without touching it. Set back to the truth on each sweep, it lets the producers skip reading every stream
    length until the workspace really nears its cap, and counts the events of raw ``XADD`` producers.
    """
    keys = [backlog_key(prefix, workspace), *(stream_key(prefix, workspace, n) for n in range(span))]
    return int(client.register_script(_RESET_BOUND)(keys=keys))


def older_streams_wait(client: redis.Redis, prefix: str, workspace: str, partitions: int, span: int) -> bool:
    """True while a stream from the partition count up to ``span`` holds events (older than any event below it)."""
    if span <= partitions:
        return False
    pipe = client.pipeline(transaction=False)
    for n in range(partitions, span):
        pipe.xlen(stream_key(prefix, workspace, n))
    return any(int(length) for length in pipe.execute())


def scan_streams(client: redis.Redis, prefix: str) -> dict[str, set[int]]:
    """Every partition stream under the prefix, by workspace (``SCAN`` with a match pattern, never ``KEYS``)."""
    found: dict[str, set[int]] = {}
    for key in client.scan_iter(match=stream_pattern(prefix), count=1_000, _type="stream"):
        parsed = parse_stream_key(prefix, key)
        if parsed is not None:
            found.setdefault(parsed[0], set()).add(parsed[1])
    return found


@dataclass(frozen=True, slots=True)
class Outside:
    """Streams beyond the configured layouts: above a workspace's count, or of a workspace not configured."""

    above: Mapping[str, tuple[int, ...]]
    unconfigured: Mapping[str, tuple[int, ...]]

    def members(self) -> list[str]:
        """The ``{ws}:{n}`` members of ``{prefix}:strays``."""
        groups = (*self.above.items(), *self.unconfigured.items())
        return [f"{workspace}:{n}" for workspace, partitions in groups for n in partitions]


def outside(streams: Mapping[str, Iterable[int]], configured: Mapping[str, int]) -> Outside:
    """Split found streams into those above a configured count and those of unconfigured workspaces (pure)."""
    above: dict[str, tuple[int, ...]] = {}
    unconfigured: dict[str, tuple[int, ...]] = {}
    for workspace, partitions in sorted(streams.items()):
        count = configured.get(workspace)
        if count is None:
            unconfigured[workspace] = tuple(sorted(partitions))
            continue
        extra = tuple(sorted(n for n in partitions if n >= count))
        if extra:
            above[workspace] = extra
    return Outside(above, unconfigured)


def record_strays(client: redis.Redis, prefix: str, found: Outside) -> None:
    """Replace ``{prefix}:strays`` with what the last scan found."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(strays_key(prefix))
    members = found.members()
    if members:
        pipe.sadd(strays_key(prefix), *members)
    pipe.execute()


def parse_strays(members: Iterable[Any]) -> dict[str, set[int]]:
    """The ``{ws}:{n}`` members of ``{prefix}:strays`` by workspace (pure)."""
    found: dict[str, set[int]] = {}
    for member in members:
        text = member.decode("utf-8", "replace") if isinstance(member, bytes) else str(member)
        workspace, _, number = text.rpartition(":")
        if workspace and number.isdigit():
            found.setdefault(workspace, set()).add(int(number))
    return found


def read_strays(client: redis.Redis, prefix: str) -> dict[str, set[int]]:
    """The streams the sweeper's last scan found outside the configured layouts, by workspace."""
    return parse_strays(client.smembers(strays_key(prefix)))


def stream_lengths(client: redis.Redis, prefix: str, groups: Mapping[str, Iterable[int]]) -> dict[str, int]:
    """Waiting events per workspace over the given partitions' streams (one pipelined round trip)."""
    pairs = [(workspace, n) for workspace, partitions in groups.items() for n in partitions]
    pipe = client.pipeline(transaction=False)
    for workspace, n in pairs:
        pipe.xlen(stream_key(prefix, workspace, n))
    totals = dict.fromkeys(groups, 0)
    for (workspace, _), length in zip(pairs, pipe.execute(), strict=True):
        totals[workspace] += int(length)
    return totals
