"""The one exception that ends a request early with an HTTP status."""

from __future__ import annotations


class HttpError(Exception):
    """Answer the request with ``status`` and ``message``; nothing of it was enqueued.

    Attributes:
        status: The HTTP status.
        message: What went wrong, for the client (never a secret, never an event's content).
        retry_after_s: Seconds for ``Retry-After`` (503), else ``None``.
    """

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
