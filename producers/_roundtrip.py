"""Script calls sent as ready-made protocol bytes on a Redis connection, with redis-py's retry policy.

``redis.Redis.execute_command`` packs every argument and takes a pooled connection on each call, which cost more
than the producer's own work per event. The producer packs its call's fixed part once per layout (``Layout.head``)
and sends it here with the chunk's events, which are already in protocol bytes (two parts, never joined). A
producer keeps one connection of the client's pool for itself while it is free; a second thread (or task) in the
same producer at the same time takes another connection from the pool. ``enqueue_many`` sends a chunk and
prepares the next one before reading the reply, so Redis runs one chunk's script while Python prepares the next.

A connection error is retried as redis-py retries it (the client's ``Retry``), by sending the call again. A failure
that may leave a reply unread on the connection drops it; the producer's own errors (raised once every reply was
read) and Redis error replies keep it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.connection import Connection  # the type the pool hands out and takes back

from producers._events import ProducerError

_RETRIED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: Failures after which the connection holds no unread reply.
_CLEAN = (ProducerError, redis.exceptions.ResponseError)


class Call:
    """One packed command (in parts) on a connection: sent now or later, its reply read once (sent again on a retry)."""

    def __init__(self, connection: Connection, packed: Sequence[bytes | bytearray]) -> None:
        self.connection = connection
        self.packed = packed
        self._sent = False

    def send(self) -> Call:
        """Send the command without waiting for the reply; a connection error is left to ``reply``'s retry."""
        try:
            self.connection.send_packed_command(self.packed)
            self._sent = True
        except _RETRIED:
            self.connection.disconnect()
        return self

    def _attempt(self) -> Any:
        if not self._sent:
            self.connection.send_packed_command(self.packed)
        self._sent = False  # a retry sends again
        return self.connection.read_response()

    def reply(self) -> Any:
        """The reply (a Redis error reply is raised), sending the command again on a connection error."""
        return self.connection.retry.call_with_retry(self._attempt, lambda _error: self.connection.disconnect())


class Connections:
    """Connections of one client's pool for one producer: its own while free, else a pooled one."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._lock = threading.Lock()
        self._own: Connection | None = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for a series of calls; dropped if the series fails (a reply may be left unread)."""
        if self._lock.acquire(blocking=False):
            try:
                if self._own is None:
                    self._own = self._pool.get_connection()
                yield from _dropped_on_failure(self._own)
            finally:
                self._lock.release()
            return
        connection = self._pool.get_connection()
        try:
            yield from _dropped_on_failure(connection)
        finally:
            self._pool.release(connection)

    def close(self) -> None:
        """Give the producer's own connection back to the pool."""
        with self._lock:
            if self._own is not None:
                self._pool.release(self._own)
                self._own = None


def _dropped_on_failure(connection: Connection) -> Iterator[Connection]:
    try:
        yield connection
    except _CLEAN:
        raise
    except BaseException:
        connection.disconnect()
        raise


class AsyncCall:
    """``Call`` for ``redis.asyncio``."""

    def __init__(self, connection: AsyncConnection, packed: Sequence[bytes | bytearray]) -> None:
        self.connection = connection
        self.packed = packed
        self._sent = False

    async def send(self) -> AsyncCall:
        """Send the command without waiting for the reply; a connection error is left to ``reply``'s retry."""
        try:
            await self.connection.send_packed_command(self._parts)
            self._sent = True
        except _RETRIED:
            await self.connection.disconnect()
        return self

    @property
    def _parts(self) -> list[bytes]:
        # The stream writer takes any bytes-like part (a chunk's body is a bytearray); redis types it bytes.
        return cast(list[bytes], self.packed)

    async def _attempt(self) -> Any:
        if not self._sent:
            await self.connection.send_packed_command(self._parts)
        self._sent = False
        return await self.connection.read_response()

    async def reply(self) -> Any:
        """The reply (a Redis error reply is raised), sending the command again on a connection error."""

        async def drop(_error: Exception) -> None:
            await self.connection.disconnect()

        return await self.connection.retry.call_with_retry(self._attempt, drop)


class AsyncConnections:
    """``Connections`` for ``redis.asyncio``: the producer's own connection while no other task uses it."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._pool = client.connection_pool
        self._lock = asyncio.Lock()
        self._own: AsyncConnection | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a series of calls; dropped if the series fails (a reply may be left unread)."""
        if not self._lock.locked():
            async with self._lock:
                if self._own is None:
                    self._own = await self._pool.get_connection()
                async with _async_dropped_on_failure(self._own) as connection:
                    yield connection
            return
        pooled = await self._pool.get_connection()
        try:
            async with _async_dropped_on_failure(pooled) as connection:
                yield connection
        finally:
            await self._pool.release(pooled)

    async def close(self) -> None:
        """Give the producer's own connection back to the pool."""
        async with self._lock:
            if self._own is not None:
                await self._pool.release(self._own)
                self._own = None


@asynccontextmanager
async def _async_dropped_on_failure(connection: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    try:
        yield connection
    except _CLEAN:
        raise
    except BaseException:
        await connection.disconnect()
        raise
