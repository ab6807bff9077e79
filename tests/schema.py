"""Validate one Track API v2 operation against Customer.io's official schema (the v2 subset in worker/local/schemas).

``validate_operation(op)`` picks the component schema from the operation's ``type`` and ``action`` (so that an
error names the real problem instead of "not valid under any of the given schemas"), then also checks the
operation against the batch endpoint's item schema.

The document is the stand-in's (``worker.local.fake_customerio.schema.load_document``), with its two deliberate
departures from the raw document applied in that one place: ``anonymous_id`` accepted as a person identifier
(what Segment's destination sends), and each ``v2_cio_relationships`` identifier alternative requiring its key.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from worker.local.fake_customerio.schema import load_document

_BASE = "urn:customer-io-track-v2"

#: (type, action) → component schema of that operation.
COMPONENTS = {
    ("person", "identify"): "identify_person",
    ("person", "delete"): "person_delete",
    ("person", "event"): "person_event",
    ("person", "screen"): "person_screen",
    ("person", "page"): "person_page",
    ("person", "add_relationships"): "person_add_relationships",
    ("person", "delete_relationships"): "person_delete_relationships",
    ("person", "add_device"): "person_add_device",
    ("person", "delete_device"): "person_delete_device",
    ("person", "merge"): "person_merge",
    ("person", "suppress"): "person_suppress",
    ("person", "unsuppress"): "person_unsuppress",
    ("object", "identify"): "object_identify",
    ("object", "identify_anonymous"): "object_identify_anonymous",
    ("object", "delete"): "object_delete",
    ("object", "add_relationships"): "object_add_relationships",
    ("object", "delete_relationships"): "object_delete_relationships",
    ("delivery", "event"): "delivery_operations",
}


class SchemaViolation(AssertionError):
    """An operation does not conform to the official schema."""


@cache
def _validators() -> tuple[dict[str, jsonschema.Draft202012Validator], jsonschema.Draft202012Validator]:
    document = load_document()  # the stand-in's: the official subset with the two departures applied, once
    resource = referencing.Resource.from_contents(document, default_specification=referencing.jsonschema.DRAFT202012)
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(_BASE, resource)
    by_component = {
        name: jsonschema.Draft202012Validator({"$ref": f"{_BASE}#/components/schemas/{name}"}, registry=registry)
        for name in set(COMPONENTS.values())
    }
    batch_item = (
        f"{_BASE}#/paths/~1api~1v2~1batch/post/requestBody/content/application~1json/schema/properties/batch/items"
    )
    return by_component, jsonschema.Draft202012Validator({"$ref": batch_item}, registry=registry)


def validate_operation(op: dict[str, Any]) -> None:
    """Check one v2 operation against Customer.io's schema.

    Args:
        op: The operation, as put in a ``/api/v2/batch`` body.

    Raises:
        SchemaViolation: The operation is not valid; the message lists each problem with its JSON path.
    """
    component = COMPONENTS.get((op.get("type"), op.get("action")))  # type: ignore[arg-type]
    if component is None:
        raise SchemaViolation(f"no v2 operation has type={op.get('type')!r} action={op.get('action')!r}")
    candidate = op
    by_component, batch_item = _validators()
    errors = sorted(by_component[component].iter_errors(candidate), key=lambda e: list(e.absolute_path))
    if not errors:
        errors = list(batch_item.iter_errors(candidate))
    if errors:
        problems = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors)
        raise SchemaViolation(f"{component}: {problems}")
