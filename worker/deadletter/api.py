"""What ``cio-fleet dlq`` uses of the dead-letter queue, gathered in one namespace (never imported by the worker)."""

from __future__ import annotations

from worker.deadletter.audit import Actor, AuditRecord, audit, record_audit
from worker.deadletter.filters import DeadLetterFilter, FilterError, parse_time
from worker.deadletter.maintenance import (
    ImportFormatError,
    ImportResult,
    PurgeResult,
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
    "PurgeResult",
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
