"""Events of one request into Redis: one ``AsyncProducer.enqueue_many`` call, so one atomic script call.

The producer's validation, stamping and enqueue script are used as they are, so the intake and ``Producer``
can never disagree on what is accepted. The intake adds what only it can judge: an event over
``EVENT_BYTES`` is refused as oversize (413 when that is all that is wrong), and a request over ``BATCH_EVENTS``
events or ``BATCH_BYTES`` of merged events is refused whole, so that it always fits one script call: the events
of a request are in Redis all together or not at all (the backlog cap aside, which the answer reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio
import redis.exceptions

from producers import AsyncProducer, EnqueueResult, ProducerError, QueueFull
from producers.connect import async_client
from worker.intake.errors import HttpError
from worker.intake.limits import BATCH_BYTES, BATCH_EVENTS, EVENT_BYTES, RETRY_AFTER_S
from worker.settings import Settings

#: ``field`` of a refusal that is about the event as a whole (the producer's name for it).
WHOLE_EVENT = "(event)"


@dataclass(frozen=True)
class Refusal:
    """One event of the request that was not enqueued, and why."""

    index: int
    field: str
    reason: str
    oversize: bool = False

    def as_json(self) -> dict[str, Any]:
        """The refusal as the answer lists it."""
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass
class Outcome:
    """What became of a request's events."""

    total: int
    accepted: int = 0
    refused: list[Refusal] = field(default_factory=list)
    #: Set when the workspace's backlog cap stopped the request (its later events were not enqueued).
    full: QueueFull | None = None


def oversize_refusals(events: Sequence[Any]) -> tuple[list[Refusal], list[int]]:
    """The events over ``EVENT_BYTES`` (refused), and the indexes of the others (to enqueue), in order.

    Raises:
        HttpError: 413 when the request holds over ``BATCH_EVENTS`` events or ``BATCH_BYTES`` of merged events.
    """
    if len(events) > BATCH_EVENTS:
        raise HttpError(413, f"batch of {len(events)} events: at most {BATCH_EVENTS} per request")
    refused, kept, total = [], [], 0
    for index, event in enumerate(events):
        size = len(orjson.dumps(event))
        total += size
        if size > EVENT_BYTES:
            reason = f"serialised size {size} bytes exceeds {EVENT_BYTES}"
            refused.append(Refusal(index, WHOLE_EVENT, reason, oversize=True))
        else:
            kept.append(index)
    if total > BATCH_BYTES:
        raise HttpError(413, f"batch of {total} bytes of events: at most {BATCH_BYTES} per request")
    return refused, kept


def settle(outcome: Outcome, kept: list[int], result: EnqueueResult) -> None:
    """Record the producer's result for the events at ``kept`` (positions in the request)."""
    outcome.accepted += result.enqueued
    for position, error in result.errors.items():
        outcome.refused.append(Refusal(kept[position], error.field, error.reason))
    outcome.refused.sort(key=lambda refusal: refusal.index)


class Enqueuer:
    """One ``AsyncProducer`` per workspace over one shared ``redis.asyncio`` client.

    Args:
        settings: The Redis, key prefix, backlog cap and workspaces (their partition counts).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redis: redis.asyncio.Redis | None = None
        self._producers: dict[str, AsyncProducer] = {}

    def _client(self) -> redis.asyncio.Redis:
        if self._redis is None:
            self._redis = async_client(
                self._settings.redis_url.get_secret_value(),
                socket_timeout=self._settings.redis_socket_timeout_s,
                socket_connect_timeout=self._settings.redis_connect_timeout_s,
            )
        return self._redis

    def producer(self, workspace: str) -> AsyncProducer:
        """The workspace's producer, made on first use."""
        producer = self._producers.get(workspace)
        if producer is None:
            settings = self._settings
            producer = AsyncProducer(
                settings.redis_url.get_secret_value(),
                workspace,
                key_prefix=settings.key_prefix,
                partitions=settings.workspace(workspace).partitions,
                backlog_cap=settings.backlog_cap,
                redis_client=self._client(),
            )
            self._producers[workspace] = producer
        return producer

    async def enqueue(self, workspace: str, events: Sequence[Any]) -> Outcome:
        """Enqueue the events of one request; refusals and a full backlog are in the outcome.

        Raises:
            HttpError: 413 for a request over the batch limits; 503 when Redis cannot be reached.
        """
        outcome = Outcome(len(events))
        outcome.refused, kept = oversize_refusals(events)
        if not kept:
            return outcome
        try:
            result = await self.producer(workspace).enqueue_many([events[index] for index in kept])
        except QueueFull as full:
            outcome.full = full
            if full.result is not None:
                settle(outcome, kept, full.result)
            return outcome
        except (redis.exceptions.RedisError, OSError) as exc:
            message = f"Redis unavailable ({type(exc).__name__}); retry"
            raise HttpError(503, message, retry_after_s=RETRY_AFTER_S) from None
        except ProducerError as exc:  # the partition count kept changing: nothing of the request was enqueued
            raise HttpError(503, f"{exc}", retry_after_s=RETRY_AFTER_S) from None
        settle(outcome, kept, result)
        return outcome

    async def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(await self._client().ping())
        except (redis.exceptions.RedisError, OSError):
            return False

    async def close(self) -> None:
        """Release the producers' and the shared client's connections."""
        for producer in self._producers.values():
            await producer.close()
        self._producers.clear()
        if self._redis is not None:
            await self._redis.connection_pool.disconnect()
            self._redis = None
