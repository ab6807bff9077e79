"""Fencing with real worker processes: a drainer frozen past its lease neither sends nor settles anything.

Worker A talks to Redis through a gate (``tests.support.redis_gate``) that freezes it (SIGSTOP) at an exact
command; its lease expires, worker B takes the partition over and delivers person p's later value, then A
is woken up (SIGCONT).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest

from producers.keys import dlq_key
from tests.e2e.conftest import Fleet, backlog, standin_workspaces, wait_for
from tests.support.redis_gate import RedisGate, script_sha
from worker.deadletter.api import DeadLetter
from worker.local.fake_customerio import FakeCustomerIO
from worker.store.partitions import _SETTLE, _SETTLE_AND_READ
from worker.store.ratelimit import _RESERVE_LUA

pytestmark = pytest.mark.e2e

#: A short lease, and timeouts small enough for it (a request must not outlive the lease).
SHORT_LEASE = {
    "CIO_LEASE_TTL_S": "6",
    "CIO_HTTP__TIMEOUT_S": "1",
    "CIO_HTTP__CONNECT_TIMEOUT_S": "0.5",
    "CIO_REDIS_SOCKET_TIMEOUT_S": "1",
    "CIO_REDIS_CONNECT_TIMEOUT_S": "1",
}
#: What A sends to Redis when it asks the rate limiter for a slot, its lease checked and renewed in the same script
#: (the fence): the last step before the request.
RESERVE = (script_sha(_RESERVE_LUA),)
#: What A sends to Redis to settle a batch Customer.io answered (the script, the settle that also reads the next
#: entries, or the old MULTI/XDEL transaction).
SETTLE = (script_sha(_SETTLE), script_sha(_SETTLE_AND_READ), b"XDEL")


@pytest.fixture
def gate(redis_url: str) -> Iterator[RedisGate]:
    relay = RedisGate(redis_url)
    yield relay
    relay.close()


def identify(plan: str) -> dict:
    return {"type": "identify", "userId": "p", "traits": {"plan": plan}, "messageId": f"m-{plan}"}


#: An event of another person, in the same batch, that Customer.io refuses (207): settling it writes a dead letter.
POISON = {"type": "track", "userId": "q", "event": "Bad", "messageId": "m-poison", "properties": {"t": "poison-item"}}


def plans_of_p(accepted: list[dict]) -> list[str]:
    """The plan of every identify of person p the stand-in accepted, in order: the last one is p's value."""
    return [
        record["operation"]["attributes"]["plan"]
        for record in accepted
        if record["operation"].get("action") == "identify" and record["operation"]["identifiers"] == {"id": "p"}
    ]


def dead_lettered(client, prefix: str) -> list[str]:
    return [DeadLetter.from_fields(fields).message_id or "" for _, fields in client.xrange(dlq_key(prefix, "wsa"))]


def freeze_a_and_let_b_take_over(
    gate: RedisGate, stand_in: FakeCustomerIO, fleet: Fleet, client, prefix: str, markers: tuple[bytes, ...]
) -> Callable[[], None]:
    """A drains p's old value and is frozen before the command ``markers`` name; B delivers p's new value.

    Returns:
        A's wake-up call: the held command runs, and once Redis has answered it, A is woken up (SIGCONT).
    """
    (worker_a,) = fleet.start(1, CIO_REDIS_URL=gate.url)
    gate.hold_at(markers, lambda: os.kill(worker_a.pid, signal.SIGSTOP))

    def wake_a() -> None:
        gate.release()
        try:
            assert gate.replied.wait(10), "Redis did not answer A's held command"
        finally:
            os.kill(worker_a.pid, signal.SIGCONT)

    with fleet.producer("wsa") as producer:
        producer.enqueue_many([identify("old"), POISON])
    assert gate.caught.wait(30), "worker A never reached the freeze point"
    try:
        with fleet.producer("wsa") as producer:
            producer.enqueue(identify("new"))
        fleet.start(1)
        wait_for(lambda: "new" in plans_of_p(stand_in.accepted()), 30, "B to deliver the new value")
        wait_for(lambda: backlog(client, prefix, "wsa", 1) == 0, 10, "B to settle the partition")
    except BaseException:
        wake_a()
        raise
    return wake_a


def lease_lost_logged(fleet: Fleet) -> bool:
    return "lease lost" in (fleet.log_dir / "worker-0.log").read_text(errors="replace")


def test_a_drainer_frozen_while_waiting_for_the_limiter_does_not_post_its_old_batch(
    gate, stand_in, make_fleet, redis_client, key_prefix
):
    # Given one partition, and Customer.io refusing one item of a batch (207)
    stand_in.set_faults([{"reject_items_matching": "poison-item"}])
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=1), **SHORT_LEASE)
    # When A, frozen right when it asks the rate limiter for its slot, wakes up after B delivered p's new value
    wake_a = freeze_a_and_let_b_take_over(gate, stand_in, fleet, redis_client, key_prefix, RESERVE)
    requests_before = len(stand_in.requests())
    wake_a()
    wait_for(lambda: lease_lost_logged(fleet) or len(stand_in.requests()) > requests_before, 30, "A to wake")
    # Then A gives up without posting its old batch: p keeps its new value
    assert plans_of_p(stand_in.accepted()) == ["old", "new"]
    assert len(stand_in.requests()) == requests_before
    # And it settled nothing: the item Customer.io refused is dead-lettered once, by B
    assert dead_lettered(redis_client, key_prefix) == ["m-poison"]
    assert lease_lost_logged(fleet)


def test_a_drainer_frozen_with_its_answer_in_hand_settles_nothing_after_losing_its_lease(
    gate, stand_in, make_fleet, redis_client, key_prefix
):
    # Given one partition, and Customer.io refusing one item of a batch (207)
    stand_in.set_faults([{"reject_items_matching": "poison-item"}])
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", partitions=1), **SHORT_LEASE)
    # When A, frozen right when it settles the batch Customer.io answered, wakes up after B took over
    wake_a = freeze_a_and_let_b_take_over(gate, stand_in, fleet, redis_client, key_prefix, SETTLE)
    wake_a()
    wait_for(lambda: lease_lost_logged(fleet) or len(dead_lettered(redis_client, key_prefix)) > 1, 30, "A to wake")
    # Then A writes no dead letter and deletes nothing: the refused item is dead-lettered once, by B
    assert dead_lettered(redis_client, key_prefix) == ["m-poison"]
    assert lease_lost_logged(fleet)
    # And p ends on its new value (A's batch, in flight before the freeze, arrived before B's)
    assert plans_of_p(stand_in.accepted()) == ["old", "old", "new"]
