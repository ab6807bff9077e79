"""The shutdown watchdog releases what is still held when the grace runs out."""

from __future__ import annotations

import threading

from worker.pipeline.shutdown import ActiveLeases, ShutdownWatchdog


def test_leases_still_held_when_the_grace_ends_are_released():
    leases = ActiveLeases()
    leases.add(("acme", 3, "token-a"))
    leases.add(("acme", 5, "token-b"))
    leases.discard(("acme", 5, "token-b"))
    released, done = [], threading.Event()

    def release(lease):
        released.append(lease)
        done.set()

    ShutdownWatchdog(0.01, leases, release).start()
    assert done.wait(5)
    assert released == [("acme", 3, "token-a")]


def test_a_release_that_fails_does_not_stop_the_others():
    leases = ActiveLeases()
    for partition in (1, 2):
        leases.add(("acme", partition, f"t{partition}"))
    released = []

    def release(lease):
        if lease[1] == 1:
            raise ConnectionError("redis went away")
        released.append(lease)

    assert ShutdownWatchdog(10, leases, release).expire() == 2
    assert released == [("acme", 2, "t2")]
