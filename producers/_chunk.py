"""Events prepared for one enqueue script call: checked, stamped, serialised and hashed. Pure: no I/O.

A chunk keeps its good events the way the script call sends them. Each event's JSON is written as a Redis bulk
string into one buffer (``body``) as soon as it is prepared, so a call is never joined from a thousand parts and
no object per event is kept but its messageId. Per event the chunk also keeps the hash of its person key and the
code of its type, from which ``Layout.packed`` writes the partition and type arguments of whatever partition count
the workers publish (a stale count re-partitions the same chunk).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from pydantic import BaseModel

from producers._events import (
    EVENT_TYPES,
    InvalidEventError,
    Stamps,
    _Event,
    build_event,
    current_stamps,
    encode_parts,
    event_dict,
    find_problem,
    message_ids,
    new_message_id,
    plain_fits,
    shape_event,
)
from producers.wire import person_hash

#: Events per script call of ``enqueue_many``.
CHUNK_EVENTS: Final = 1_000
#: Bytes of events (their JSON with the stamps, in Redis protocol framing of about ten bytes each) per script call
#: of ``enqueue_many``: a call blocks Redis while it runs (about three milliseconds per 1,000 typical events) and
#: its argument is held whole in memory on both sides. One HTTP intake request (at most 1,000 events and 500 KB,
#: plus their stamps) must fit one call, so that it is enqueued whole or not at all.
CHUNK_BYTES: Final = 1_000_000

#: What ``enqueue`` accepts: a plain event or one of the event models.
EventLike = Mapping[str, Any] | BaseModel

#: The code of each event type in the script's type argument: its 1-based place in ``EVENT_TYPES``.
TYPE_CODES: Final = {kind: code for code, kind in enumerate(EVENT_TYPES, 1)}


def person_of(event: Mapping[str, Any]) -> int:
    """``person_hash``, with the usual case first (a non-empty string ``userId``), and 0 without a person key.

    0 lands where no person key does in every layout (``partition_of``: partition 0), so one int per event says it.
    """
    user_id = event.get("userId")
    if type(user_id) is str and user_id:
        return zlib.crc32(user_id.encode())
    return person_hash(event) or 0


class Chunk:
    """Consecutive input events, prepared for one script call.

    Attributes:
        start: The input index of the chunk's first event.
        message_ids: Per input event, its messageId, or ``None`` when it was refused.
        errors: Per refused input index, why.
        persons: Per good event (not refused), ``person_of``.
        types: Per good event, its ``TYPE_CODES`` byte.
        body: The good events' JSON, each a Redis bulk string, in order.
    """

    __slots__ = ("body", "errors", "message_ids", "new_id", "persons", "stamps", "start", "types")

    def __init__(self, start: int = 0, stamps: Stamps | None = None, new_id: Callable[[], str] = new_message_id):
        self.start = start
        self.stamps = stamps or current_stamps()
        self.new_id = new_id
        self.message_ids: list[str | None] = []
        self.errors: dict[int, InvalidEventError] = {}
        self.persons: list[int] = []
        self.types = bytearray()
        self.body = bytearray()

    def push(self, event: EventLike) -> str:
        """Check, stamp and serialise the next event onto the chunk.

        Returns:
            Its messageId.

        Raises:
            InvalidEventError: The event is refused; nothing of it was added.
        """
        if type(event) is not dict and isinstance(event, BaseModel):
            event = event_dict(event)
        problem = find_problem(event)
        if problem is not None:
            raise problem
        message_id, data, tail = encode_parts(event, self.stamps, self.new_id)
        body = self.body
        body += b"$%d\r\n" % (len(data) - 1 + len(tail))
        body += data
        body[-1:] = tail  # the stamps replace the closing brace
        body += b"\r\n"
        self.persons.append(person_of(event))
        self.types.append(TYPE_CODES[event["type"]])
        self.message_ids.append(message_id)
        return message_id

    def add(self, event: Any) -> None:
        """Push the next input event, or record why it is refused."""
        try:
            self.push(event)
        except InvalidEventError as exc:
            self.refuse(exc)

    def refuse(self, error: InvalidEventError) -> None:
        """Record why the next input event is refused."""
        index = self.start + len(self.message_ids)
        self.errors[index] = error.at(index)
        self.message_ids.append(None)

    def push_shape(self, model: type[_Event], fields: Mapping[str, Any]) -> str:
        """Push the event of a call shape, as ``push(build_event(model, fields))`` would, mostly without the model.

        The plain event is taken when its typed fields hold exactly the types the model keeps and it passes the
        producer's checks; otherwise the model builds it (converting what it may) or names the error, as it always
        did.

        Raises:
            InvalidEventError: The event is refused; nothing of it was added.
        """
        kind = str(model.model_fields["type"].default)
        event = shape_event(kind, fields)
        if event["type"] == kind and plain_fits(kind, event):
            try:
                return self.push(event)
            except InvalidEventError:
                pass  # the model tells the error in its own words, or converts the value (a set, a mapping...)
        return self.push(build_event(model, fields))

    @property
    def count(self) -> int:
        """How many good events the chunk holds."""
        return len(self.persons)

    @property
    def good(self) -> list[int]:
        """The offsets (in the chunk) of its good events, in order."""
        return [offset for offset, message_id in enumerate(self.message_ids) if message_id is not None]

    @property
    def full(self) -> bool:
        """Whether the chunk reached ``CHUNK_EVENTS`` or ``CHUNK_BYTES``."""
        return len(self.message_ids) >= CHUNK_EVENTS or len(self.body) >= CHUNK_BYTES

    def partitions(self, count: int) -> bytes:
        """The good events' partitions among ``count`` partitions, two bytes each (big-endian).

        ``hash % count`` is ``wire.partition_of`` for ``person_of``'s hashes (0 stays 0; one partition is 0).
        """
        return struct.pack(f">{len(self.persons)}H", *[person % count for person in self.persons])


def chunks(events: Iterable[Any]) -> Iterator[Chunk]:
    """Prepare ``events`` lazily, one chunk at a time (one stamp time per chunk)."""
    new_id = message_ids()
    chunk = Chunk(0, current_stamps(), new_id)
    push, ids, body = chunk.push, chunk.message_ids, chunk.body  # the loop runs per event: no attribute look-ups
    for event in events:
        try:
            push(event)
        except InvalidEventError as exc:
            chunk.refuse(exc)
        if len(ids) >= CHUNK_EVENTS or len(body) >= CHUNK_BYTES:  # chunk.full
            yield chunk
            chunk = Chunk(chunk.start + len(ids), current_stamps(), new_id)
            push, ids, body = chunk.push, chunk.message_ids, chunk.body
    if chunk.message_ids:
        yield chunk
