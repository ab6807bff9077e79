"""Draining one partition: lease, read, plan, send, settle, for a bounded time slice (no Celery here).

``drain(deps, workspace, partition)`` returns what the Celery edge must do next: nothing, queue another drain
task now, or queue one after a delay.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from producers.wire import KICK_TTL_MS
from worker.mapping.transform import TransformOptions
from worker.pipeline.batching import linger_ms
from worker.pipeline.credentials import defer_while_paused, resume_if_credentials_changed
from worker.pipeline.planning import PlannedEntry, plan_entries
from worker.pipeline.ports import Ports
from worker.pipeline.sending import BatchSender
from worker.pipeline.settling import Deferred, Failure
from worker.settings import WorkspaceConfig
from worker.store.layout import entry_after
from worker.store.partitions import PARK_TTL_MS, Entry, Head, LeaseLost, ReadStep

log = logging.getLogger("cio_fleet.pipeline")


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What to do after a drain: ``done``, ``requeue`` now, ``later`` after ``delay_s``, ``busy`` or ``parked``.

    ``requeue``: the lease is ``kicked`` for the task to queue. ``unparked`` are partitions of the same workspace
    that waited for this drain's slot, their leases ``kicked``: queue them now.
    """

    action: Literal["done", "requeue", "later", "busy", "parked"]
    delay_s: float = 0.0
    unparked: tuple[int, ...] = ()

    def kicks(self, partition: int, max_countdown_s: float) -> list[tuple[int, float | None]]:
        """The drain tasks to queue after this drain, as ``(partition, countdown)`` (pure).

        ``requeue``: the partition again, now; ``later``: after ``delay_s`` when it is at most ``max_countdown_s``
        (a longer wait is left to the sweeper, which kicks the partition when its retry timer runs out); and every
        partition this drain unparked, now.
        """
        kicks: list[tuple[int, float | None]] = []
        if self.action == "requeue":
            kicks.append((partition, None))
        elif self.action == "later" and self.delay_s <= max_countdown_s:
            kicks.append((partition, max(self.delay_s, 0.001)))
        return kicks + [(waiting, None) for waiting in self.unparked]


#: How long a partition of the current count waits, each time, for older streams above the count to empty.
OLDER_STREAMS_WAIT_S: Final = 1.0


def drain(deps: Ports, workspace_name: str, partition: int) -> DrainResult:
    """Drain one partition of one workspace, slice after slice while ``goes_on`` allows, up to ``drain_task_max_s``.

    A slice that ends with work left would otherwise queue the partition's next task: the task goes on with it
    instead (its lease is ``kicked`` for this task, which takes it again), unless the slot is owed elsewhere.
    """
    started = deps.monotonic()
    while True:
        result = drain_slice(deps, workspace_name, partition)
        if not goes_on(deps, workspace_name, result, deps.monotonic() - started):
            return result


def goes_on(deps: Ports, workspace: str, result: DrainResult, elapsed_s: float) -> bool:
    """Whether a drain task takes another slice rather than queueing its partition's next task.

    Only a slice that ended with work left and unparked nobody, in a process that is not stopping, has a thread to
    spare (a task of another workspace waiting in the queue gets it) and keeps no partition of the workspace
    parked (the slot goes to it), and only within ``drain_task_max_s`` of the task's start.
    """
    return (
        result.action == "requeue"
        and not result.unparked
        and elapsed_s < deps.settings.drain_task_max_s
        and not deps.stopping()
        and not deps.slots.parked(workspace)
        and deps.slots.spare_thread(caller_holds_none=True)
    )


def drain_slice(deps: Ports, workspace_name: str, partition: int) -> DrainResult:
    """Drain one partition of one workspace for at most one time slice.

    Streams at or above the partition count (left by a larger count, ``worker.store.layout``) are drained like the
    others while they are within the workspace's span; a partition below the count waits until they are empty.
    After the count went up, the streams of the old count are fenced at their last old entry: a fenced partition
    delivers only its entries up to the fence, and the others wait until no fence is left.
    """
    workspace = deps.settings.workspaces.get(workspace_name)
    span = deps.store.span(workspace_name, workspace.partitions) if workspace is not None else 0
    if workspace is None or not 0 <= partition < span:
        log.error(
            "drain task for an unconfigured workspace or partition; its events stay queued",
            extra={"workspace": workspace_name, "partition": partition},
        )
        return DrainResult("done")
    fences: dict[int, str] = {}
    if partition < workspace.partitions:
        if deps.store.older_streams_wait(workspace_name, workspace.partitions, span):
            return hold_back(deps, workspace, partition)
        fences = deps.store.fences(workspace_name)
        if fences and partition not in fences:
            return hold_back(deps, workspace, partition)
    with deps.slots.hold(workspace_name) as held:
        if not held:
            parked = park(deps, workspace_name, partition)
            # A stopping process keeps nothing parked: what it parked goes back to the queue.
            return replace(parked, unparked=unpark(deps, workspace_name, every=True)) if deps.stopping() else parked
        result = PartitionDrainer(deps, workspace, partition, fences.get(partition)).run()
    # A parked partition waits for this slot; when the process is stopping, every parked partition goes back.
    unparked = unpark(deps, workspace_name, every=deps.stopping())
    if result.action == "requeue" and unparked and not deps.stopping():
        # Round robin: this partition queues behind the ones that waited, instead of taking the slot again.
        result = replace(result, action=park(deps, workspace_name, partition).action)
    deps.store.refresh_parked(workspace_name, deps.slots.parked(workspace_name), PARK_TTL_MS)
    return replace(result, unparked=unparked)


def hold_back(deps: Ports, workspace: WorkspaceConfig, partition: int) -> DrainResult:
    """Keep a partition for ``OLDER_STREAMS_WAIT_S`` (a retry-timer lease, so the sweeper leaves it), then retry."""
    token = uuid.uuid4().hex
    refusal = deps.store.take_lease(workspace.name, partition, token, int(deps.settings.lease_ttl_s * 1000))
    if refusal is not None:
        return DrainResult("later" if refusal.retry_timer else "busy", refusal.remaining_ms / 1000)
    deps.store.defer(workspace.name, partition, token, int(OLDER_STREAMS_WAIT_S * 1000))
    extra = {"workspace": workspace.name, "partition": partition}
    log.debug("partition waits for the streams of an older partition count to empty", extra=extra)
    return DrainResult("later", OLDER_STREAMS_WAIT_S)


def park(deps: Ports, workspace: str, partition: int) -> DrainResult:
    """Park a partition in this process until a slot of its workspace frees, its lease ``parked`` meanwhile.

    The lease changes from ``kicked`` (the task being run was the partition's queued task) to ``parked``: the
    partition has no queued task now. A lease held otherwise (a drainer, a retry timer, parked by another
    process) means the partition is not this task's to park.
    """
    if not deps.store.park(workspace, partition, PARK_TTL_MS):
        return DrainResult("busy")
    deps.slots.park(workspace, partition)
    return DrainResult("parked")


def unpark(deps: Ports, workspace: str, *, every: bool) -> tuple[int, ...]:
    """The parked partitions to queue again now, each ``kicked`` (those whose ``parked`` lease ran out are not)."""
    waiting = deps.slots.unpark(workspace, every=every)
    return tuple(partition for partition in waiting if deps.store.unpark(workspace, partition, KICK_TTL_MS))


def up_to_fence(entries: list[Entry], fence: str) -> list[Entry]:
    """The leading entries written up to ``fence`` (the rest wait until every old stream is drained; pure)."""
    for index, entry in enumerate(entries):
        if entry_after(entry.id, fence):
            return entries[:index]
    return entries


class PartitionDrainer:
    """One drain of one partition by one worker: owns the lease from ``run`` start to end.

    ``fence``: the last entry written with the partition count before it went up; entries after it wait (``drain``).
    """

    def __init__(self, deps: Ports, workspace: WorkspaceConfig, partition: int, fence: str | None = None) -> None:
        self.deps = deps
        self.workspace = workspace
        self.partition = partition
        self.fence = fence
        self.token = uuid.uuid4().hex
        self.ttl_ms = int(deps.settings.lease_ttl_s * 1000)
        self.options = TransformOptions.for_workspace(workspace)
        self.sender = BatchSender(deps, workspace, partition, self.token, self.renew)
        batching = deps.settings.batching
        self._read_step = ReadStep(self.ttl_ms, batching.read_count, batching.max_bytes)

    def run(self) -> DrainResult:
        """Take the lease, work, and leave the lease in the right state."""
        store, name = self.deps.store, self.workspace.name
        refusal = store.take_lease(name, self.partition, self.token, self.ttl_ms)
        if refusal is not None:
            # Early for a retry timer: come back when it ends. Owned by another drainer: nothing to do.
            return DrainResult("later" if refusal.retry_timer else "busy", refusal.remaining_ms / 1000)
        lease = (name, self.partition, self.token)
        self.deps.leases.add(lease)
        try:
            return self._work_and_leave()
        finally:
            self.deps.leases.discard(lease)

    def _work_and_leave(self) -> DrainResult:
        store, name = self.deps.store, self.workspace.name
        try:
            self._work()
        except Deferred as deferral:
            if deferral.paused:
                action = defer_while_paused(self.deps, name, self.partition, self.token, deferral.delay_s)
                return DrainResult(action, deferral.delay_s if action == "later" else 0.0)
            store.defer(name, self.partition, self.token, int(deferral.delay_s * 1000))
            return DrainResult("later", deferral.delay_s)
        except LeaseLost:
            log.warning("lease lost; another worker drains the partition", extra=self._extra())
            return DrainResult("done")
        except BaseException:
            store.defer(name, self.partition, self.token, 1_000)
            raise
        more = store.release_lease(name, self.partition, self.token, KICK_TTL_MS)
        return DrainResult("requeue" if more else "done")

    def renew(self) -> None:
        """Extend the lease, and check that it is still this drainer's: the last Redis call before each request.

        Raises:
            LeaseLost: the lease expired and another worker owns the partition.
        """
        if not self.deps.store.renew_lease(self.workspace.name, self.partition, self.token, self.ttl_ms):
            raise LeaseLost()

    def _work(self) -> None:
        deadline = self.deps.monotonic() + self.deps.settings.drain_slice_s
        # Once per slice, not per batch: a pause set by another process during the slice costs at most this
        # drainer's next request, whose 401/403 then pauses it too (as for any request already in flight when the
        # pause is set); and the probe's outcome is this drainer's own.
        self._check_credentials_pause()
        settler = self.sender.settler
        # Each settle reads the next entries in its round trip; the last settle of a batch read the partition's
        # head as it is after the batch: while this drainer holds the lease, nobody else deletes entries or changes
        # the retry state (producers only append, and what they append later is read by a later batch).
        settler.read_after = self._read_step
        prefetched: Head | None = None
        sent = False
        while not self.deps.stopping() and self.deps.monotonic() < deadline:
            head = self._read(prefetched, warm=sent)
            entries = head.entries if head is not None else []
            if self.fence is not None:
                entries = up_to_fence(entries, self.fence)
            if not entries or head is None:
                return
            planned = plan_entries(entries, self.options)
            settler.next_head = None
            self._settle_unsendable(planned)
            self.sender.send([entry for entry in planned if entry.operations], head.retry)
            prefetched, sent = settler.next_head, True

    def _read(self, prefetched: Head | None, *, warm: bool) -> Head | None:
        """The next entries, lingering up to ``linger_ms`` for a fuller batch; None when shutting down meanwhile.

        ``prefetched`` is the head the batch's last settle read (None: read it now). Each read is one round trip
        (``read_head``) that also renews the lease and fetches the retry state. ``warm``: this drain has sent a
        batch; an empty head then waits one linger for the next events (``_wait_for_more``).

        Raises:
            LeaseLost: another worker owns the partition.
        """
        batching = self.deps.settings.batching
        head = prefetched or self._read_head()
        entries = head.entries
        if not entries and warm and self._may_wait_for_more():
            return self._wait_for_more()
        if not entries or len(entries) >= batching.max_events or batching.linger_ms == 0:
            return head
        wait_ms = linger_ms(head.now_ms - entries[0].enqueued_at_ms, batching.linger_ms)
        if wait_ms <= 0:
            return head
        if self.deps.wait_or_stop(wait_ms / 1000):
            return None  # shutting down: a batch not yet in flight stays queued for the rest of the fleet
        return self._read_head()

    def _may_wait_for_more(self) -> bool:
        """Whether an empty head of a partition that just sent may wait: lingering is on, no partition of the
        workspace waits in this process for a drain slot (the slot goes to it instead), and a thread of the process
        is free (a task of another workspace waiting in the queue takes it; this one is not needed for that)."""
        slots = self.deps.slots
        lingering = self.deps.settings.batching.linger_ms > 0
        return lingering and not slots.parked(self.workspace.name) and slots.spare_thread()

    def _wait_for_more(self) -> Head | None:
        """Wait one linger, then read again; None when shutting down meanwhile.

        A partition whose events arrive steadily (a few per linger) empties its head after each batch. Leaving then
        costs every next event a kick, a task, a thread hand-over and a lease before its linger even starts; waiting
        one linger here instead sends it with what arrived meanwhile, already gathered over a linger (so it does not
        linger again). A partition that stays empty for a whole linger is left as before.
        """
        if self.deps.wait_or_stop(self.deps.settings.batching.linger_ms / 1000):
            return None
        return self._read_head()

    def _read_head(self) -> Head:
        step = self._read_step
        head = self.deps.store.read_head(
            self.workspace.name, self.partition, self.token, step.ttl_ms, step.count, step.max_bytes
        )
        if head is None:
            raise LeaseLost()
        return head

    def _settle_unsendable(self, planned: Sequence[PlannedEntry]) -> None:
        skipped = [entry for entry in planned if entry.skip is not None]
        rejected = [entry for entry in planned if entry.reject is not None]
        if not skipped and not rejected:
            return
        name = self.workspace.name
        for entry in skipped:
            self.deps.metrics.skipped(name, entry.event_type)
        for entry in rejected:
            self.deps.metrics.rejected(name, entry.event_type)
        dead = [(entry, Failure("rejected", entry.reject or "")) for entry in rejected]
        self.sender.settler.settle([], dead, skipped=skipped)

    def _check_credentials_pause(self) -> None:
        """Hold a workspace whose credentials were refused, until they change or a probe is due.

        Time paused does not count against the retry window: the partition's run of failures ends here, and the
        first failure after the pause (of the probe, or once resumed) starts a new one.
        """
        limiter, name = self.deps.limiter, self.workspace.name
        if limiter.auth_pause(name) is None:
            return
        self.deps.store.end_retry_run(name, self.partition)
        if resume_if_credentials_changed(limiter, self.deps.store, self.workspace):
            return
        interval_ms = int(self.deps.settings.auth_probe_interval_s * 1000)
        wait_s = self.deps.store.claim_probe(name, interval_ms)
        if wait_s is not None:
            raise Deferred(wait_s, "workspace paused: credentials refused", paused=True)
        self.sender.on_probe = True

    def _extra(self) -> dict[str, object]:
        return {"workspace": self.workspace.name, "partition": self.partition}
