"""Answers: a status, JSON, and headers, sent over ASGI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.intake.enqueue import Outcome
from worker.intake.errors import HttpError

Send = Callable[[dict[str, Any]], Awaitable[None]]

SUCCESS = orjson.dumps({"success": True})


@dataclass
class Response:
    """One HTTP answer."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, send: Send) -> None:
        """Send the answer."""
        headers = [(b"content-type", self.content_type.encode()), (b"content-length", str(len(self.body)).encode())]
        headers += [(name.encode(), value.encode()) for name, value in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON answer."""
    return Response(status, orjson.dumps(payload), headers=headers or [])


def error_response(error: HttpError) -> Response:
    """The answer to a request stopped by ``error``."""
    headers = [] if error.retry_after_s is None else [("retry-after", str(error.retry_after_s))]
    return json_response(error.status, {"success": False, "error": error.message}, headers)


def outcome_response(outcome: Outcome, retry_after_s: int) -> Response:
    """200 when every event is enqueued; else 503 (backlog full), 413 (only oversize events) or 400, listing them."""
    if outcome.full is None and not outcome.refused:
        return Response(200, SUCCESS)
    payload: dict[str, Any] = {
        "success": False,
        "accepted": outcome.accepted,
        "refused": [refusal.as_json() for refusal in outcome.refused],
    }
    if outcome.full is not None:
        payload["error"] = (
            f"backlog full: {outcome.accepted} of {outcome.total} events enqueued; retry the others later"
        )
        return json_response(503, payload, [("retry-after", str(retry_after_s))])
    payload["error"] = f"{len(outcome.refused)} of {outcome.total} events refused; the others are enqueued"
    status = 413 if all(refusal.oversize for refusal in outcome.refused) else 400
    return json_response(status, payload)
