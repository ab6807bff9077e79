"""Validation of v2 operations against Customer.io's published schema, one compiled validator per operation.

The schema file is ``worker/local/schemas/customer-io-track-v2-subset.json`` (an unchanged subset of Customer.io's
OpenAPI document). Each operation is dispatched on its ``type`` and ``action`` to the operation schema the
document lists under ``person_operations``, ``object_operations`` and ``delivery_operations`` (the same schemas
the ``/api/v2/batch`` request body and the ``/api/v2/entity`` body reference), so that an error names the field
that is wrong instead of "not valid under any of the given schemas".

Two deliberate departures from the document, both applied in memory at load time:

* ``anonymous_id`` is accepted as a person identifier (Segment's and RudderStack's destinations send it;
  ``customerio-track-api.md`` §2.2).
* The person-identifier alternatives of ``v2_cio_relationships`` carry no ``required`` keyword, so under JSON
  Schema's ``oneOf`` every identifier object matches all three and every relationship would be refused. Each
  alternative is given its one property as ``required``, which is what the document evidently means.

``$ref`` pointers are inlined once (the document has no cycles), which makes validation about twice as fast.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

#: The operation families and the component that lists each family's operation schemas.
_FAMILIES = {"person": "person_operations", "object": "object_operations", "delivery": "delivery_operations"}

#: Longest message put in an item error.
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class SchemaError:
    """Why an operation does not match the schema: Customer.io's ``reason``/``field``/``message`` triple."""

    reason: str
    field: str
    message: str


def load_document() -> dict[str, Any]:
    """Read the bundled v2 subset of Customer.io's OpenAPI document, with the two departures applied.

    Returns:
        The OpenAPI document as a dict.
    """
    raw = resources.files("worker.local").joinpath("schemas/customer-io-track-v2-subset.json").read_bytes()
    document: dict[str, Any] = orjson.loads(raw)
    schemas = document["components"]["schemas"]
    _accept_anonymous_id(schemas)
    _require_relationship_identifiers(schemas)
    return document


def _accept_anonymous_id(schemas: dict[str, Any]) -> None:
    """Add ``{"anonymous_id": ...}`` as a fifth person-identifier alternative."""
    alternatives = schemas["person_common"]["properties"]["identifiers"]["oneOf"]
    alternatives.append(
        {
            "title": "anonymous_id",
            "type": "object",
            "required": ["anonymous_id"],
            "properties": {"anonymous_id": {"$ref": "#/components/schemas/anonymous_id"}},
        }
    )


def _require_relationship_identifiers(schemas: dict[str, Any]) -> None:
    """Make each person-identifier alternative of ``v2_cio_relationships`` require its property."""
    identifiers = schemas["v2_cio_relationships"]["items"]["properties"]["identifiers"]
    for alternative in identifiers["oneOf"]:
        alternative.setdefault("required", sorted(alternative.get("properties", {})))


def _inline_refs(node: Any, document: dict[str, Any]) -> Any:
    """Return ``node`` with every local ``$ref`` replaced by a copy of its target (recursively)."""
    if isinstance(node, list):
        return [_inline_refs(item, document) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part]
        return _inline_refs(copy.deepcopy(target), document)
    return {key: _inline_refs(value, document) for key, value in node.items()}


def _action_of(schema: dict[str, Any]) -> str:
    """The single ``action`` an operation schema accepts (from its own or its ``allOf`` parts' properties)."""
    for part in [schema, *schema.get("allOf", [])]:
        enum = part.get("properties", {}).get("action", {}).get("enum")
        if enum:
            return str(enum[0])
    raise ValueError(f"operation schema {schema.get('title')!r} names no action")


class OperationValidator:
    """Validates one v2 operation (a batch item or an entity body); thread-safe, validators compiled once."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        """Compile one validator per (type, action) pair the document defines.

        Args:
            document: the OpenAPI document; the bundled one (with its departures) when omitted.
        """
        document = load_document() if document is None else document
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}
        schemas = document["components"]["schemas"]
        for family, component in _FAMILIES.items():
            members = schemas[component].get("oneOf", [schemas[component]])
            for member in members:
                schema = _inline_refs(member, document)
                Draft202012Validator.check_schema(schema)
                self._validators[(family, _action_of(schema))] = Draft202012Validator(schema)

    @property
    def operations(self) -> list[tuple[str, str]]:
        """Every (type, action) pair this validator knows."""
        return sorted(self._validators)

    def validate(self, operation: Any) -> SchemaError | None:
        """Check one operation.

        Args:
            operation: the decoded JSON of one operation.

        Returns:
            None when the operation is valid, else the most relevant error.
        """
        if not isinstance(operation, dict):
            return SchemaError("invalid", "", "an operation must be a JSON object")
        kind, action = operation.get("type"), operation.get("action")
        if kind not in _FAMILIES:
            return SchemaError("invalid", "type", f"type must be one of {sorted(_FAMILIES)}, got {kind!r}")
        validator = self._validators.get((kind, action)) if isinstance(action, str) else None
        if validator is None:
            allowed = sorted(a for (k, a) in self._validators if k == kind)
            return SchemaError("invalid", "action", f"action of a {kind} must be one of {allowed}, got {action!r}")
        errors = list(validator.iter_errors(operation))
        return _describe(min(errors, key=_relevance)) if errors else None


def _relevance(error: ValidationError) -> tuple[int, int]:
    """Sort key: the shallowest error first, then "required" before others."""
    return (len(error.absolute_path), 0 if error.validator == "required" else 1)


def _describe(error: ValidationError) -> SchemaError:
    """Turn a jsonschema error into Customer.io's error triple."""
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        path.extend(missing[:1])
    field = ".".join(path)
    if error.validator in ("oneOf", "anyOf") and isinstance(error.validator_value, list):
        shapes = [str(choice.get("title", "?")) for choice in error.validator_value]
        return SchemaError("invalid", field, f"{field or 'operation'} must match exactly one of {shapes}")
    reason = "required" if error.validator == "required" else "invalid"
    return SchemaError(reason, field, _shorten(error.message))


def _shorten(message: str) -> str:
    """Cut a message to ``_MAX_MESSAGE`` characters."""
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


@functools.cache
def shared_validator() -> OperationValidator:
    """The process-wide validator (compiled on first use, then cached)."""
    return OperationValidator()
