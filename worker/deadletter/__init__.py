"""The dead-letter queue: records the pipeline writes, and the queries and actions of ``cio-fleet dlq``.

Dead letters live in one Redis Stream per workspace, ``{prefix}:dlq:{workspace}``; the id of a dead letter is
``{workspace}/{stream-entry-id}``. Nothing is ever trimmed: the queue alarms (``over_alarm``) and waits for a
person. The pipeline writes records itself, in the transaction that removes them from the partition stream.

Modules: ``records`` (the record, pure; the only one the worker's hot path imports), ``filters`` (pure),
``store`` (scans and statistics), ``replay``, ``maintenance`` (purge, export, import), ``remap`` (what an event
maps to now) and ``audit``; ``api`` gathers what ``cio-fleet dlq`` uses. This package imports none of them, so
that writing a record never loads replay, maintenance or audit.
"""
