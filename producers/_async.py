"""``AsyncProducer``: the ``Producer`` API for asyncio code, on ``redis.asyncio``.

The checks, stamps, script and semantics are the producer's; only the I/O differs. The call shapes
(``track``, ``identify``…) build the event at once (so ``InvalidEventError`` is raised when they are called)
and return an awaitable of the messageId. Kicks publish through Celery's blocking client in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import redis.asyncio
import redis.exceptions

from producers._events import now_iso
from producers._kick import ENQUEUE_SCRIPT, Chunk, EventLike, Layout, Reply, chunks, prepare
from producers._producer import (
    DEFAULT_BACKLOG_CAP,
    DEFAULT_REDIS_URL,
    LAYOUT_ATTEMPTS,
    CallShapes,
    EnqueueResult,
    ProducerBase,
    Tally,
)
from producers.wire import DEFAULT_PREFIX


class AsyncProducer(ProducerBase, CallShapes[Awaitable[str]]):
    """Enqueues Segment events of one workspace from asyncio code; the arguments are ``Producer``'s.

    Args:
        redis_url: The Redis holding the streams, also the Celery broker for kicks.
        workspace: The workspace (as configured for the workers).
        key_prefix: The key prefix the workers use.
        partitions: The workspace's partition count until the workers publish one (the published count wins).
        backlog_cap: ``QueueFull`` once this many events wait in the workspace; ``None``: no cap.
        kick: Queue a drain task when a partition goes from idle to busy.
        redis_client: A ``redis.asyncio`` client to use instead of one built from ``redis_url``.

    Raises:
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        workspace: str | None = None,
        *,
        key_prefix: str = DEFAULT_PREFIX,
        partitions: int | None = None,
        backlog_cap: int | None = DEFAULT_BACKLOG_CAP,
        kick: bool = True,
        redis_client: redis.asyncio.Redis[Any] | None = None,
    ) -> None:
        super().__init__(
            redis_url, workspace, key_prefix=key_prefix, partitions=partitions, backlog_cap=backlog_cap, kick=kick
        )
        self._owns_redis = redis_client is None
        self._redis = redis_client or redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=5.0)
        self._command: Callable[..., Awaitable[Any]] = self._redis.execute_command

    def _submit(self, event: dict[str, Any]) -> Awaitable[str]:
        return self.enqueue(event)

    async def _resolve(self) -> Layout:
        return self._layout or self._make_layout(await self._redis.hget(self._config_key, "partitions"))

    async def _send(self, chunk: Chunk) -> Reply:
        """Run the enqueue script for ``chunk``; partition again and retry while the workers' count differs."""
        layout = await self._resolve()
        for _ in range(LAYOUT_ATTEMPTS):
            reply = await self._run(layout.evalsha_args(chunk))
            if reply.published is None:
                return reply
            layout = self._adopt(reply.published)
        raise self._still_changing()

    async def _run(self, args: list[Any]) -> Reply:
        try:
            raw = await self._command("EVALSHA", *args)
        except redis.exceptions.NoScriptError:
            await self._command("SCRIPT", "LOAD", ENQUEUE_SCRIPT)
            raw = await self._command("EVALSHA", *args)
        reply = Reply.parse(raw)
        if self._kicker is not None and reply.kicked:
            await asyncio.to_thread(self._kicker.kick, reply.kicked)
        return reply

    async def enqueue(self, event: EventLike) -> str:
        """Validate, stamp and append one event; see ``Producer.enqueue``.

        Returns:
            The event's messageId.

        Raises:
            InvalidEventError: The event is refused; nothing was enqueued.
            QueueFull: The workspace's backlog is at the cap; nothing was enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        prepared = prepare(event, now_iso())
        reply = await self._send(Chunk.of(prepared))
        if reply.added == 0:
            raise self._full(reply)
        return prepared.message_id

    async def enqueue_many(self, events: Iterable[EventLike]) -> EnqueueResult:
        """Validate, stamp and append many events in input order; see ``Producer.enqueue_many``.

        Returns:
            What was enqueued.

        Raises:
            QueueFull: The cap was reached; ``.result`` tells which events were enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached (earlier chunks stay enqueued).
        """
        tally = Tally()
        for chunk in chunks(events):
            reply = await self._send(chunk) if chunk.good else Reply(0, 0, [])
            tally.settle(chunk, reply.added)
            if reply.added < len(chunk.good):
                raise self._full(reply, tally.result())
        return tally.result()

    async def backlog(self) -> int:
        """How many events wait in the workspace's streams."""
        layout = await self._resolve()
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in layout.streams:
                pipe.xlen(key)
            lengths = await pipe.execute()
        return sum(int(length) for length in lengths)

    async def close(self) -> None:
        """Release the Redis and broker connections this producer opened."""
        if self._kicker is not None:
            await asyncio.to_thread(self._kicker.close)
        if self._owns_redis:
            # The pool came from ``from_url`` and is ours alone; closing it closes the client.
            await self._redis.connection_pool.disconnect()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
