"""The worker's exceptions, one tree::

    WorkerError
    ├── RetryableError(retry_after)      delivery may succeed later: retry with backoff
    │   ├── Throttled                    429, or the workspace is paused by the fleet
    │   ├── UpstreamUnavailable          408 and 5xx
    │   └── TransportFailure             timeouts, connection errors
    └── PermanentError                   retrying cannot help
        ├── InvalidEvent                 the event cannot be decoded or mapped
        ├── Rejected(status, body)       Customer.io refused the request (4xx other than 408/429)
        └── Unauthorized(status, body)   401/403: the workspace's credentials are wrong

Programmer errors (``TypeError``, ``AssertionError``) stay outside the tree.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of every error the delivery path raises on purpose."""


class RetryableError(WorkerError):
    """A failure that may pass: the partition waits and tries again."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Throttled(RetryableError):
    """Customer.io answered 429, or the fleet paused the workspace."""


class UpstreamUnavailable(RetryableError):
    """Customer.io answered 408 or 5xx."""


class TransportFailure(RetryableError):
    """The request did not complete: timeout, refused or reset connection."""


class PermanentError(WorkerError):
    """A failure that retrying cannot fix."""


class InvalidEvent(PermanentError):
    """The event cannot be decoded or mapped; the message says which field and why."""


class Rejected(PermanentError):
    """Customer.io refused the request with a 4xx status other than 401/403/408/429."""

    def __init__(self, message: str, *, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Unauthorized(Rejected):
    """401/403: the workspace's site id or API key is wrong; its events are kept, not dead-lettered."""
