"""Request bodies: read within a size and a time bound, gzip undone within the same size, JSON parsed.

Browsers send ``Content-Type: text/plain`` to avoid a CORS preflight; it is read as JSON like
``application/json``. A gzip body is inflated at most ``BATCH_BYTES`` bytes at a time, so a gzip bomb costs
the intake no more memory than an honest full batch.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson

from worker.intake.errors import HttpError

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: Media types read as JSON (a missing ``Content-Type`` too).
JSON_TYPES: Final = frozenset({"application/json", "text/plain", ""})
#: ``Content-Encoding`` values understood; ``identity`` and none mean a plain body.
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_PLAIN: Final = frozenset({"", "identity"})


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def check_content_type(content_type: str) -> None:
    """Refuse (415) a body that is neither JSON nor text/plain."""
    if media_type(content_type) not in JSON_TYPES:
        raise HttpError(415, "Content-Type must be application/json or text/plain")


def declared_length(headers: Mapping[str, str], limit: int) -> None:
    """Refuse (413) a body whose ``Content-Length`` is over ``limit`` before reading it."""
    raw = headers.get("content-length", "")
    if raw.isdigit() and int(raw) > limit:
        raise HttpError(413, f"request body over {limit} bytes")


async def read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The request body, refused (413) past ``limit`` bytes and (408) when it takes over ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(receive, limit)
    except TimeoutError:
        raise HttpError(408, f"request body not received within {timeout_s:g} s") from None


async def _read(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected before the body was complete")
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise HttpError(413, f"request body over {limit} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


def decode(body: bytes, encoding: str, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` undone; refused (415) for an unknown encoding, (413) past ``limit``."""
    encoding = encoding.strip().lower()
    if encoding in _PLAIN:
        return body
    if encoding not in _GZIP:
        raise HttpError(415, "Content-Encoding must be gzip or none")
    return gunzip(body, limit)


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, never more than ``limit + 1`` bytes (a bomb is refused with 413, not inflated)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise HttpError(400, "body is not valid gzip") from None
    if len(data) > limit:
        raise HttpError(413, f"request body over {limit} bytes once decompressed")
    if not inflater.eof:
        raise HttpError(400, "body is not valid gzip (truncated)")
    return data


def parse_object(data: bytes) -> dict[str, Any]:
    """The body's JSON object; refused (400) when it is not JSON or not an object."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    return value
