"""Reading the dead-letter streams: sizes, one entry, filtered scans and statistics.

Scans go through the streams in chunks (``XRANGE``/``XREVRANGE`` with ``COUNT``), bounded by the filter's
time range through the stream ids, so that no command holds Redis for long whatever the queue's size.
Statistics are counted inside Redis, one chunk per script call, so that only the counts travel.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import redis

from producers.keys import dlq_key, dlq_pattern, parse_dlq_key
from worker.deadletter.filters import DeadLetterFilter
from worker.deadletter.records import DeadLetter, DeadLetterEntry, split_id
from worker.store.replies import stream_rows

#: One stream entry as redis-py gives it: (id, fields).
_Row = tuple[bytes, dict[bytes, bytes]]

#: Entries fetched per ``XRANGE`` call.
SCAN_CHUNK: Final = 1_000
#: Entries counted per statistics script call (each call holds Redis for a few milliseconds).
STATS_CHUNK: Final = 5_000
#: Age buckets of ``stats``: (label, upper bound in ms, exclusive); the last one is open.
AGE_BUCKETS: Final[tuple[tuple[str, int], ...]] = (
    ("<1h", 3_600_000),
    ("1h-1d", 86_400_000),
    ("1d-7d", 7 * 86_400_000),
    (">7d", 2**62),
)

_STATS_LUA: Final = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local now = tonumber(ARGV[4])
local bounds = {}
for i = 5, #ARGV do bounds[#bounds + 1] = tonumber(ARGV[i]) end
local counts = {outcome = {}, reason = {}, status = {}, age = {}}
local function bump(group, value)
  counts[group][value] = (counts[group][value] or 0) + 1
end
local oldest, newest = -1, -1
for _, entry in ipairs(entries) do
  local ms = tonumber(string.match(entry[1], '^(%d+)'))
  if oldest < 0 then oldest = ms end
  newest = ms
  local f = entry[2]
  for i = 1, #f, 2 do
    local name = f[i]
    if name == 'outcome' or name == 'reason' or name == 'status' then bump(name, f[i + 1]) end
  end
  local age = now - ms
  for b = 1, #bounds do
    if age < bounds[b] then bump('age', tostring(b)); break end
  end
end
local out = {#entries, '', tostring(oldest), tostring(newest)}
if #entries > 0 then out[2] = entries[#entries][1] end
for _, group in ipairs({'outcome', 'reason', 'status', 'age'}) do
  local flat = {}
  for k, v in pairs(counts[group]) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  out[#out + 1] = flat
end
return out
"""

#: KEYS: dead-letter stream. ARGV: low, high, count, newest first ('1'/'0'), then the wanted outcome, status,
#: type, name ('' for any) and a lower-case ASCII reason fragment ('' for any). Returns the number of entries
#: read, the last id read, then the matching entries: only those travel back.
_SCAN_LUA: Final = """
local rows
if ARGV[4] == '1' then
  rows = redis.call('XREVRANGE', KEYS[1], ARGV[2], ARGV[1], 'COUNT', tonumber(ARGV[3]))
else
  rows = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
end
local want = {outcome = ARGV[5], status = ARGV[6], type = ARGV[7], name = ARGV[8]}
local reason = ARGV[9]
local out = {#rows, ''}
if #rows > 0 then out[2] = rows[#rows][1] end
for _, row in ipairs(rows) do
  local f, seen, ok = row[2], {}, true
  for i = 1, #f, 2 do seen[f[i]] = f[i + 1] end
  for name, value in pairs(want) do
    if value ~= '' and seen[name] ~= value then ok = false; break end
  end
  if ok and reason ~= '' then ok = string.find(string.lower(seen['reason'] or ''), reason, 1, true) ~= nil end
  if ok then out[#out + 1] = row end
end
return out
"""


@dataclass(slots=True)
class DlqStats:
    """Counts of dead letters by workspace, outcome, reason, HTTP status and age."""

    total: int = 0
    by_workspace: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_age: Counter[str] = field(default_factory=Counter)
    oldest_ms: int | None = None
    newest_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view, counts sorted from the largest."""
        return {
            "total": self.total,
            "by_workspace": dict(self.by_workspace.most_common()),
            "by_outcome": dict(self.by_outcome.most_common()),
            "by_reason": dict(self.by_reason.most_common()),
            "by_status": dict(self.by_status.most_common()),
            "by_age": {label: self.by_age.get(label, 0) for label, _ in AGE_BUCKETS},
            "oldest_ms": self.oldest_ms,
            "newest_ms": self.newest_ms,
        }


def dlq_size(client: redis.Redis, prefix: str, workspace: str) -> int:
    """How many dead letters a workspace holds."""
    return int(client.xlen(dlq_key(prefix, workspace)))


def dlq_workspaces(client: redis.Redis, prefix: str, configured: Iterable[str] = ()) -> list[str]:
    """The configured workspaces plus every workspace that has a dead-letter stream, sorted."""
    keys = client.scan_iter(match=dlq_pattern(prefix), count=1_000, _type="stream")
    found = {parse_dlq_key(prefix, key) for key in keys}
    return sorted(found | set(configured))


def get_entry(client: redis.Redis, prefix: str, dead_letter_id: str) -> DeadLetterEntry | None:
    """One dead letter by its id (``{workspace}/{stream-entry-id}``), or ``None`` when it is not there.

    Raises:
        ValueError: ``dead_letter_id`` is not a dead-letter id.
    """
    workspace, stream_id = split_id(dead_letter_id)
    rows = stream_rows(client.xrange(dlq_key(prefix, workspace), stream_id, stream_id))
    return _entry(workspace, rows[0]) if rows else None


def _entry(workspace: str, row: _Row) -> DeadLetterEntry:
    stream_id, fields = row
    letter = DeadLetter.from_fields(fields)
    if letter.workspace != workspace:  # the stream, not the field, says where the entry lives
        letter = replace(letter, workspace=workspace)
    return DeadLetterEntry(stream_id.decode(), letter)


def _bounds(flt: DeadLetterFilter) -> tuple[str, str]:
    low = "-" if flt.since_ms is None else str(max(flt.since_ms, 0))
    high = "+" if flt.until_ms is None else str(max(flt.until_ms, 0))
    return low, high


def _server_filter(flt: DeadLetterFilter) -> list[str]:
    """The filter's exact-match conditions for the scan script; Python re-checks every entry it returns."""
    reason = flt.reason_contains or ""
    return [
        flt.outcome or "",
        "" if flt.status is None else str(flt.status),
        flt.event_type or "",
        flt.event_name or "",
        reason.lower() if reason.isascii() else "",  # non-ASCII case folding is left to Python
    ]


def scan_stream(
    client: redis.Redis, prefix: str, workspace: str, flt: DeadLetterFilter, *, newest_first: bool
) -> Iterator[DeadLetterEntry]:
    """Every entry of one workspace's dead-letter stream that ``flt`` matches, in id order, chunk by chunk.

    Redis pre-filters each chunk (a short script), so non-matching entries never travel.
    """
    read = _chunk_reader(client, dlq_key(prefix, workspace), flt, newest_first=newest_first)
    low, high = _bounds(flt)
    while True:
        scanned, last, rows = read(low, high)
        for row in rows:
            entry = _entry(workspace, row)
            if flt.matches(entry):
                yield entry
        if scanned < SCAN_CHUNK:
            return
        high, low = ("(" + last, low) if newest_first else (high, "(" + last)


def _chunk_reader(
    client: redis.Redis, key: str, flt: DeadLetterFilter, *, newest_first: bool
) -> Callable[[str, str], tuple[int, str, list[_Row]]]:
    """A reader of one chunk between two ids: (entries read, last id read, candidate rows)."""
    wanted = _server_filter(flt)
    script = client.register_script(_SCAN_LUA)

    def plain(low: str, high: str) -> tuple[int, str, list[_Row]]:
        if newest_first:
            rows = stream_rows(client.xrevrange(key, high, low, count=SCAN_CHUNK))
        else:
            rows = stream_rows(client.xrange(key, low, high, count=SCAN_CHUNK))
        return len(rows), rows[-1][0].decode() if rows else "", rows

    def filtered(low: str, high: str) -> tuple[int, str, list[_Row]]:
        args = [low, high, SCAN_CHUNK, "1" if newest_first else "0", *wanted]
        reply = script(keys=[key], args=args)
        rows = [(sid, dict(zip(flat[::2], flat[1::2], strict=True))) for sid, flat in reply[2:]]
        return int(reply[0]), reply[1].decode(), rows

    return filtered if any(wanted) else plain


def _order(entry: DeadLetterEntry) -> tuple[int, int]:
    ms, _, seq = entry.stream_id.partition("-")
    return int(ms), int(seq or 0)


def iter_entries(
    client: redis.Redis,
    prefix: str,
    workspaces: Sequence[str],
    flt: DeadLetterFilter,
    limit: int | None = None,
    *,
    newest_first: bool = True,
) -> Iterator[DeadLetterEntry]:
    """The dead letters ``flt`` matches across ``workspaces``, merged by dead-lettering time.

    Args:
        client: A Redis client (``decode_responses=False``).
        prefix: The key prefix.
        workspaces: Workspaces to scan; ``flt.workspace`` narrows them to one.
        flt: The filter.
        limit: Stop after this many entries (``None``: all).
        newest_first: Newest first (``list``) or oldest first (replay, export).
    """
    names = [flt.workspace] if flt.workspace is not None else list(workspaces)
    streams = [scan_stream(client, prefix, name, flt, newest_first=newest_first) for name in names]
    merged = heapq.merge(*streams, key=_order, reverse=newest_first)
    for count, entry in enumerate(merged):
        if limit is not None and count >= limit:
            return
        yield entry


def stats(client: redis.Redis, prefix: str, workspaces: Sequence[str], *, now_ms: int) -> DlqStats:
    """Count the dead letters of ``workspaces`` by workspace, outcome, reason, status and age.

    Args:
        client: A Redis client.
        prefix: The key prefix.
        workspaces: The workspaces to count.
        now_ms: The current time (unix ms), for the age buckets.
    """
    script = client.register_script(_STATS_LUA)
    result = DlqStats()
    bounds = [str(bound) for _, bound in AGE_BUCKETS]
    for workspace in workspaces:
        low = "-"
        while True:
            reply = script(keys=[dlq_key(prefix, workspace)], args=[low, "+", STATS_CHUNK, now_ms, *bounds])
            _add_chunk(result, workspace, reply)
            if int(reply[0]) < STATS_CHUNK:
                break
            low = "(" + reply[1].decode()
    return result


def _pairs(flat: list[Any]) -> Iterator[tuple[str, int]]:
    for index in range(0, len(flat), 2):
        yield flat[index].decode("utf-8", "replace"), int(flat[index + 1])


def _add_chunk(result: DlqStats, workspace: str, reply: list[Any]) -> None:
    count = int(reply[0])
    if not count:
        return
    result.total += count
    result.by_workspace[workspace] += count
    oldest, newest = int(reply[2]), int(reply[3])
    result.oldest_ms = oldest if result.oldest_ms is None else min(result.oldest_ms, oldest)
    result.newest_ms = newest if result.newest_ms is None else max(result.newest_ms, newest)
    for target, flat in zip((result.by_outcome, result.by_reason, result.by_status), reply[4:7], strict=True):
        for value, number in _pairs(flat):
            target[value or "none"] += number
    for index, number in _pairs(reply[7]):
        result.by_age[AGE_BUCKETS[int(index) - 1][0]] += number


__all__ = ["DlqStats", "dlq_size", "dlq_workspaces", "get_entry", "iter_entries", "scan_stream", "stats"]
