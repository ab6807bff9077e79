"""Per-workspace drain slots of one process."""

from __future__ import annotations

from worker.pipeline.slots import WorkspaceSlots


def test_a_workspace_gets_at_most_its_limit_of_slots_and_others_are_unaffected():
    slots = WorkspaceSlots(2)
    with slots.hold("a") as first, slots.hold("a") as second, slots.hold("a") as third, slots.hold("b") as other:
        assert (first, second, third, other) == (True, True, False, True)
        assert slots.busy("a") == 2
    assert slots.busy("a") == 0


def test_parked_partitions_come_back_once_in_the_order_they_waited():
    slots = WorkspaceSlots(1)
    for partition in (3, 1, 3):
        slots.park("a", partition)
    assert [slots.unpark("a"), slots.unpark("a"), slots.unpark("a")] == [(3,), (1,), ()]
    assert slots.unpark("b") == ()


def test_every_parked_partition_comes_back_at_once_when_the_process_stops():
    slots = WorkspaceSlots(1)
    for partition in (4, 2, 9):
        slots.park("a", partition)
    assert slots.unpark("a", every=True) == (4, 2, 9)
    assert slots.unpark("a") == ()


def test_a_thread_is_spare_while_the_drains_hold_fewer_than_the_process_has():
    slots = WorkspaceSlots(2, threads=3)
    with slots.hold("a"), slots.hold("b"):
        assert slots.spare_thread()
        with slots.hold("a"):
            assert not slots.spare_thread()
    assert WorkspaceSlots(1).spare_thread()  # threads unknown: never short


def test_a_drain_thread_between_two_slots_counts_its_own_thread_as_taken():
    slots = WorkspaceSlots(2, threads=3)
    with slots.hold("a"):
        assert slots.spare_thread(caller_holds_none=True)
        with slots.hold("b"):
            assert slots.spare_thread() and not slots.spare_thread(caller_holds_none=True)
