"""What a dead letter's event maps to with today's transform (``cio-fleet dlq show``).

``worker.mapping.transform`` is imported lazily, so that this module works, and says so, in an installation without it.
"""

from __future__ import annotations

import importlib
from typing import Any

import orjson

from worker.settings import WorkspaceConfig


def map_now(raw: bytes, config: WorkspaceConfig | None) -> dict[str, Any]:
    """What the event maps to with today's transform: deliver (operations), skip or reject, with the reason.

    A delivered event whose time could not be read also lists ``dropped_timestamps`` (the fields left out or
    passed as given), so an event dead-lettered for a timestamp under an older rule shows what it becomes now.
    """
    if config is None:
        return {"outcome": "unknown", "detail": "the workspace is not configured here"}
    try:
        transform = importlib.import_module("worker.mapping.transform")
    except ImportError:
        return {"outcome": "unknown", "detail": "worker.mapping.transform is not available in this installation"}
    try:
        result = transform.transform_raw(raw, transform.TransformOptions.for_workspace(config))
    except Exception as exc:  # a bug in the transform must not hide the record
        return {"outcome": "error", "detail": f"the transform failed: {type(exc).__name__}: {exc}"}
    if hasattr(result, "operations"):
        mapped = {"outcome": "deliver", "operations": [_jsonable(op) for op in result.operations]}
        dropped = getattr(result, "dropped_timestamps", ())
        if dropped:
            mapped["dropped_timestamps"] = list(dropped)
        return mapped
    kind = "skip" if type(result).__name__.lower() == "skip" else "reject"
    return {"outcome": kind, "reason": str(getattr(result, "reason", ""))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    for method in ("model_dump", "as_dict", "to_dict"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return repr(value)
