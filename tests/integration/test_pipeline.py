"""The drain pipeline in-process: real Redis, the real HTTP client, the stand-in on 127.0.0.1 (no Celery)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest
import redis

from producers.keys import authpause_key, authprobe_key, dlq_key, lease_key, retry_key, stream_key
from producers.wire import partition_for
from worker.deadletter.api import DeadLetter
from worker.delivery import CustomerIOClient
from worker.local.fake_customerio import FakeCustomerIO
from worker.pipeline.credentials import configured_fingerprint
from worker.pipeline.drain import drain
from worker.pipeline.ports import Deps
from worker.pipeline.sweeper import sweep_once
from worker.settings import Settings
from worker.store.partitions import PartitionStore
from worker.store.ratelimit import WorkspaceLimiter
from worker.store.replies import stream_rows

pytestmark = pytest.mark.single_and_cluster

SITE, KEY = "site-p", "key-p"
#: A workspace whose rate limit never makes a request wait: for tests that drive ``deps.monotonic`` by hand.
UNPACED = {"rate_limit_rps": 100_000}


@pytest.fixture
def stand_in() -> Iterator[FakeCustomerIO]:
    fake = FakeCustomerIO(credentials={SITE: KEY}).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def close_http_clients() -> Iterator[None]:
    yield
    for client in OPEN_CLIENTS:
        client.close()
    OPEN_CLIENTS.clear()


OPEN_CLIENTS: list[CustomerIOClient] = []


def make_deps(client: redis.Redis, prefix: str, url: str, **overrides) -> Deps:
    workspace = {"site_id": SITE, "api_key": KEY, "track_url": url, "partitions": 1}
    workspace.update(overrides.pop("workspace", {}))
    settings = Settings(
        key_prefix=prefix,
        workspaces={"ws": workspace},
        batching={
            "linger_ms": 0,
            "max_events": overrides.pop("max_events", 200),
            "read_count": overrides.pop("read_count", 1000),
        },
        auth_probe_interval_s=overrides.pop("probe_s", 60.0),
        retry=overrides.pop("retry", {"base_s": 0.05, "cap_s": 0.1}),
        http={"timeout_s": 2.0},
        **overrides,
    )
    http = CustomerIOClient(settings.http)
    OPEN_CLIENTS.append(http)
    return Deps(
        settings=settings,
        store=PartitionStore(client, prefix),
        limiter=WorkspaceLimiter(client, prefix),
        client=http,
        sleep=lambda s: None,
    )


def track(n: int, **extra) -> dict:
    return {"type": "track", "userId": "u1", "event": "Ordered", "messageId": f"m{n}", "properties": {"n": n}, **extra}


def put(client: redis.Redis, prefix: str, *events: dict | bytes, fields: dict | None = None) -> None:
    for event in events:
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        client.xadd(stream_key(prefix, "ws", 0), fields or {"v": "1", "event": raw})


def dead_letters(client: redis.Redis, prefix: str) -> list[DeadLetter]:
    return [DeadLetter.from_fields(fields) for _, fields in stream_rows(client.xrange(dlq_key(prefix, "ws")))]


def stream_len(client: redis.Redis, prefix: str) -> int:
    return int(client.xlen(stream_key(prefix, "ws", 0)))


def test_a_drain_delivers_in_order_and_leaves_an_empty_stream_and_no_lease(redis_client, key_prefix, stand_in):
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, *[track(n) for n in range(5)])
    assert drain(deps, "ws", 0).action == "done"
    assert [r["operation"]["id"] for r in stand_in.accepted()] == [f"m{n}" for n in range(5)]
    assert stream_len(redis_client, key_prefix) == 0
    assert not redis_client.exists(lease_key(key_prefix, "ws", 0))


def test_batches_respect_the_event_cap(redis_client, key_prefix, stand_in):
    deps = make_deps(redis_client, key_prefix, stand_in.url, max_events=3)
    put(redis_client, key_prefix, *[track(n) for n in range(7)])
    drain(deps, "ws", 0)
    assert [r["items"] for r in stand_in.requests()] == [3, 3, 1]


def test_items_refused_in_a_207_are_dead_lettered_and_the_rest_delivered(redis_client, key_prefix, stand_in):
    stand_in.set_faults([{"reject_items_matching": "poison-item"}])
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0), track(1, properties={"tag": "poison-item"}), track(2))
    drain(deps, "ws", 0)
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0", "m2"]
    (letter,) = dead_letters(redis_client, key_prefix)
    assert (letter.outcome, letter.status, letter.message_id) == ("item_rejected", 207, "m1")
    assert orjson.loads(letter.event)["properties"] == {"tag": "poison-item"}
    assert stream_len(redis_client, key_prefix) == 0
    # The dead letter keeps the excerpt of Customer.io's 207 answer, as the README promises
    assert '"batch_index"' in letter.response and letter.response.startswith("{")


def test_a_batch_refused_as_a_whole_is_split_to_isolate_the_bad_event(redis_client, key_prefix, stand_in):
    stand_in.set_faults([{"reject_batch_containing": "bad-apple"}])
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    events = [track(n) for n in range(6)]
    events[4]["properties"] = {"tag": "bad-apple"}
    put(redis_client, key_prefix, *events)
    drain(deps, "ws", 0)
    assert sorted(r["operation"]["id"] for r in stand_in.accepted()) == ["m0", "m1", "m2", "m3", "m5"]
    (letter,) = dead_letters(redis_client, key_prefix)
    assert (letter.outcome, letter.status, letter.message_id) == ("rejected", 400, "m4")


def test_a_5xx_keeps_the_events_and_puts_the_partition_on_a_retry_timer(redis_client, key_prefix, stand_in):
    stand_in.set_faults([{"force_status": 503}])
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0), track(1))
    result = drain(deps, "ws", 0)
    assert result.action == "later" and 0 < result.delay_s <= 0.1
    assert stream_len(redis_client, key_prefix) == 2
    assert redis_client.get(lease_key(key_prefix, "ws", 0)) == b"retry"
    assert redis_client.hget(retry_key(key_prefix, "ws", 0), "attempts") == b"1"
    assert dead_letters(redis_client, key_prefix) == []
    # When the upstream recovers and the timer ends, the same events are delivered in order
    stand_in.set_faults([])
    redis_client.delete(lease_key(key_prefix, "ws", 0))
    assert drain(deps, "ws", 0).action == "done"
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0", "m1"]
    assert not redis_client.exists(retry_key(key_prefix, "ws", 0))


def test_events_still_failing_after_the_retry_window_are_dead_lettered(redis_client, key_prefix, stand_in):
    stand_in.set_faults([{"force_status": 500}])
    deps = make_deps(redis_client, key_prefix, stand_in.url, retry={"base_s": 0.01, "cap_s": 0.01, "window_s": 0.001})
    put(redis_client, key_prefix, track(0))
    redis_client.hset(retry_key(key_prefix, "ws", 0), mapping={"attempts": 5, "first_failed_at": 1})
    drain(deps, "ws", 0)
    (letter,) = dead_letters(redis_client, key_prefix)
    assert (letter.outcome, letter.status, letter.attempts) == ("failed_after_retries", 500, 6)
    assert stream_len(redis_client, key_prefix) == 0


def test_a_429_pauses_the_workspace_for_the_fleet(redis_client, key_prefix, stand_in):
    stand_in.set_faults([{"force_status": 429, "retry_after": "2"}])
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0))
    result = drain(deps, "ws", 0)
    assert result.action == "later" and result.delay_s >= 2
    assert deps.limiter.paused_for("ws") > 1.5
    assert stream_len(redis_client, key_prefix) == 1


def test_refused_credentials_pause_the_workspace_and_keep_its_events(redis_client, key_prefix, stand_in):
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"api_key": "wrong"}, probe_s=0.2)
    put(redis_client, key_prefix, track(0), track(1))
    assert drain(deps, "ws", 0).action == "later"
    assert deps.limiter.auth_pause("ws") is not None
    assert stream_len(redis_client, key_prefix) == 2
    assert dead_letters(redis_client, key_prefix) == []
    # While paused, a drain does not even call Customer.io
    redis_client.delete(lease_key(key_prefix, "ws", 0))
    calls = len(stand_in.requests())
    assert drain(deps, "ws", 0).action == "later"
    assert len(stand_in.requests()) == calls
    # When the key is fixed on Customer.io's side, the next probe delivers and lifts the pause
    stand_in.set_credentials({SITE: "wrong"})
    redis_client.delete(lease_key(key_prefix, "ws", 0), authprobe_key(key_prefix, "ws"))
    assert drain(deps, "ws", 0).action == "done"
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0", "m1"]
    assert deps.limiter.auth_pause("ws") is None


def test_new_credentials_in_the_configuration_lift_the_pause(redis_client, key_prefix, stand_in):
    wrong = make_deps(redis_client, key_prefix, stand_in.url, workspace={"api_key": "wrong"})
    put(redis_client, key_prefix, track(0))
    drain(wrong, "ws", 0)
    redis_client.delete(lease_key(key_prefix, "ws", 0))
    fixed = make_deps(redis_client, key_prefix, stand_in.url)
    assert drain(fixed, "ws", 0).action == "done"
    assert len(stand_in.accepted()) == 1


@pytest.mark.parametrize(
    ("fields", "reason_start"),
    [
        ({"v": "1", "event": b"{not json"}, "event: not valid JSON"),
        ({"v": "1", "event": b"[1, 2]"}, ""),
        ({"v": "9", "event": b"{}"}, "v: unsupported wire format version"),
        ({"payload": b"{}"}, "event: missing from the stream entry"),
        ({"v": "1", "event": orjson.dumps({"type": "track", "userId": "u1"})}, "event"),
    ],
)
def test_poison_entries_are_dead_lettered_and_never_block_the_partition(
    redis_client, key_prefix, stand_in, fields, reason_start
):
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0))
    put(redis_client, key_prefix, b"", fields=fields)
    put(redis_client, key_prefix, track(2))
    assert drain(deps, "ws", 0).action == "done"
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0", "m2"]
    (letter,) = dead_letters(redis_client, key_prefix)
    assert letter.outcome == "rejected" and letter.reason.startswith(reason_start) and letter.reason
    assert stream_len(redis_client, key_prefix) == 0


def test_identify_without_an_identifier_is_skipped_not_dead_lettered(redis_client, key_prefix, stand_in):
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, {"type": "identify", "anonymousId": "a1", "traits": {"plan": "x"}})
    assert drain(deps, "ws", 0).action == "done"
    assert stand_in.accepted() == [] and dead_letters(redis_client, key_prefix) == []
    assert stream_len(redis_client, key_prefix) == 0


def test_a_partition_owned_by_another_drainer_is_left_alone(redis_client, key_prefix, stand_in):
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    put(redis_client, key_prefix, track(0))
    redis_client.set(lease_key(key_prefix, "ws", 0), "someone-else", px=5_000)
    assert drain(deps, "ws", 0).action == "busy"
    assert stand_in.accepted() == [] and stream_len(redis_client, key_prefix) == 1


def test_work_left_after_the_time_slice_is_handed_back_as_kicked(redis_client, key_prefix, stand_in):
    # drain_task_max_s=0: one slice per task (the task's going on is the next test's)
    deps = make_deps(
        redis_client, key_prefix, stand_in.url, max_events=1, read_count=1, drain_slice_s=1.0, drain_task_max_s=0
    )
    clock = iter([0.0, 0.0, 0.5, 5.0, 6.0, 7.0, 8.0])  # the task's start, then the slice's
    deps.monotonic = lambda: next(clock)
    put(redis_client, key_prefix, track(0), track(1))
    assert drain(deps, "ws", 0).action == "requeue"
    assert redis_client.get(lease_key(key_prefix, "ws", 0)) == b"kicked"
    assert stream_len(redis_client, key_prefix) == 1


def test_a_task_whose_slices_end_with_work_left_goes_on_in_the_same_task(redis_client, key_prefix, stand_in):
    # Given five entries sent one per batch, and a clock on which each slice ends after a batch or two (the rate
    # limit is out of the way: its slots are real time, and a sender that wakes up 0.4 fake seconds after its slot
    # reserves again, each time ticking this clock, until the real slot comes)
    deps = make_deps(
        redis_client, key_prefix, stand_in.url, max_events=1, read_count=1, drain_slice_s=1.0, workspace=UNPACED
    )
    ticks = iter(range(10_000))
    deps.monotonic = lambda: next(ticks) * 0.4
    put(redis_client, key_prefix, *[track(n) for n in range(5)])
    # When one drain task runs, with threads to spare and nothing parked
    result = drain(deps, "ws", 0)
    # Then it took slice after slice itself instead of queueing a task after the first one, until the stream emptied
    assert result.action == "done" and result.unparked == ()
    assert [r["operation"]["id"] for r in stand_in.accepted()] == [f"m{n}" for n in range(5)]
    assert stream_len(redis_client, key_prefix) == 0
    assert not redis_client.exists(lease_key(key_prefix, "ws", 0))


def test_a_task_hands_its_partition_back_after_drain_task_max_s(redis_client, key_prefix, stand_in):
    # Given the same, with a task allowed 3 s in all
    deps = make_deps(
        redis_client,
        key_prefix,
        stand_in.url,
        max_events=1,
        read_count=1,
        drain_slice_s=1.0,
        drain_task_max_s=3.0,
        workspace=UNPACED,
    )
    ticks = iter(range(10_000))
    deps.monotonic = lambda: next(ticks) * 0.1
    put(redis_client, key_prefix, *[track(n) for n in range(20)])
    # When one drain task runs; Then it queues the partition's next task once its time is up, in order so far
    assert drain(deps, "ws", 0).action == "requeue"
    assert redis_client.get(lease_key(key_prefix, "ws", 0)) == b"kicked"
    delivered = [r["operation"]["id"] for r in stand_in.accepted()]
    assert 1 < len(delivered) < 20 and delivered == [f"m{n}" for n in range(len(delivered))]


def test_partition_of_an_event_is_its_person(redis_client):
    assert partition_for(track(0), 16) == partition_for(track(1), 16)


def test_a_full_dead_letter_queue_keeps_failing_events_in_their_partition(redis_client, key_prefix, stand_in):
    # Given a dead-letter queue already at its limit of one entry
    deps = make_deps(redis_client, key_prefix, stand_in.url, dlq_max_entries=1)
    redis_client.xadd(dlq_key(key_prefix, "ws"), {"event": b"{}", "outcome": "rejected"})
    put(redis_client, key_prefix, track(0), {"type": "track", "userId": "u1"}, track(2))
    # When a drain meets an event it must dead-letter
    result = drain(deps, "ws", 0)
    # Then nothing is evicted or lost: the partition keeps its events and waits for the queue to be drained
    assert result.action == "later"
    assert stream_len(redis_client, key_prefix) == 3
    assert redis_client.xlen(dlq_key(key_prefix, "ws")) == 1


def test_the_sweeper_reports_dead_letter_queues_past_the_alarm(redis_client, key_prefix, stand_in):
    from worker.pipeline.sweeper import dead_letter_alarms

    deps = make_deps(redis_client, key_prefix, stand_in.url, dlq_max_entries=10, dlq_alarm_ratio=0.5)
    for _ in range(5):
        redis_client.xadd(dlq_key(key_prefix, "ws"), {"event": b"{}", "outcome": "rejected"})
    assert dead_letter_alarms(deps.settings, deps.store) == [("ws", 5)]
    redis_client.xtrim(dlq_key(key_prefix, "ws"), maxlen=4, approximate=False)
    assert dead_letter_alarms(deps.settings, deps.store) == []


def test_a_drain_that_notices_new_credentials_first_also_ends_the_paused_partitions_timers(
    redis_client, key_prefix, stand_in
):
    # Given a workspace paused for credentials that are not the configured ones any more (a restart with a fixed
    # key), partition 1 parked behind its retry timer, and partition 0 kicked before the sweeper's first round
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 2})
    deps.limiter.pause_auth("ws", status=401, reason="refused", fingerprint="fingerprint-of-the-old-key")
    put(redis_client, key_prefix, track(0))
    redis_client.xadd(stream_key(key_prefix, "ws", 1), {"v": "1", "event": orjson.dumps(track(1, userId="u2"))})
    redis_client.set(lease_key(key_prefix, "ws", 1), "retry", px=60_000)
    # When partition 0's drain lifts the pause
    assert drain(deps, "ws", 0).action == "done"
    assert not redis_client.exists(authpause_key(key_prefix, "ws"))
    # Then partition 1 does not wait out a timer set for the old credentials: the sweeper kicks it at once
    assert not redis_client.exists(lease_key(key_prefix, "ws", 1))
    kicked: list[tuple[str, int]] = []
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, p: kicked.append((ws, p)))
    assert kicked == [("ws", 1)]


class LiftedByAnotherWorker(WorkspaceLimiter):
    """The pause as another worker (with the fixed key) lifts it, its two steps straddling this drain's check:
    it clears the pause just after this drain first saw it, and ends the retry timers just after this drain was
    refused the probe (``ClaimWatched``)."""

    def __init__(self, client: redis.Redis, prefix: str, lifter: Deps) -> None:
        super().__init__(client, prefix)
        self.lifter = lifter
        self.steps: list[str] = []

    def auth_pause(self, workspace: str):
        pause = super().auth_pause(workspace)
        if pause is not None and not self.steps:
            self.lifter.limiter.clear_auth_pause(workspace)
            self.steps.append("cleared")
        return pause


class ClaimWatched(PartitionStore):
    def __init__(self, client: redis.Redis, prefix: str, lifter: Deps, limiter: LiftedByAnotherWorker) -> None:
        super().__init__(client, prefix)
        self.lifter, self.limiter = lifter, limiter

    def claim_probe(self, workspace: str, interval_ms: int) -> float | None:
        wait_s = super().claim_probe(workspace, interval_ms)
        if wait_s is not None and self.limiter.steps == ["cleared"]:
            self.lifter.store.end_retry_timers(workspace, 1)
            self.limiter.steps.append("timers ended")
        return wait_s


def kicked_now(deps: Deps, result) -> list[int]:
    """The partitions that get a drain task now: this drain's kicks without a countdown, then a sweeper round's."""
    kicks = [partition for partition, countdown in result.kicks(0, 60.0) if countdown is None]
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, partition: kicks.append(partition))
    return kicks


def test_a_pause_lifted_while_a_drain_waits_for_the_probe_does_not_strand_its_partition(
    redis_client, key_prefix, stand_in
):
    # Given a workspace paused for its old key, its probe held for a minute, and a worker restarted with the fixed key
    # (one slice per task: the task would otherwise take the kick itself and go on)
    deps = make_deps(redis_client, key_prefix, stand_in.url, drain_task_max_s=0)
    deps.limiter.pause_auth("ws", status=401, reason="refused", fingerprint="fingerprint-of-the-old-key")
    deps.store.hold_probe("ws", 60_000)
    put(redis_client, key_prefix, track(0))
    # When another worker lifts the pause while this drain checks it (cleared after this drain saw it, the timers
    # ended after this drain was refused the probe)
    limiter = LiftedByAnotherWorker(redis_client, key_prefix, lifter=deps)
    racing = replace(deps, limiter=limiter, store=ClaimWatched(redis_client, key_prefix, deps, limiter))
    result = drain(racing, "ws", 0)
    assert limiter.steps == ["cleared", "timers ended"]
    assert not redis_client.exists(authpause_key(key_prefix, "ws"))
    # Then the partition does not wait out the probe interval: it gets a drain task now, which delivers its event
    assert kicked_now(deps, result) == [0]
    assert drain(deps, "ws", 0).action == "done"
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0"]


def test_an_accepted_probe_ends_the_timers_of_the_partitions_that_waited_for_it(redis_client, key_prefix, stand_in):
    # Given a workspace paused because Customer.io refused its key (fixed since on Customer.io's side), and partition 1
    # behind a retry timer until the next probe
    deps = make_deps(redis_client, key_prefix, stand_in.url, workspace={"partitions": 2})
    workspace = deps.settings.workspaces["ws"]
    deps.limiter.pause_auth("ws", status=401, reason="refused", fingerprint=configured_fingerprint(workspace))
    put(redis_client, key_prefix, track(0))
    redis_client.xadd(stream_key(key_prefix, "ws", 1), {"v": "1", "event": orjson.dumps(track(1, userId="u2"))})
    redis_client.set(lease_key(key_prefix, "ws", 1), "retry", px=60_000)
    # When partition 0's drain probes and Customer.io accepts
    assert drain(deps, "ws", 0).action == "done"
    assert not redis_client.exists(authpause_key(key_prefix, "ws"))
    # Then partition 1 does not wait out its timer: the sweeper kicks it at once
    kicked: list[tuple[str, int]] = []
    sweep_once(deps.settings, deps.store, deps.limiter, lambda ws, p: kicked.append((ws, p)))
    assert kicked == [("ws", 1)]
