"""Every Redis key and queue name of cio-fleet, built here and nowhere else.

Producers and workers both build their keys with these functions (producers never import the worker, so the
schema lives in ``producers``). Each key function's docstring starts with its pattern, ``{p}`` standing for the
key prefix (``CIO_KEY_PREFIX``), ``{ws}`` for a workspace and ``{n}`` for a partition; ``docs/architecture.md``'s
key table lists exactly these patterns (a unit test checks it).

The workspace is the slot unit: every key of one workspace holds the workspace in braces, ``{{ws}}`` (for
workspace ``acme``: ``cio:s:{acme}:3``), a Redis Cluster hash tag, so all of them hash to one slot and every script
and transaction over one workspace's keys runs on one node (Redis Cluster refuses anything else). Keys of the fleet
(``{p}:workspaces``, ``{p}:workers``, the locks, the audit stream, the Celery queue) are each touched alone.
"""

from __future__ import annotations


def tag(workspace: str) -> str:
    """``{ws}``: the workspace as a hash tag, the part of its keys Redis Cluster hashes to a slot."""
    return "{" + workspace + "}"


def stream_key(prefix: str, workspace: str, partition: int) -> str:
    """``{p}:s:{{ws}}:{n}``: the stream holding one partition's waiting events."""
    return f"{prefix}:s:{tag(workspace)}:{partition}"


def lease_key(prefix: str, workspace: str, partition: int) -> str:
    """``{p}:lease:{{ws}}:{n}``: the lease that gives one partition to one drainer at a time."""
    return f"{prefix}:lease:{tag(workspace)}:{partition}"


def retry_key(prefix: str, workspace: str, partition: int) -> str:
    """``{p}:retry:{{ws}}:{n}``: the hash holding the run of transient failures of a partition's head."""
    return f"{prefix}:retry:{tag(workspace)}:{partition}"


def config_key(prefix: str, workspace: str) -> str:
    """``{p}:config:{{ws}}``: the hash where workers publish a workspace's partition count and span."""
    return f"{prefix}:config:{tag(workspace)}"


def enqueued_key(prefix: str, workspace: str) -> str:
    """``{p}:enqueued:{{ws}}``: the hash counting, per event type, the events producers enqueued."""
    return f"{prefix}:enqueued:{tag(workspace)}"


def backlog_key(prefix: str, workspace: str) -> str:
    """``{p}:backlog:{{ws}}``: the hash holding an upper bound of a workspace's waiting events (``events``, in
    streams ``0..streams-1``), which lets the enqueue script apply the backlog cap without reading every stream."""
    return f"{prefix}:backlog:{tag(workspace)}"


def workspaces_key(prefix: str) -> str:
    """``{p}:workspaces``: the hash of the workspaces the workers serve (name → last refresh in ms)."""
    return f"{prefix}:workspaces"


def served_key(prefix: str, workspace: str) -> str:
    """``{p}:served:{{ws}}``: set while a worker serves the workspace (expires ``WORKSPACE_FORGET_MS`` after the last
    worker that serves it said so); the enqueue script reads it, in the workspace's slot."""
    return f"{prefix}:served:{tag(workspace)}"


def ready_key(prefix: str, workspace: str) -> str:
    """``{p}:ready:{{ws}}``: the set of a workspace's partitions a producer kicked without queueing their drain task
    (the broker is not the streams' Redis, e.g. on a Redis Cluster); the workers queue those tasks."""
    return f"{prefix}:ready:{tag(workspace)}"


def kicks_key(prefix: str, workspace: str) -> str:
    """``{p}:kicks:{{ws}}``: the list that wakes the workers' relay when a producer marks partitions ready (it holds
    at most one entry: the producer pushes one only onto an empty list; the relay then takes the ``ready`` set)."""
    return f"{prefix}:kicks:{tag(workspace)}"


def rate_key(prefix: str, workspace: str) -> str:
    """``{p}:rl:{{ws}}``: the GCRA theoretical arrival time of a workspace (microseconds)."""
    return f"{prefix}:rl:{tag(workspace)}"


def pause_key(prefix: str, workspace: str) -> str:
    """``{p}:pause:{{ws}}``: the fleet-wide pause of a workspace after a 429 (value: the reason)."""
    return f"{prefix}:pause:{tag(workspace)}"


def authpause_key(prefix: str, workspace: str) -> str:
    """``{p}:authpause:{{ws}}``: the pause of a workspace whose credentials were refused (401/403)."""
    return f"{prefix}:authpause:{tag(workspace)}"


def authprobe_key(prefix: str, workspace: str) -> str:
    """``{p}:authprobe:{{ws}}``: the next probe of a credentials-paused workspace is due when it expires."""
    return f"{prefix}:authprobe:{tag(workspace)}"


def dlq_key(prefix: str, workspace: str) -> str:
    """``{p}:dlq:{{ws}}``: the dead-letter stream of one workspace."""
    return f"{prefix}:dlq:{tag(workspace)}"


def audit_key(prefix: str) -> str:
    """``{p}:dlq-audit``: the stream of audit records (replay, purge, import)."""
    return f"{prefix}:dlq-audit"


def workers_key(prefix: str) -> str:
    """``{p}:workers``: the hash of worker heartbeats, ``host:pid`` → last heartbeat (unix seconds, Redis time)."""
    return f"{prefix}:workers"


def sweeper_key(prefix: str) -> str:
    """``{p}:sweeper``: the sweeper lock (one sweep per interval across the fleet)."""
    return f"{prefix}:sweeper"


def scan_key(prefix: str) -> str:
    """``{p}:scan``: the scan lock (one ``SCAN`` for stray streams per few sweep intervals across the fleet)."""
    return f"{prefix}:scan"


def strays_key(prefix: str) -> str:
    """``{p}:strays``: the set of ``{ws}:{n}`` streams the last scan found outside the configured layouts."""
    return f"{prefix}:strays"


def drain_queue(prefix: str) -> str:
    """``{p}.drain``: the Celery queue that drain tasks travel on."""
    return f"{prefix}.drain"


def unacked_key(prefix: str) -> str:
    """``{p}.unacked``: Celery's hash of unacknowledged drain tasks (kombu's Redis transport)."""
    return f"{prefix}.unacked"


def unacked_index_key(prefix: str) -> str:
    """``{p}.unacked_index``: kombu's index of the unacknowledged tasks by delivery time (a sorted set)."""
    return f"{prefix}.unacked_index"


def unacked_mutex_key(prefix: str) -> str:
    """``{p}.unacked_mutex``: kombu's lock for restoring unacknowledged tasks."""
    return f"{prefix}.unacked_mutex"


def stream_pattern(prefix: str) -> str:
    """The ``SCAN`` match of every partition stream under the prefix."""
    return f"{prefix}:s:*"


def dlq_pattern(prefix: str) -> str:
    """The ``SCAN`` match of every dead-letter stream under the prefix."""
    return dlq_key(prefix, "*")


def prefix_pattern(prefix: str) -> str:
    """The ``SCAN`` match of every key and queue under the prefix (the demo forgets them all)."""
    return f"{prefix}*"


def parse_stream_key(prefix: str, key: bytes | str) -> tuple[str, int] | None:
    """``(workspace, partition)`` of a partition stream's key, else None."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    head = f"{prefix}:s:"
    if not text.startswith(head):
        return None
    tagged, _, number = text[len(head) :].rpartition(":")
    workspace = untag(tagged)
    if not workspace or not number.isdigit():
        return None
    return workspace, int(number)


def parse_dlq_key(prefix: str, key: bytes | str) -> str:
    """The workspace of a dead-letter stream's key (a key that :func:`dlq_pattern` matched)."""
    text = key.decode() if isinstance(key, bytes) else key
    return untag(text[len(f"{prefix}:dlq:") :]) or ""


def untag(tagged: str) -> str | None:
    """The workspace of a ``{ws}`` hash tag, else None."""
    if len(tagged) > 2 and tagged.startswith("{") and tagged.endswith("}"):
        return tagged[1:-1]
    return None
