"""The drain queue on Celery's broker: each broker's options, kombu's Redis transport (patched), what is queued.

Brokers. Drain tasks travel on the events Redis (the default), on a standalone Redis or on RabbitMQ
(``CIO_BROKER_URL``). ``celery_options`` gives the at-least-once options of each: on Redis, the visibility timeout
and the fleet's own unacknowledged-task keys; on RabbitMQ, a durable queue and exchange named after the key prefix,
persistent messages and publisher confirms (a publish returns once RabbitMQ has the message). On both, tasks are
acknowledged late and one at a time per thread (``worker/celery.py``).

What is queued. The sweeper kicks again a ``kicked`` partition whose drain task is lost; ``QueuedPartitions`` says
which partitions have one waiting. A Redis list can be read back: the events Redis's ``{prefix}.drain`` list (the
queue itself, or the kicks waiting for the relay, ``worker.pipeline.relay``) and a standalone Redis broker's list.
A RabbitMQ queue cannot be read without taking its messages, so there a task's publication is recorded in its
partition's ``kicked`` lease instead (``worker.store.kicks``), and only the relay's list is read.

The transport. kombu's Redis channel computes its Redis connection parameters from the kombu ``Connection`` it
belongs to, and only when it (re)creates its connection pool. When the broker connection is lost, Celery collects
the connection (kombu detaches the transport from it: ``transport.client = None``), then closes it; closing the
channel restores the unacknowledged drain tasks (``QoS.restore_unacked``), which needs a new pool, whose parameters
are read from the detached ``None``: ``AttributeError: 'NoneType' object has no attribute 'hostname'``. That is not
a connection error, so Celery does not catch it and the worker process exits (rc 1). An idle worker, with nothing
unacknowledged, never gets there. The acknowledgement of a task still running on the old channel takes the same
path. Upstream: celery/kombu#582 and celery/kombu#970 (same ``_connparams`` on a detached transport); no kombu
release fixes it (checked up to 5.7.0).

The shim: the channel remembers the parameters it computed while attached and uses them after the detach. The
restore then reaches Redis (messages go back to the queue) or fails with a redis ``ConnectionError``, which Celery
ignores as it should; the unrestored tasks stay in the fleet's ``unacked`` hash and come back after the visibility
timeout. Either way nothing is lost: a drain task only points at a partition whose events wait in its stream, and
the sweeper kicks any partition that has events and no drainer.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any, Final

import redis
from kombu.entity import Exchange, Queue
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from producers.connect import is_cluster
from producers.keys import drain_queue, unacked_index_key, unacked_key, unacked_mutex_key
from producers.wire import DRAIN_TASK
from worker.settings import Settings
from worker.store.replies import byte_strings

#: Longer than any task: a task runs at most ``drain_task_max_s`` plus a time slice and a request (Redis brokers only).
VISIBILITY_TIMEOUT_S: Final = 3_600
#: kombu's Redis transport with the fix below (``broker_transport`` of the Celery app on a Redis broker).
BROKER_TRANSPORT: Final = "worker.broker:Transport"


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, whose connection parameters outlive its detachment from the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._attached_params: dict[bool, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # kombu is untyped

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """The parameters of a new connection pool: computed while attached, remembered for after."""
        if self.connection.client is not None:
            self._attached_params[asynchronous] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        remembered = self._attached_params.get(asynchronous)
        if remembered is None:
            raise RedisConnectionError("the broker connection was closed before this channel connected")
        return dict(remembered)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above (``broker_transport`` of the Celery app)."""

    Channel = Channel


def queued_partitions(messages: Iterable[bytes]) -> set[tuple[str, int]]:
    """The (workspace, partition) of every drain task among raw messages of the queue list (others are skipped).

    A message in kombu's Redis list is JSON: Celery's headers (``task``) and a body, base64-encoded JSON
    ``[args, kwargs, embed]`` (Celery's message protocol 2, which producers and workers send).
    """
    found = set()
    for raw in messages:
        target = drain_target(raw)
        if target is not None:
            found.add(target)
    return found


def drain_target(raw: bytes) -> tuple[str, int] | None:
    """The (workspace, partition) of a raw drain task message of a Redis list, else None."""
    try:
        message = json.loads(raw)
        if message["headers"]["task"] != DRAIN_TASK:
            return None
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        workspace, partition = json.loads(body)[0][:2]
        return str(workspace), int(partition)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, binascii.Error):
        return None


def celery_options(settings: Settings) -> dict[str, Any]:
    """The Celery settings that depend on the broker (the rest are in ``worker.celery.create_app``)."""
    prefix = settings.key_prefix
    if settings.broker_kind == "amqp":
        name = drain_queue(prefix)
        exchange = Exchange(name, type="direct", durable=True)  # type: ignore[no-untyped-call]  # kombu is untyped
        queue = Queue(name, exchange, routing_key=name, durable=True)  # type: ignore[no-untyped-call]
        return {
            "task_queues": (queue,),
            "task_default_exchange": name,
            "task_default_routing_key": name,
            "task_default_delivery_mode": "persistent",
            "broker_transport_options": {"confirm_publish": True},
        }
    return {
        # kombu's Redis transport with a fix: a Redis restart with drain tasks in flight must not end the worker.
        "broker_transport": BROKER_TRANSPORT,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            # Unacknowledged drain tasks are kept under the fleet's own prefix, so fleets sharing a Redis stay apart.
            "unacked_key": unacked_key(prefix),
            "unacked_index_key": unacked_index_key(prefix),
            "unacked_mutex_key": unacked_mutex_key(prefix),
        },
    }


def broker_is_events_redis(settings: Settings, events: redis.Redis) -> bool:
    """Whether the broker is the events Redis itself: unset, or a Redis URL that names the same server and database
    under another spelling (``localhost`` for ``127.0.0.1``). A relay there would take the queue's own tasks and
    push them back, round and round; the workers then consume the list directly, as with the default.
    """
    if not settings.relays_kicks:
        return True
    if is_cluster(events):
        return False
    if settings.broker_kind != "redis":
        return False
    broker = redis.Redis.from_url(settings.broker(), socket_timeout=10, socket_connect_timeout=5)
    try:
        same_server = broker.info("server")["run_id"] == events.info("server")["run_id"]
        databases = (client.connection_pool.connection_kwargs.get("db", 0) for client in (broker, events))
        return same_server and len({int(db) for db in databases}) == 1
    finally:
        broker.close()


class QueuedPartitions:
    """The partitions that have a drain task waiting in a Redis list: the events Redis's ``{prefix}.drain`` (the
    queue, or the kicks waiting for the relay) and, on a standalone Redis broker, the broker's queue.

    A Redis Cluster holds no drain queue (producers mark kicked partitions in their workspace's ``ready`` set, which
    the ready relay publishes as producers wake it, and the sweeper first thing each round): only the broker's queue
    is read there.
    """

    def __init__(self, settings: Settings, events: redis.Redis) -> None:
        self.queue = drain_queue(settings.key_prefix)
        self.lists = [] if is_cluster(events) else [events]
        if settings.relays_kicks and settings.broker_kind == "redis":
            self.lists.append(redis.Redis.from_url(settings.broker(), socket_timeout=10, socket_connect_timeout=5))

    def __call__(self) -> set[tuple[str, int]]:
        """Read the relay's list first, then the broker's: a kick moving between them is seen in one of them."""
        found: set[tuple[str, int]] = set()
        for client in self.lists:
            found |= queued_partitions(byte_strings(client.lrange(self.queue, 0, -1)))
        return found
