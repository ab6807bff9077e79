"""Who an event is about: Segment ids to Customer.io person and object identifiers (pure).

Rules (``mapping.md``, "Person identifiers"; first match wins): an id starting with ``cio_`` is a ``cio_id``,
an email-looking id is an ``email``, any other id is an ``id`` (numbers as decimal strings); without an id, an
email found in the event; without either, the ``anonymousId`` where the operation allows it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from worker.errors import InvalidEvent

#: Customer.io's limit on a person id (and an object id), in UTF-8 bytes.
MAX_ID_BYTES: Final = 150
#: The ``cio_`` prefix that marks Customer.io's own person id.
CIO_PREFIX: Final = "cio_"
#: ajv's "full" email format, the one Segment's destination uses to recognise an email-looking id.
_EMAIL: Final = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?",
    re.IGNORECASE,
)

Identifiers = dict[str, str]


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes (lone surrogates count as three, as Python would encode them)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def id_text(value: object, field: str, limit: int = MAX_ID_BYTES) -> str | None:
    """An id field as text: strings as they are, numbers in decimal, absent or blank as ``None``.

    Args:
        value: The raw field value.
        field: The field's path, named in errors.
        limit: The longest id accepted, in UTF-8 bytes.

    Returns:
        The id, or ``None`` when the field is absent, null or blank.

    Raises:
        InvalidEvent: The value is not a string or a finite number, or is longer than ``limit`` bytes.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value if value.strip() else None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"{field}: must be a string or number")
    elif isinstance(value, int):
        text = str(value)
    elif not math.isfinite(value):
        raise InvalidEvent(f"{field}: must be a string or number")
    else:
        text = str(int(value)) if value.is_integer() else repr(value)
    if text is not None and utf8_len(text) > limit:
        raise InvalidEvent(f"{field}: longer than {limit} bytes")
    return text


def looks_like_email(text: str) -> bool:
    """Whether ``text`` is an email address by ajv's "full" format."""
    return "@" in text and _EMAIL.fullmatch(text) is not None


def ids_for(person_id: str) -> Identifiers:
    """The Customer.io identifiers of a person id: ``cio_id``, ``email`` or ``id``."""
    if person_id.startswith(CIO_PREFIX) and len(person_id) > len(CIO_PREFIX):
        return {"cio_id": person_id[len(CIO_PREFIX) :]}
    if looks_like_email(person_id):
        return {"email": person_id}
    return {"id": person_id}


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def find_email(event: Mapping[str, Any], traits: Mapping[str, Any] | None = None) -> str | None:
    """The first email of ``traits.email`` (when given), the top-level ``email``, ``context.traits.email``.

    Args:
        event: The Segment event.
        traits: The identify event's traits, searched first; ``None`` for other event types.

    Returns:
        The email, or ``None`` when no source holds a non-blank string.

    Raises:
        InvalidEvent: The email found is longer than 150 bytes.
    """
    context = _mapping(event.get("context"))
    context_traits = _mapping(context.get("traits")) if context is not None else None
    sources = (
        (traits, "traits.email"),
        (event, "email"),
        (context_traits, "context.traits.email"),
    )
    for source, field in sources:
        value = source.get("email") if source is not None else None
        if isinstance(value, str) and value.strip():
            if utf8_len(value) > MAX_ID_BYTES:
                raise InvalidEvent(f"{field}: longer than {MAX_ID_BYTES} bytes")
            return value
    return None


def anonymous_id(event: Mapping[str, Any]) -> str | None:
    """The event's ``anonymousId`` as text, or ``None``."""
    return id_text(event.get("anonymousId"), "anonymousId")


def resolve_person(
    event: Mapping[str, Any], *, traits: Mapping[str, Any] | None = None, allow_anonymous: bool = False
) -> Identifiers | None:
    """The identifiers of the person an event is about, by the rules in the module docstring.

    Args:
        event: The Segment event.
        traits: The identify event's traits (their ``email`` is the first email source).
        allow_anonymous: Whether ``{"anonymous_id": ...}`` may identify the person.

    Returns:
        Exactly one identifier, or ``None`` when the event names nobody usable.

    Raises:
        InvalidEvent: An id field has the wrong type or is too long.
    """
    user_id = id_text(event.get("userId"), "userId")
    if user_id is not None:
        return ids_for(user_id)
    email = find_email(event, traits)
    if email is not None:
        return {"email": email}
    if allow_anonymous:
        anonymous = anonymous_id(event)
        if anonymous is not None:
            return {"anonymous_id": anonymous}
    return None


def object_type_id(source: Mapping[str, Any], prefix: str, default: str) -> str:
    """``object_type_id`` ?? ``objectTypeId`` of ``source`` (an integer, as text), else ``default``.

    Args:
        source: The traits or properties holding the object's type.
        prefix: Their path, named in errors (``"traits"``).
        default: The workspace's default object type.

    Raises:
        InvalidEvent: The type is not a non-negative integer.
    """
    for key in ("object_type_id", "objectTypeId"):
        text = id_text(source.get(key), f"{prefix}.{key}")
        if text is not None:
            if not (text.isascii() and text.isdigit()):
                raise InvalidEvent(f"{prefix}.{key}: must be an integer")
            return text
    return default


def object_ids(properties: Mapping[str, Any], required_for: str, default_type: str) -> Identifiers:
    """The object named by ``properties.objectId`` and its type (``Object Deleted``, ``Relationship Deleted``).

    Args:
        properties: The track event's properties.
        required_for: The event name, named in the error when ``objectId`` is missing.
        default_type: The workspace's default object type.

    Raises:
        InvalidEvent: ``objectId`` is missing, too long or not an id; the type is not an integer.
    """
    object_id = id_text(properties.get("objectId"), "properties.objectId")
    if object_id is None:
        raise InvalidEvent(f"properties.objectId: required for {required_for}")
    return {"object_type_id": object_type_id(properties, "properties", default_type), "object_id": object_id}


def message_id(event: Mapping[str, Any]) -> str | None:
    """The event's ``messageId``, Customer.io's dedupe ``id``, passed unchanged (an integer in decimal).

    Raises:
        InvalidEvent: ``messageId`` is neither a string nor an integer.
    """
    value = event.get("messageId")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidEvent("messageId: must be a string")
