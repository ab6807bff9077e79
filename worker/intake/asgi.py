"""The intake as a plain ASGI app: routing, and the steps of one request.

Routes: ``POST /v1/{endpoint}`` (Segment's Tracking API, see ``worker.intake.segment``), ``OPTIONS`` for CORS
preflights, ``GET /health`` (Redis answers), ``GET /openapi.json`` and ``GET /metrics``. A request is read
within bounds, authenticated by its write key, its events merged and corrected, checked and enqueued by the
producer in one script call, and answered; see the README, "Sending from any language".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from worker.intake.auth import KeyRing, presented_key
from worker.intake.cors import Cors
from worker.intake.decoding import check_content_type, declared_length, decode, parse_object, read_body
from worker.intake.enqueue import Enqueuer, Outcome
from worker.intake.errors import HttpError
from worker.intake.limits import BATCH_BYTES, BODY_TIMEOUT_S, RETRY_AFTER_S
from worker.intake.metrics import IntakeMetrics
from worker.intake.openapi import document
from worker.intake.responses import Response, error_response, json_response, outcome_response
from worker.intake.segment import events_of, is_endpoint
from worker.settings import Settings

log = logging.getLogger("worker.intake")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_V1 = "/v1/"


def header_map(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-case (the last of repeated ones wins)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


class IntakeApp:
    """The ASGI app of the intake.

    Args:
        settings: Redis, key prefix, backlog cap and workspaces (their write keys and CORS origins).
        metrics: Where requests are counted (fresh metrics by default).
        body_timeout_s: The longest a client may take to send a body.
    """

    def __init__(
        self, settings: Settings, metrics: IntakeMetrics | None = None, *, body_timeout_s: float = BODY_TIMEOUT_S
    ) -> None:
        self.settings = settings
        self.metrics = metrics or IntakeMetrics()
        self.keys = KeyRing(settings.write_key_owners())
        self.cors = Cors({name: ws.cors_origins for name, ws in settings.workspaces.items()})
        self.enqueuer = Enqueuer(settings)
        self.body_timeout_s = body_timeout_s
        self._openapi = orjson.dumps(document())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            started = time.perf_counter()
            response = await self._answer(scope, receive)
            await response.send(send)
            if scope["path"].startswith(_V1):  # probes and scrapes are not the API's traffic
                self.metrics.request(response.status, time.perf_counter() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.enqueuer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        try:
            return await self._route(scope, receive)
        except HttpError as error:
            if error.status >= 500:
                log.warning("intake request refused: %s", error.message, extra={"status": error.status})
            response = error_response(error)
            response.headers += self.cors.readable(header_map(scope).get("origin"))
            return response

    async def _route(self, scope: Scope, receive: Receive) -> Response:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path.startswith(_V1) and is_endpoint(path[len(_V1) :]):
            if method == "OPTIONS":
                headers = header_map(scope)
                preflight = self.cors.preflight(headers.get("origin"), headers.get("access-control-request-headers"))
                return Response(204, headers=preflight)
            if method != "POST":
                raise HttpError(405, "use POST")
            return await self._ingest(path[len(_V1) :], header_map(scope), receive)
        if method != "GET":
            raise HttpError(405 if path in ("/health", "/openapi.json", "/metrics") else 404, "no such route")
        return await self._get(path)

    async def _get(self, path: str) -> Response:
        if path == "/health":
            up = await self.enqueuer.ping()
            return json_response(200 if up else 503, {"status": "ok" if up else "redis unreachable"})
        if path == "/openapi.json":
            return Response(200, self._openapi)
        if path == "/metrics":
            return Response(200, self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        raise HttpError(404, "no such route")

    async def _ingest(self, endpoint: str, headers: dict[str, str], receive: Receive) -> Response:
        declared_length(headers, BATCH_BYTES)
        check_content_type(headers.get("content-type", ""))
        raw = await read_body(receive, BATCH_BYTES, self.body_timeout_s)
        body = parse_object(decode(raw, headers.get("content-encoding", ""), BATCH_BYTES))
        workspace = self.keys.workspace(presented_key(headers, body))
        cors = self.cors.check(workspace, headers.get("origin"))
        events = events_of(endpoint, body, datetime.now(UTC))
        outcome = await self.enqueuer.enqueue(workspace, events)
        self._count(workspace, outcome)
        response = outcome_response(outcome, RETRY_AFTER_S)
        response.headers += cors
        return response

    def _count(self, workspace: str, outcome: Outcome) -> None:
        refused = len(outcome.refused)
        left_out = outcome.total - outcome.accepted - refused
        self.metrics.outcome(workspace, outcome.accepted, refused, left_out)
        if outcome.refused or outcome.full is not None:
            log.info(
                "intake request partly refused",
                extra={"workspace": workspace, "accepted": outcome.accepted, "refused": refused, "full": left_out},
            )
