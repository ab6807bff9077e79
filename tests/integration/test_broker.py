"""The broker transport: restoring unacknowledged drain tasks after kombu let go of it; reading the queue back."""

from __future__ import annotations

import redis
from celery import Celery
from kombu.connection import Connection

from producers import Producer, partition_for
from producers.keys import drain_queue
from worker.broker import Transport, queued_partitions
from worker.store.replies import byte_strings


def test_a_detached_channel_still_restores_its_unacknowledged_tasks(redis_url, key_prefix):
    # Given a drain task taken from the queue and not acknowledged
    queue_name = f"{key_prefix}.drain"
    options = {"unacked_key": f"{key_prefix}.unacked", "unacked_index_key": f"{key_prefix}.unacked_index"}
    connection = Connection(redis_url, transport=Transport, transport_options=options)  # type: ignore[no-untyped-call]
    queue = connection.SimpleQueue(queue_name)  # type: ignore[no-untyped-call]
    queue.put({"task": "drain"})
    message = queue.get(timeout=5)
    client = redis.Redis.from_url(redis_url)
    assert client.llen(queue_name) == 0
    assert client.hlen(f"{key_prefix}.unacked") == 1
    # When the connection detaches the transport (as Celery's collect does after a connection error), then the
    # channel closes
    connection.transport.client = None
    queue.channel.close()
    # Then the task is back in the queue, and nothing is left unacknowledged
    assert client.llen(queue_name) == 1
    assert client.hlen(f"{key_prefix}.unacked") == 0
    assert message.payload == {"task": "drain"}
    client.close()
    connection.release()  # type: ignore[no-untyped-call]


def test_the_drain_tasks_waiting_in_the_queue_are_read_back_with_their_partitions(redis_url, key_prefix):
    # Given drain tasks queued as producers queue them, a task of another name, and a message that is not JSON
    users = {partition_for({"userId": f"u{n}"}, 8): f"u{n}" for n in range(100)}
    with Producer(redis_url, "acme", key_prefix=key_prefix, partitions=8) as producer:
        for partition in (3, 5, 3):
            producer.track(users[partition], "x")
    app = Celery(broker=redis_url, set_as_current=False)
    app.send_task("other.task", args=["acme", 7], queue=drain_queue(key_prefix))
    app.close()
    client = redis.Redis.from_url(redis_url)
    client.lpush(drain_queue(key_prefix), b"not json")
    # When the queue is read, then the drain tasks' partitions are found and the rest is skipped
    assert queued_partitions(byte_strings(client.lrange(drain_queue(key_prefix), 0, -1))) == {("acme", 3), ("acme", 5)}
    client.close()
