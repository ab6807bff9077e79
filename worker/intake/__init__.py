"""The HTTP intake: Segment's Tracking API in front of the producer, so any Segment SDK delivers through cio-fleet.

Run it with ``cio-fleet intake``, or under any ASGI server as ``worker.intake:app`` (``uvicorn worker.intake:app``):
the app is built on first access from the environment, like the worker (``CIO_*`` variables and the workspaces
file), with JSON logs and the write keys registered as secrets.
"""

from __future__ import annotations

from typing import Any

from worker.intake.asgi import IntakeApp
from worker.intake.server import build_app

__all__ = ["IntakeApp", "build_app"]

_app: IntakeApp | None = None


def __getattr__(name: str) -> Any:
    """``worker.intake.app``: the app of the environment's settings, built once."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = build_app()
    return _app
