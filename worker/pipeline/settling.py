"""Settling a partition's entries: delete what was delivered or skipped, dead-letter what was refused, in one
transaction fenced by the lease token; a full dead-letter queue keeps the entries at the head of the partition.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from producers.keys import dlq_key
from worker.deadletter.records import DeadLetter, Outcome, describe_event
from worker.ops.logs import redact
from worker.pipeline.planning import PlannedEntry
from worker.pipeline.ports import Ports, observe_settled
from worker.settings import WorkspaceConfig
from worker.store.partitions import Head, LeaseLost, ReadStep

log = logging.getLogger("cio_fleet.delivery")

#: How long a partition waits when its workspace's dead-letter queue is full.
DLQ_FULL_RETRY_S: Final = 60.0


class Deferred(Exception):
    """The partition must wait ``delay_s`` before it is drained again.

    ``paused``: it waits for the workspace's credentials pause, which may be lifted before the wait is over
    (``worker.pipeline.credentials.defer_while_paused``).
    """

    def __init__(self, delay_s: float, reason: str, *, paused: bool = False) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.paused = paused


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a set of entries is dead-lettered."""

    outcome: Outcome
    reason: str
    status: int | None = None
    response: str = ""
    first_failed_at_ms: int = 0


class Settler:
    """Settles one partition's entries for the drainer whose lease holds ``token``."""

    def __init__(self, deps: Ports, workspace: WorkspaceConfig, partition: int, token: str) -> None:
        self.deps = deps
        self.workspace = workspace
        self.partition = partition
        self._token = token
        #: When set, each settle also reads the partition's next entries in the same round trip (``next_head``).
        self.read_after: ReadStep | None = None
        #: What the last settle read after settling (with ``read_after``): the partition's head since then.
        self.next_head: Head | None = None

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
        self._write(done_ids, [(dlq, ltr.to_fields()) for ltr in letters], clear_retry)
        observe_settled(self.deps, name, delivered, [(entry, failure.outcome) for entry, failure in dead])
        if dead:
            self._report_dead(dead)

    def _write(
        self, done_ids: Sequence[str], dead_letters: Sequence[tuple[str, Mapping[str, Any]]], clear_retry: bool
    ) -> None:
        """The fenced settle; with ``read_after``, the next read goes in the same round trip (``next_head``).

        Raises:
            LeaseLost: another worker took the partition over; nothing was settled.
        """
        store, name = self.deps.store, self.workspace.name
        if self.read_after is None:
            settled = store.settle(name, self.partition, self._token, done_ids, dead_letters, clear_retry=clear_retry)
            if not settled:
                raise LeaseLost()
            return
        head = store.settle_and_read(
            name, self.partition, self._token, done_ids, dead_letters, clear_retry=clear_retry, read=self.read_after
        )
        if head is None:
            raise LeaseLost()
        self.next_head = head

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
            self.deps.report_failure(self.workspace.name, outcome, status, count)

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
