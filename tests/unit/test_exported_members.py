"""The public surface of ``producers``: exactly ``__all__``, and no import of the worker."""

from __future__ import annotations

import subprocess
import sys

from pydantic import BaseModel

import producers


def test_all_lists_exactly_the_public_members() -> None:
    public = {name for name in vars(producers) if not name.startswith("_")}
    assert public == set(producers.__all__)
    assert len(producers.__all__) == len(set(producers.__all__))


def test_public_classes_are_shown_as_members_of_producers() -> None:
    for name in producers.__all__:
        member = getattr(producers, name)
        if isinstance(member, type) and not issubclass(member, BaseModel):
            assert member.__module__ == "producers", name


def test_the_documented_api_is_exported() -> None:
    documented = {
        "Producer", "AsyncProducer", "EnqueueResult", "ProducerError", "InvalidEventError", "QueueFull",
        "Identify", "Track", "Page", "Screen", "Group", "Alias", "SegmentEvent", "validate_event",
        "partition_for", "person_key", "DEFAULT_PARTITIONS", "FORMAT_VERSION",
    }  # fmt: skip
    assert documented <= set(producers.__all__)


def test_importing_producers_imports_neither_the_worker_nor_celery() -> None:
    probe = (
        "import sys, producers\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('worker', 'celery', 'kombu'))\n"
        "print(','.join(loaded))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == ""
