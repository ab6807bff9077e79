"""Segment-spec event → Customer.io Track API v2 operations: deliver, skip or reject (pure).

Implements ``docs/mapping.md`` (the mapping contract). No I/O, no clock, no environment, no logging: the same
event and options always give the same outcome, and :func:`transform` never raises. Reasons are short stable
strings, field first (``"event: required for track"``), fit for metric labels and dead-letter grouping.

A time that cannot be read never costs the event: it is left out (``timestamp``, ``device.last_used``) or passed
as given (``created_at``), and ``Deliver.dropped_timestamps`` names it so that the pipeline can count it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson

from worker.errors import InvalidEvent
from worker.mapping.devices import build_device, find_token
from worker.mapping.fields import check_names, checked_event_name, convertible_attributes, object_field, required_name
from worker.mapping.identifiers import (
    Identifiers,
    anonymous_id,
    find_email,
    id_text,
    ids_for,
    message_id,
    object_ids,
    object_type_id,
    resolve_person,
)
from worker.mapping.timestamps import device_last_used, event_timestamp, identify_created_at

if TYPE_CHECKING:
    from worker.mapping.actions import Actions
    from worker.settings import WorkspaceConfig

#: Customer.io's limit on one operation of a batch, serialised.
MAX_OPERATION_BYTES: Final = 32_000
#: Traits that identify consumes itself instead of sending them as attributes.
_IDENTIFY_CONSUMED: Final = frozenset(
    {"createdAt", "created_at", "object_type_id", "objectTypeId", "relationshipAttributes"}
)
#: Traits that group consumes itself instead of sending them as object attributes.
_GROUP_CONSUMED: Final = frozenset({"object_type_id", "objectTypeId", "relationshipAttributes", "objectAttributes"})


@dataclass(frozen=True, slots=True)
class TransformOptions:
    """A workspace's mapping options.

    ``actions`` are the workspace's compiled actions (``worker.mapping.actions``); ``None``, when the workspace
    configures none, maps by the fixed routing of ``docs/mapping.md``, which the default actions reproduce exactly.
    """

    convert_timestamps: bool = True
    object_type_id: str = "1"
    actions: Actions | None = None

    @classmethod
    def for_workspace(cls, ws: WorkspaceConfig) -> TransformOptions:
        """The options configured for ``ws``, its actions compiled once per configuration."""
        actions = None
        if ws.actions:
            from worker.mapping.actions import cached_actions  # here: worker.mapping.actions imports this module

            actions = cached_actions([entry.model_dump(exclude_none=True) for entry in ws.actions])
        return cls(convert_timestamps=ws.convert_timestamps, object_type_id=ws.object_type_id, actions=actions)


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send these operations; ``encoded[i]`` is ``operations[i]`` serialised (≤ 32,000 bytes each).

    ``dropped_timestamps`` names each field (``worker.mapping.timestamps.DROPPED_FIELDS``) whose time could not be read:
    ``timestamp`` and ``device.last_used`` were left out (Customer.io uses the time it receives the operation),
    ``created_at`` was passed as given.
    """

    operations: tuple[dict[str, Any], ...]
    encoded: tuple[bytes, ...]
    dropped_timestamps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skip:
    """Deliberately not sent (counted, not dead-lettered)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Cannot be mapped; the reason names the field first."""

    reason: str


Outcome = Deliver | Skip | Reject

#: A builder maps one event with the workspace's options, appending to ``dropped`` each time it could not read.
_Builder = Callable[[dict[str, Any], TransformOptions, list[str]], "dict[str, Any] | Skip"]


def transform_raw(raw: bytes | str, options: TransformOptions) -> Outcome:
    """Parse one raw JSON event and transform it.

    Args:
        raw: The event as stored in the stream.
        options: The workspace's mapping options.

    Returns:
        The outcome; JSON that does not parse, or is not an object, is a ``Reject``.
    """
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Reject("payload: not valid JSON")
    return transform(event, options)


def transform(event: object, options: TransformOptions) -> Outcome:
    """Map one Segment event to Customer.io operations. Total: never raises, whatever ``event`` is.

    Args:
        event: The decoded event (anything; only a dict can be delivered).
        options: The workspace's mapping options.

    Returns:
        ``Deliver`` with the operations and their encodings, ``Skip`` or ``Reject`` with a reason.
    """
    if not isinstance(event, dict):
        return Reject("payload: not a JSON object")
    try:
        kind = event.get("type")
        builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
        if builder is None:
            return Reject("type: unsupported event type")
        dropped: list[str] = []
        if options.actions is not None:
            return _deliver_all(options.actions.run(event, options, dropped), dropped)
        built = builder(event, options, dropped)
        return built if isinstance(built, Skip) else _deliver(built, dropped)
    except InvalidEvent as exc:
        return Reject(str(exc))
    except (RecursionError, orjson.JSONEncodeError):
        return Reject("payload: nested too deeply or not serialisable")
    except Exception:  # totality: a malformed event must never crash a drain; the reason stays stable
        return Reject("payload: cannot be mapped")


def _deliver(operation: dict[str, Any], dropped: list[str]) -> Deliver | Reject:
    encoded = orjson.dumps(operation)
    if len(encoded) > MAX_OPERATION_BYTES:
        return Reject(f"operation: larger than {MAX_OPERATION_BYTES} bytes")
    return Deliver(operations=(operation,), encoded=(encoded,), dropped_timestamps=tuple(dropped) if dropped else ())


def _deliver_all(built: list[dict[str, Any]] | Skip, dropped: list[str]) -> Outcome:
    """The outcome of an event's actions: each operation within the size limit, else a reject."""
    if isinstance(built, Skip):
        return built
    if len(built) == 1:
        return _deliver(built[0], dropped)
    encoded = tuple(orjson.dumps(operation) for operation in built)
    if any(len(one) > MAX_OPERATION_BYTES for one in encoded):
        return Reject(f"operation: larger than {MAX_OPERATION_BYTES} bytes")
    return Deliver(operations=tuple(built), encoded=encoded, dropped_timestamps=tuple(dict.fromkeys(dropped)))


def _required_person(event: Mapping[str, Any], action: str) -> Identifiers:
    identifiers = resolve_person(event)
    if identifiers is None:
        raise InvalidEvent(f"userId: required for {action} (or email)")
    return identifiers


def _relationship_attributes(traits: Mapping[str, Any], options: TransformOptions) -> dict[str, Any]:
    field = "traits.relationshipAttributes"
    source = object_field(traits, "relationshipAttributes", field)
    return convertible_attributes(source, field, options.convert_timestamps)


def _copy_anonymous_id(attributes: dict[str, Any], event: Mapping[str, Any], identifiers: Identifiers) -> None:
    """Keep the ``anonymousId`` as an attribute when it is not the identifier (an object's never is)."""
    anonymous = anonymous_id(event)
    if anonymous is not None and "anonymous_id" not in identifiers:
        attributes["anonymous_id"] = anonymous


def _person(action: str, identifiers: Identifiers) -> dict[str, Any]:
    return {"type": "person", "action": action, "identifiers": identifiers}


def _identify(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any] | Skip:
    traits = object_field(event, "traits")
    identifiers = resolve_person(event, traits=traits)
    if identifiers is None:
        return Skip("no userId or email")
    kept = {key: value for key, value in traits.items() if key not in _IDENTIFY_CONSUMED}
    attributes = convertible_attributes(kept, "traits", options.convert_timestamps)
    email = find_email(event, traits)
    if email is not None:
        attributes.setdefault("email", email)
    _copy_anonymous_id(attributes, event, identifiers)
    created_at = identify_created_at(event, traits, options.convert_timestamps, dropped)
    if created_at is not None:
        attributes["created_at"] = created_at
    operation = _person("identify", identifiers)
    operation["attributes"] = attributes
    timestamp = event_timestamp(event, dropped)
    if timestamp is not None:
        operation["timestamp"] = timestamp
    relationship = _identify_relationship(traits, options)
    if relationship is not None:
        operation["cio_relationships"] = [relationship]
    return operation


def _identify_relationship(traits: Mapping[str, Any], options: TransformOptions) -> dict[str, Any] | None:
    """``traits.objectId`` relates the person to that object."""
    object_id = id_text(traits.get("objectId"), "traits.objectId")
    if object_id is None:
        return None
    relationship: dict[str, Any] = {
        "identifiers": {
            "object_type_id": object_type_id(traits, "traits", options.object_type_id),
            "object_id": object_id,
        }
    }
    attributes = _relationship_attributes(traits, options)
    if attributes:
        relationship["relationship_attributes"] = attributes
    return relationship


def _alias(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    primary = id_text(event.get("userId"), "userId")
    if primary is None:
        raise InvalidEvent("userId: required for alias")
    secondary = id_text(event.get("previousId"), "previousId")
    if secondary is None:
        raise InvalidEvent("previousId: required for alias")
    return {"type": "person", "action": "merge", "primary": ids_for(primary), "secondary": ids_for(secondary)}


def _group(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    group_id = id_text(event.get("groupId"), "groupId")
    if group_id is None:
        raise InvalidEvent("groupId: required for group")
    traits = object_field(event, "traits")
    identifiers = {"object_type_id": object_type_id(traits, "traits", options.object_type_id), "object_id": group_id}
    operation: dict[str, Any] = {"type": "object", "action": "identify", "identifiers": identifiers}
    attributes = _group_attributes(traits, options)
    _copy_anonymous_id(attributes, event, identifiers)
    if attributes:
        operation["attributes"] = attributes
    person = resolve_person(event, allow_anonymous=True)
    if person is not None:
        relationship: dict[str, Any] = {"identifiers": person}
        relationship_attributes = _relationship_attributes(traits, options)
        if relationship_attributes:
            relationship["relationship_attributes"] = relationship_attributes
        operation["cio_relationships"] = [relationship]
        if "anonymous_id" in person:
            operation["action"] = "identify_anonymous"
    return operation


def _group_attributes(traits: Mapping[str, Any], options: TransformOptions) -> dict[str, Any]:
    """``traits.objectAttributes``, else the traits that group does not consume."""
    if "objectAttributes" in traits and traits["objectAttributes"] is not None:
        own = object_field(traits, "objectAttributes", "traits.objectAttributes")
        return convertible_attributes(own, "traits.objectAttributes", options.convert_timestamps)
    kept = {key: value for key, value in traits.items() if key not in _GROUP_CONSUMED}
    return convertible_attributes(kept, "traits", options.convert_timestamps)


def _person_event(
    event: Mapping[str, Any], options: TransformOptions, dropped: list[str], action: str, name: str
) -> dict[str, Any]:
    """An ``event``, ``page`` or ``screen`` operation, anonymous allowed."""
    properties = object_field(event, "properties")
    identifiers = resolve_person(event, allow_anonymous=True)
    if identifiers is None:
        raise InvalidEvent(f"userId: required for {event['type']} (or anonymousId or email)")
    operation = _person(action, identifiers)
    operation["name"] = name
    dedupe_id = message_id(event)
    if dedupe_id is not None:
        operation["id"] = dedupe_id
    timestamp = event_timestamp(event, dropped)
    if timestamp is not None:
        operation["timestamp"] = timestamp
    attributes = convertible_attributes(properties, "properties", options.convert_timestamps)
    _copy_anonymous_id(attributes, event, identifiers)
    if attributes:
        operation["attributes"] = attributes
    return operation


def _page(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    properties = object_field(event, "properties")
    url = properties.get("url")
    if not isinstance(url, str) or not url:
        page = object_field(object_field(event, "context"), "page", "context.page")
        url = page.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidEvent("properties.url: required for page (or context.page.url)")
    return _person_event(event, options, dropped, "page", url)


def _screen(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    name = checked_event_name(required_name(event.get("name"), "name", "screen"), "name")
    return _person_event(event, options, dropped, "screen", name)


def _track(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    name = required_name(event.get("event"), "event", "track")
    route = _TRACK_ROUTES.get(name)
    if route is not None:
        return route(event, options, dropped)
    return _person_event(event, options, dropped, "event", checked_event_name(name, "event"))


def _add_device(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    identifiers = _required_person(event, "add_device")
    properties = object_field(event, "properties")
    check_names(properties, "properties")
    app = object_field(object_field(event, "context"), "app", "context.app")
    device = build_device(
        event,
        properties,
        app.get("version"),
        last_used=device_last_used(event, options.convert_timestamps, dropped),
        convert_timestamps=options.convert_timestamps,
    )
    return {**_person("add_device", identifiers), "device": device}


def _delete_device(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    identifiers = _required_person(event, "delete_device")
    token, _ = find_token(event, object_field(event, "properties"), "delete_device")
    return {**_person("delete_device", identifiers), "device": {"token": token}}


def _person_state(event: dict[str, Any], options: TransformOptions, dropped: list[str], action: str) -> dict[str, Any]:
    """``delete``, ``suppress`` or ``unsuppress`` a person."""
    return _person(action, _required_person(event, action))


def _object_deleted(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "action": "delete",
        "identifiers": object_ids(object_field(event, "properties"), event["event"], options.object_type_id),
    }


def _relationship_deleted(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> dict[str, Any]:
    identifiers = object_ids(object_field(event, "properties"), event["event"], options.object_type_id)
    person = _required_person(event, "delete_relationships")
    operation: dict[str, Any] = {
        "type": "object",
        "action": "delete_relationships",
        "identifiers": identifiers,
        "cio_relationships": [{"identifiers": person}],
    }
    attributes: dict[str, Any] = {}
    _copy_anonymous_id(attributes, event, identifiers)
    if attributes:
        operation["attributes"] = attributes
    return operation


_TRACK_ROUTES: Final[dict[str, Callable[[dict[str, Any], TransformOptions, list[str]], dict[str, Any]]]] = {
    "Application Installed": _add_device,
    "Application Opened": _add_device,
    "Device Created or Updated": _add_device,
    "Application Uninstalled": _delete_device,
    "Device Deleted": _delete_device,
    "User Deleted": partial(_person_state, action="delete"),
    "User Suppressed": partial(_person_state, action="suppress"),
    "User Unsuppressed": partial(_person_state, action="unsuppress"),
    "Object Deleted": _object_deleted,
    "Relationship Deleted": _relationship_deleted,
}

_BUILDERS: Final[dict[str, _Builder]] = {
    "identify": _identify,
    "track": _track,
    "page": _page,
    "screen": _screen,
    "group": _group,
    "alias": _alias,
}
