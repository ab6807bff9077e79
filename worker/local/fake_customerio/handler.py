"""The HTTP layer: reads requests, routes them, writes answers. One thread per connection, HTTP/1.1 keep-alive."""

from __future__ import annotations

import logging
import time
import zlib
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

from worker.local.fake_customerio.api import Outcome, process_batch, process_entity
from worker.local.fake_customerio.control import handle_control
from worker.local.fake_customerio.faults import error_body
from worker.local.fake_customerio.records import RequestRecord
from worker.local.fake_customerio.state import FakeState

#: The logger keeps the name it had before the module moved into ``worker.local``.
logger = logging.getLogger("worker.fake_customerio.handler")

#: The v2 endpoints and the function answering each.
API_ROUTES = {"/api/v2/batch": process_batch, "/api/v2/entity": process_entity}

#: The region lookup endpoint (customerio-track-api.md §5).
REGION_PATH = "/api/v1/accounts/region"

#: Bodies larger than this are not read at all: 413 and the connection is closed.
MAX_READ_BYTES = 16 * 1024 * 1024


class FakeHandler(BaseHTTPRequestHandler):
    """Answers the Track API v2 endpoints, the region lookup and the ``/_fake/`` control endpoints."""

    protocol_version = "HTTP/1.1"
    #: Headers and body leave in one write (flushed after each request), and without Nagle's delay.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server_version = "fake-customerio"
    sys_version = ""

    @property
    def state(self) -> FakeState:
        """The server's shared state."""
        state: FakeState = getattr(self.server, "state")  # noqa: B009 - BaseServer does not declare it
        return state

    def setup(self) -> None:
        """Register the connection so that stopping the server can shut it down."""
        super().setup()
        with self.state.connections_lock:
            self.state.connections.add(self.connection)

    def finish(self) -> None:
        """Forget the connection."""
        with self.state.connections_lock:
            self.state.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Send http.server's access lines to the debug log instead of stderr."""
        logger.debug(format, *args)

    def do_GET(self) -> None:
        """Route a GET request."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Route a POST request."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Route a PUT request."""
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        """Route a DELETE request."""
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        """Read the body and hand the request to the control, API or region code."""
        body = self._read_body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        if path.startswith("/_fake/"):
            reply = handle_control(self.state, method, path, query, body)
            self._send(reply.status, reply.body)
        elif path in API_ROUTES or path == REGION_PATH:
            self.state.recorder.request_started()
            try:
                self._api(method, path, body)
            finally:
                self.state.recorder.request_ended()
        else:
            self._send(404, error_body("not_found", f"no endpoint {path}"))

    def _read_body(self) -> bytes | None:
        """Read the whole body (Content-Length or chunked); None when an answer was already sent."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_READ_BYTES:
            self.close_connection = True
            self._send(413 if length > 0 else 400, error_body("invalid", "unreadable or huge Content-Length"))
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        """Read a chunked body; None (after answering 400 or 413) when it is malformed or too large."""
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                size = -1
            total += max(size, 0)
            if size < 0 or total > MAX_READ_BYTES:
                self.close_connection = True
                self._send(400 if size < 0 else 413, error_body("invalid", "malformed or huge chunked body"))
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers up to the blank line
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _api(self, method: str, path: str, body: bytes) -> None:
        """Answer a Track API request and record it."""
        started, received_at = time.monotonic(), time.time()
        state = self.state
        auth = state.credentials.check(self.headers.get("Authorization"))
        headers: dict[str, str] = {}
        if method != ("GET" if path == REGION_PATH else "POST"):
            outcome = Outcome(405, error_body("method_not_allowed", f"{method} is not allowed on {path}"))
        elif not auth.ok:
            outcome = Outcome(401, error_body("unauthorized", "invalid site id or API key"))
            headers["WWW-Authenticate"] = 'Basic realm="Customer.io Track API"'
        elif path == REGION_PATH:
            outcome = Outcome(200, _region_body(state.base_url, auth.site_id or ""))
        else:
            outcome, headers = self._faulted(path, auth.site_id, body)
        record = RequestRecord(
            request_id=state.recorder.next_request_id(),
            time=received_at,
            site_id=auth.site_id,
            method=method,
            path=path,
            status=outcome.status,
            body_bytes=len(body),
            items=outcome.items,
            accepted=len(outcome.accepted),
            duration_s=round(time.monotonic() - started, 6),
            authorization_ok=auth.ok,
            fault=outcome.fault,
        )
        state.recorder.add(record, outcome.accepted)
        if outcome.status:
            self._send(outcome.status, outcome.body, headers)

    def _faulted(self, path: str, site_id: str | None, body: bytes) -> tuple[Outcome, dict[str, str]]:
        """Apply the matching fault rule, then process the body unless the rule answers for it.

        Returns:
            The outcome (status 0: close the connection without answering) and extra headers.
        """
        state = self.state
        verdict = state.faults.decide(site_id, path)
        if verdict.delay_s:
            state.stopping.wait(verdict.delay_s)
        if verdict.hang_s is not None:
            state.stopping.wait(verdict.hang_s)
        if verdict.close:
            self.close_connection = True
            return Outcome(0, b"", fault=verdict.fault), {}
        if verdict.status is not None:
            return Outcome(verdict.status, verdict.body, fault=verdict.fault), verdict.headers
        outcome = API_ROUTES[path](body, verdict.rule, state.validator)
        if verdict.fault and not outcome.fault:
            outcome = Outcome(outcome.status, outcome.body, outcome.accepted, outcome.items, verdict.fault)
        return outcome, {}

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Write an answer with a JSON (or, for a forced non-JSON body, plain text) body."""
        try:
            self.send_response(status)
            is_json = body[:1] in (b"{", b"[") or not body
            self.send_header("Content-Type", "application/json; charset=utf-8" if is_json else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _region_body(base_url: str, site_id: str) -> bytes:
    """The region lookup's answer: this fake's URL, region us, and a workspace id derived from the site id."""
    return orjson.dumps({"url": base_url, "region": "us", "environment_id": zlib.crc32(site_id.encode()) % 100_000})
