"""Talking to Customer.io: the only module that imports httpx.

``CustomerIOClient.post_batch`` sends one ``/api/v2/batch`` body and returns a ``BatchResponse``;
``classify`` turns that response into one ``Verdict``, what the pipeline does next (accept, split, retry, reject,
pause for credentials): a value, never raised. Nothing else in the code inspects a status code.
"""

from __future__ import annotations

import contextlib
import email.utils
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import httpx
import orjson

from worker.errors import (
    Rejected,
    RetryableError,
    Throttled,
    TransportFailure,
    Unauthorized,
    UpstreamUnavailable,
)
from worker.settings import HttpSettings, WorkspaceConfig

#: How much of a response body is kept for logs and dead letters.
EXCERPT_CHARS: Final = 1_000
#: Statuses that mean "try again later" besides 5xx.
RETRYABLE_STATUSES: Final = frozenset({408, 429})
#: Statuses that mean "the request as a whole was refused; split it to find the bad items".
SPLIT_STATUSES: Final = frozenset({400, 413})
#: Statuses that mean "the credentials are wrong".
AUTH_STATUSES: Final = frozenset({401, 403})
#: Longest ``Retry-After`` honoured, in seconds.
MAX_RETRY_AFTER_S: Final = 3_600.0


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """What Customer.io answered to one request."""

    status: int
    body: bytes
    retry_after: float | None
    elapsed_s: float

    @property
    def excerpt(self) -> str:
        """The first characters of the body, for logs and dead letters."""
        return self.body[:EXCERPT_CHARS].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Accepted:
    """2xx: every item was accepted except those listed in ``failed`` (batch index → reason).

    ``response`` is the answer's excerpt when items were refused (a 207), kept in their dead letters.
    """

    failed: dict[int, str] = field(default_factory=dict)
    response: str = ""


@dataclass(frozen=True, slots=True)
class SplitNeeded:
    """400/413 for the whole batch: split it to isolate the bad items."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """429, 408, 5xx or no answer: the entries wait at the head of the partition for another attempt."""

    error: RetryableError


@dataclass(frozen=True, slots=True)
class Reject:
    """Any other non-2xx status (3xx included: a wrong regional host): the batch is refused for good."""

    error: Rejected


@dataclass(frozen=True, slots=True)
class PauseCredentials:
    """401/403: the credentials are refused; the workspace is paused and its events kept."""

    error: Unauthorized


#: What the pipeline does with one answer of Customer.io.
Verdict = Accepted | SplitNeeded | Retry | Reject | PauseCredentials


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def item_errors(body: bytes, batch_size: int) -> dict[int, str]:
    """Batch index → reason for the items a 207 lists; entries without a valid index are ignored."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    errors = document.get("errors") if isinstance(document, dict) else None
    failed: dict[int, str] = {}
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        index = error.get("batch_index")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < batch_size:
            parts = [str(error[key]) for key in ("field", "message", "reason") if error.get(key)]
            failed[index] = ": ".join(parts) or "rejected by Customer.io"
    return failed


def error_message(body: bytes) -> str:
    """The ``message``/``reason`` of the first error in a Customer.io error body, else an excerpt."""
    try:
        errors = orjson.loads(body).get("errors")
        first = errors[0]
        return str(first.get("message") or first.get("reason") or first)
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace").strip() or "no body"


def classify(response: BatchResponse, batch_size: int) -> Verdict:
    """What the pipeline does with a response: one verdict, whose error (if any) carries status and body."""
    status = response.status
    if 200 <= status < 300:
        if status == 207:
            return Accepted(item_errors(response.body, batch_size), response.excerpt)
        return Accepted()
    if status in SPLIT_STATUSES:
        return SplitNeeded(status, f"HTTP {status}: {error_message(response.body)}")
    if status == 429:
        return Retry(Throttled("HTTP 429: throttled", retry_after=response.retry_after, status=status))
    if status in RETRYABLE_STATUSES or status >= 500:
        return Retry(UpstreamUnavailable(f"HTTP {status}", retry_after=response.retry_after, status=status))
    if status in AUTH_STATUSES:
        return PauseCredentials(
            Unauthorized(f"HTTP {status}: credentials refused", status=status, body=response.excerpt)
        )
    if 300 <= status < 400:
        reason = f"HTTP {status}: redirected; check the workspace's region or track_url"
        return Reject(Rejected(reason, status=status, body=response.excerpt))
    return Reject(Rejected(f"HTTP {status}: {error_message(response.body)}", status=status, body=response.excerpt))


@contextlib.contextmanager
def map_httpx_errors() -> Iterator[None]:
    """Turn httpx's transport exceptions into ``TransportFailure``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransportFailure(f"timeout: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise TransportFailure(f"transport error: {type(exc).__name__}: {exc}") from exc


class CustomerIOClient:
    """The worker process's HTTP clients: one ``httpx.Client`` per thread, keep-alive, timeouts from settings, Basic
    auth per request.

    One client per thread rather than one shared pool: under 32 and 96 posting threads, a shared ``httpx.Client``
    makes a request wait before it goes on the wire (p99 15-900 ms against 8-65 ms) and costs up to 5x the CPU per
    request, because its pool re-matches every waiting request with every connection, under one lock, on each request
    and each answer (``tests/benchmarks/bench_http_client.py``; figures in ``tests/benchmarks/README.md``). A thread
    sends one request at a time, so its client needs a connection per host it talks to, no more. The clients share
    one TLS context (the CA bundle is loaded once).
    """

    def __init__(self, http: HttpSettings, transport: httpx.BaseTransport | None = None) -> None:
        self._settings = http
        self._transport = transport
        self._tls = httpx.create_ssl_context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []

    def _client(self) -> httpx.Client:
        """This thread's client, built on its first request."""
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            http, connections = self._settings, self._settings.connections_per_thread
            client = httpx.Client(
                timeout=httpx.Timeout(http.timeout_s, connect=http.connect_timeout_s),
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                follow_redirects=False,
                verify=self._tls,
                transport=self._transport,
                headers={"Content-Type": "application/json", "User-Agent": "cio-fleet"},
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def post_batch(self, workspace: WorkspaceConfig, body: bytes) -> BatchResponse:
        """POST one ``{"batch": [...]}`` body to the workspace's Track API.

        Raises:
            TransportFailure: the request did not complete (timeout, connection refused or reset).
        """
        auth = (workspace.site_id, workspace.api_key.get_secret_value())
        started = time.monotonic()
        with map_httpx_errors():
            response = self._client().post(f"{workspace.base_url}/api/v2/batch", content=body, auth=auth)
        return BatchResponse(
            status=response.status_code,
            body=response.content,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            elapsed_s=time.monotonic() - started,
        )

    def close(self) -> None:
        """Close every thread's connections."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
