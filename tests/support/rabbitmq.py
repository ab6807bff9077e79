"""The RabbitMQ of the tests (127.0.0.1:5672, ``.ci/ensure-rabbitmq`` makes sure it runs): a queue's depth, cleanup.

Each test's drain queue is named after its own key prefix (``{prefix}.drain``, with an exchange of the same name),
so tests on the shared broker never see each other's tasks; ``delete_queue`` removes both afterwards.
"""

from __future__ import annotations

import contextlib
import os

from kombu.connection import Connection
from kombu.exceptions import ChannelError

#: The broker of the end-to-end tests on RabbitMQ.
TEST_AMQP_URL = os.environ.get("CIO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def ready_messages(name: str, url: str = TEST_AMQP_URL) -> int:
    """Messages waiting in the queue, not counting those a consumer holds (a passive ``queue.declare``)."""
    with Connection(url) as connection:  # type: ignore[no-untyped-call]  # kombu is untyped
        _, messages, _ = connection.default_channel.queue_declare(queue=name, passive=True)
        return int(messages)


def delete_queue(name: str, url: str = TEST_AMQP_URL) -> None:
    """Delete the queue and its exchange, if they exist."""
    with Connection(url) as connection:  # type: ignore[no-untyped-call]
        for delete in ("queue_delete", "exchange_delete"):
            with contextlib.suppress(ChannelError):
                getattr(connection.channel(), delete)(name)
