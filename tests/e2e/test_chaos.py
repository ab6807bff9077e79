"""Chaos: workers SIGKILLed and restarted while Customer.io fails and hangs; nothing is lost or reordered."""

from __future__ import annotations

import random
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from functools import partial

import pytest
import redis

from producers.keys import dlq_key
from tests.e2e.conftest import Fleet, backlog, standin_workspaces, wait_for
from worker.deadletter.api import DeadLetter
from worker.local.examples import synthetic_events
from worker.local.fake_customerio import FakeCustomerIO

pytestmark = pytest.mark.e2e

WORKSPACES = {"wsa": "site-a", "wsb": "site-b", "wsc": "site-c"}
TOTAL_EVENTS = 50_000


@pytest.fixture
def fast_stand_in() -> Iterator[FakeCustomerIO]:
    credentials = {"site-a": "key-a", "site-b": "key-b", "site-c": "key-c"}
    fake = FakeCustomerIO(credentials=credentials, validate=False).start()
    yield fake
    fake.stop()


#: Progress points (share of the events delivered) at which a worker is SIGKILLed and replaced.
KILL_POINTS = (0.1, 0.3, 0.5, 0.7)


def kill_and_restart_until_drained(fleet: Fleet, fake: FakeCustomerIO, expected: int, rng: random.Random) -> int:
    """SIGKILL a random worker at each progress point (so every kill lands mid-drain), then wait for the rest.

    The replacement starts in the background and is never the next victim: waiting for it to register would let
    the fleet run past the next progress point (on RabbitMQ, which redelivers a killed worker's tasks at once).
    """
    kills, deadline = 0, time.monotonic() + 240
    while time.monotonic() < deadline:
        delivered = fake.stats()["accepted"]  # a cheap count (duplicates included) for the progress points
        if delivered >= expected and len(delivered_ids(fake.accepted())) >= expected:
            return kills
        if kills < len(KILL_POINTS) and delivered >= KILL_POINTS[kills] * expected:
            victim = rng.choice([p for p in fleet.processes[:-1] if p.poll() is None])
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            fleet.processes.remove(victim)
            fleet.launch(1)
            kills += 1
        time.sleep(0.05)
    raise AssertionError(f"not every event was delivered within the deadline after {kills} kills")


def streams_empty(client: redis.Redis, prefix: str, workspace: str) -> bool:
    return backlog(client, prefix, workspace) == 0


def delivered_ids(accepted: list[dict]) -> set[str]:
    """The synthetic events' message ids (``syn-<seq>``) of what was accepted, identify and group included."""
    return {f"syn-{record['operation']['attributes']['seq']}" for record in accepted}


def first_delivery_order_is_per_person_order(accepted: list[dict]) -> list[str]:
    seen: set[str] = set()
    last_seq: dict[str, int] = {}
    inversions = []
    for record in accepted:
        op = record["operation"]
        identifiers = op["cio_relationships"][0]["identifiers"] if op["type"] == "object" else op["identifiers"]
        person = f"{record['site_id']}/{sorted(identifiers.items())}"
        seq = op["attributes"]["seq"]
        key = f"{person}/{seq}"
        if key in seen:
            continue
        seen.add(key)
        if seq < last_seq.get(person, -1):
            inversions.append(f"{person}: {seq} after {last_seq[person]}")
        last_seq[person] = max(seq, last_seq.get(person, -1))
    return inversions


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_sigkills_5xx_and_hangs_lose_nothing_and_keep_per_person_order(
    fast_stand_in, make_fleet, redis_client, key_prefix, broker
):
    # Given Customer.io failing 5 % of requests with 500/503 and hanging 1 % past the client timeout, and the
    # drain tasks on the events Redis or on RabbitMQ
    fast_stand_in.set_faults([{"latency_ms": 30, "error_rate": 0.05, "hang_rate": 0.01, "hang_s": 2.5}])
    fleet = make_fleet(
        standin_workspaces(fast_stand_in.url, "abc"),
        broker=broker,
        CIO_HTTP__TIMEOUT_S="1",
        CIO_HTTP__CONNECT_TIMEOUT_S="0.5",
        CIO_REDIS_SOCKET_TIMEOUT_S="1",
        CIO_LEASE_TTL_S="6",
        CIO_RETRY__BASE_S="0.2",
        CIO_RETRY__CAP_S="2",
        CIO_BATCHING__MAX_EVENTS="50",
    )
    # And 50,000 events over three workspaces
    events = synthetic_events(TOTAL_EVENTS, people=600)
    expected: dict[str, set[str]] = defaultdict(set)
    for index, name in enumerate(WORKSPACES):
        share = events[index::3]
        with fleet.producer(name) as producer:
            assert producer.enqueue_many(share).enqueued == len(share)
        expected[name] = {event["messageId"] for event in share}
    # When three workers drain them while one of them is SIGKILLed and replaced every few seconds
    fleet.start(3)
    kills = kill_and_restart_until_drained(fleet, fast_stand_in, TOTAL_EVENTS, random.Random(3))
    assert kills == len(KILL_POINTS)
    # Then every event was delivered (duplicates carry the same id) or dead-lettered for a permanent reason
    for name, site in WORKSPACES.items():
        delivered = delivered_ids(fast_stand_in.accepted(site))
        letters = [DeadLetter.from_fields(f) for _, f in redis_client.xrange(dlq_key(key_prefix, name))]
        assert [letter for letter in letters if letter.outcome == "failed_after_retries"] == []
        assert all(letter.status is None or letter.status < 500 for letter in letters)
        assert delivered | {letter.message_id for letter in letters} == expected[name]
        # (an accepted batch whose worker was killed before settling it is redelivered after the lease TTL)
        wait_for(partial(streams_empty, redis_client, key_prefix, name), 30, f"{name}'s streams to empty")
    # And no person's events were delivered out of order
    assert first_delivery_order_is_per_person_order(fast_stand_in.accepted()) == []
