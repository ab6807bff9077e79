"""HTTP Basic authentication of the Track API: ``site_id:api_key``, checked against a configured map."""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of checking one ``Authorization`` header.

    Attributes:
        site_id: the site id the request claims (None when the header is missing or unreadable).
        ok: whether the credentials are accepted.
    """

    site_id: str | None
    ok: bool


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """Decode ``Basic base64(user:password)``.

    Args:
        header: the ``Authorization`` header value, or None.

    Returns:
        ``(site_id, api_key)``, or None when the header is missing or not a readable Basic header.
    """
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    site_id, colon, api_key = decoded.partition(":")
    return (site_id, api_key) if colon else None


class Credentials:
    """The accepted ``site_id → api_key`` pairs; when empty, any non-empty site id and key pass. Thread-safe."""

    def __init__(self, pairs: Mapping[str, str] | None = None) -> None:
        """Start with ``pairs`` (None or empty: accept any non-empty pair)."""
        self._lock = threading.Lock()
        self._pairs: dict[str, str] = dict(pairs or {})

    def replace(self, pairs: Mapping[str, str]) -> None:
        """Put a new map in force."""
        with self._lock:
            self._pairs = dict(pairs)

    def sites(self) -> list[str]:
        """The configured site ids (never the keys)."""
        with self._lock:
            return sorted(self._pairs)

    def check(self, header: str | None) -> AuthResult:
        """Check an ``Authorization`` header.

        Args:
            header: the header value, or None.

        Returns:
            The claimed site id and whether the credentials are accepted.
        """
        parsed = parse_basic(header)
        if parsed is None:
            return AuthResult(None, False)
        site_id, api_key = parsed
        with self._lock:
            pairs = self._pairs
        if not site_id or not api_key:
            return AuthResult(site_id or None, False)
        if not pairs:
            return AuthResult(site_id, True)
        expected = pairs.get(site_id)
        ok = expected is not None and hmac.compare_digest(expected.encode(), api_key.encode())
        return AuthResult(site_id, ok)


def parse_credential_pairs(values: list[str]) -> dict[str, str]:
    """Turn ``SITE:KEY`` strings (the CLI's ``--credentials``) into a map.

    Args:
        values: the strings.

    Returns:
        ``{site_id: api_key}``.

    Raises:
        ValueError: a string lacks the colon or one of its halves (the message never shows the key).
    """
    pairs: dict[str, str] = {}
    for position, value in enumerate(values, start=1):
        site_id, colon, api_key = value.partition(":")
        if not colon or not site_id or not api_key:
            raise ValueError(f"credentials #{position} must look like SITE_ID:API_KEY")
        pairs[site_id] = api_key
    return pairs
