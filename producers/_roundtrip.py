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
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.connection import Connection  # the type the pool hands out and takes back

from producers._events import ProducerError
from producers.connect import is_cluster

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


#: Failures after which a cluster client's slot map may be stale.
_MOVED = (redis.exceptions.MovedError, redis.exceptions.ClusterDownError, *_RETRIED)


class _NodePool:
    """The connection pool of the node that owns ``key``'s slot: the client's own pool on one Redis node."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key

    def get(self) -> tuple[Any, Connection]:
        """A connection, and the pool to give it back to."""
        if not is_cluster(self._client):
            pool = self._client.connection_pool
        else:
            cluster: Any = self._client
            pool = cluster.get_redis_connection(cluster.get_node_from_key(self._key)).connection_pool
        return pool, pool.get_connection()

    def failed(self, error: BaseException) -> None:
        """After a failure: refresh a cluster's slot map if it may be stale."""
        self.stale_after(error)

    def stale_after(self, error: BaseException) -> bool:
        """Refresh a cluster's slot map after a failure that may mean it is stale; whether it did."""
        if not (is_cluster(self._client) and isinstance(error, _MOVED)):
            return False
        cluster: Any = self._client
        with contextlib.suppress(redis.exceptions.RedisError):  # the next call tries again
            cluster.nodes_manager.initialize()
        return True


class Connections:
    """Connections of one client's pool for one producer: its own while free, else a pooled one.

    ``key``: a key of the producer's workspace (on a Redis Cluster, the connections go to the node of its slot).
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._pools = _NodePool(client, key)
        self._lock = threading.Lock()
        self._own: tuple[Any, Connection] | None = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for a series of calls; dropped if the series fails (a reply may be left unread)."""
        if self._lock.acquire(blocking=False):
            try:
                if self._own is None:
                    self._own = self._pools.get()
                try:
                    yield from _dropped_on_failure(self._own[1])
                except BaseException as exc:
                    self._moved(exc)
                    raise
            finally:
                self._lock.release()
            return
        pool, connection = self._pools.get()
        try:
            yield from _dropped_on_failure(connection)
        except BaseException as exc:
            self._pools.failed(exc)
            raise
        finally:
            pool.release(connection)

    def _moved(self, error: BaseException) -> None:
        """After a failure of the own connection: on a cluster whose slot map may be stale, let it go."""
        if isinstance(error, _MOVED) and self._own is not None and self._pools.stale_after(error):
            pool, connection = self._own
            self._own = None
            pool.release(connection)

    def close(self) -> None:
        """Give the producer's own connection back to the pool."""
        with self._lock:
            if self._own is not None:
                pool, connection = self._own
                pool.release(connection)
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


class _AsyncNodePool:
    """``_NodePool`` for ``redis.asyncio``. On a cluster, the producer keeps a connection pool of its own per node
    (the cluster client's node connections belong to its own command path, which may drop them at any time)."""

    def __init__(self, client: redis.asyncio.Redis, key: str) -> None:
        self._client = client
        self._key = key
        self._node_pools: dict[str, redis.asyncio.ConnectionPool] = {}

    async def get(self) -> tuple[Any, AsyncConnection]:
        """A connection, and the pool to give it back to."""
        if not is_cluster(self._client):
            pool = self._client.connection_pool
        else:
            cluster: Any = self._client
            await cluster.initialize()
            node = cluster.get_node_from_key(self._key)
            if node.name not in self._node_pools:
                kwargs = node.connection_kwargs
                self._node_pools[node.name] = redis.asyncio.ConnectionPool(
                    connection_class=node.connection_class, **kwargs
                )
            pool = self._node_pools[node.name]
        return pool, await pool.get_connection()

    async def release(self, pool: Any, connection: AsyncConnection) -> None:
        """Give ``connection`` back to its pool."""
        await pool.release(connection)

    async def close(self) -> None:
        """Close the pools of the cluster's nodes."""
        pools, self._node_pools = list(self._node_pools.values()), {}
        for pool in pools:
            await pool.disconnect()

    async def stale_after(self, error: BaseException) -> bool:
        """Refresh a cluster's slot map after a failure that may mean it is stale; whether it did."""
        if not (is_cluster(self._client) and isinstance(error, _MOVED)):
            return False
        cluster: Any = self._client
        with contextlib.suppress(redis.exceptions.RedisError):  # the next call tries again
            await cluster.nodes_manager.initialize()
        return True


class AsyncConnections:
    """``Connections`` for ``redis.asyncio``: the producer's own connection while no other task uses it."""

    def __init__(self, client: redis.asyncio.Redis, key: str) -> None:
        self._pools = _AsyncNodePool(client, key)
        self._lock = asyncio.Lock()
        self._own: tuple[Any, AsyncConnection] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a series of calls; dropped if the series fails (a reply may be left unread)."""
        if not self._lock.locked():
            async with self._lock:
                if self._own is None:
                    self._own = await self._pools.get()
                try:
                    async with _async_dropped_on_failure(self._own[1]) as connection:
                        yield connection
                except BaseException as exc:
                    if await self._pools.stale_after(exc) and self._own is not None:
                        holder, own = self._own
                        self._own = None
                        await self._pools.release(holder, own)
                    raise
            return
        holder, pooled = await self._pools.get()
        try:
            async with _async_dropped_on_failure(pooled) as connection:
                yield connection
        except BaseException as exc:
            await self._pools.stale_after(exc)
            raise
        finally:
            await self._pools.release(holder, pooled)

    async def close(self) -> None:
        """Give the producer's own connection back to the pool."""
        async with self._lock:
            if self._own is not None:
                holder, own = self._own
                self._own = None
                await self._pools.release(holder, own)
            await self._pools.close()


@asynccontextmanager
async def _async_dropped_on_failure(connection: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    try:
        yield connection
    except _CLEAN:
        raise
    except BaseException:
        await connection.disconnect()
        raise
