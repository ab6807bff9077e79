"""The fleet-wide rate limiter and pause switches of each workspace, kept in Redis.

Every worker process on every host asks the same Redis, so the limit holds for the whole fleet (Celery's
own ``rate_limit`` is per worker and cannot do this). The algorithm is GCRA (the generic cell rate algorithm,
as in redis-cell and the ``throttled`` gem): one key per workspace holds the *theoretical arrival time* (TAT)
of the next request, in microseconds of Redis ``TIME``. A request may go when
``now >= TAT - (burst - 1) * interval``; granting it moves TAT one interval on. Each decision is one Lua
script run by ``EVALSHA``, so it is atomic across the fleet and costs one round trip.
Only Redis's clock is read, so worker clocks may drift freely.

Keys (``docs/architecture.md``):

* ``{prefix}:rl:{ws}`` - string, the TAT in microseconds, expiring once it lies in the past.
* ``{prefix}:pause:{ws}`` - string with a TTL: the whole fleet holds the workspace's requests after a 429.
  The value is the pause's reason. ``reserve`` reports the pause's remaining time, so callers need one call.
* ``{prefix}:authpause:{ws}`` - hash ``status``, ``reason``, ``since`` (unix ms), ``credentials`` (a
  fingerprint of the site id and API key, never the key): set after a 401/403 and kept until cleared, so the
  workspace's events stay in their streams rather than flooding the dead-letter queue.

Nothing here sleeps: callers decide whether to wait a short time or to hand the partition back.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Final

import redis

from producers.keys import authpause_key, pause_key, rate_key

__all__ = [
    "AuthPause",
    "Fence",
    "Reservation",
    "WorkspaceLimiter",
    "credentials_fingerprint",
]

#: Longest auth pause reason stored; reasons are short descriptions, never response bodies.
MAX_REASON_CHARS: Final = 200

#: KEYS: rate, pause. ARGV: interval (us), burst, longest reservation (us), TAT left by a reservation the caller
#: gives back (0: none). Returns {wait_us, reserved, the TAT this reservation left (0 when none was made)}.
#: The next slot, if it is at most the longest reservation ahead, is taken for the caller, who sleeps until it:
#: concurrent callers get distinct, evenly spaced slots instead of all polling for the next one (a longest
#: reservation of 0 takes a slot only when one is free now).
#: A caller that woke up too late for its slot gives it back while reserving anew: when nobody reserved after it
#: (the TAT is still the one its reservation left), the TAT moves back one interval, as if that reservation had
#: never been made. Otherwise the slot cannot be given back without bunching the later reservations.
#: With a third key, a partition's lease (ARGV[5]: the drainer's token, ARGV[6]: its TTL in ms), the same step is the
#: drainer's fence: a lease not the token's reserves nothing and returns {0, 0, 0, 1}; else the lease is renewed.
_RESERVE_LUA: Final = """
if #KEYS >= 3 then
  if redis.call('GET', KEYS[3]) ~= ARGV[5] then
    return {0, 0, 0, 1}
  end
  redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused_ms = redis.call('PTTL', KEYS[2])
if paused_ms > 0 then
  return {paused_ms * 1000, 0, 0, 0}
end
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local given_back = tonumber(ARGV[4])
if given_back > 0 and tat == given_back then
  tat = tat - interval
end
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait < 0 then
  wait = 0
end
if wait > tonumber(ARGV[3]) then
  return {wait, 0, 0, 0}
end
local next_tat = tat + interval
local ttl_ms = math.ceil((next_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', string.format('%d', ttl_ms))
return {wait, 1, next_tat, 0}
"""

#: KEYS: pause. ARGV: milliseconds, reason. Never shortens a longer pause. Returns the pause's ms left.
_PAUSE_LUA: Final = """
local wanted = tonumber(ARGV[1])
local current = redis.call('PTTL', KEYS[1])
if current >= wanted then
  return current
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return wanted
"""

#: KEYS: authpause. ARGV: status, reason, fingerprint. ``since`` is kept while the credentials are the same.
_AUTH_PAUSE_LUA: Final = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('HGET', KEYS[1], 'credentials')
if known ~= ARGV[3] or redis.call('HEXISTS', KEYS[1], 'since') == 0 then
  redis.call('HSET', KEYS[1], 'since', string.format('%d', now_ms))
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2], 'credentials', ARGV[3])
return now_ms
"""


def credentials_fingerprint(site_id: str, api_key: str) -> str:
    """A short, one-way fingerprint that tells two credential pairs apart without revealing the key.

    Args:
        site_id: The workspace's site id.
        api_key: The workspace's Track API key.

    Returns:
        The first 16 hex characters of ``sha256(site_id + ":" + api_key)``.
    """
    return hashlib.sha256(f"{site_id}:{api_key}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Reservation:
    """One answer of ``WorkspaceLimiter.reserve``.

    Attributes:
        reserved: True: the slot is the caller's, to send after sleeping ``wait_s``. False: nothing was taken
            (the next slot is further away, or the workspace is paused); come back after ``wait_s``.
        wait_s: Seconds until the slot (0.0: now), or until the caller should ask again.
        tat_us: The theoretical arrival time this reservation left, which identifies it when the caller gives
            it back; 0 when nothing was reserved.
    """

    reserved: bool
    wait_s: float
    tat_us: int = 0
    #: True when the ``fence`` passed to ``reserve`` was not the caller's lease any more: nothing was reserved.
    lease_lost: bool = False


@dataclass(frozen=True, slots=True)
class Fence:
    """A drainer's lease, checked and renewed in the same step as a reservation: ``key`` must hold ``token``."""

    key: str
    token: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class AuthPause:
    """Why and since when a workspace is paused for bad credentials."""

    status: int
    reason: str
    since_ms: int
    fingerprint: str


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class WorkspaceLimiter:
    """GCRA rate limits and pauses per workspace, shared by all processes on the same Redis and prefix."""

    def __init__(self, redis: redis.Redis, prefix: str) -> None:
        """Register the scripts on a client; nothing is sent until the first call.

        Args:
            redis: A client of the fleet's Redis (``decode_responses`` either way).
            prefix: The fleet's key prefix, ``Settings.key_prefix``.
        """
        self._redis = redis
        self._prefix = prefix
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._pause = redis.register_script(_PAUSE_LUA)
        self._auth_pause = redis.register_script(_AUTH_PAUSE_LUA)

    def _limit(self, workspace: str, rps: float, burst: int) -> tuple[list[str], int]:
        """The limiter's keys of a workspace and its emission interval in microseconds."""
        if not rps > 0 or burst < 1:
            raise ValueError(f"need rps > 0 and burst >= 1, got rps={rps} burst={burst}")
        return [rate_key(self._prefix, workspace), pause_key(self._prefix, workspace)], max(1, math.ceil(1e6 / rps))

    def reserve(
        self,
        workspace: str,
        rps: float,
        burst: int,
        max_wait_s: float,
        *,
        give_back: Reservation | None = None,
        fence: Fence | None = None,
    ) -> Reservation:
        """Take the workspace's next free slot if it is at most ``max_wait_s`` away.

        Args:
            workspace: The workspace's name.
            rps: Requests per second allowed fleet-wide (> 0).
            burst: Requests that may go at once after an idle spell (>= 1).
            max_wait_s: The furthest slot the caller is willing to sleep for.
            give_back: The caller's earlier reservation whose slot it missed (it woke up too late). It is given
                back, in the same atomic step, if nobody reserved a slot after it; else it stays spent.
            fence: The caller's lease, checked and renewed in the same step (one round trip for both); when it is
                not the caller's any more, nothing is reserved (``lease_lost``).

        Returns:
            The reservation, or why and for how long nothing was reserved.

        Raises:
            ValueError: ``rps`` or ``burst`` is out of range.
        """
        keys, interval_us = self._limit(workspace, rps, burst)
        given_back = give_back.tat_us if give_back is not None else 0
        args: list[str | int] = [interval_us, burst, int(max_wait_s * 1_000_000), given_back]
        if fence is not None:
            keys, args = [*keys, fence.key], [*args, fence.token, fence.ttl_ms]
        wait_us, reserved, tat_us, lost = self._reserve(keys=keys, args=args)
        return Reservation(bool(int(reserved)), int(wait_us) / 1_000_000, int(tat_us), lease_lost=bool(int(lost)))

    def pause(self, workspace: str, seconds: float, reason: str) -> None:
        """Hold the workspace's requests fleet-wide; a longer pause already in place is kept.

        Args:
            workspace: The workspace's name.
            seconds: How long; values <= 0 do nothing.
            reason: A short, bounded reason such as ``throttled`` (stored as the key's value).
        """
        if not seconds > 0:
            return
        milliseconds = max(1, math.ceil(seconds * 1000))
        self._pause(keys=[pause_key(self._prefix, workspace)], args=[milliseconds, reason[:MAX_REASON_CHARS]])

    def paused_for(self, workspace: str) -> float:
        """Seconds left of the workspace's 429 pause, 0.0 when it is not paused."""
        milliseconds = int(self._redis.pttl(pause_key(self._prefix, workspace)))
        return milliseconds / 1000 if milliseconds > 0 else 0.0

    def pause_auth(self, workspace: str, *, status: int, reason: str, fingerprint: str) -> None:
        """Pause the workspace for bad credentials until ``clear_auth_pause``.

        Args:
            workspace: The workspace's name.
            status: The HTTP status that caused it (401 or 403).
            reason: A short description, never a response body or a secret.
            fingerprint: ``credentials_fingerprint`` of the credentials that failed; ``since`` restarts when
                it changes.
        """
        key = authpause_key(self._prefix, workspace)
        self._auth_pause(keys=[key], args=[status, reason[:MAX_REASON_CHARS], fingerprint])

    def auth_pause(self, workspace: str) -> AuthPause | None:
        """The workspace's auth pause, or None when it has none."""
        fields = {_text(k): _text(v) for k, v in self._redis.hgetall(authpause_key(self._prefix, workspace)).items()}
        if not fields:
            return None
        return AuthPause(
            status=int(fields.get("status") or 0),
            reason=fields.get("reason", ""),
            since_ms=int(fields.get("since") or 0),
            fingerprint=fields.get("credentials", ""),
        )

    def clear_auth_pause(self, workspace: str) -> None:
        """Lift the workspace's auth pause (after a successful probe or new credentials)."""
        self._redis.delete(authpause_key(self._prefix, workspace))
