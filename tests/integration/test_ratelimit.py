"""The fleet-wide GCRA limiter and pause keys, against the real Redis."""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from producers.connect import sync_client
from producers.keys import authpause_key, lease_key, pause_key, rate_key
from worker.store.ratelimit import Fence, Reservation, WorkspaceLimiter, credentials_fingerprint

pytestmark = pytest.mark.single_and_cluster

#: The multi-process tests: processes sharing one workspace, its rate (burst 1) and its emission interval.
PROCESSES = 3
FLEET_RPS = 20
FLEET_INTERVAL_US = 50_000
#: Slots each process takes as they come free (about 3 s of the fleet's rate in all).
GRANTS_EACH = 20
#: Slots each process reserves ahead; the backlog queued before them (its next free slot this far from now), and how
#: far ahead they may reserve: past the last slot handed out, so that none is refused.
RESERVED_EACH = 40
QUEUED_US = 10_000_000
HORIZON_S = 30.0
#: When a process stops trying, should the limiter never grant its slots (a failure, reported by the assertions).
GIVE_UP_S = 60.0


@pytest.fixture
def limiter(redis_client: redis.Redis, key_prefix: str) -> WorkspaceLimiter:
    return WorkspaceLimiter(redis_client, key_prefix)


def acquire(limiter: WorkspaceLimiter, workspace: str, *, rps: float, burst: int) -> float:
    """A request slot now (0.0), else the seconds to wait, nothing taken: ``reserve`` with no sleep allowed."""
    reservation = limiter.reserve(workspace, rps, burst, 0)
    return 0.0 if reservation.reserved else reservation.wait_s


def granted_at_us(limiter: WorkspaceLimiter, workspace: str, rps: float) -> int | None:
    """Redis time of a slot granted now with burst 1, else None after sleeping as told (briefly, in a hammer).

    With burst 1 a slot is free only when the theoretical arrival time has passed; it is then set to Redis's
    ``TIME`` and moved one interval on, so the time of the grant is the TAT the reservation left, less an interval.
    """
    reservation = limiter.reserve(workspace, rps, 1, 0)
    if reservation.reserved:
        return reservation.tat_us - max(1, math.ceil(1e6 / rps))
    time.sleep(min(reservation.wait_s, 0.02))
    return None


def redis_now_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def test_a_burst_goes_at_once_then_the_next_request_waits(limiter: WorkspaceLimiter) -> None:
    """An idle workspace may send `burst` requests at once; the next one is told how long to wait."""
    waits = [acquire(limiter, "acme", rps=2, burst=5) for _ in range(5)]
    assert waits == [0.0] * 5
    wait = acquire(limiter, "acme", rps=2, burst=5)
    assert 0.3 < wait <= 0.5


def test_a_refused_request_consumes_nothing(limiter: WorkspaceLimiter) -> None:
    """Asking again while over the limit does not push the next slot further away."""
    assert acquire(limiter, "acme", rps=1, burst=1) == 0.0
    first = acquire(limiter, "acme", rps=1, burst=1)
    for _ in range(20):
        acquire(limiter, "acme", rps=1, burst=1)
    assert acquire(limiter, "acme", rps=1, burst=1) <= first


def test_after_the_burst_grants_follow_the_steady_rate(limiter: WorkspaceLimiter) -> None:
    """Waiting as told, consecutive grants are one interval apart on Redis's clock."""
    grants: list[int] = []
    while len(grants) < 6:
        granted = granted_at_us(limiter, "acme", 25)
        if granted is not None:
            grants.append(granted)
    gaps = [later - earlier for earlier, later in itertools.pairwise(grants)]
    assert min(gaps) >= 40_000
    assert sum(gaps) / len(gaps) < 60_000


def test_workspaces_have_separate_limits(limiter: WorkspaceLimiter) -> None:
    """A workspace out of slots does not hold another one back."""
    assert acquire(limiter, "slow", rps=1, burst=1) == 0.0
    assert acquire(limiter, "slow", rps=1, burst=1) > 0.0
    assert acquire(limiter, "fast", rps=1, burst=1) == 0.0


def test_the_rate_key_expires_once_idle(limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str) -> None:
    """The TAT key carries a TTL, so idle workspaces leave nothing behind."""
    acquire(limiter, "acme", rps=10, burst=1)
    assert 0 < redis_client.pttl(rate_key(key_prefix, "acme")) <= 1_200


@pytest.mark.parametrize(("rps", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (10, 0)])
def test_nonsense_limits_are_refused(limiter: WorkspaceLimiter, rps: float, burst: int) -> None:
    """rps must be positive and burst at least 1."""
    with pytest.raises(ValueError, match="rps"):
        acquire(limiter, "acme", rps=rps, burst=burst)


def test_a_client_decoding_responses_works_too(redis_url: str, key_prefix: str) -> None:
    """The limiter does not care whether the client decodes replies."""
    client = sync_client(redis_url, decode_responses=True)
    try:
        limiter = WorkspaceLimiter(client, key_prefix)
        assert acquire(limiter, "acme", rps=5, burst=1) == 0.0
        limiter.pause_auth("acme", status=401, reason="unauthorized", fingerprint="f" * 16)
        pause = limiter.auth_pause("acme")
        assert pause is not None
        assert pause.status == 401
    finally:
        client.close()


def test_a_pause_holds_every_request_and_reports_its_time_left(limiter: WorkspaceLimiter) -> None:
    """After a 429 the whole fleet waits; acquire() reports the pause so callers need one call."""
    limiter.pause("acme", 5.0, "throttled")
    assert 4.0 < limiter.paused_for("acme") <= 5.0
    assert 4.0 < acquire(limiter, "acme", rps=100, burst=10) <= 5.0
    assert limiter.paused_for("other") == 0.0


def test_a_pause_is_never_shortened_but_may_be_lengthened(limiter: WorkspaceLimiter) -> None:
    """A short Retry-After arriving after a long one keeps the long one."""
    limiter.pause("acme", 30.0, "throttled")
    limiter.pause("acme", 1.0, "throttled")
    assert limiter.paused_for("acme") > 29.0
    limiter.pause("acme", 60.0, "throttled")
    assert limiter.paused_for("acme") > 59.0


@pytest.mark.parametrize("seconds", [0.0, -3.0])
def test_an_empty_pause_does_nothing(limiter: WorkspaceLimiter, seconds: float) -> None:
    """A zero or negative pause sets no key."""
    limiter.pause("acme", seconds, "throttled")
    assert limiter.paused_for("acme") == 0.0


def test_requests_refused_during_a_pause_take_no_slot(
    limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    """Once the pause ends, the full burst is still there."""
    limiter.pause("acme", 10.0, "throttled")
    for _ in range(10):
        assert acquire(limiter, "acme", rps=1, burst=3) > 0.0
    redis_client.delete(pause_key(key_prefix, "acme"))
    assert [acquire(limiter, "acme", rps=1, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_the_pause_key_holds_the_reason(limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str) -> None:
    """The value of the pause key says why, for `cio-fleet status`."""
    limiter.pause("acme", 5.0, "throttled")
    assert redis_client.get(pause_key(key_prefix, "acme")) == b"throttled"


def test_an_auth_pause_round_trips(limiter: WorkspaceLimiter, redis_client: redis.Redis) -> None:
    """pause_auth stores status, reason, Redis time and fingerprint; clear_auth_pause removes it."""
    assert limiter.auth_pause("acme") is None
    before = redis_now_ms(redis_client)
    limiter.pause_auth("acme", status=401, reason="unauthorized", fingerprint="0123456789abcdef")
    pause = limiter.auth_pause("acme")
    assert pause is not None
    assert (pause.status, pause.reason, pause.fingerprint) == (401, "unauthorized", "0123456789abcdef")
    assert before <= pause.since_ms <= redis_now_ms(redis_client)
    limiter.clear_auth_pause("acme")
    assert limiter.auth_pause("acme") is None


def test_an_auth_pause_keeps_its_start_while_the_credentials_stay_the_same(
    limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    """Repeated 401s with the same key keep `since`; new credentials failing start a new pause."""
    limiter.pause_auth("acme", status=401, reason="unauthorized", fingerprint="a" * 16)
    redis_client.hset(authpause_key(key_prefix, "acme"), "since", 1_000)
    limiter.pause_auth("acme", status=403, reason="forbidden", fingerprint="a" * 16)
    kept = limiter.auth_pause("acme")
    assert kept is not None
    assert (kept.since_ms, kept.status) == (1_000, 403)
    limiter.pause_auth("acme", status=401, reason="unauthorized", fingerprint="b" * 16)
    renewed = limiter.auth_pause("acme")
    assert renewed is not None
    assert renewed.since_ms > 1_000


def test_an_auth_pause_does_not_block_the_rate_limiter(limiter: WorkspaceLimiter) -> None:
    """Probing a paused workspace is the pipeline's call; acquire() only reflects 429 pauses."""
    limiter.pause_auth("acme", status=401, reason="unauthorized", fingerprint="a" * 16)
    assert acquire(limiter, "acme", rps=10, burst=1) == 0.0


@pytest.mark.parametrize(("site_id", "api_key"), [("site", "key-1"), ("site", "key-2"), ("other", "key-1"), ("s", "")])
def test_the_credentials_fingerprint_is_short_stable_and_hides_the_key(site_id: str, api_key: str) -> None:
    """16 hex characters, the same for the same pair, never containing the key."""
    fingerprint = credentials_fingerprint(site_id, api_key)
    assert len(fingerprint) == 16
    assert int(fingerprint, 16) >= 0
    assert fingerprint == credentials_fingerprint(site_id, api_key)
    assert not api_key or api_key not in fingerprint


def test_different_credentials_have_different_fingerprints() -> None:
    """A rotated key shows up as a new fingerprint."""
    assert credentials_fingerprint("site", "key-1") != credentials_fingerprint("site", "key-2")


def take_grants(redis_url: str, prefix: str, ready: Any, start: Any, results: Any) -> None:
    """One process of the fleet: take GRANTS_EACH slots free now (no reservation ahead), report their Redis times."""
    client = sync_client(redis_url)
    limiter = WorkspaceLimiter(client, prefix)
    limiter.paused_for("warm-up")
    ready.release()
    start.wait()
    grants: list[int] = []
    give_up = time.monotonic() + GIVE_UP_S
    while len(grants) < GRANTS_EACH and time.monotonic() < give_up:
        granted = granted_at_us(limiter, "acme", FLEET_RPS)
        if granted is not None:
            grants.append(granted)
    results.put(grants)
    client.close()


def reserve_ahead(redis_url: str, prefix: str, ready: Any, start: Any, results: Any) -> None:
    """One process of the fleet: reserve RESERVED_EACH slots ahead as fast as it can, sleeping for none of them."""
    client = sync_client(redis_url)
    limiter = WorkspaceLimiter(client, prefix)
    limiter.paused_for("warm-up")
    ready.release()
    start.wait()
    answers = [limiter.reserve("acme", FLEET_RPS, 1, HORIZON_S) for _ in range(RESERVED_EACH)]
    results.put([(answer.reserved, answer.wait_s, answer.tat_us) for answer in answers])
    client.close()


def run_fleet(
    redis_url: str, prefix: str, target: Callable[..., None], before_start: Callable[[], None] = lambda: None
) -> list[Any]:
    """Run PROCESSES processes of ``target`` against one workspace; return every process's report, in one list.

    ``before_start`` runs once every process is connected and waiting, right before they are let go.
    """
    context = multiprocessing.get_context("spawn")
    ready, start, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [
        context.Process(target=target, args=(redis_url, prefix, ready, start, results)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            assert ready.acquire(timeout=60)
        before_start()
        start.set()
        return [item for _ in processes for item in results.get(timeout=GIVE_UP_S + 30)]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def busiest_second(grants: list[int]) -> int:
    """The most grants in any half-open one-second window starting at a grant (grants sorted, in microseconds)."""
    most, end = 0, 0
    for begin, at in enumerate(grants):
        while end < len(grants) and grants[end] < at + 1_000_000:
            end += 1
        most = max(most, end - begin)
    return most


@pytest.mark.single_only  # the limiter's script is the same on a cluster; these cost seconds of processes
def test_several_processes_taking_free_slots_never_exceed_the_fleet_rate(redis_url: str, key_prefix: str) -> None:
    # Given 3 processes sharing a 20 requests/s workspace (burst 1), each taking 20 slots as soon as they are free
    grants = sorted(run_fleet(redis_url, key_prefix, take_grants))
    # Then every one got its slots, and no second of Redis's clock held more than 20 grants among the 60
    # (exact whatever the load: a grant moves the next free slot one interval past Redis's time of the grant,
    # so grants are at least 50 ms apart however late the processes come back; per-process limiters would put
    # about 60 grants in the first second)
    print(f"\n{len(grants)} grants in {(grants[-1] - grants[0]) / 1e6:.2f} s, busiest second {busiest_second(grants)}")
    assert len(grants) == PROCESSES * GRANTS_EACH
    assert busiest_second(grants) <= FLEET_RPS


@pytest.mark.single_only  # the limiter's script is the same on a cluster; these cost seconds of processes
def test_several_processes_reserving_ahead_get_every_slot_of_the_fleet_rate_in_turn(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    # Given a 20 requests/s workspace (burst 1) with a backlog already queued: its next free slot is 10 s away
    first_free: list[int] = []

    def queue_a_backlog() -> None:
        first_free.append(redis_now_us(redis_client) + QUEUED_US)
        redis_client.set(rate_key(key_prefix, "acme"), first_free[0], px=60_000)

    # When 3 processes reserve 40 slots each at once, as senders with requests waiting do
    answers = run_fleet(redis_url, key_prefix, reserve_ahead, before_start=queue_a_backlog)
    # Then each was granted, for a slot ahead (the requests waited for it)
    assert all(reserved and wait_s > 0 for reserved, wait_s, _ in answers)
    # And the 120 slots are exactly the next 120 of the rate, one interval apart from the first free one: no two
    # processes share a slot, no second holds more than 20 (per-process limiters would start each process at
    # once, and a faster limiter would space them closer), and none is skipped while requests wait (the fleet
    # uses all of its rate). The slots are the limiter's own grants on Redis's clock, so load cannot move them;
    # the rate seen in wall time is measured by tests/benchmarks/bench_ratelimited.py instead.
    slots = sorted(tat_us - FLEET_INTERVAL_US for _, _, tat_us in answers)
    assert slots == [first_free[0] + n * FLEET_INTERVAL_US for n in range(PROCESSES * RESERVED_EACH)]
    assert busiest_second(slots) == FLEET_RPS


def test_reservations_hand_out_distinct_evenly_spaced_slots(limiter: WorkspaceLimiter) -> None:
    # Given ten callers asking at once for a 10 requests/s workspace, each willing to wait up to 2 s
    answers = [limiter.reserve("acme", 10, 1, 2.0) for _ in range(10)]
    # Then each got its own slot, 100 ms after the previous one
    assert all(answer.reserved for answer in answers)
    waits = [answer.wait_s for answer in answers]
    assert waits[0] == 0.0
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert all(0.09 <= gap <= 0.11 for gap in gaps), gaps


def test_a_slot_beyond_the_longest_wait_is_not_reserved(limiter: WorkspaceLimiter) -> None:
    for _ in range(3):
        assert limiter.reserve("acme", 10, 1, 0.25).reserved
    refused = limiter.reserve("acme", 10, 1, 0.25)
    assert not refused.reserved and 0.25 < refused.wait_s <= 0.31
    # And the refusal took nothing: the next caller willing to wait longer gets that same slot
    again = limiter.reserve("acme", 10, 1, 1.0)
    assert again.reserved and abs(again.wait_s - refused.wait_s) < 0.02


def test_a_fenced_reservation_renews_the_callers_lease_and_a_lost_lease_reserves_nothing(
    limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    lease = lease_key(key_prefix, "acme", 0)
    # Given the caller's lease about to expire: the reservation renews it in the same step
    redis_client.set(lease, "mine", px=500)
    held = limiter.reserve("acme", 10, 1, 1.0, fence=Fence(lease, "mine", 60_000))
    assert held.reserved and not held.lease_lost
    assert redis_client.pttl(lease) > 50_000
    # When another drainer took the lease over, the caller's fenced reservation takes no slot and renews nothing
    redis_client.set(lease, "theirs", px=500)
    lost = limiter.reserve("acme", 10, 1, 1.0, fence=Fence(lease, "mine", 60_000))
    assert lost.lease_lost and not lost.reserved
    assert redis_client.get(lease) == b"theirs" and redis_client.pttl(lease) <= 500
    # Then the next slot is still the one after the first reservation (100 ms later), as if it was never asked
    after = limiter.reserve("acme", 10, 1, 1.0)
    assert after.reserved and 0.08 <= after.wait_s <= 0.11


def test_a_paused_workspace_reserves_nothing(limiter: WorkspaceLimiter) -> None:
    limiter.pause("acme", 5, "throttled")
    answer = limiter.reserve("acme", 10, 1, 10.0)
    assert not answer.reserved and 4 < answer.wait_s <= 5


#: The emission interval of a 0.1 request/s workspace, in microseconds: long enough to need no sleep in a test.
TEN_S_US = 10_000_000


def missed_reservation(client: redis.Redis, prefix: str, missed_by_us: int = 2_000_000) -> Reservation:
    """The limiter's state after a caller reserved the slot ``missed_by_us`` ago and has not used it (it overslept)."""
    missed = Reservation(True, 0.5, redis_now_us(client) - missed_by_us + TEN_S_US)
    client.set(rate_key(prefix, "acme"), missed.tat_us, px=60_000)
    return missed


def stored_tat(client: redis.Redis, prefix: str) -> int:
    return int(client.get(rate_key(prefix, "acme")) or 0)


def test_a_missed_slot_nobody_reserved_after_is_given_back(
    limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a caller of a 0.1 request/s workspace that woke up 2 s after its slot, and nobody reserved since
    missed = missed_reservation(redis_client, key_prefix)
    before = redis_now_us(redis_client)
    # When it reserves anew, giving its missed slot back
    slot = limiter.reserve("acme", 0.1, 1, 0.5, give_back=missed)
    # Then it may send at once, and the slot after it is one interval after now: the missed slot cost no rate
    assert slot.reserved and slot.wait_s == 0.0
    assert before + TEN_S_US <= slot.tat_us <= redis_now_us(redis_client) + TEN_S_US
    assert stored_tat(redis_client, key_prefix) == slot.tat_us


def test_a_missed_slot_not_given_back_delays_the_next_request_by_an_interval(
    limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given the same missed slot, when the caller reserves without giving it back, then the next slot is 8 s away
    missed = missed_reservation(redis_client, key_prefix)
    slot = limiter.reserve("acme", 0.1, 1, 0.5)
    assert not slot.reserved and 7.5 < slot.wait_s <= 8.0
    assert stored_tat(redis_client, key_prefix) == missed.tat_us


def test_a_missed_slot_is_not_given_back_once_someone_reserved_after_it(
    limiter: WorkspaceLimiter, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a caller that missed its slot, and another caller that reserved the next slot after it
    missed = missed_reservation(redis_client, key_prefix)
    later_tat = missed.tat_us + TEN_S_US
    redis_client.set(rate_key(key_prefix, "acme"), later_tat, px=60_000)
    # When the first one reserves anew, giving its slot back
    slot = limiter.reserve("acme", 0.1, 1, 0.5, give_back=missed)
    # Then nothing moves: giving it back would put the two callers' requests less than an interval apart
    assert not slot.reserved and 17.5 < slot.wait_s <= 18.0
    assert stored_tat(redis_client, key_prefix) == later_tat
