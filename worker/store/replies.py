"""redis-py's replies and arguments, typed once for the fleet's clients.

redis-py types a reply as the union of what any client may get (``bytes | str | None``, ``list | None``, an
``Awaitable`` for asyncio clients). The fleet's clients are synchronous and leave ``decode_responses`` off, so each
command's reply has one known shape: these helpers name it, in one place, rather than a cast at every call. They
change nothing at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from redis.typing import EncodableT, FieldT

#: One stream entry as redis-py gives it: (id, fields).
StreamRow = tuple[bytes, dict[bytes, bytes]]


def string(reply: object) -> bytes:
    """A string reply, such as ``XADD``'s entry id."""
    return cast(bytes, reply)  # bytes replies: the clients never decode


def optional_string(reply: object) -> bytes | None:
    """A string reply or nil, such as ``GET``'s."""
    return cast(bytes | None, reply)  # bytes replies: the clients never decode


def stream_rows(reply: object) -> list[StreamRow]:
    """``XRANGE``/``XREVRANGE``'s entries (a list, empty when there are none)."""
    return cast(list[StreamRow], reply)  # bytes replies: the clients never decode


def hash_fields(reply: object) -> dict[bytes, bytes]:
    """``HGETALL``'s fields (empty when the key does not exist)."""
    return cast(dict[bytes, bytes], reply)  # bytes replies: the clients never decode


def byte_strings(reply: object) -> list[bytes]:
    """A list of strings, such as ``LRANGE``'s or ``HKEYS``'s (empty when the key does not exist)."""
    return cast(list[bytes], reply)  # bytes replies: the clients never decode


def entry_fields(fields: Mapping[str, bytes | str]) -> dict[FieldT, EncodableT]:
    """Stream entry fields as ``XADD`` takes them (redis-py asks for a dict of its own wider key and value types)."""
    return cast(dict[FieldT, EncodableT], fields)  # read only by XADD, which takes any str or bytes
