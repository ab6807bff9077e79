"""The broker transport: unacknowledged drain tasks go back to the queue even after kombu let go of the transport."""

from __future__ import annotations

import redis
from kombu.connection import Connection

from worker.broker import Transport


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
