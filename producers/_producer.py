"""``Producer``: validate, stamp and append Segment events to a workspace's partition streams in Redis.

Each ``enqueue`` is one Redis round trip (``ENQUEUE_SCRIPT``): the script checks that the fleet knows the
workspace and the producer's cached partition count against the one the workers published (a stale count costs
one more round trip), the event is appended to the stream of its partition, the workspace's backlog is checked
against the cap (through an upper bound of it while the cap is far: ``producers._kick.ENQUEUE_SCRIPT``), and an
idle partition's lease is set to ``kicked`` and its drain task queued. ``enqueue_many`` sends chunks of up to
``CHUNK_EVENTS`` events (or ``CHUNK_BYTES``) per script call (see ``producers._chunk``), and prepares the next
chunk while Redis runs the script of the previous one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import redis

from producers._chunk import Chunk, EventLike, chunks
from producers._events import (
    Alias,
    Group,
    Identify,
    InvalidEventError,
    Page,
    ProducerError,
    Screen,
    Track,
    _Event,
)
from producers._kick import ENQUEUE_SCRIPT, Layout, Reply, parse_partitions, resp
from producers._roundtrip import Call, Connections
from producers.connect import is_cluster, sync_client
from producers.keys import config_key, workspaces_key
from producers.wire import DEFAULT_PARTITIONS, DEFAULT_PREFIX

#: The Redis a producer talks to when given no URL.
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
#: The default backpressure cap: waiting events per workspace.
DEFAULT_BACKLOG_CAP: Final = 1_000_000
#: Script calls for one chunk while the published partition count keeps changing under it (it changes once per
#: partition change, or back and forth while workers of two counts run side by side).
LAYOUT_ATTEMPTS: Final = 5
#: After the fleet's workspaces hash was found empty (no worker ever started) or listing the workspace, this long
#: the producer calls the script without the ``served`` check (each check costs a round trip to another key).
UNCHECKED_S: Final = 1.0

R = TypeVar("R")


@dataclass(frozen=True)
class EnqueueResult:
    """The outcome of ``enqueue_many``.

    Attributes:
        enqueued: How many events were appended.
        message_ids: Per input event, its messageId, or ``None`` when it was not enqueued.
        errors: Per rejected input index, why (``InvalidEventError.index`` is set).
    """

    enqueued: int
    message_ids: list[str | None]
    errors: dict[int, InvalidEventError]


class UnknownWorkspace(ProducerError, ValueError):
    """The fleet does not serve the workspace (a mistyped name?): nothing was enqueued.

    The workers publish the workspaces they serve; before any worker has ever started, every workspace is accepted.

    Attributes:
        workspace: The workspace asked for.
        known: The workspaces the fleet serves.
    """

    def __init__(self, workspace: str, known: list[str]) -> None:
        names = ", ".join(known) or "none"
        super().__init__(f"workspace {workspace!r} is not served by the fleet (it serves: {names}); nothing enqueued")
        self.workspace = workspace
        self.known = known


class QueueFull(ProducerError):
    """The workspace's backlog reached the cap: nothing more was enqueued, and nothing was dropped.

    Attributes:
        workspace: The workspace.
        backlog: Waiting events when the cap was hit.
        cap: The producer's ``backlog_cap``.
        result: For ``enqueue_many``, what was enqueued before the cap was hit; else ``None``.
    """

    def __init__(self, workspace: str, backlog: int, cap: int, result: EnqueueResult | None = None) -> None:
        super().__init__(
            f"backlog of workspace {workspace!r} is full: {backlog} waiting events, cap {cap}; retry later"
        )
        self.workspace = workspace
        self.backlog = backlog
        self.cap = cap
        self.result = result


class NotReplicated(ProducerError):
    """The events were enqueued on the master, but fewer replicas than asked acknowledged them in time.

    A failover now could lose them (Redis replicates asynchronously). Enqueueing them again is safe: the workers
    deliver each event at least once, and Customer.io dedupes by messageId.

    Attributes:
        acknowledged: Replicas that acknowledged the writes.
        wanted: Replicas the producer waited for (``wait_replicas``).
    """

    def __init__(self, workspace: str, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"events of workspace {workspace!r} were enqueued on the master but only {acknowledged} of {wanted} "
            f"replicas acknowledged them within {timeout_ms} ms; a failover now could lose them"
        )
        self.acknowledged = acknowledged
        self.wanted = wanted


@dataclass
class Tally:
    """What ``enqueue_many`` has done so far."""

    enqueued: int = 0
    message_ids: list[str | None] = field(default_factory=list)
    errors: dict[int, InvalidEventError] = field(default_factory=dict)

    def settle(self, chunk: Chunk, added: int) -> None:
        """Count a chunk of which the first ``added`` good events were appended."""
        if added < chunk.count:
            for offset in chunk.good[added:]:
                chunk.message_ids[offset] = None
        self.message_ids += chunk.message_ids
        self.errors.update(chunk.errors)
        self.enqueued += added

    def result(self) -> EnqueueResult:
        """The frozen result."""
        return EnqueueResult(self.enqueued, self.message_ids, self.errors)


class ProducerBase:
    """Configuration shared by ``Producer`` and ``AsyncProducer``."""

    def __init__(
        self,
        redis_url: str,
        workspace: str | None,
        *,
        key_prefix: str,
        partitions: int | None,
        backlog_cap: int | None,
        kick: bool,
    ) -> None:
        if not workspace or any(mark in workspace for mark in ":{}"):
            raise ValueError("workspace must be a non-empty name without ':', '{' or '}'")
        if any(mark in key_prefix for mark in "{}"):
            raise ValueError("key_prefix must not hold '{' or '}' (they would be the Redis Cluster hash tag)")
        if partitions is not None and partitions < 1:
            raise ValueError("partitions must be at least 1")
        if backlog_cap is not None and backlog_cap < 1:
            raise ValueError("backlog_cap must be at least 1, or None for no cap")
        self.workspace = workspace
        self.key_prefix = key_prefix
        self.backlog_cap = backlog_cap
        self._partitions = partitions
        self._kick = kick
        self._relay = False
        self._layout: Layout | None = None
        self._unchecked_until = 0.0

    @property
    def _config_key(self) -> str:
        return config_key(self.key_prefix, self.workspace)

    def _make_layout(self, published: bytes | str | None) -> Layout:
        """The layout of the count the workers published, else of the ``partitions`` argument, else the default."""
        return self._adopt(parse_partitions(published, self._partitions or DEFAULT_PARTITIONS))

    def _adopt(self, partitions: int) -> Layout:
        """Use ``partitions`` from now on (the enqueue script found the cached count stale)."""
        self._layout = Layout.build(
            self.key_prefix, self.workspace, partitions, cap=self.backlog_cap, kick=self._kick, relay=self._relay
        )
        return self._layout

    def _durability(self, wait_replicas: int, wait_timeout_ms: int) -> None:
        """Wait for ``wait_replicas`` replicas (``WAIT``) before a call returns; 0: do not wait."""
        if wait_replicas < 0 or wait_timeout_ms < 1:
            raise ValueError("wait_replicas must be at least 0 and wait_timeout_ms at least 1")
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._wait_packed = [b"*3\r\n" + resp(b"WAIT", b"%d" % wait_replicas, b"%d" % wait_timeout_ms)]

    def _replicated(self, acknowledged: Any) -> None:
        """Raise ``NotReplicated`` when fewer replicas than asked acknowledged the writes."""
        if int(acknowledged) < self._wait_replicas:
            raise NotReplicated(self.workspace, int(acknowledged), self._wait_replicas, self._wait_timeout_ms)

    @property
    def _workspaces_key(self) -> str:
        return workspaces_key(self.key_prefix)

    @property
    def _hkeys_packed(self) -> list[bytes]:
        """``HKEYS {p}:workspaces`` in Redis protocol bytes."""
        return [b"*2\r\n" + resp(b"HKEYS", self._workspaces_key.encode())]

    def _check(self) -> bool:
        """Whether the script checks that a worker serves the workspace."""
        return time.monotonic() >= self._unchecked_until

    def _admit(self, raw_known: Sequence[bytes | str]) -> None:
        """After the script found no worker serving the workspace: refuse it, unless the fleet's workspaces hash
        is empty (no worker ever started: everything is accepted) or lists it (its ``served`` key just expired).

        Raises:
            UnknownWorkspace: Workers serve other workspaces, not this one.
        """
        known = sorted(name.decode() if isinstance(name, bytes) else str(name) for name in raw_known)
        if known and self.workspace not in known:
            raise UnknownWorkspace(self.workspace, known)
        self._unchecked_until = time.monotonic() + UNCHECKED_S

    def _still_changing(self) -> ProducerError:
        return ProducerError(
            f"the partition count of workspace {self.workspace!r} changed {LAYOUT_ATTEMPTS} times during one call; "
            "nothing of this call's last chunk was enqueued: retry"
        )

    def _full(self, reply: Reply, result: EnqueueResult | None = None) -> QueueFull:
        return QueueFull(self.workspace, reply.backlog, self.backlog_cap or 0, result)

    def _judge(self, reply: Reply) -> Layout | None:
        """The layout to send the call again with (the count was stale), or ``None``: the reply stands."""
        return None if reply.published is None else self._adopt(reply.published)


def _common(
    anonymous_id: str | int | None,
    context: Mapping[str, Any] | None,
    integrations: Mapping[str, Any] | None,
    timestamp: Any,
    message_id: str | None,
) -> dict[str, Any]:
    return {
        "anonymousId": anonymous_id,
        "context": context,
        "integrations": integrations,
        "timestamp": timestamp,
        "messageId": message_id,
    }


class CallShapes(Generic[R]):
    """Segment's call shapes over ``_submit``; ``R`` is ``str`` for ``Producer``, an awaitable for the async one.

    Each method builds the event as its model would (so a bad field raises ``InvalidEventError`` before anything
    is sent), enqueues it and returns its messageId. Extra keyword arguments become top-level fields. The model
    itself only runs for values the plain checks cannot vouch for (``producers._chunk.Chunk.push_shape``).
    """

    def _submit(self, model: type[_Event], fields: dict[str, Any]) -> R:
        raise NotImplementedError

    def identify(
        self,
        user_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> R:
        """Enqueue an ``identify``: who the person is (``user_id``, else an email in ``traits``)."""
        common = _common(anonymous_id, context, integrations, timestamp, message_id)
        return self._submit(Identify, {**extra, **common, "userId": user_id, "traits": traits})

    def track(
        self,
        user_id: str | int | None = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> R:
        """Enqueue a ``track``: the person did ``event``."""
        common = _common(anonymous_id, context, integrations, timestamp, message_id)
        fields = {**extra, **common, "userId": user_id, "event": event, "properties": properties}
        return self._submit(Track, fields)

    def page(
        self,
        user_id: str | int | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> R:
        """Enqueue a ``page``: the person viewed a web page (``properties.url``)."""
        common = _common(anonymous_id, context, integrations, timestamp, message_id)
        fields = {**extra, **common, "userId": user_id, "name": name, "category": category}
        return self._submit(Page, {**fields, "properties": properties})

    def screen(
        self,
        user_id: str | int | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> R:
        """Enqueue a ``screen``: the person viewed the mobile screen ``name``."""
        common = _common(anonymous_id, context, integrations, timestamp, message_id)
        fields = {**extra, **common, "userId": user_id, "name": name, "category": category}
        return self._submit(Screen, {**fields, "properties": properties})

    def group(
        self,
        user_id: str | int | None = None,
        group_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> R:
        """Enqueue a ``group``: the person belongs to ``group_id`` (a Customer.io object)."""
        common = _common(anonymous_id, context, integrations, timestamp, message_id)
        fields = {**extra, **common, "userId": user_id, "groupId": group_id, "traits": traits}
        return self._submit(Group, fields)

    def alias(
        self,
        previous_id: str | int | None = None,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> R:
        """Enqueue an ``alias``: the person known as ``previous_id`` is ``user_id``."""
        common = _common(anonymous_id, context, integrations, timestamp, message_id)
        fields = {**extra, **common, "userId": user_id, "previousId": previous_id}
        return self._submit(Alias, fields)


class Producer(ProducerBase, CallShapes[str]):
    """Enqueues Segment events of one workspace into Redis for the cio-fleet workers. Thread-safe.

    Args:
        redis_url: The Redis holding the streams, also the workers' Celery broker (kicks are queued there).
        workspace: The workspace (as configured for the workers).
        key_prefix: The key prefix the workers use.
        partitions: The workspace's partition count until the workers publish one in
            ``{prefix}:config:{workspace}`` (default ``DEFAULT_PARTITIONS``). The published count always wins: the
            enqueue script checks it on every call, and the producer partitions again when it changed.
        backlog_cap: ``QueueFull`` once this many events wait in the workspace; ``None``: no cap. The cap is
            exact: the script compares it with an upper bound of the backlog (``{prefix}:backlog:{workspace}``,
            which every enqueue adds to and the workers' sweeper sets to the truth each round) and sums the stream
            lengths only when the bound says the cap may be reached. Events of a raw ``XADD`` count from the next
            sweeper round.
        kick: Queue a drain task when a partition goes from idle to busy; with ``False`` the workers'
            sweeper finds the partition.
        redis_client: A client to use instead of one built from ``redis_url`` (not closed by ``close``; the
            producer keeps one connection of its pool while it lives). Kicks go to that client's Redis.
        wait_replicas: Before a call returns, wait until this many replicas acknowledged its writes (Redis
            ``WAIT``), so that a failover cannot lose what was acknowledged; ``NotReplicated`` when they do not
            within ``wait_timeout_ms``. Off (0) by default: it costs a round trip and the replication lag per call.

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
        redis_client: redis.Redis | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1_000,
    ) -> None:
        super().__init__(
            redis_url, workspace, key_prefix=key_prefix, partitions=partitions, backlog_cap=backlog_cap, kick=kick
        )
        self._durability(wait_replicas, wait_timeout_ms)
        self._owns_redis = redis_client is None
        self._redis = redis_client or sync_client(redis_url, socket_connect_timeout=5.0)
        self._relay = is_cluster(self._redis)
        self._connections = Connections(self._redis, self._config_key)

    def _submit(self, model: type[_Event], fields: dict[str, Any]) -> str:
        chunk = Chunk()
        chunk.push_shape(model, fields)
        return self._enqueue_one(chunk)

    def _resolve(self) -> Layout:
        return self._layout or self._make_layout(self._redis.hget(self._config_key, "partitions"))

    def _start(self, connection: Any, chunk: Chunk) -> Call:
        """Send the script call of ``chunk``; its reply is read by ``_finish``."""
        return Call(connection, self._resolve().packed(chunk, check=self._check())).send()

    def _finish(self, call: Call, chunk: Chunk) -> Reply:
        """The reply of a sent chunk; partition again and send it again while the workers' count differs."""
        for _ in range(LAYOUT_ATTEMPTS):
            reply = Reply.parse(self._reply(call))
            if reply.known is not None:
                self._admit(self._known(call.connection))
                call = Call(call.connection, self._resolve().packed(chunk, check=False)).send()
                continue
            if reply.wide:  # the cap may be reached: only a call with every stream can sum the backlog
                call = Call(call.connection, self._resolve().packed(chunk, check=self._check(), narrow=False)).send()
                continue
            layout = self._judge(reply)
            if layout is None:
                return reply
            call = Call(call.connection, layout.packed(chunk, check=self._check())).send()
        raise self._still_changing()

    def _known(self, connection: Any) -> Any:
        """The fleet's workspaces hash's names: on the call's connection, or on a cluster, the key's own node."""
        if self._relay:
            return self._redis.hkeys(self._workspaces_key)
        return Call(connection, self._hkeys_packed).send().reply()

    def _reply(self, call: Call) -> Any:
        """The raw reply of a call, loading the script first if the server does not have it (after a restart)."""
        try:
            return call.reply()
        except redis.exceptions.NoScriptError:
            self._redis.script_load(ENQUEUE_SCRIPT)  # on a cluster: on every master
            return Call(call.connection, call.packed).send().reply()

    def _enqueue_one(self, chunk: Chunk) -> str:
        """Enqueue a chunk of one good event; its messageId."""
        self._resolve()  # before taking a connection: reading the config takes one of its own
        with self._connections.connection() as connection:
            reply = self._finish(self._start(connection, chunk), chunk)
            if reply.added:
                self._wait(connection)
        if reply.added == 0:
            raise self._full(reply)
        return str(chunk.message_ids[0])

    def enqueue(self, event: EventLike) -> str:
        """Validate, stamp and append one event.

        Returns:
            The event's messageId (the caller's, else a new uuid4).

        Raises:
            InvalidEventError: The event is refused; nothing was enqueued.
            UnknownWorkspace: The workers serve no such workspace; nothing was enqueued.
            QueueFull: The workspace's backlog is at the cap; nothing was enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        chunk = Chunk()
        chunk.push(event)
        return self._enqueue_one(chunk)

    def enqueue_many(self, events: Iterable[EventLike]) -> EnqueueResult:
        """Validate, stamp and append many events, ``CHUNK_EVENTS`` per round trip, in input order.

        Invalid events are skipped and reported by index in ``errors``; the others are enqueued. When the
        backlog cap is reached, exactly the valid events before that point are enqueued, the rest are not, and
        ``QueueFull`` is raised with ``.result`` telling which (``events`` may have been read up to one chunk
        further: go on from ``len(result.message_ids)``).

        Returns:
            What was enqueued.

        Raises:
            QueueFull: The cap was reached; ``.result.message_ids`` has ``None`` for events not enqueued.
            UnknownWorkspace: The workers serve no such workspace; nothing was enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached (earlier chunks stay enqueued).
        """
        tally = Tally()
        self._resolve()  # before taking a connection: reading the config takes one of its own
        with self._connections.connection() as connection:
            sent: tuple[Call, Chunk] | None = None
            for chunk in chunks(events):  # preparing a chunk overlaps the script of the one sent before
                if sent is not None:
                    self._settle(tally, *sent)
                sent = (self._start(connection, chunk), chunk) if chunk.count else None
                if sent is None:
                    tally.settle(chunk, 0)
            if sent is not None:
                self._settle(tally, *sent)
            if tally.enqueued:
                self._wait(connection)
        return tally.result()

    def _wait(self, connection: Any) -> None:
        """With ``wait_replicas``: ``WAIT`` on the connection that wrote (it covers all of its writes)."""
        if self._wait_replicas:
            self._replicated(Call(connection, self._wait_packed).send().reply())

    def _settle(self, tally: Tally, call: Call, chunk: Chunk) -> None:
        reply = self._finish(call, chunk)
        tally.settle(chunk, reply.added)
        if reply.added < chunk.count:
            raise self._full(reply, tally.result())

    def backlog(self) -> int:
        """How many events wait in the workspace's streams."""
        pipe = self._redis.pipeline(transaction=False)
        for key in self._resolve().streams:
            pipe.xlen(key)
        return sum(int(length) for length in pipe.execute())

    def close(self) -> None:
        """Release the Redis connections this producer opened."""
        self._connections.close()
        if self._owns_redis:
            self._redis.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
