"""The Celery broker transport: kombu's Redis transport, made to survive a Redis restart with tasks in flight.

kombu's Redis channel computes its Redis connection parameters from the kombu ``Connection`` it belongs to, and
only when it (re)creates its connection pool. When the broker connection is lost, Celery collects the connection
(kombu detaches the transport from it: ``transport.client = None``), then closes it; closing the channel restores
the unacknowledged drain tasks (``QoS.restore_unacked``), which needs a new pool, whose parameters are read from the
detached ``None``: ``AttributeError: 'NoneType' object has no attribute 'hostname'``. That is not a connection
error, so Celery does not catch it and the worker process exits (rc 1). An idle worker, with nothing unacknowledged,
never gets there. The acknowledgement of a task still running on the old channel takes the same path.
Upstream: celery/kombu#582 and celery/kombu#970 (same ``_connparams`` on a detached transport); no kombu release
fixes it (checked up to 5.7.0).

The shim: the channel remembers the parameters it computed while attached and uses them after the detach. The
restore then reaches Redis (messages go back to the queue) or fails with a redis ``ConnectionError``, which Celery
ignores as it should; the unrestored tasks stay in the fleet's ``unacked`` hash and come back after the
visibility timeout. Either way nothing is lost: a drain task only points at a partition whose events wait in its
stream, and the sweeper kicks any partition that has events and no drainer.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from producers.wire import DRAIN_TASK


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
        target = _drain_target(raw)
        if target is not None:
            found.add(target)
    return found


def _drain_target(raw: bytes) -> tuple[str, int] | None:
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
