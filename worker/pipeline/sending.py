"""Sending planned entries to Customer.io in batches and settling each entry by the answer.

``BatchSender.send`` packs entries into runs, waits for the workspace's fleet-wide rate limiter, posts, and
settles: accepted entries leave the stream; items Customer.io rejected go to the dead-letter queue; a batch
refused as a whole (400/413) is split in halves until the bad items are isolated. A transient failure raises
``Deferred``: the entries stay at the head of the partition and the partition waits, so order is kept.

A run of transient failures is about the head entry of the partition (``RetryState``): whatever settles the head
(delivered, dead-lettered, expired) ends it, and its dead letters count every attempt of it. A head batch that keeps
failing is sent in halves (``head_batch_limit``): the first half first, the rest waiting behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from producers.keys import dlq_key
from worker.deadletter import DeadLetter, Outcome, describe_event
from worker.delivery import Accepted, BatchResponse, SplitNeeded, classify
from worker.errors import Rejected as RejectedError
from worker.errors import RetryableError, Throttled, TransportFailure, Unauthorized, WorkerError
from worker.ops.logs import redact
from worker.ops.observability import report_permanent_failure
from worker.pipeline.batching import batch_body, pack
from worker.pipeline.planning import PlannedEntry
from worker.pipeline.ports import Deps, observe_settled
from worker.pipeline.retry import THROTTLE_MAX_STEP, head_batch_limit, next_delay, throttle_pause
from worker.settings import WorkspaceConfig
from worker.store.partitions import LeaseLost, RetryState
from worker.store.ratelimit import Reservation, credentials_fingerprint

log = logging.getLogger("cio_fleet.delivery")

#: Longest the sender sleeps for the rate limiter inside a task; longer waits defer the partition instead.
MAX_LIMITER_SLEEP_S: Final = 0.5
#: How late after its reserved slot a request may still go.
LATE_SEND_TOLERANCE_S: Final = 0.010


#: How long a partition waits when its workspace's dead-letter queue is full.
DLQ_FULL_RETRY_S: Final = 60.0


class Deferred(Exception):
    """The partition must wait ``delay_s`` before it is drained again."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a set of entries is dead-lettered."""

    outcome: Outcome
    reason: str
    status: int | None = None
    response: str = ""
    first_failed_at_ms: int = 0


class BatchSender:
    """Delivers one partition's planned entries for one workspace."""

    def __init__(
        self, deps: Deps, workspace: WorkspaceConfig, partition: int, token: str, renew: Callable[[], None]
    ) -> None:
        """Send for the drainer whose lease holds ``token``; ``renew`` extends it or raises ``LeaseLost``."""
        self.deps = deps
        self.workspace = workspace
        self.partition = partition
        self._token = token
        self._renew = renew
        #: True while this drain probes a workspace paused for refused credentials.
        self.on_probe = False
        #: The first failure of a run that expired in this drain while Customer.io kept failing: the next batch
        #: that fails in this drain continues it (the partition never stopped failing).
        self._failing_since_ms: int | None = None

    def send(self, entries: Sequence[PlannedEntry]) -> None:
        """Deliver ``entries`` (the head of the partition first) in order, settling each run as it is answered.

        When the head batch keeps failing, the run's ``head_limit`` first entries go alone, before the others.

        Raises:
            Deferred: a transient failure, a long rate-limit wait or a credentials pause; the rest stays queued.
        """
        state = self.deps.store.retry_state(self.workspace.name, self.partition)
        limit = state.head_limit if state else 0
        if 0 < limit < len(entries):
            self._send_packed(entries[:limit])
            entries = entries[limit:]
        self._send_packed(entries)

    def _send_packed(self, entries: Sequence[PlannedEntry]) -> None:
        batching = self.deps.settings.batching
        sizes = [entry.size for entry in entries]
        for run in pack(sizes, max_bytes=batching.max_bytes, max_items=batching.max_events):
            self._send_run([entries[index] for index in run])

    def _send_run(self, run: list[PlannedEntry]) -> None:
        items = [op for entry in run for op in entry.operations]
        owners = [index for index, entry in enumerate(run) for _ in entry.operations]
        body = batch_body(items)
        self._wait_for_limiter()
        # Fencing: renewing the lease (and checking it is still ours) is the last thing before the request, so a
        # drainer that stalled past its lease (while it waited for the limiter) sends nothing. Nothing else goes
        # between the grant and the send, so the rate seen upstream stays even.
        self._renew()
        try:
            verdict = classify(self._post(body, len(items)), len(items))
        except RetryableError as exc:
            self._on_transient(run, exc)
            return
        except Unauthorized as exc:
            self._on_unauthorized(exc)
        except RejectedError as exc:
            self._dead_letter(run, Failure("rejected", str(exc), exc.status, exc.body))
            return
        if isinstance(verdict, SplitNeeded):
            self._split(run, verdict)
            return
        self._on_accepted(run, owners, verdict)

    def _post(self, body: bytes, items: int) -> BatchResponse:
        """POST the body; count and log the request whatever happens to it."""
        name, started = self.workspace.name, self.deps.monotonic()
        try:
            response = self.deps.client.post_batch(self.workspace, body)
        except TransportFailure:
            self.deps.metrics.request(name, None, self.deps.monotonic() - started, items, len(body))
            raise
        self.deps.metrics.request(name, response.status, response.elapsed_s, items, len(body))
        extra = {"workspace": name, "partition": self.partition, "batch_size": items, "bytes": len(body)}
        extra.update(status=response.status, duration_ms=round(response.elapsed_s * 1000, 1))
        log.info("batch sent", extra=extra)
        return response

    def _wait_for_limiter(self) -> None:
        """Reserve the workspace's next request slot and sleep until it; defer the partition if it is far off.

        A thread that wakes up well after its slot does not send late, which would bunch this request with the
        next one and break the rate seen by Customer.io: it reserves anew, giving its missed slot back (which the
        limiter takes only if nobody reserved after it, so the missed slot is not lost to the workspace's rate).
        """
        name, workspace = self.workspace.name, self.workspace
        missed: Reservation | None = None
        while True:
            slot = self.deps.limiter.reserve(
                name, workspace.limiter_rps, workspace.rate_limit_burst, MAX_LIMITER_SLEEP_S, give_back=missed
            )
            if slot.wait_s > 0:
                self.deps.metrics.limiter_wait(name, slot.wait_s)
            if not slot.reserved:
                raise Deferred(slot.wait_s, "waiting for the rate limiter")
            if slot.wait_s <= 0:
                return
            started = self.deps.monotonic()
            self.deps.sleep(slot.wait_s)
            if self.deps.monotonic() - started - slot.wait_s <= LATE_SEND_TOLERANCE_S:
                return
            missed = slot

    def _on_accepted(self, run: list[PlannedEntry], owners: list[int], verdict: Accepted) -> None:
        failed_entries: dict[int, str] = {}
        for item_index, reason in verdict.failed.items():
            failed_entries.setdefault(owners[item_index], reason)
        delivered = [entry for index, entry in enumerate(run) if index not in failed_entries]
        attempts, first_failed = self._run_attempts() if failed_entries else (1, 0)
        dead = [
            (
                run[index],
                Failure("item_rejected", f"rejected by Customer.io: {reason}", 207, first_failed_at_ms=first_failed),
            )
            for index, reason in failed_entries.items()
        ]
        self._failing_since_ms = None
        self.settle(delivered, dead, attempts=attempts, clear_retry=True)
        if self.on_probe:
            self.deps.limiter.clear_auth_pause(self.workspace.name)
            self.on_probe = False
            log.info("credentials accepted again; workspace resumed", extra={"workspace": self.workspace.name})

    def _split(self, run: list[PlannedEntry], verdict: SplitNeeded) -> None:
        if len(run) == 1:
            self._dead_letter(run, Failure("rejected", verdict.reason, verdict.status))
            return
        middle = len(run) // 2
        log.info(
            "batch refused as a whole; splitting it",
            extra={"workspace": self.workspace.name, "partition": self.partition, "status": verdict.status},
        )
        self._send_run(run[:middle])
        self._send_run(run[middle:])

    def _on_transient(self, run: list[PlannedEntry], exc: RetryableError) -> None:
        """Dead-letter the entries whose retry window closed; the rest waits for the next attempt.

        Raises:
            Deferred: entries remain; the partition waits for the backoff (or the 429 pause).
        """
        store, name = self.deps.store, self.workspace.name
        now = store.now_ms()
        state = store.retry_state(name, self.partition)
        first_failed = state.first_failed_at_ms if state else (self._failing_since_ms or now)
        attempts = (state.attempts if state else 0) + 1
        window_ms = self.deps.settings.retry.window_s * 1000
        expired = [e for e in run if now - max(first_failed, e.entry.enqueued_at_ms) >= window_ms]
        if expired:
            self._expire(expired, exc, attempts, first_failed)
            if len(expired) == len(run):
                self._failing_since_ms = first_failed
                return
        throttled = isinstance(exc, Throttled)
        current_limit = state.head_limit if state else 0
        limit = head_batch_limit(attempts, len(run) - len(expired), current_limit, throttled=throttled)
        delay = self._retry_delay(exc, attempts)
        run_state = RetryState(attempts, first_failed, limit)
        if not store.record_failure(name, self.partition, self._token, run_state, redact(str(exc))):
            raise LeaseLost()
        level = logging.DEBUG if throttled else logging.WARNING
        log.log(level, "delivery failed; will retry", extra=self._extra(exc, attempts, delay))
        raise Deferred(delay, str(exc))

    def _expire(self, expired: Sequence[PlannedEntry], exc: RetryableError, attempts: int, first_failed: int) -> None:
        """Dead-letter entries whose retry window closed; each failed since the run began, or since it was written."""
        failure = Failure("failed_after_retries", f"failed after retries: {exc}", exc.status)
        dead = [(e, replace(failure, first_failed_at_ms=max(first_failed, e.entry.enqueued_at_ms))) for e in expired]
        self.settle([], dead, attempts=attempts, clear_retry=True)

    def _retry_delay(self, exc: RetryableError, attempts: int) -> float:
        """The partition's wait before its next attempt; a 429 also pauses the whole workspace."""
        policy = self.deps.settings.retry
        if not isinstance(exc, Throttled):
            return next_delay(attempts, policy, retry_after=exc.retry_after)
        # The whole fleet holds the workspace: for Retry-After, else for a short step of its own (never the long
        # step a run of 5xx reached: throttling is about the rate, not about this partition's failures).
        pause = exc.retry_after if exc.retry_after is not None else throttle_pause(attempts, policy)
        self.deps.limiter.pause(self.workspace.name, pause, "throttled")
        return max(next_delay(min(attempts, THROTTLE_MAX_STEP), policy, retry_after=exc.retry_after), pause)

    def _on_unauthorized(self, exc: Unauthorized) -> None:
        name = self.workspace.name
        fingerprint = credentials_fingerprint(self.workspace.site_id, self.workspace.api_key.get_secret_value())
        self.deps.limiter.pause_auth(name, status=exc.status, reason=str(exc), fingerprint=fingerprint)
        self.deps.store.hold_probe(name, int(self.deps.settings.auth_probe_interval_s * 1000))
        self.deps.metrics.auth_failure(name)
        log.error(
            "workspace paused: Customer.io refused its credentials; its events are kept",
            extra={"workspace": name, "status": exc.status},
        )
        raise Deferred(self.deps.settings.auth_probe_interval_s, str(exc))

    def _dead_letter(self, run: Sequence[PlannedEntry], failure: Failure) -> None:
        """Dead-letter ``run``, the head of the partition, refused for good: that ends the run of failures."""
        attempts, first_failed = self._run_attempts()
        self._failing_since_ms = None
        dead = replace(failure, first_failed_at_ms=first_failed)
        self.settle([], [(entry, dead) for entry in run], attempts=attempts, clear_retry=True)

    def _run_attempts(self) -> tuple[int, int]:
        """Attempts of the current run, the one just answered included, and its first failure (0: none before)."""
        state = self.deps.store.retry_state(self.workspace.name, self.partition)
        return (state.attempts + 1, state.first_failed_at_ms) if state else (1, 0)

    def settle(
        self,
        delivered: Sequence[PlannedEntry],
        dead: Sequence[tuple[PlannedEntry, Failure]],
        *,
        skipped: Sequence[PlannedEntry] = (),
        attempts: int = 1,
        clear_retry: bool = False,
    ) -> None:
        """Delete ``delivered`` and ``skipped`` and write ``dead`` to the dead-letter queue, in one transaction.

        Raises:
            Deferred: the dead-letter queue is full; ``dead`` stays at the head of the partition, never evicted.
            LeaseLost: another worker took the partition over; nothing was settled.
        """
        name, store = self.workspace.name, self.deps.store
        if dead and self._dead_letter_queue_full(len(dead)):
            # The entries to dead-letter stay at the head: their run of failures goes on.
            self.settle(delivered, [], skipped=skipped)
            raise Deferred(DLQ_FULL_RETRY_S, "dead-letter queue full")
        now = store.now_ms() if dead else 0
        letters = [self._letter(entry, failure, attempts, now) for entry, failure in dead]
        settled = [*delivered, *skipped, *(entry for entry, _ in dead)]
        done_ids = [entry.entry.id for entry in settled]
        dlq = dlq_key(store.prefix, name)
        if not store.settle(
            name,
            self.partition,
            self._token,
            done_ids,
            [(dlq, ltr.to_fields()) for ltr in letters],
            clear_retry=clear_retry,
        ):
            raise LeaseLost()
        observe_settled(self.deps, name, delivered, [(entry, failure.outcome) for entry, failure in dead])
        if dead:
            self._report_dead(dead)

    def _dead_letter_queue_full(self, adding: int) -> bool:
        limit = self.deps.settings.dlq_max_entries
        size = self.deps.store.dead_letter_count(self.workspace.name)
        if size + adding <= limit:
            return False
        log.error(
            "dead-letter queue full: events stay in their partition until it is drained",
            extra={"workspace": self.workspace.name, "partition": self.partition, "dead_letters": size},
        )
        return True

    def _report_dead(self, dead: Sequence[tuple[PlannedEntry, Failure]]) -> None:
        groups: dict[tuple[str, int | None], int] = {}
        for _, failure in dead:
            groups[(failure.outcome, failure.status)] = groups.get((failure.outcome, failure.status), 0) + 1
        for (outcome, status), count in groups.items():
            log.warning(
                "events dead-lettered",
                extra={
                    "workspace": self.workspace.name,
                    "partition": self.partition,
                    "outcome": outcome,
                    "status": status,
                    "events": count,
                },
            )
            report_permanent_failure(self.workspace.name, outcome, status, count)

    def _letter(self, entry: PlannedEntry, failure: Failure, attempts: int, now: int) -> DeadLetter:
        message_id, event_type, event_name = describe_event(entry.raw)
        return DeadLetter(
            workspace=self.workspace.name,
            partition=self.partition,
            event=entry.raw,
            outcome=failure.outcome,
            reason=redact(failure.reason),  # a response may echo the credentials: never store them
            status=failure.status,
            response=redact(failure.response),
            attempts=entry.prior_attempts + attempts,
            first_failed_at_ms=entry.first_failed_at_ms or failure.first_failed_at_ms or now,
            last_failed_at_ms=now,
            host=self.deps.host,
            message_id=message_id,
            event_type=event_type,
            event_name=event_name,
            entry_fields=tuple(entry.entry.fields.items()),
        )

    def _extra(self, exc: WorkerError, attempts: int, delay: float) -> dict[str, object]:
        return {
            "workspace": self.workspace.name,
            "partition": self.partition,
            "status": getattr(exc, "status", None),
            "attempt": attempts,
            "retry_in_s": round(delay, 3),
        }
