"""Packing serialised operations into ``/api/v2/batch`` bodies (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: ``{"batch":[`` + ``]}``: the bytes a body adds around its items.
ENVELOPE_BYTES: Final = len(b'{"batch":[]}')


def batch_body(items: Sequence[bytes]) -> bytes:
    """The request body holding ``items`` (already serialised operations), in order."""
    return b'{"batch":[' + b",".join(items) + b"]}"


def body_size(item_sizes: Sequence[int]) -> int:
    """The byte size of ``batch_body`` for items of these sizes, without building it."""
    return ENVELOPE_BYTES + sum(item_sizes) + max(len(item_sizes) - 1, 0)


def pack(item_sizes: Sequence[int], *, max_bytes: int, max_items: int) -> list[range]:
    """Cut items, in order, into consecutive runs whose bodies fit ``max_bytes`` and ``max_items``.

    An item too large to fit even alone gets a run of its own (the caller rejects such items before packing).
    """
    runs: list[range] = []
    start, size = 0, ENVELOPE_BYTES
    for index, item_size in enumerate(item_sizes):
        added = item_size + (1 if index > start else 0)
        if index > start and (size + added > max_bytes or index - start >= max_items):
            runs.append(range(start, index))
            start, size, added = index, ENVELOPE_BYTES, item_size
        size += added
    if start < len(item_sizes):
        runs.append(range(start, len(item_sizes)))
    return runs


def linger_ms(head_age_ms: int, linger: int) -> int:
    """How long to wait for company before sending a short batch whose oldest entry is ``head_age_ms`` old.

    Never more than ``linger``, whatever the age: an entry whose id is ahead of the clock (a replica's slower
    clock after a failover, or an id given to ``XADD``) has a negative age and waits ``linger``, not the skew.
    """
    return min(max(linger - head_age_ms, 0), linger)
