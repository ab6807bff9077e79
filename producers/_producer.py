"""``Producer``: validate, stamp and append Segment events to a workspace's partition streams in Redis.

Each ``enqueue`` is one Redis round trip (``ENQUEUE_SCRIPT``): the script checks the producer's cached
partition count against the one the workers published (a stale count costs one more round trip), the event is
appended to the stream of its partition, the workspace's backlog is checked against the cap, and an idle
partition's lease is set to ``kicked``; a drain task is then queued for it by name. ``enqueue_many`` sends
chunks of up to ``CHUNK_EVENTS`` events (or ``CHUNK_BYTES``) per script call (see ``producers._kick``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import redis

from producers._events import (
    Alias,
    Group,
    Identify,
    InvalidEventError,
    Page,
    ProducerError,
    Screen,
    Track,
    build_event,
    now_iso,
)
from producers._kick import (
    ENQUEUE_SCRIPT,
    Chunk,
    EventLike,
    Kicker,
    Layout,
    Reply,
    chunks,
    parse_partitions,
    prepare,
)
from producers.keys import config_key
from producers.wire import DEFAULT_PARTITIONS, DEFAULT_PREFIX

#: The Redis a producer talks to when given no URL.
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
#: The default backpressure cap: waiting events per workspace.
DEFAULT_BACKLOG_CAP: Final = 1_000_000
#: Script calls for one chunk while the published partition count keeps changing under it (it changes once per
#: partition change, or back and forth while workers of two counts run side by side).
LAYOUT_ATTEMPTS: Final = 5

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


@dataclass
class Tally:
    """What ``enqueue_many`` has done so far."""

    enqueued: int = 0
    message_ids: list[str | None] = field(default_factory=list)
    errors: dict[int, InvalidEventError] = field(default_factory=dict)

    def settle(self, chunk: Chunk, added: int) -> None:
        """Count a chunk of which the first ``added`` good events were appended."""
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
        if not workspace or ":" in workspace:
            raise ValueError("workspace must be a non-empty name without ':'")
        if partitions is not None and partitions < 1:
            raise ValueError("partitions must be at least 1")
        if backlog_cap is not None and backlog_cap < 1:
            raise ValueError("backlog_cap must be at least 1, or None for no cap")
        self.workspace = workspace
        self.key_prefix = key_prefix
        self.backlog_cap = backlog_cap
        self._partitions = partitions
        self._kick = kick
        self._kicker = Kicker(redis_url, key_prefix, workspace) if kick else None
        self._layout: Layout | None = None

    @property
    def _config_key(self) -> str:
        return config_key(self.key_prefix, self.workspace)

    def _make_layout(self, published: bytes | str | None) -> Layout:
        """The layout of the count the workers published, else of the ``partitions`` argument, else the default."""
        return self._adopt(parse_partitions(published, self._partitions or DEFAULT_PARTITIONS))

    def _adopt(self, partitions: int) -> Layout:
        """Use ``partitions`` from now on (the enqueue script found the cached count stale)."""
        self._layout = Layout.build(self.key_prefix, self.workspace, partitions, cap=self.backlog_cap, kick=self._kick)
        return self._layout

    def _still_changing(self) -> ProducerError:
        return ProducerError(
            f"the partition count of workspace {self.workspace!r} changed {LAYOUT_ATTEMPTS} times during one call; "
            "nothing of this call's last chunk was enqueued: retry"
        )

    def _full(self, reply: Reply, result: EnqueueResult | None = None) -> QueueFull:
        return QueueFull(self.workspace, reply.backlog, self.backlog_cap or 0, result)


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

    Each method builds the event with its model (so a bad field raises ``InvalidEventError`` before anything
    is sent), enqueues it and returns its messageId. Extra keyword arguments become top-level fields.
    """

    def _submit(self, event: dict[str, Any]) -> R:
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
        return self._submit(build_event(Identify, {**extra, **common, "userId": user_id, "traits": traits}))

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
        return self._submit(build_event(Track, fields))

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
        return self._submit(build_event(Page, {**fields, "properties": properties}))

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
        return self._submit(build_event(Screen, {**fields, "properties": properties}))

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
        return self._submit(build_event(Group, fields))

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
        return self._submit(build_event(Alias, fields))


class Producer(ProducerBase, CallShapes[str]):
    """Enqueues Segment events of one workspace into Redis for the cio-fleet workers. Thread-safe.

    Args:
        redis_url: The Redis holding the streams, also the Celery broker for kicks.
        workspace: The workspace (as configured for the workers).
        key_prefix: The key prefix the workers use.
        partitions: The workspace's partition count until the workers publish one in
            ``{prefix}:config:{workspace}`` (default ``DEFAULT_PARTITIONS``). The published count always wins: the
            enqueue script checks it on every call, and the producer partitions again when it changed.
        backlog_cap: ``QueueFull`` once this many events wait in the workspace; ``None``: no cap.
        kick: Queue a drain task when a partition goes from idle to busy; with ``False`` the workers'
            sweeper finds the partition.
        redis_client: A client to use instead of one built from ``redis_url`` (not closed by ``close``);
            kicks still publish to ``redis_url``.

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
        redis_client: redis.Redis[Any] | None = None,
    ) -> None:
        super().__init__(
            redis_url, workspace, key_prefix=key_prefix, partitions=partitions, backlog_cap=backlog_cap, kick=kick
        )
        self._owns_redis = redis_client is None
        self._redis = redis_client or redis.Redis.from_url(redis_url, socket_connect_timeout=5.0)

    def _submit(self, event: dict[str, Any]) -> str:
        return self.enqueue(event)

    def _resolve(self) -> Layout:
        return self._layout or self._make_layout(self._redis.hget(self._config_key, "partitions"))

    def _send(self, chunk: Chunk) -> Reply:
        """Run the enqueue script for ``chunk``; partition again and retry while the workers' count differs."""
        layout = self._resolve()
        for _ in range(LAYOUT_ATTEMPTS):
            reply = self._run(layout.evalsha_args(chunk))
            if reply.published is None:
                return reply
            layout = self._adopt(reply.published)
        raise self._still_changing()

    def _run(self, args: list[Any]) -> Reply:
        try:
            raw = self._redis.execute_command("EVALSHA", *args)
        except redis.exceptions.NoScriptError:
            self._redis.execute_command("SCRIPT", "LOAD", ENQUEUE_SCRIPT)
            raw = self._redis.execute_command("EVALSHA", *args)
        reply = Reply.parse(raw)
        if self._kicker is not None and reply.kicked:
            self._kicker.kick(reply.kicked)
        return reply

    def enqueue(self, event: EventLike) -> str:
        """Validate, stamp and append one event.

        Returns:
            The event's messageId (the caller's, else a new uuid4).

        Raises:
            InvalidEventError: The event is refused; nothing was enqueued.
            QueueFull: The workspace's backlog is at the cap; nothing was enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        prepared = prepare(event, now_iso())
        reply = self._send(Chunk.of(prepared))
        if reply.added == 0:
            raise self._full(reply)
        return prepared.message_id

    def enqueue_many(self, events: Iterable[EventLike]) -> EnqueueResult:
        """Validate, stamp and append many events, ``CHUNK_EVENTS`` per round trip, in input order.

        Invalid events are skipped and reported by index in ``errors``; the others are enqueued. When the
        backlog cap is reached, exactly the valid events before that point are enqueued, the rest are not (nor
        is the rest of ``events`` consumed), and ``QueueFull`` is raised with ``.result`` telling which.

        Returns:
            What was enqueued.

        Raises:
            QueueFull: The cap was reached; ``.result.message_ids`` has ``None`` for events not enqueued.
            redis.exceptions.ConnectionError: Redis cannot be reached (earlier chunks stay enqueued).
        """
        tally = Tally()
        for chunk in chunks(events):
            reply = self._send(chunk) if chunk.good else Reply(0, 0, [])
            tally.settle(chunk, reply.added)
            if reply.added < len(chunk.good):
                raise self._full(reply, tally.result())
        return tally.result()

    def backlog(self) -> int:
        """How many events wait in the workspace's streams."""
        pipe = self._redis.pipeline(transaction=False)
        for key in self._resolve().streams:
            pipe.xlen(key)
        return sum(int(length) for length in pipe.execute())

    def close(self) -> None:
        """Release the Redis and broker connections this producer opened."""
        if self._kicker is not None:
            self._kicker.close()
        if self._owns_redis:
            self._redis.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
