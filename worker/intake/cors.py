"""CORS for browser SDKs, per workspace (``cors_origins``).

A preflight carries no write key, so it is answered for any origin some workspace allows. A request with an
``Origin`` is then checked against its own workspace's origins: an origin the workspace does not list gets 403
and nothing is enqueued. Requests without ``Origin`` (server SDKs) are not concerned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from worker.intake.errors import HttpError

#: The ``cors_origins`` entry that allows every origin.
ANY_ORIGIN: Final = "*"
#: Preflight answers may be cached this long by the browser.
MAX_AGE_S: Final = 600

_ALLOW_HEADERS: Final = "Content-Type, Authorization, Content-Encoding"


class Cors:
    """The origins each workspace allows.

    Args:
        origins: Workspace → its ``cors_origins``.
    """

    def __init__(self, origins: Mapping[str, Iterable[str]]) -> None:
        self._origins = {workspace: frozenset(o.rstrip("/") for o in allowed) for workspace, allowed in origins.items()}
        self._any = frozenset().union(*self._origins.values()) if self._origins else frozenset()

    def _allows(self, allowed: frozenset[str], origin: str) -> bool:
        return ANY_ORIGIN in allowed or origin.rstrip("/") in allowed

    def preflight(self, origin: str | None, requested_headers: str | None = None) -> list[tuple[str, str]]:
        """The headers answering a preflight from ``origin``; none when no workspace allows it.

        The request headers the browser asks for are allowed as asked (SDKs add their own, such as
        ``X-Retry-Count``): a header grants nothing here, the write key in the request does.
        """
        if origin is None or not self._allows(self._any, origin):
            return []
        return [
            *self.allow(origin),
            ("access-control-allow-methods", "POST, OPTIONS"),
            ("access-control-allow-headers", requested_headers or _ALLOW_HEADERS),
            ("access-control-max-age", str(MAX_AGE_S)),
        ]

    def readable(self, origin: str | None) -> list[tuple[str, str]]:
        """The headers that let a browser read an error answer, for an origin some workspace allows."""
        if origin is None or not self._allows(self._any, origin):
            return []
        return self.allow(origin)

    def check(self, workspace: str, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers of a request to ``workspace`` from ``origin``.

        Raises:
            HttpError: 403 when the request has an origin the workspace does not allow.
        """
        if origin is None:
            return []
        if not self._allows(self._origins.get(workspace, frozenset()), origin):
            raise HttpError(403, "origin not allowed for this write key's workspace (cors_origins)")
        return self.allow(origin)

    @staticmethod
    def allow(origin: str) -> list[tuple[str, str]]:
        """The headers that let a browser at ``origin`` read the answer."""
        return [
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("vary", "Origin"),
        ]
