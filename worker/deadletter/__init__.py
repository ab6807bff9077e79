"""The dead-letter queue: records the pipeline writes, and the queries and actions of ``cio-fleet dlq``.

Dead letters live in one Redis Stream per workspace, ``{prefix}:dlq:{workspace}``; the id of a dead letter is
``{workspace}/{stream-entry-id}``. Nothing is ever trimmed: the queue alarms (``over_alarm``) and waits for a
person. The pipeline writes records itself, in the transaction that removes them from the partition stream::

    pipe.xdel(stream_key(prefix, ws, n), *ids)
    for letter in letters:
        pipe.xadd(dlq_key(prefix, ws), letter.to_fields())

Modules: ``records`` (the record, pure), ``filters`` (pure), ``store`` (scans and statistics), ``replay``,
``maintenance`` (purge, export, import), ``remap`` (what an event maps to now) and ``audit``.
"""

from __future__ import annotations

from worker.deadletter.audit import Actor, AuditRecord, audit, record_audit
from worker.deadletter.filters import DeadLetterFilter, FilterError, parse_time
from worker.deadletter.maintenance import (
    ImportFormatError,
    ImportResult,
    entry_to_json,
    export,
    import_,
    letter_from_json,
    purge,
)
from worker.deadletter.records import (
    OUTCOMES,
    DeadLetter,
    DeadLetterEntry,
    Outcome,
    describe_event,
    over_alarm,
    split_id,
)
from worker.deadletter.remap import map_now
from worker.deadletter.replay import (
    ReplayResult,
    ReplayTarget,
    kick_partitions,
    partitions_lookup,
    replay,
    snapshot,
    target_partition,
)
from worker.deadletter.store import DlqStats, dlq_size, dlq_workspaces, get_entry, iter_entries, stats

__all__ = [
    "OUTCOMES",
    "Actor",
    "AuditRecord",
    "DeadLetter",
    "DeadLetterEntry",
    "DeadLetterFilter",
    "DlqStats",
    "FilterError",
    "ImportFormatError",
    "ImportResult",
    "Outcome",
    "ReplayResult",
    "ReplayTarget",
    "audit",
    "describe_event",
    "dlq_size",
    "dlq_workspaces",
    "entry_to_json",
    "export",
    "get_entry",
    "import_",
    "iter_entries",
    "kick_partitions",
    "letter_from_json",
    "map_now",
    "over_alarm",
    "parse_time",
    "partitions_lookup",
    "purge",
    "record_audit",
    "replay",
    "snapshot",
    "split_id",
    "stats",
    "target_partition",
]
