"""A drain task queued on RabbitMQ, recorded in its partition's ``kicked`` lease.

The sweeper kicks again a ``kicked`` partition older than ``KICK_GRACE_MS`` whose task it does not find queued. A
Redis list can be read back; a RabbitMQ queue cannot (reading takes the messages). So, on RabbitMQ, whoever
publishes a drain task (the relay, a drainer re-queueing, the sweeper) then stretches the partition's ``kicked``
lease to ``PUBLISHED_TTL_MS``: a published kick never looks old to the sweeper (its PTTL stays above
``KICK_TTL_MS - KICK_GRACE_MS``) for as long as the queued task may wait, an hour, as on Redis. A kick whose
publish failed or never happened (a relay killed between taking the kick and publishing it) keeps its plain TTL
and is found after ``KICK_GRACE_MS``. A mark that fails costs a twin task, which finds the lease taken and does
nothing. A drainer taking the lease replaces the value and the TTL, which ends the mark.
"""

from __future__ import annotations

from typing import Final

import redis

from producers.keys import lease_key
from producers.wire import KICK_TTL_MS, KICKED

#: The TTL of a published ``kicked`` lease: an hour past ``KICK_TTL_MS`` before it can look old.
PUBLISHED_TTL_MS: Final = 2 * KICK_TTL_MS

# KEYS: the lease. ARGV: kicked, the TTL. Stretches the lease only while it is still the kick.
_MARK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def mark_published(client: redis.Redis, prefix: str, workspace: str, partition: int) -> bool:
    """Record that the partition's drain task is on the broker; False when the lease is no longer ``kicked``."""
    keys = [lease_key(prefix, workspace, partition)]
    return bool(client.register_script(_MARK)(keys=keys, args=[KICKED, PUBLISHED_TTL_MS]))
