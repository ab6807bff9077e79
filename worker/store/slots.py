"""The startup check that every Lua script and transaction touches one Redis Cluster slot.

Redis Cluster runs a script or a ``MULTI`` only when all its keys hash to one slot; the key schema
(``producers.keys``) puts every key of a workspace in the workspace's slot with a hash tag. ``script_key_sets``
names the keys each script and transaction of cio-fleet declares, for one workspace; ``check_slots`` computes their
slots with redis-py's ``key_slot`` (the function Redis Cluster itself uses) and refuses a configuration where one of
them would span two slots: a key prefix with a brace (it would become the hash tag), or a workspace name that makes
its keys' tags differ. It needs no Redis and runs on one node too, so a layout that works on one node also works on
a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from redis.crc import key_slot

from producers._kick import Layout
from producers.keys import (
    authpause_key,
    authprobe_key,
    backlog_key,
    config_key,
    dlq_key,
    kicks_key,
    lease_key,
    pause_key,
    rate_key,
    ready_key,
    retry_key,
    served_key,
    stream_key,
    workers_key,
    workspaces_key,
)
from worker.settings import ConfigError, Settings


def script_key_sets(prefix: str, workspace: str, partitions: int) -> dict[str, tuple[str, ...]]:
    """The keys each script or transaction declares for ``workspace``, by name (the widest call of each).

    The enqueue script's other form, which pushes the drain task onto the fleet's drain queue, runs on one Redis
    node only: on a cluster the producer marks the partition ready instead (``Layout.build(relay=True)``). The
    fenced rate limit is the reservation that also renews the drainer's lease (one round trip for both); the
    partition-count publish also fences the old layout's streams in the config hash (``fence:<n>``). The enqueue
    script, the dead-letter replay and the sweeper's reset all write the backlog bound (``backlog_key``).
    """
    streams = tuple(stream_key(prefix, workspace, n) for n in range(partitions))
    leases = tuple(lease_key(prefix, workspace, n) for n in range(partitions))
    one = (lease_key(prefix, workspace, 0), stream_key(prefix, workspace, 0), retry_key(prefix, workspace, 0))
    return {
        "enqueue": Layout.build(prefix, workspace, partitions, cap=None, kick=True, relay=True).keys,
        "settle": (*one, dlq_key(prefix, workspace)),
        "settle and read": (*one, dlq_key(prefix, workspace)),
        "read head": one,
        "record failure": (lease_key(prefix, workspace, 0), retry_key(prefix, workspace, 0)),
        "release": (lease_key(prefix, workspace, 0), stream_key(prefix, workspace, 0)),
        "old kicks": (*leases, *streams),
        "end retry timers": leases,
        "kick retry timer": (lease_key(prefix, workspace, 0),),
        "mark published": (lease_key(prefix, workspace, 0),),
        "publish partitions (with fences)": (config_key(prefix, workspace), *streams),
        "pass fences": (config_key(prefix, workspace), *streams),
        "fenced rate limit": (
            rate_key(prefix, workspace),
            pause_key(prefix, workspace),
            lease_key(prefix, workspace, 0),
        ),
        "ready set": (ready_key(prefix, workspace),),
        "relay wake-up": (kicks_key(prefix, workspace),),
        "credentials pause": (authpause_key(prefix, workspace), authprobe_key(prefix, workspace)),
        "dead-letter replay": (
            dlq_key(prefix, workspace),
            stream_key(prefix, workspace, 0),
            backlog_key(prefix, workspace),
        ),
        "backlog bound reset": (backlog_key(prefix, workspace), *streams),
        "served": (served_key(prefix, workspace),),
        "fleet workspaces": (workspaces_key(prefix),),
        "heartbeats": (workers_key(prefix),),
    }


def spanning(key_sets: Mapping[str, Iterable[str]]) -> list[str]:
    """The names of the key sets whose keys hash to more than one slot (pure)."""
    return [name for name, keys in key_sets.items() if len({key_slot(key.encode()) for key in keys}) > 1]


def check_key_prefix(prefix: str) -> None:
    """Refuse a key prefix with a brace: it would become the hash tag of every key.

    Raises:
        ConfigError: The prefix holds ``{`` or ``}``.
    """
    if "{" in prefix or "}" in prefix:
        raise ConfigError(f"setting 'key_prefix': {prefix!r} must not hold '{{' or '}}' (Redis Cluster hash tags)")


def check_slots(settings: Settings) -> None:
    """Refuse a configuration where a script or transaction of some workspace would touch two slots.

    Raises:
        ConfigError: Naming the workspace and the script.
    """
    check_key_prefix(settings.key_prefix)
    for name, workspace in sorted(settings.workspaces.items()):
        broken = spanning(script_key_sets(settings.key_prefix, name, workspace.partitions))
        if broken:
            raise ConfigError(
                f"workspace {name!r}: the keys of {', '.join(broken)} would hash to more than one Redis Cluster "
                "slot; a workspace name must not hold '{' or '}'"
            )


def check_startup(settings: Settings) -> None:
    """Every check a worker or a producer-side process runs on its settings before it touches Redis (the broker a
    Redis Cluster needs is checked as the settings load, ``Settings._broker_for_a_cluster``).

    Raises:
        ConfigError: A script would span slots.
    """
    check_slots(settings)
