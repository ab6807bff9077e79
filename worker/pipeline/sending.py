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
from dataclasses import replace

from producers.keys import lease_key
from worker.delivery import Accepted, BatchResponse, PauseCredentials, Reject, Retry, SplitNeeded, Verdict, classify
from worker.errors import RetryableError, Throttled, TransportFailure, WorkerError
from worker.ops.logs import redact
from worker.pipeline.batching import batch_body, pack
from worker.pipeline.credentials import lift_pause, pause_for_credentials
from worker.pipeline.pacing import wait_for_slot
from worker.pipeline.planning import PlannedEntry
from worker.pipeline.ports import Ports
from worker.pipeline.retry import THROTTLE_MAX_STEP, head_batch_limit, next_delay, throttle_pause, window_exhausted
from worker.pipeline.settling import Deferred, Failure, Settler
from worker.settings import WorkspaceConfig
from worker.store.partitions import LeaseLost, RetryState
from worker.store.ratelimit import Fence

log = logging.getLogger("cio_fleet.delivery")


class BatchSender:
    """Delivers one partition's planned entries for one workspace."""

    def __init__(
        self, deps: Ports, workspace: WorkspaceConfig, partition: int, token: str, renew: Callable[[], None]
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
        self.settler = Settler(deps, workspace, partition, token)
        lease = lease_key(deps.store.prefix, workspace.name, partition)
        self._fence = Fence(lease, token, int(deps.settings.lease_ttl_s * 1000))

    def send(self, entries: Sequence[PlannedEntry], state: RetryState | None) -> None:
        """Deliver ``entries`` (the head of the partition first) in order, settling each run as it is answered.

        ``state`` is the partition's retry state, read with the entries. When the head batch keeps failing, the
        run's ``head_limit`` first entries go alone, before the others.

        Raises:
            Deferred: a transient failure, a long rate-limit wait or a credentials pause; the rest stays queued.
        """
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
        body = batch_body(items)
        # Fencing: renewing the lease (and checking it is still ours) is the last thing before the request, so a
        # drainer that stalled past its lease (while it waited for the limiter) sends nothing. The reservation does
        # it in the same round trip when the slot is now; after a sleep for a later slot, it is renewed once more.
        # Nothing else goes between the grant and the send, so the rate seen upstream stays even.
        if not self._wait_for_limiter():
            self._renew()
        match self._answer(body, len(items)):
            case Accepted() as accepted:
                self._on_accepted(run, accepted)
            case SplitNeeded() as split:
                self._split(run, split)
            case Retry(error):
                self._on_transient(run, error)
            case Reject(error):
                self._dead_letter(run, Failure("rejected", str(error), error.status, error.body))
            case PauseCredentials(error):
                pause_for_credentials(self.deps, self.workspace, error)

    def _answer(self, body: bytes, items: int) -> Verdict:
        """Post the body and classify the answer; a request that got no answer is retried like a 5xx."""
        try:
            response = self._post(body, items)
        except TransportFailure as exc:
            return Retry(exc)
        return classify(response, items)

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

    def _wait_for_limiter(self) -> bool:
        """Wait for the workspace's next request slot (``pacing.wait_for_slot``), the lease fenced by the reservation.

        Returns:
            True when the lease was renewed by the reservation and nothing waited since; False: renew it again.

        Raises:
            Deferred: the slot is far off; the partition waits for it instead.
            LeaseLost: another worker owns the partition.
        """
        return wait_for_slot(self.deps, self.workspace, self._fence)

    def _on_accepted(self, run: list[PlannedEntry], verdict: Accepted) -> None:
        failed_entries: dict[int, str] = {}
        if verdict.failed:
            # An item's index in the batch is its operation's; an entry may have given several operations.
            owners = [index for index, entry in enumerate(run) for _ in entry.operations]
            for item_index, reason in verdict.failed.items():
                failed_entries.setdefault(owners[item_index], reason)
        delivered = [entry for index, entry in enumerate(run) if index not in failed_entries] if failed_entries else run
        attempts, first_failed = self._run_attempts() if failed_entries else (1, 0)
        dead = [
            (
                run[index],
                Failure(
                    "item_rejected",
                    f"rejected by Customer.io: {reason}",
                    207,
                    response=verdict.response,
                    first_failed_at_ms=first_failed,
                ),
            )
            for index, reason in failed_entries.items()
        ]
        self._failing_since_ms = None
        self.settler.settle(delivered, dead, attempts=attempts, clear_retry=True)
        if self.on_probe:
            lift_pause(self.deps.limiter, self.deps.store, self.workspace)
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
        policy = self.deps.settings.retry
        expired = [e for e in run if window_exhausted(max(first_failed, e.entry.enqueued_at_ms), now, policy)]
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
        log.log(level, "delivery failed; will retry", extra=self._retry_extra(exc, attempts, delay))
        raise Deferred(delay, str(exc))

    def _expire(self, expired: Sequence[PlannedEntry], exc: RetryableError, attempts: int, first_failed: int) -> None:
        """Dead-letter entries whose retry window closed; each failed since the run began, or since it was written."""
        failure = Failure("failed_after_retries", f"failed after retries: {exc}", exc.status)
        dead = [(e, replace(failure, first_failed_at_ms=max(first_failed, e.entry.enqueued_at_ms))) for e in expired]
        self.settler.settle([], dead, attempts=attempts, clear_retry=True)

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

    def _dead_letter(self, run: Sequence[PlannedEntry], failure: Failure) -> None:
        """Dead-letter ``run``, the head of the partition, refused for good: that ends the run of failures."""
        attempts, first_failed = self._run_attempts()
        self._failing_since_ms = None
        dead = replace(failure, first_failed_at_ms=first_failed)
        self.settler.settle([], [(entry, dead) for entry in run], attempts=attempts, clear_retry=True)

    def _run_attempts(self) -> tuple[int, int]:
        """Attempts of the current run, the one just answered included, and its first failure (0: none before)."""
        state = self.deps.store.retry_state(self.workspace.name, self.partition)
        return (state.attempts + 1, state.first_failed_at_ms) if state else (1, 0)

    def _retry_extra(self, exc: WorkerError, attempts: int, delay: float) -> dict[str, object]:
        where = {"workspace": self.workspace.name, "partition": self.partition}
        return {**where, "status": getattr(exc, "status", None), "attempt": attempts, "retry_in_s": round(delay, 3)}
