"""Actions: which events become which Customer.io operations, per workspace, as Segment's Actions tab (pure).

Each action of :data:`CATALOGUE` is data: its name (Segment's), the operation it builds, its default trigger (a
subscription, :mod:`worker.mapping.subscriptions`) and its fields. The default actions are exactly the routing of
``docs/mapping.md``; their operations are built by the mapping core's own builders (``worker.mapping.transform``).

A workspace may switch an action off, change its trigger, add another instance of it with its own trigger, set
its ``convert_timestamps``, and change its field mappings. A mapping is a JSON path into the event
(``"$.traits.customer_id"``), a literal (any other JSON value), an object whose values are mappings (it builds
that object), or ``null``: unmapped, the field left out. Two kinds of field:

* *input* fields name the part of the event the builder reads (``user_id`` is ``$.userId``); a mapping puts its
  value there before building, and unmapped or a missing path removes it, so the event behaves as one without
  that field today (the same skip or reject);
* ``attributes`` is an *output* field: by default the builder's own rule (``$.traits`` less what the operation
  consumes, say); mapped, the operation's attributes are exactly the mapping's object (dates converted as the
  action's ``convert_timestamps`` says); unmapped, the operation has none.

Triggers and paths are compiled once, by :func:`compile_actions`, into :class:`Actions`, which
``TransformOptions.actions`` carries to the transform.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Final

import orjson

from worker.errors import InvalidEvent
from worker.mapping.devices import device_attributes
from worker.mapping.fields import checked_event_name, convertible_attributes, required_name
from worker.mapping.subscriptions import (
    Predicate,
    SubscriptionError,
    as_text,
    compile_trigger,
    decided_by_values,
    excluded_values,
    matched_values,
    parse_trigger,
)
from worker.mapping.transform import (
    Skip,
    _add_device,
    _alias,
    _delete_device,
    _group,
    _identify,
    _object_deleted,
    _page,
    _person_event,
    _person_state,
    _relationship_deleted,
    _screen,
)

if TYPE_CHECKING:
    from worker.mapping.transform import TransformOptions

Operation = dict[str, Any]
Builder = Callable[[dict[str, Any], "TransformOptions", list[str]], "Operation | Skip"]
Resolver = Callable[[dict[str, Any]], object]

#: What a resolver returns for a path the event does not have.
MISSING: Final = object()
#: The event types of the Segment spec (the transform rejects any other before the actions see it).
SEGMENT_TYPES: Final = ("identify", "track", "page", "screen", "group", "alias")
#: The reason of an event that no enabled action takes.
NO_ACTION: Final = "no action subscribed"


class ActionConfigError(ValueError):
    """An action's configuration is invalid; the message names the action and the field."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an action: the event path its builder reads (input), or the operation part it fills."""

    name: str
    #: The event path the builder reads (an input field); ``None`` for the output field ``attributes``.
    slot: tuple[str, ...] | None
    #: How the default mapping reads, as the Actions tab shows it.
    default: str


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action of the catalogue."""

    name: str
    operation: str
    trigger: str
    build: Builder
    fields: tuple[FieldSpec, ...]
    #: Where an ``attributes`` mapping goes in the operation (``("device", "attributes")`` for a device).
    attributes_at: tuple[str, ...] = ("attributes",)

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name``, if the action has it."""
        return next((spec for spec in self.fields if spec.name == name), None)


def _input(name: str, path: str) -> FieldSpec:
    return FieldSpec(name, tuple(path.split(".")), f"$.{path}")


def _attributes(default: str) -> FieldSpec:
    return FieldSpec("attributes", None, default)


def _track_event(event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> Operation:
    """A person ``event`` named by the event's ``event`` (Track Event, whatever the name)."""
    name = checked_event_name(required_name(event.get("event"), "event", "track"), "event")
    return _person_event(event, options, dropped, "event", name)


def _track(names: Sequence[str]) -> str:
    return 'type = "track" and ' + _any_event(names)


def _any_event(names: Sequence[str]) -> str:
    shown = " or ".join(f'event = "{name}"' for name in names)
    return f"({shown})" if len(names) > 1 else shown


_DEVICE_EVENTS: Final = ("Application Installed", "Application Opened", "Device Created or Updated")
_DELETE_DEVICE_EVENTS: Final = ("Application Uninstalled", "Device Deleted")
_ROUTED: Final = (
    *_DEVICE_EVENTS,
    *_DELETE_DEVICE_EVENTS,
    "User Deleted",
    "User Suppressed",
    "User Unsuppressed",
    "Object Deleted",
    "Relationship Deleted",
)
_PERSON: Final = (_input("user_id", "userId"), _input("anonymous_id", "anonymousId"))
_TIMED: Final = (_input("event_id", "messageId"), _input("timestamp", "timestamp"))
_OBJECT: Final = (_input("object_id", "properties.objectId"), _input("object_type_id", "properties.object_type_id"))

#: Every action, in catalogue order: the order in which an event's operations are built.
CATALOGUE: Final[tuple[ActionSpec, ...]] = (
    ActionSpec(
        "Create or Update Person",
        "person identify",
        'type = "identify"',
        _identify,
        (
            *_PERSON,
            _input("email", "traits.email"),
            _input("timestamp", "timestamp"),
            _input("object_id", "traits.objectId"),
            _input("relationship_attributes", "traits.relationshipAttributes"),
            _attributes("$.traits (less created_at, object type, relationshipAttributes) + email, created_at"),
        ),
    ),
    ActionSpec(
        "Track Event",
        "person event",
        'type = "track" and ' + " and ".join(f'event != "{name}"' for name in _ROUTED),
        _track_event,
        (*_PERSON, _input("event_name", "event"), *_TIMED, _attributes("$.properties")),
    ),
    ActionSpec(
        "Track Page View",
        "person page",
        'type = "page"',
        _page,
        (*_PERSON, _input("url", "properties.url"), *_TIMED, _attributes("$.properties")),
    ),
    ActionSpec(
        "Track Screen View",
        "person screen",
        'type = "screen"',
        _screen,
        (*_PERSON, _input("name", "name"), *_TIMED, _attributes("$.properties")),
    ),
    ActionSpec(
        "Create or Update Device",
        "person add_device",
        _track(_DEVICE_EVENTS),
        _add_device,
        (
            _input("user_id", "userId"),
            _input("device_token", "context.device.token"),
            _input("platform", "context.device.type"),
            _input("app_version", "context.app.version"),
            _input("timestamp", "timestamp"),
            _attributes("$.properties + app_version, as text"),
        ),
        attributes_at=("device", "attributes"),
    ),
    ActionSpec(
        "Delete Device",
        "person delete_device",
        _track(_DELETE_DEVICE_EVENTS),
        _delete_device,
        (_input("user_id", "userId"), _input("device_token", "context.device.token")),
    ),
    ActionSpec(
        "Create or Update Object",
        "object identify",
        'type = "group"',
        _group,
        (
            _input("object_id", "groupId"),
            _input("object_type_id", "traits.object_type_id"),
            *_PERSON,
            _input("relationship_attributes", "traits.relationshipAttributes"),
            _attributes("$.traits.objectAttributes ?? $.traits (less object type, relationshipAttributes)"),
        ),
    ),
    ActionSpec(
        "Delete Person",
        "person delete",
        _track(["User Deleted"]),
        partial(_person_state, action="delete"),
        (_input("user_id", "userId"),),
    ),
    ActionSpec(
        "Suppress Person",
        "person suppress",
        _track(["User Suppressed"]),
        partial(_person_state, action="suppress"),
        (_input("user_id", "userId"),),
    ),
    ActionSpec(
        "Unsuppress Person",
        "person unsuppress",
        _track(["User Unsuppressed"]),
        partial(_person_state, action="unsuppress"),
        (_input("user_id", "userId"),),
    ),
    ActionSpec("Delete Object", "object delete", _track(["Object Deleted"]), _object_deleted, _OBJECT),
    ActionSpec(
        "Delete Relationship",
        "object delete_relationships",
        _track(["Relationship Deleted"]),
        _relationship_deleted,
        (*_OBJECT, *_PERSON),
    ),
    ActionSpec(
        "Merge People",
        "person merge",
        'type = "alias"',
        _alias,
        (_input("primary", "userId"), _input("secondary", "previousId")),
    ),
)
_BY_NAME: Final = {spec.name: spec for spec in CATALOGUE}


# --- field mappings ---------------------------------------------------------------------------------------------


def _path_resolver(path: tuple[str, ...]) -> Resolver:
    def resolve(event: dict[str, Any]) -> object:
        value: object = event
        for key in path:
            if not isinstance(value, dict):
                return MISSING
            value = value.get(key, MISSING)
        return value

    return resolve


def _object_resolver(parts: dict[str, Resolver]) -> Resolver:
    def resolve(event: dict[str, Any]) -> object:
        built = {}
        for key, part in parts.items():
            value = part(event)
            if value is not MISSING:
                built[key] = value
        return built

    return resolve


def compile_mapping(mapping: object) -> Resolver | None:
    """The resolver of a field mapping; ``None`` for unmapped (``null``).

    Raises:
        ActionConfigError: A path that names no key (``"$."``, ``"$.a..b"``).
    """
    if mapping is None:
        return None
    if isinstance(mapping, str) and mapping.startswith("$"):
        keys = tuple(mapping[2:].split(".")) if mapping.startswith("$.") else ()
        if not keys or not all(keys):
            raise ActionConfigError(f"{mapping!r} is not a path: write $.key or $.key.subkey")
        return _path_resolver(keys)
    if isinstance(mapping, dict):
        parts = {str(key): compile_mapping(value) for key, value in mapping.items()}
        return _object_resolver({key: part for key, part in parts.items() if part is not None})
    return _literal_resolver(mapping)


def _literal_resolver(literal: object) -> Resolver:
    def resolve(event: dict[str, Any]) -> object:
        return literal

    return resolve


def _with_value(event: dict[str, Any], slot: tuple[str, ...], value: object) -> dict[str, Any]:
    """A copy of ``event`` (copying only the dicts on the way) with ``slot`` set to ``value``, or removed."""
    copy = dict(event)
    head, rest = slot[0], slot[1:]
    if rest:
        inner = copy.get(head)
        copy[head] = _with_value(inner if isinstance(inner, dict) else {}, rest, value)
    elif value is MISSING:
        copy.pop(head, None)
    else:
        copy[head] = value
    return copy


def _checked_attributes(value: object, field: str) -> Mapping[str, Any]:
    if value is MISSING or value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"{field}: must be an object")
    return value


# --- compiled actions -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """One enabled instance of an action, ready to run: its predicate, input mappings and attributes rule."""

    name: str
    spec: ActionSpec
    matches: Predicate
    #: Input fields whose mapping is not the default: (slot, resolver, or ``None`` for unmapped).
    inputs: tuple[tuple[tuple[str, ...], Resolver | None], ...]
    #: ``attributes``: absent from the configuration (the builder's rule), a resolver, or ``None`` (unmapped).
    attributes: Resolver | bool | None = False
    convert_timestamps: bool | None = None
    #: The event types and names the trigger can match (``None``: any), so that an event is only tried on the
    #: actions that may take it.
    types: frozenset[str] | None = None
    names: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()
    #: Whether ``types`` and ``names`` decide the trigger exactly (then an indexed event needs no test).
    exact: bool = False

    def may_take(self, kind: str, name: str | None) -> bool:
        """Whether the trigger can match an event of this type and name (``None``: no name given)."""
        if self.types is not None and kind not in self.types:
            return False
        if name is not None and name in self.excluded:
            return False
        return self.names is None or (name is not None and name in self.names)

    def view(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as the builder should read it: mapped input fields put in their slots (each read from the
        event as it came, so that one mapping never reads another's result)."""
        values = [(slot, MISSING if resolver is None else resolver(event)) for slot, resolver in self.inputs]
        for slot, value in values:
            event = _with_value(event, slot, value)
        return event

    @property
    def runner(self) -> Builder:
        """What builds this action's operation: the catalogue's builder itself when nothing is configured."""
        plain = not self.inputs and self.attributes is False and self.convert_timestamps is None
        return self.spec.build if plain else self.build

    def build(self, event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> Operation | Skip:
        """This action's operation for ``event`` (the trigger already matched), or a skip.

        Raises:
            InvalidEvent: As the builder would for the mapped event.
        """
        if self.convert_timestamps is not None and self.convert_timestamps != options.convert_timestamps:
            options = dataclasses.replace(options, convert_timestamps=self.convert_timestamps)
        built = self.spec.build(self.view(event) if self.inputs else event, options, dropped)
        if isinstance(built, Skip) or self.attributes is False:
            return built
        self._set_attributes(built, event, options.convert_timestamps)
        return built

    def _set_attributes(self, operation: Operation, event: dict[str, Any], convert: bool) -> None:
        *outer, key = self.spec.attributes_at
        holder = operation
        for part in outer:
            holder = holder[part]
        resolver = self.attributes
        source = _checked_attributes(resolver(event) if callable(resolver) else MISSING, "attributes")
        if self.spec.attributes_at == ("attributes",):
            attributes: Mapping[str, Any] = convertible_attributes(source, "attributes", convert)
        else:
            attributes = device_attributes(source, None, drop_device_id=False, convert_timestamps=convert)
        if attributes:
            holder[key] = attributes
        else:
            holder.pop(key, None)


_Candidate = tuple[Predicate | None, Builder]


@dataclass(frozen=True, slots=True)
class ActionView:
    """How one instance of an action is configured, for ``cio-fleet actions``."""

    name: str
    action: str
    operation: str
    trigger: str
    enabled: bool
    trigger_changed: bool
    convert_timestamps: bool | None
    #: (field, mapping as shown, whether it differs from the default)
    fields: tuple[tuple[str, str, bool], ...]


@dataclass(frozen=True, slots=True)
class Actions:
    """A workspace's compiled actions: the enabled ones in catalogue order, and every one for display."""

    enabled: tuple[CompiledAction, ...]
    described: tuple[ActionView, ...]
    #: The enabled actions that may take an event, by its type and (as text) name; see :meth:`candidates`.
    #: Each candidate is its trigger (``None`` when the index decided it) and what builds its operation.
    by_name: dict[tuple[str, str | None], tuple[_Candidate, ...]] = dataclasses.field(default_factory=dict)
    #: Every enabled action, each to be tested: for an event the index does not cover.
    unindexed: tuple[_Candidate, ...] = ()

    @classmethod
    def of(cls, enabled: tuple[CompiledAction, ...], described: tuple[ActionView, ...]) -> Actions:
        """The actions, indexed by the event types and names their triggers can match."""
        kinds = set(SEGMENT_TYPES).union(*(action.types or () for action in enabled))
        named = {name for action in enabled for name in (*(action.names or ()), *action.excluded)}
        names: list[str | None] = [None, *named]
        by_name = {
            (kind, name): tuple(
                (None if action.exact else action.matches, action.runner)
                for action in enabled
                if action.may_take(kind, name)
            )
            for kind in kinds
            for name in names
        }
        return cls(enabled, described, by_name, tuple((action.matches, action.runner) for action in enabled))

    def candidates(self, event: dict[str, Any]) -> tuple[_Candidate, ...]:
        """The enabled actions whose triggers may match ``event``: each one's trigger, if it must still be tested,
        and its builder."""
        kind, name = event.get("type"), event.get("event")
        if not isinstance(kind, str):
            return self.unindexed
        found = self.by_name.get((kind, name if name is None or isinstance(name, str) else as_text(name)))
        if found is None:
            found = self.by_name.get((kind, None), self.unindexed)
        return found

    def run(self, event: dict[str, Any], options: TransformOptions, dropped: list[str]) -> list[Operation] | Skip:
        """The operations of every enabled action whose trigger matches, in order; else a skip.

        Raises:
            InvalidEvent: An action cannot map the event (the event is rejected as a whole).
        """
        operations: list[Operation] = []
        skipped: Skip | None = None
        for matches, runner in self.candidates(event):
            if matches is not None and not matches(event):
                continue
            built = runner(event, options, dropped)
            if isinstance(built, Skip):
                skipped = skipped or built
            else:
                operations.append(built)
        if operations:
            return operations
        return skipped or Skip(NO_ACTION)


def _shown(mapping: object) -> str:
    if mapping is None:
        return "(unmapped)"
    if isinstance(mapping, str) and mapping.startswith("$"):
        return mapping
    return orjson.dumps(mapping).decode()


def _compile_one(spec: ActionSpec, entry: Mapping[str, Any], label: str) -> tuple[CompiledAction | None, ActionView]:
    fields = {**(entry.get("fields") or {}), **dict.fromkeys(entry.get("unmapped") or ())}
    inputs: list[tuple[tuple[str, ...], Resolver | None]] = []
    attributes: Resolver | bool | None = False
    for name, mapping in fields.items():
        field = spec.field(name)
        if field is None:
            known = ", ".join(f.name for f in spec.fields)
            raise ActionConfigError(f"{label}, field {name!r}: unknown field (known: {known})")
        try:
            resolver = compile_mapping(mapping)
        except ActionConfigError as exc:
            raise ActionConfigError(f"{label}, field {name!r}: {exc}") from None
        if field.slot is None:
            attributes = resolver
        else:
            inputs.append((field.slot, resolver))
    trigger = entry.get("trigger") or spec.trigger
    try:
        tree = parse_trigger(trigger)
        predicate, types, names = compile_trigger(trigger), matched_values(tree, "type"), matched_values(tree, "event")
        exact, excluded = decided_by_values(tree), excluded_values(tree, "event")
    except SubscriptionError as exc:
        raise ActionConfigError(f"{label}, field 'trigger': {exc}") from None
    convert = entry.get("convert_timestamps")
    enabled = entry.get("enabled", True)
    shown = tuple(
        (f.name, _shown(fields[f.name]), True) if f.name in fields else (f.name, f.default, False) for f in spec.fields
    )
    view = ActionView(
        entry.get("name") or spec.name,
        spec.name,
        spec.operation,
        trigger,
        enabled,
        trigger != spec.trigger,
        convert,
        shown,
    )
    if not enabled:
        return None, view
    compiled = CompiledAction(
        view.name, spec, predicate, tuple(inputs), attributes, convert, types, names, excluded, exact
    )
    return compiled, view


def compile_actions(entries: Sequence[Mapping[str, Any]]) -> Actions:
    """Compile a workspace's action configuration over the catalogue's defaults, once.

    Args:
        entries: One mapping per configured action: ``action`` (a catalogue name), optional ``name`` (another
            instance of it, starting from its defaults), ``enabled``, ``trigger``, ``fields``,
            ``unmapped`` (field names, as ``null`` mappings), ``convert_timestamps``. Unnamed entries change the
            action's default instance.

    Returns:
        Every action in catalogue order (each default instance first, then its extra instances as given).

    Raises:
        ActionConfigError: An unknown action or field, a repeated instance, a bad trigger or mapping; the message
            names the action (and its instance) and the field.
    """
    changes: dict[str, Mapping[str, Any]] = {}
    extras: dict[str, list[Mapping[str, Any]]] = {}
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        action = entry.get("action")
        if action not in _BY_NAME:
            known = ", ".join(_BY_NAME)
            raise ActionConfigError(f"action #{position} {action!r}, field 'action': unknown action (known: {known})")
        instance = entry.get("name") or action
        if instance in seen or (instance != action and instance in _BY_NAME):
            raise ActionConfigError(f"action {action!r} ({instance!r}), field 'name': used twice (give each its own)")
        seen.add(instance)
        if instance == action:
            changes[action] = entry
        else:
            extras.setdefault(action, []).append(entry)
    enabled: list[CompiledAction] = []
    described: list[ActionView] = []
    for spec in CATALOGUE:
        for entry in (changes.get(spec.name, {}), *extras.get(spec.name, [])):
            label = f"action {spec.name!r}" + (f" ({entry['name']!r})" if entry.get("name") else "")
            compiled, view = _compile_one(spec, entry, label)
            described.append(view)
            if compiled is not None:
                enabled.append(compiled)
    return Actions.of(tuple(enabled), tuple(described))


def cached_actions(entries: Sequence[Mapping[str, Any]]) -> Actions:
    """:func:`compile_actions`, once per distinct configuration: each drain of a workspace reuses its actions.

    Raises:
        ActionConfigError: As :func:`compile_actions`.
    """
    return _compile_once(orjson.dumps(list(entries), option=orjson.OPT_SORT_KEYS))


@lru_cache(maxsize=256)
def _compile_once(configuration: bytes) -> Actions:
    return compile_actions(orjson.loads(configuration))
