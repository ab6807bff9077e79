"""Push devices: token, platform and attributes of ``add_device`` / ``delete_device`` (pure).

The token is ``context.device.token``, else ``properties.device_id``. The platform is ``context.device.type``,
else ``context.os.name``, normalised to ``ios`` (iOS, iPadOS, watchOS, tvOS, any case) or ``android``; else it
is inferred from the token's shape (64 hex characters: an APNs token; ``…:APA91b…``: an FCM token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from worker.errors import InvalidEvent
from worker.mapping.timestamps import parse_iso8601

_APPLE_PLATFORMS: Final = frozenset({"ios", "ipados", "watchos", "tvos"})
_APNS_TOKEN: Final = re.compile(r"[0-9a-fA-F]{64}")
_FCM_TOKEN: Final = re.compile(r"[\w-]+:APA91b[\w-]+")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def find_token(event: Mapping[str, Any], properties: Mapping[str, Any], action: str) -> tuple[str, bool]:
    """The device token, and whether it came from ``properties.device_id``.

    Args:
        event: The Segment track event.
        properties: Its properties.
        action: ``add_device`` or ``delete_device``, named in errors.

    Returns:
        The token and ``True`` when it was read from ``properties.device_id``.

    Raises:
        InvalidEvent: No token, or a token that is not a string.
    """
    device = _mapping(_mapping(event.get("context")).get("device"))
    for source, key, field in (
        (device, "token", "context.device.token"),
        (properties, "device_id", "properties.device_id"),
    ):
        value = source.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidEvent(f"{field}: must be a non-empty string")
        return value, key == "device_id"
    raise InvalidEvent(f"context.device.token: required for {action} (or properties.device_id)")


def normalise_platform(name: object) -> str | None:
    """``ios`` or ``android`` for a device type or OS name, else ``None``."""
    if not isinstance(name, str):
        return None
    lowered = name.strip().lower()
    if lowered in _APPLE_PLATFORMS:
        return "ios"
    return "android" if lowered == "android" else None


def find_platform(event: Mapping[str, Any], token: str) -> str:
    """The device's platform from the event's context, else from the token's shape.

    Raises:
        InvalidEvent: Neither the context nor the token tells ``ios`` from ``android``.
    """
    context = _mapping(event.get("context"))
    for name in (_mapping(context.get("device")).get("type"), _mapping(context.get("os")).get("name")):
        platform = normalise_platform(name)
        if platform is not None:
            return platform
    if _APNS_TOKEN.fullmatch(token):
        return "ios"
    if _FCM_TOKEN.fullmatch(token):
        return "android"
    raise InvalidEvent("context.device.type: required for add_device (ios or android, not inferable from token)")


def build_device(
    event: Mapping[str, Any],
    properties: Mapping[str, Any],
    app_version: object,
    *,
    last_used: int | None,
    convert_timestamps: bool,
) -> dict[str, Any]:
    """The ``device`` of an ``add_device`` operation: token, platform, ``last_used`` and attributes.

    Args:
        event: The Segment track event.
        properties: Its properties.
        app_version: ``context.app.version``.
        last_used: The event's time in unix seconds, or ``None`` to leave it out.
        convert_timestamps: The workspace's date conversion option.

    Raises:
        InvalidEvent: No token, or no platform.
    """
    token, from_properties = find_token(event, properties, "add_device")
    device: dict[str, Any] = {"token": token, "platform": find_platform(event, token)}
    if last_used is not None:
        device["last_used"] = last_used
    attributes = device_attributes(
        properties, app_version, drop_device_id=from_properties, convert_timestamps=convert_timestamps
    )
    if attributes:
        device["attributes"] = attributes
    return device


def device_attributes(
    properties: Mapping[str, Any], app_version: object, *, drop_device_id: bool, convert_timestamps: bool
) -> dict[str, str]:
    """The device's attributes: the event's properties plus ``app_version``, every value a string.

    Customer.io types custom device attributes as strings, so booleans become ``"true"``/``"false"``, numbers
    their decimal text, objects and arrays their JSON, and null values are left out. With ``convert_timestamps``,
    ISO-8601 strings become unix seconds (as text), like every other date the worker sends.

    Args:
        properties: The track event's properties.
        app_version: ``context.app.version``, added as ``app_version`` when present.
        drop_device_id: Leave ``device_id`` out (it was the token).
        convert_timestamps: The workspace's date conversion option.

    Returns:
        A new dict of strings.
    """
    attributes: dict[str, str] = {}
    for key, value in properties.items():
        if drop_device_id and key == "device_id":
            continue
        text = _as_text(value, convert_timestamps)
        if text is not None:
            attributes[key] = text
    version = _as_text(app_version, convert_timestamps=False)
    if version is not None:
        attributes["app_version"] = version
    return attributes


def _as_text(value: object, convert_timestamps: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        seconds = parse_iso8601(value) if convert_timestamps else None
        return value if seconds is None else str(seconds)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()
