"""Write keys, mapped to a workspace: HTTP Basic (the key as user name, empty password, as Segment's SDKs send it),
``Bearer`` (Customer.io's SDKs send ``pk_``/``sk_`` keys so), or the body's ``writeKey`` (browsers)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from worker.intake.errors import HttpError


def basic_user(authorization: str) -> str | None:
    """The user name of a ``Basic`` ``Authorization`` header, else ``None``."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def bearer_token(authorization: str) -> str | None:
    """The token of a ``Bearer`` ``Authorization`` header, else ``None``."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def presented_key(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The write key a request carries: the ``Authorization`` header wins over the body's ``writeKey``."""
    authorization = headers.get("authorization", "")
    from_header = basic_user(authorization) or bearer_token(authorization)
    if from_header is not None:
        return from_header
    from_body = body.get("writeKey")
    return from_body if isinstance(from_body, str) and from_body else None


class KeyRing:
    """Which workspace each write key names.

    Args:
        owners: Write key → workspace (``Settings.write_key_owners()``).
    """

    def __init__(self, owners: Mapping[str, str]) -> None:
        self._owners = dict(owners)

    def workspace(self, key: str | None) -> str:
        """The workspace ``key`` names; 401 for a missing or unknown key (compared in constant time)."""
        if key is None:
            raise HttpError(401, "write key missing: send it as the Basic user name or as writeKey")
        found = None
        for known, workspace in self._owners.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = workspace
        if found is None:
            raise HttpError(401, "unknown write key")
        return found
