"""RabbitMQ as the broker (``CIO_BROKER_URL=amqp://``): a drain task in the hand of a worker that dies comes back.

The end-to-end delivery and chaos tests run on RabbitMQ too (their ``broker`` parameter).
"""

from __future__ import annotations

import signal

import orjson
import pytest
from celery import Celery

from producers.keys import drain_queue, lease_key, stream_key
from producers.wire import DRAIN_TASK, partition_for
from tests.e2e.conftest import backlog, standin_workspaces, wait_for
from tests.support.rabbitmq import TEST_AMQP_URL, ready_messages
from worker.broker import celery_options
from worker.settings import Settings
from worker.store.kicks import PUBLISHED_TTL_MS

pytestmark = pytest.mark.e2e

#: The drain task's countdown: the first worker holds it, unacknowledged, until it is killed well before this.
COUNTDOWN_S = 15


def test_a_worker_sigkilled_with_a_drain_task_in_hand_loses_nothing(stand_in, make_fleet, redis_client, key_prefix):
    # Given one worker on RabbitMQ, and a partition with an event whose drain task is published, its kick
    # recorded as the relay records it (so the sweeper leaves the partition to that task)
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), broker="amqp")
    (first,) = fleet.start(1)
    event = {"type": "track", "userId": "held", "event": "Held", "messageId": "held-1"}
    partition = partition_for(event, 16)
    redis_client.set(lease_key(key_prefix, "wsa", partition), "kicked", px=PUBLISHED_TTL_MS)
    redis_client.xadd(stream_key(key_prefix, "wsa", partition), {"v": "1", "event": orjson.dumps(event)})
    app = Celery(broker=TEST_AMQP_URL, set_as_current=False)
    app.conf.update(celery_options(Settings(key_prefix=key_prefix, broker_url=TEST_AMQP_URL)))
    app.send_task(DRAIN_TASK, args=["wsa", partition], queue=drain_queue(key_prefix), countdown=COUNTDOWN_S)
    app.close()
    # And the worker holds the task, unacknowledged, until its countdown ends (RabbitMQ has no ready message left)
    queue = drain_queue(key_prefix)
    wait_for(lambda: ready_messages(queue) == 0, 30, "the worker to take the drain task")
    # When the worker is SIGKILLed with the task in hand
    first.send_signal(signal.SIGKILL)
    first.wait()
    fleet.processes.remove(first)
    # Then RabbitMQ puts the task back in the queue
    wait_for(lambda: ready_messages(queue) == 1, 30, "the drain task to be redelivered")
    assert stand_in.accepted("site-a") == []
    # And the next worker takes it, and it delivers the event once, when the countdown ends
    fleet.start(1)
    wait_for(lambda: len(stand_in.accepted("site-a")) >= 1, 60, "the event to be delivered")
    assert [record["operation"]["id"] for record in stand_in.accepted("site-a")] == ["held-1"]
    wait_for(lambda: backlog(redis_client, key_prefix, "wsa") == 0, 30, "the stream to empty")
    assert ready_messages(queue) == 0
