"""In-memory twins of the pipeline's ports (``worker.pipeline.ports``): no Redis, no HTTP, one hand-driven clock.

``FakeStore`` keeps the partition store's contract (``tests/integration/test_store_contract.py`` runs the same tests
against it and the real ``PartitionStore``, so it cannot drift); ``FakeLimiter`` grants every slot at once unless
told otherwise; ``FakeCustomerIO`` answers each batch with what a test scripted; ``FakeClock`` only moves when
something sleeps or a test advances it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from producers.keys import dlq_key
from producers.wire import KICKED
from worker.delivery import BatchResponse
from worker.settings import WorkspaceConfig
from worker.store.partitions import PARKED, RETRY, Entry, Head, LeaseRefusal, ReadStep, RetryState
from worker.store.ratelimit import AuthPause, Fence, Reservation

Key = tuple[str, int]


@dataclass
class FakeClock:
    """Milliseconds since the epoch, moved by ``advance`` or ``sleep`` only."""

    now_ms: int = 1_700_000_000_000
    slept: list[float] = field(default_factory=list)
    #: Seconds every sleep oversleeps (a thread that wakes up late).
    oversleep_s: float = 0.0

    def monotonic(self) -> float:
        return self.now_ms / 1000

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds + self.oversleep_s)

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)


@dataclass
class _Lease:
    value: str
    expires_ms: int


class FakeStore:
    """The partition store in memory: streams, leases with TTLs, retry runs, dead letters and probes."""

    def __init__(self, clock: FakeClock, prefix: str = "fake") -> None:
        self.clock = clock
        self.prefix = prefix
        self.streams: dict[Key, list[Entry]] = {}
        self.dead_letters: dict[str, list[Mapping[str, Any]]] = {}
        self._leases: dict[Key, _Lease] = {}
        self._retry: dict[Key, RetryState] = {}
        self._probes: dict[str, int] = {}
        self._sequence = 0

    # -- test helpers --------------------------------------------------------------------------------------
    def add(self, workspace: str, partition: int, fields: Mapping[bytes, bytes], at_ms: int | None = None) -> str:
        """Append an entry the way ``XADD *`` would; returns its id."""
        self._sequence += 1
        entry_id = f"{self.clock.now_ms if at_ms is None else at_ms}-{self._sequence}"
        self.streams.setdefault((workspace, partition), []).append(Entry(entry_id, dict(fields)))
        return entry_id

    def lease_value(self, workspace: str, partition: int) -> str | None:
        lease = self._live_lease((workspace, partition))
        return lease.value if lease else None

    def set_lease(self, workspace: str, partition: int, value: str, ttl_ms: int) -> None:
        self._leases[(workspace, partition)] = _Lease(value, self.clock.now_ms + ttl_ms)

    # -- the port ------------------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return self.clock.now_ms

    def _live_lease(self, key: Key) -> _Lease | None:
        lease = self._leases.get(key)
        if lease is not None and lease.expires_ms <= self.clock.now_ms:
            del self._leases[key]
            return None
        return lease

    def _holds(self, key: Key, token: str) -> bool:
        lease = self._live_lease(key)
        return lease is not None and lease.value == token

    def take_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> LeaseRefusal | None:
        key = (workspace, partition)
        lease = self._live_lease(key)
        if lease is None or lease.value in (KICKED, token):
            self._leases[key] = _Lease(token, self.clock.now_ms + ttl_ms)
            return None
        return LeaseRefusal(retry_timer=lease.value == RETRY, remaining_ms=lease.expires_ms - self.clock.now_ms)

    def renew_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> bool:
        if not self._holds((workspace, partition), token):
            return False
        self._leases[(workspace, partition)] = _Lease(token, self.clock.now_ms + ttl_ms)
        return True

    def release_lease(self, workspace: str, partition: int, token: str, ttl_ms: int) -> bool:
        key = (workspace, partition)
        if not self._holds(key, token):
            return False
        if not self.streams.get(key):
            del self._leases[key]
            return False
        self._leases[key] = _Lease(KICKED, self.clock.now_ms + ttl_ms)
        return True

    def defer(self, workspace: str, partition: int, token: str, delay_ms: int) -> bool:
        if not self._holds((workspace, partition), token):
            return False
        self._leases[(workspace, partition)] = _Lease(RETRY, self.clock.now_ms + max(int(delay_ms), 1))
        return True

    def kick_retry_timer(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        return self._swap((workspace, partition), (RETRY,), KICKED, ttl_ms)

    def _swap(self, key: Key, old: tuple[str | None, ...], new: str, ttl_ms: int) -> bool:
        lease = self._live_lease(key)
        if (lease.value if lease else None) not in old:
            return False
        self._leases[key] = _Lease(new, self.clock.now_ms + ttl_ms)
        return True

    def park(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        return self._swap((workspace, partition), (KICKED, None), PARKED, ttl_ms)

    def unpark(self, workspace: str, partition: int, ttl_ms: int) -> bool:
        return self._swap((workspace, partition), (PARKED,), KICKED, ttl_ms)

    def refresh_parked(self, workspace: str, partitions: Sequence[int], ttl_ms: int) -> None:
        for partition in partitions:
            self._swap((workspace, partition), (PARKED,), PARKED, ttl_ms)

    def forget_kick(self, workspace: str, partition: int) -> bool:
        key = (workspace, partition)
        lease = self._live_lease(key)
        if lease is None or lease.value != KICKED:
            return False
        del self._leases[key]
        return True

    def read(self, workspace: str, partition: int, count: int, max_bytes: int) -> list[Entry]:
        out: list[Entry] = []
        total = 0
        for entry in self.streams.get((workspace, partition), [])[:count]:
            size = sum(len(name) + len(value) for name, value in entry.fields.items())
            if out and total + size > max_bytes:
                break
            out.append(entry)
            total += size
            if total >= max_bytes:
                break
        return out

    def read_head(
        self, workspace: str, partition: int, token: str, ttl_ms: int, count: int, max_bytes: int
    ) -> Head | None:
        if not self.renew_lease(workspace, partition, token, ttl_ms):
            return None
        entries = self.read(workspace, partition, count, max_bytes)
        return Head(entries, self.retry_state(workspace, partition), self.clock.now_ms)

    def retry_state(self, workspace: str, partition: int) -> RetryState | None:
        return self._retry.get((workspace, partition))

    def record_failure(self, workspace: str, partition: int, token: str, state: RetryState, error: str) -> bool:
        if not self._holds((workspace, partition), token):
            return False
        self._retry[(workspace, partition)] = state
        return True

    def end_retry_run(self, workspace: str, partition: int) -> None:
        self._retry.pop((workspace, partition), None)

    def end_retry_timers(self, workspace: str, partitions: int) -> int:
        freed = 0
        for partition in range(partitions):
            lease = self._live_lease((workspace, partition))
            if lease is not None and lease.value == RETRY:
                del self._leases[(workspace, partition)]
                freed += 1
            self._retry.pop((workspace, partition), None)
        self._probes.pop(workspace, None)
        return freed

    def settle(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]] = (),
        *,
        clear_retry: bool = False,
    ) -> bool:
        key = (workspace, partition)
        if not self._holds(key, token):
            return False
        for stream, fields in dead_letters:
            self.dead_letters.setdefault(stream, []).append(dict(fields))
        done = set(done_ids)
        self.streams[key] = [entry for entry in self.streams.get(key, []) if entry.id not in done]
        if clear_retry:
            self._retry.pop(key, None)
        return True

    def settle_and_read(
        self,
        workspace: str,
        partition: int,
        token: str,
        done_ids: Sequence[str],
        dead_letters: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        clear_retry: bool,
        read: ReadStep,
    ) -> Head | None:
        if not self.settle(workspace, partition, token, done_ids, dead_letters, clear_retry=clear_retry):
            return None
        return self.read_head(workspace, partition, token, read.ttl_ms, read.count, read.max_bytes)

    def claim_probe(self, workspace: str, interval_ms: int) -> float | None:
        due = self._probes.get(workspace, 0)
        if due > self.clock.now_ms:
            return max(due - self.clock.now_ms, 1) / 1000
        self._probes[workspace] = self.clock.now_ms + interval_ms
        return None

    def hold_probe(self, workspace: str, interval_ms: int) -> None:
        self._probes[workspace] = self.clock.now_ms + interval_ms

    def dead_letter_count(self, workspace: str) -> int:
        return len(self.dead_letters.get(dlq_key(self.prefix, workspace), []))

    def span(self, workspace: str, partitions: int) -> int:
        return partitions

    def older_streams_wait(self, workspace: str, partitions: int, span: int) -> bool:
        return False

    def fences(self, workspace: str) -> dict[int, str]:
        return {}


@dataclass
class FakeLimiter:
    """Every slot at once (or after the scripted ``waits``), and the pauses it was told about."""

    clock: FakeClock
    #: The waits of the next reservations, in order; 0.0 once they are used up.
    waits: list[float] = field(default_factory=list)
    reservations: list[Reservation | None] = field(default_factory=list)
    pauses: list[tuple[str, float, str]] = field(default_factory=list)
    auth: dict[str, AuthPause] = field(default_factory=dict)
    #: Lease keys whose fence fails: a reservation fenced by one of them reserves nothing (``lease_lost``).
    lost_leases: set[str] = field(default_factory=set)

    def reserve(
        self,
        workspace: str,
        rps: float,
        burst: int,
        max_wait_s: float,
        *,
        give_back: Reservation | None = None,
        fence: Fence | None = None,
    ) -> Reservation:
        self.reservations.append(give_back)
        if fence is not None and fence.key in self.lost_leases:
            return Reservation(False, 0.0, lease_lost=True)
        wait_s = self.waits.pop(0) if self.waits else 0.0
        if wait_s > max_wait_s:
            return Reservation(False, wait_s)
        return Reservation(True, wait_s, tat_us=len(self.reservations))

    def pause(self, workspace: str, seconds: float, reason: str) -> None:
        self.pauses.append((workspace, seconds, reason))

    def pause_auth(self, workspace: str, *, status: int, reason: str, fingerprint: str) -> None:
        self.auth[workspace] = AuthPause(status, reason, self.clock.now_ms, fingerprint)

    def auth_pause(self, workspace: str) -> AuthPause | None:
        return self.auth.get(workspace)

    def clear_auth_pause(self, workspace: str) -> None:
        self.auth.pop(workspace, None)


@dataclass
class FakeCustomerIO:
    """Answers each posted batch with ``answer(items)``; keeps every batch's items."""

    answer: Callable[[list[dict[str, Any]]], int] = lambda items: 200
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    retry_after: float | None = None

    def post_batch(self, workspace: WorkspaceConfig, body: bytes) -> BatchResponse:
        items = orjson.loads(body)["batch"]
        self.batches.append(items)
        status = self.answer(items)
        return BatchResponse(status=status, body=b"{}", retry_after=self.retry_after, elapsed_s=0.001)


@dataclass
class FakeReporter:
    """The failure reporter's calls (Sentry in a worker)."""

    reports: list[tuple[str, str, int | None, int]] = field(default_factory=list)

    def __call__(self, workspace: str, outcome: str, status: int | None, count: int) -> None:
        self.reports.append((workspace, outcome, status, count))
