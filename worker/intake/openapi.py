"""The intake's OpenAPI 3.0 document, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any, Final

from worker.intake.limits import BATCH_EVENTS
from worker.intake.segment import BATCH_CALLS, SINGLE_CALLS

_ID: Final = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_TIME: Final = {"oneOf": [{"type": "string"}, {"type": "number"}]}

EVENT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A Segment-spec event; unknown fields are kept.",
    "properties": {
        "type": {"type": "string", "enum": ["identify", "track", "page", "screen", "group", "alias"]},
        "userId": _ID,
        "anonymousId": _ID,
        "messageId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "groupId": _ID,
        "previousId": _ID,
        "traits": {"type": "object"},
        "properties": {"type": "object"},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "timestamp": _TIME,
        "sentAt": _TIME,
        "writeKey": {"type": "string"},
    },
}
BATCH_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "maxItems": BATCH_EVENTS, "items": {"$ref": "#/components/schemas/Event"}},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "sentAt": {"type": "string"},
        "writeKey": {"type": "string"},
    },
}
_ANSWER: Final = {
    "type": "object",
    "required": ["success"],
    "properties": {
        "success": {"type": "boolean"},
        "error": {"type": "string"},
        "accepted": {"type": "integer"},
        "refused": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"index": {"type": "integer"}, "field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}
_STATUSES: Final = {
    "200": "Every event of the request is in Redis.",
    "400": "Malformed request, or events refused (listed; the others are enqueued).",
    "401": "Missing or unknown write key.",
    "403": "Origin not allowed for the workspace.",
    "408": "Body not received in time.",
    "413": "Over 32 KB per event (listed), 500 KB or 1,000 events per request.",
    "415": "Content-Type or Content-Encoding not supported.",
    "503": "Redis unreachable or backlog full; retry after Retry-After seconds.",
}


def _operation(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": f"post_{name}",
        "security": [{"basic": []}, {}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "text/plain": {"schema": schema}},
        },
        "responses": {
            status: {"description": text, "content": {"application/json": {"schema": _ANSWER}}}
            for status, text in _STATUSES.items()
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document of every route."""
    event_ref = {"$ref": "#/components/schemas/Event"}
    batch_ref = {"$ref": "#/components/schemas/Batch"}
    paths: dict[str, Any] = {f"/v1/{name}": {"post": _operation(name, event_ref)} for name in SINGLE_CALLS}
    paths |= {f"/v1/{name}": {"post": _operation(name, batch_ref)} for name in sorted(BATCH_CALLS)}
    health = {"200": {"description": "Redis answers."}, "503": {"description": "Redis does not answer."}}
    paths["/health"] = {"get": {"operationId": "health", "responses": health}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "cio-fleet intake (Segment Tracking API)", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Event": EVENT_SCHEMA, "Batch": BATCH_SCHEMA},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
    }
