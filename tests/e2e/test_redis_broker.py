"""Issue 16: a standalone Redis as the broker (``CIO_BROKER_URL=redis://``), another server than the events Redis.

Producers kick on the events Redis (its ``{p}.drain`` list is then the relay list); each worker's relay publishes
the kicks to the broker, which the workers consume. Every event arrives once, and nothing is left in either Redis.
"""

from __future__ import annotations

import functools

import pytest
import redis

from producers.keys import drain_queue, unacked_key
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from worker.local.fake_customerio import FakeCustomerIO

pytestmark = pytest.mark.e2e

EVENTS = 40


def accepted_at_least(stand_in: FakeCustomerIO, site: str, count: int) -> bool:
    return len(stand_in.accepted(site)) >= count


def broker_idle(broker: redis.Redis, prefix: str) -> bool:
    """No drain task waits on the broker and none is in a worker's hand (kombu's unacknowledged hash)."""
    return broker.llen(drain_queue(prefix)) == 0 and broker.hlen(unacked_key(prefix)) == 0


def test_workers_on_a_standalone_redis_broker_deliver_every_event_once_and_leave_nothing_behind(
    redis_server, stand_in, make_fleet, redis_client, key_prefix
):
    # Given two workers whose broker is a Redis server of its own (the events stay on the shared Redis)
    fleet = make_fleet(standin_workspaces(stand_in.url, "ab"), CIO_BROKER_URL=redis_server.url)
    fleet.start(2, concurrency=4)
    broker = redis.Redis.from_url(redis_server.url)
    # When producers enqueue events of many people in two workspaces (each idle partition is kicked)
    for workspace in ("wsa", "wsb"):
        with fleet.producer(workspace) as producer:
            events = [
                {"type": "track", "userId": f"user-{n % 11}", "event": "Brokered", "messageId": f"{workspace}-{n}"}
                for n in range(EVENTS)
            ]
            assert producer.enqueue_many(events).enqueued == EVENTS
    # Then every event arrives once
    for site, workspace in (("site-a", "wsa"), ("site-b", "wsb")):
        wait_for(functools.partial(accepted_at_least, stand_in, site, EVENTS), 60, f"{EVENTS} events of {workspace}")
        ids = [op["operation"]["id"] for op in stand_in.accepted(site)]
        assert sorted(ids) == sorted(f"{workspace}-{n}" for n in range(EVENTS))
        wait_until_drained(redis_client, key_prefix, workspace, timeout_s=30)
    # And the drain tasks travelled on the broker: the workers consume its queue, not the events Redis's
    queue = drain_queue(key_prefix)
    assert broker.exists(f"_kombu.binding.{queue}") == 1
    assert redis_client.exists(f"_kombu.binding.{queue}") == 0
    # And nothing is left: no task on the broker or in a worker's hand, no kick in the events Redis's relay list
    wait_for(functools.partial(broker_idle, broker, key_prefix), 30, "the broker to hold no task")
    assert redis_client.llen(queue) == 0
    assert redis_client.hlen(unacked_key(key_prefix)) == 0
    broker.close()
