"""``AsyncProducer``: the ``Producer`` API for asyncio code, on ``redis.asyncio``.

The checks, stamps, script and semantics are the producer's; only the I/O differs. The call shapes
(``track``, ``identify``…) build the event at once (so ``InvalidEventError`` is raised when they are called)
and return an awaitable of the messageId. Kicks are queued by the enqueue script, as ``Producer``'s are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from types import TracebackType
from typing import Any

import redis.asyncio
import redis.exceptions

from producers._chunk import Chunk, EventLike, chunks
from producers._events import _Event
from producers._kick import ENQUEUE_SCRIPT, Layout, Reply
from producers._producer import (
    DEFAULT_BACKLOG_CAP,
    DEFAULT_REDIS_URL,
    LAYOUT_ATTEMPTS,
    CallShapes,
    EnqueueResult,
    ProducerBase,
    Tally,
)
from producers._roundtrip import AsyncCall, AsyncConnections
from producers.connect import async_client, is_cluster
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
        wait_replicas: As ``Producer``'s: wait for this many replicas before a call returns (off by default).

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
        redis_client: redis.asyncio.Redis | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1_000,
    ) -> None:
        super().__init__(
            redis_url, workspace, key_prefix=key_prefix, partitions=partitions, backlog_cap=backlog_cap, kick=kick
        )
        self._durability(wait_replicas, wait_timeout_ms)
        self._owns_redis = redis_client is None
        self._redis = redis_client or async_client(redis_url, socket_connect_timeout=5.0)
        self._relay = is_cluster(self._redis)
        self._connections = AsyncConnections(self._redis, self._config_key)

    def _submit(self, model: type[_Event], fields: dict[str, Any]) -> Awaitable[str]:
        chunk = Chunk()
        chunk.push_shape(model, fields)
        return self._enqueue_one(chunk)

    async def _resolve(self) -> Layout:
        if self._relay:
            # Before any command: redis-py's async cluster client (8.1) drops connections of commands sent while it
            # initialises (concurrent first calls fail with AttributeError); its initialize waits for that to end.
            cluster: Any = self._redis
            await cluster.initialize()
        return self._layout or self._make_layout(await self._redis.hget(self._config_key, "partitions"))

    async def _start(self, connection: Any, chunk: Chunk) -> AsyncCall:
        """Send the script call of ``chunk``; its reply is read by ``_finish``."""
        return await AsyncCall(connection, (await self._resolve()).packed(chunk, check=self._check())).send()

    async def _finish(self, call: AsyncCall, chunk: Chunk) -> Reply:
        """The reply of a sent chunk; partition again and send it again while the workers' count differs."""
        for _ in range(LAYOUT_ATTEMPTS):
            reply = Reply.parse(await self._reply(call))
            if reply.known is not None:
                self._admit(await self._known(call.connection))
                call = await AsyncCall(call.connection, (await self._resolve()).packed(chunk, check=False)).send()
                continue
            if reply.wide:  # the cap may be reached: only a call with every stream can sum the backlog
                packed = (await self._resolve()).packed(chunk, check=self._check(), narrow=False)
                call = await AsyncCall(call.connection, packed).send()
                continue
            layout = self._judge(reply)
            if layout is None:
                return reply
            call = await AsyncCall(call.connection, layout.packed(chunk, check=self._check())).send()
        raise self._still_changing()

    async def _known(self, connection: Any) -> Any:
        """The fleet's workspaces hash's names: on the call's connection, or on a cluster, the key's own node."""
        if self._relay:
            return await self._redis.hkeys(self._workspaces_key)
        return await (await AsyncCall(connection, self._hkeys_packed).send()).reply()

    async def _reply(self, call: AsyncCall) -> Any:
        """The raw reply of a call, loading the script first if the server does not have it (after a restart)."""
        try:
            return await call.reply()
        except redis.exceptions.NoScriptError:
            await self._redis.script_load(ENQUEUE_SCRIPT)  # on a cluster: on every master
            return await (await AsyncCall(call.connection, call.packed).send()).reply()

    async def _enqueue_one(self, chunk: Chunk) -> str:
        """Enqueue a chunk of one good event; its messageId."""
        await self._resolve()  # before taking a connection: reading the config takes one of its own
        async with self._connections.connection() as connection:
            reply = await self._finish(await self._start(connection, chunk), chunk)
            if reply.added:
                await self._wait(connection)
        if reply.added == 0:
            raise self._full(reply)
        return str(chunk.message_ids[0])

    async def enqueue(self, event: EventLike) -> str:
        """Validate, stamp and append one event; see ``Producer.enqueue``.

        Returns:
            The event's messageId.

        Raises:
            InvalidEventError: The event is refused; nothing was enqueued.
            UnknownWorkspace: The workers serve no such workspace; nothing was enqueued.
            QueueFull: The workspace's backlog is at the cap; nothing was enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        chunk = Chunk()
        chunk.push(event)
        return await self._enqueue_one(chunk)

    async def enqueue_many(self, events: Iterable[EventLike]) -> EnqueueResult:
        """Validate, stamp and append many events in input order; see ``Producer.enqueue_many``.

        Returns:
            What was enqueued.

        Raises:
            QueueFull: The cap was reached; ``.result`` tells which events were enqueued.
            UnknownWorkspace: The workers serve no such workspace; nothing was enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached (earlier chunks stay enqueued).
        """
        tally = Tally()
        await self._resolve()  # before taking a connection: reading the config takes one of its own
        async with self._connections.connection() as connection:
            sent: tuple[AsyncCall, Chunk] | None = None
            for chunk in chunks(events):  # preparing a chunk overlaps the script of the one sent before
                if sent is not None:
                    await self._settle(tally, *sent)
                sent = (await self._start(connection, chunk), chunk) if chunk.count else None
                if sent is None:
                    tally.settle(chunk, 0)
            if sent is not None:
                await self._settle(tally, *sent)
            if tally.enqueued:
                await self._wait(connection)
        return tally.result()

    async def _wait(self, connection: Any) -> None:
        """With ``wait_replicas``: ``WAIT`` on the connection that wrote (it covers all of its writes)."""
        if self._wait_replicas:
            self._replicated(await (await AsyncCall(connection, self._wait_packed).send()).reply())

    async def _settle(self, tally: Tally, call: AsyncCall, chunk: Chunk) -> None:
        reply = await self._finish(call, chunk)
        tally.settle(chunk, reply.added)
        if reply.added < chunk.count:
            raise self._full(reply, tally.result())

    async def backlog(self) -> int:
        """How many events wait in the workspace's streams."""
        layout = await self._resolve()
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in layout.streams:
                pipe.xlen(key)
            lengths = await pipe.execute()
        return sum(int(length) for length in lengths)

    async def close(self) -> None:
        """Release the Redis connections this producer opened."""
        await self._connections.close()
        if self._owns_redis:
            if is_cluster(self._redis):
                await self._redis.aclose()
            else:  # the pool came from ``from_url`` and is ours alone; closing it closes the client
                await self._redis.connection_pool.disconnect()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
