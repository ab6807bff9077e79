"""Pacing one request by the workspace's fleet-wide rate limiter: reserve a slot, sleep until it, or defer."""

from __future__ import annotations

from typing import Final

from worker.pipeline.ports import Ports
from worker.pipeline.settling import Deferred
from worker.settings import WorkspaceConfig
from worker.store.partitions import LeaseLost
from worker.store.ratelimit import Fence, Reservation

#: Longest the sender sleeps for the rate limiter inside a task; longer waits defer the partition instead.
MAX_LIMITER_SLEEP_S: Final = 0.5
#: How late after its reserved slot a request may still go. A thread that sleeps for its slot wakes up late when
#: the process or the machine is busy (10-50 ms on two loaded cores, for a fifth of the requests): a missed slot
#: is lost to the workspace unless nobody reserved after it, so a tolerance of 10 ms cost up to a third of the
#: rate. Requests each sent at most this late put at most ``limiter_rps x (W + 0.1) + burst`` requests in any
#: window of W seconds: within ``rate_limit_rps`` for W >= 4 s with the default 3 % headroom, and about 10 % over
#: it in a single second at worst (Customer.io's limit is a fair-use rate; the stand-in's bucket holds a second).
LATE_SEND_TOLERANCE_S: Final = 0.100


def wait_for_slot(deps: Ports, workspace: WorkspaceConfig, fence: Fence | None = None) -> bool:
    """Reserve the workspace's next request slot and sleep until it.

    A thread that wakes up well after its slot does not send late, which would bunch this request with the
    next one and break the rate seen by Customer.io: it reserves anew, giving its missed slot back (which the
    limiter takes only if nobody reserved after it, so the missed slot is not lost to the workspace's rate).

    Returns:
        True when ``fence`` (the drainer's lease) was checked and renewed by the reservation itself and nothing
        waited after it: the request may go at once. False when the caller slept for its slot after the
        reservation, so it must renew the lease again before the request.

    Raises:
        Deferred: the slot is far off; the partition waits for it instead.
        LeaseLost: ``fence`` is not the caller's lease any more.
    """
    name = workspace.name
    missed: Reservation | None = None
    while True:
        slot = deps.limiter.reserve(
            name, workspace.limiter_rps, workspace.rate_limit_burst, MAX_LIMITER_SLEEP_S, give_back=missed, fence=fence
        )
        if slot.lease_lost:
            raise LeaseLost()
        if slot.wait_s > 0:
            deps.metrics.limiter_wait(name, slot.wait_s)
        if not slot.reserved:
            raise Deferred(slot.wait_s, "waiting for the rate limiter")
        if slot.wait_s <= 0:
            return fence is not None
        started = deps.monotonic()
        deps.sleep(slot.wait_s)
        if deps.monotonic() - started - slot.wait_s <= LATE_SEND_TOLERANCE_S:
            return False
        missed = slot
