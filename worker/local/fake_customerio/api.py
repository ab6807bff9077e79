"""What the fake answers to a ``/api/v2/batch`` or ``/api/v2/entity`` body (pure: no I/O, no clock).

Limits follow ``customerio-track-api.md`` §2: a batch body over 500,000 bytes or an entity body over 32,000
bytes is answered 413 (the real status is undocumented); a batch item whose compact JSON is over 32,000 bytes
is refused on its own in a 207. Errors use Customer.io's shapes (§2.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.local.fake_customerio.faults import FaultRule, error_body
from worker.local.fake_customerio.schema import OperationValidator, SchemaError

#: Largest ``/api/v2/batch`` body accepted, in bytes.
BATCH_MAX_BYTES = 500_000

#: Largest ``/api/v2/entity`` body, and largest batch item (compact JSON), in bytes.
ITEM_MAX_BYTES = 32_000

#: The success body.
SUCCESS_BODY = b"{}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one request and what it accepted.

    Attributes:
        status: the HTTP status.
        body: the JSON body.
        accepted: the operations accepted, in request order.
        items: how many operations the request held (0 when it could not be read).
        fault: the fault that shaped the answer ("" for none).
    """

    status: int
    body: bytes
    accepted: list[Any] = field(default_factory=list)
    items: int = 0
    fault: str = ""


def _refuse(status: int, reason: str, message: str, *, items: int = 0, fault: str = "") -> Outcome:
    """An outcome that accepts nothing."""
    return Outcome(status, error_body(reason, message), [], items, fault)


def _item_error(operation: Any, rule: FaultRule | None, validator: OperationValidator | None) -> SchemaError | None:
    """Why one operation is refused, or None when it is accepted."""
    encoded = orjson.dumps(operation)
    if len(encoded) > ITEM_MAX_BYTES:
        return SchemaError("too_large", "", f"operation is {len(encoded)} bytes; the limit is {ITEM_MAX_BYTES}")
    if rule is not None and rule.reject_items_matching and rule.reject_items_matching.encode() in encoded:
        return SchemaError("rejected", "", "operation refused by the reject_items_matching fault")
    return validator.validate(operation) if validator is not None else None


def _decode(body: bytes) -> tuple[Any, str | None]:
    """Decode a JSON body; the second value is an error message, or None."""
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError as exc:
        return None, f"body is not valid JSON: {exc}"


def _blocked(body: bytes, rule: FaultRule | None) -> bool:
    """Whether the ``reject_batch_containing`` fault refuses this body."""
    needle = rule.reject_batch_containing if rule is not None else None
    return bool(needle) and needle is not None and needle.encode() in body


def _server_error(body: bytes, rule: FaultRule | None) -> int | None:
    """The status the ``fail_batch_containing`` fault answers this body with, or None."""
    if rule is None or not rule.fail_batch_containing or rule.fail_batch_containing.encode() not in body:
        return None
    return rule.fail_status


def process_batch(body: bytes, rule: FaultRule | None, validator: OperationValidator | None) -> Outcome:
    """Answer a ``POST /api/v2/batch`` body.

    Args:
        body: the raw request body.
        rule: the fault rule applying to the request, or None.
        validator: the schema validator, or None when validation is off.

    Returns:
        200 with every item accepted, 207 with the refused items' errors, or 400/413/5xx with nothing accepted.
    """
    if len(body) > BATCH_MAX_BYTES:
        return _refuse(413, "too_large", f"batch body is {len(body)} bytes; the limit is {BATCH_MAX_BYTES}")
    failed_status = _server_error(body, rule)
    if failed_status is not None:
        return _refuse(failed_status, "internal", "batch failed by the fail_batch_containing fault", fault="fail_batch")
    if _blocked(body, rule):
        return _refuse(400, "rejected", "batch refused by the reject_batch_containing fault", fault="reject_batch")
    document, problem = _decode(body)
    if problem is not None:
        return _refuse(400, "invalid_json", problem)
    batch = document.get("batch") if isinstance(document, dict) else None
    if not isinstance(batch, list):
        return _refuse(400, "invalid", 'body must be an object with a "batch" array')
    errors: list[dict[str, Any]] = []
    accepted: list[Any] = []
    for index, operation in enumerate(batch):
        error = _item_error(operation, rule, validator)
        if error is None:
            accepted.append(operation)
        else:
            errors.append(
                {"batch_index": index, "reason": error.reason, "field": error.field, "message": error.message}
            )
    if not errors:
        return Outcome(200, SUCCESS_BODY, accepted, len(batch))
    fault = "reject_items" if any(error["reason"] == "rejected" for error in errors) else ""
    return Outcome(207, orjson.dumps({"errors": errors}), accepted, len(batch), fault)


def process_entity(body: bytes, rule: FaultRule | None, validator: OperationValidator | None) -> Outcome:
    """Answer a ``POST /api/v2/entity`` body (one operation).

    Args:
        body: the raw request body.
        rule: the fault rule applying to the request, or None.
        validator: the schema validator, or None when validation is off.

    Returns:
        200 with the operation accepted, or 400/413 with nothing accepted.
    """
    if len(body) > ITEM_MAX_BYTES:
        return _refuse(413, "too_large", f"entity body is {len(body)} bytes; the limit is {ITEM_MAX_BYTES}")
    if _blocked(body, rule):
        return _refuse(400, "rejected", "request refused by the reject_batch_containing fault", fault="reject_batch")
    operation, problem = _decode(body)
    if problem is not None:
        return _refuse(400, "invalid_json", problem)
    error = _item_error(operation, rule, validator)
    if error is not None:
        fault = "reject_items" if error.reason == "rejected" else ""
        errors = [{"reason": error.reason, "field": error.field, "message": error.message}]
        return Outcome(400, orjson.dumps({"errors": errors}), [], 1, fault)
    return Outcome(200, SUCCESS_BODY, [operation], 1)
