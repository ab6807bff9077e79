"""The pipeline's decisions on in-memory ports (``tests/support/fakes.py``): no Redis, no HTTP, a hand-driven clock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from producers.keys import dlq_key
from tests.support.fakes import FakeClock, FakeCustomerIO, FakeLimiter, FakeReporter, FakeStore
from worker.mapping.transform import TransformOptions
from worker.pipeline.credentials import configured_fingerprint
from worker.pipeline.pacing import LATE_SEND_TOLERANCE_S, wait_for_slot
from worker.pipeline.planning import plan_entries
from worker.pipeline.ports import Ports
from worker.pipeline.sending import BatchSender
from worker.pipeline.settling import DLQ_FULL_RETRY_S, Deferred
from worker.settings import Settings
from worker.store.partitions import RetryState

WS, PARTITION, TOKEN = "ws", 0, "token-1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_ports(clock: FakeClock, client: FakeCustomerIO, **settings: Any) -> Ports:
    workspace = {"site_id": "site", "api_key": "key-1", "rate_limit_headroom": 0}
    return Ports(
        settings=Settings(key_prefix="fake", workspaces={WS: workspace}, **settings),
        store=FakeStore(clock),
        limiter=FakeLimiter(clock),
        client=client,
        report_failure=FakeReporter(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


def enqueue(ports: Ports, *names: str, at_ms: int | None = None) -> None:
    store = ports.store
    assert isinstance(store, FakeStore)
    for n, name in enumerate(names):
        event = {"type": "track", "userId": f"u{n}", "event": name, "messageId": f"m{n}"}
        store.add(WS, PARTITION, {b"v": b"1", b"event": orjson.dumps(event)}, at_ms=at_ms)
    store.set_lease(WS, PARTITION, TOKEN, 60_000)


def send_all(ports: Ports) -> None:
    workspace = ports.settings.workspaces[WS]
    entries = ports.store.read(WS, PARTITION, 100, 1_000_000)
    sender = BatchSender(ports, workspace, PARTITION, TOKEN, renew=lambda: None)
    state = ports.store.retry_state(WS, PARTITION)
    sender.send(plan_entries(entries, TransformOptions.for_workspace(workspace)), state)


def letters(ports: Ports) -> list[Mapping[str, Any]]:
    assert isinstance(ports.store, FakeStore)
    return ports.store.dead_letters.get(dlq_key("fake", WS), [])


def names(ports: Ports) -> list[str]:
    assert isinstance(ports.store, FakeStore)
    return [orjson.loads(entry.fields[b"event"])["event"] for entry in ports.store.streams[(WS, PARTITION)]]


def refuse_bad(items: list[dict[str, Any]]) -> int:
    return 400 if any(item.get("name") == "bad" for item in items) else 200


def test_a_batch_refused_as_a_whole_is_split_until_the_bad_event_is_alone(clock):
    ports = make_ports(clock, FakeCustomerIO(refuse_bad))
    enqueue(ports, "a", "bad", "c")
    send_all(ports)
    assert names(ports) == []
    ((letter),) = letters(ports)
    assert (letter["outcome"], letter["status"], letter["message_id"]) == ("rejected", "400", "m1")
    assert ports.report_failure.reports == [(WS, "rejected", 400, 1)]  # type: ignore[attr-defined]


def test_entries_whose_retry_window_closed_are_dead_lettered_after_retries(clock):
    ports = make_ports(clock, FakeCustomerIO(lambda items: 503))
    window_ms = int(ports.settings.retry.window_s * 1000)
    started = clock.now_ms - window_ms
    enqueue(ports, "a", "b", at_ms=started - 1)
    ports.store.record_failure(WS, PARTITION, TOKEN, RetryState(4, started), "HTTP 503")
    send_all(ports)
    assert names(ports) == []
    assert [(letter["outcome"], letter["attempts"]) for letter in letters(ports)] == [("failed_after_retries", "5")] * 2


def test_a_transient_failure_inside_the_window_keeps_the_entries_and_defers(clock):
    ports = make_ports(clock, FakeCustomerIO(lambda items: 503))
    enqueue(ports, "a", "b")
    with pytest.raises(Deferred):
        send_all(ports)
    assert names(ports) == ["a", "b"] and letters(ports) == []
    assert ports.store.retry_state(WS, PARTITION) == RetryState(1, clock.now_ms, 0)


def test_a_429_pauses_the_workspace_for_its_retry_after_and_never_splits(clock):
    client = FakeCustomerIO(lambda items: 429, retry_after=7.0)
    ports = make_ports(clock, client)
    enqueue(ports, "a", "b")
    with pytest.raises(Deferred) as deferred:
        send_all(ports)
    assert ports.limiter.pauses == [(WS, 7.0, "throttled")]  # type: ignore[attr-defined]
    assert deferred.value.delay_s >= 7.0
    assert names(ports) == ["a", "b"]
    assert ports.store.retry_state(WS, PARTITION) == RetryState(1, clock.now_ms, 0)


def test_refused_credentials_pause_the_workspace_with_their_fingerprint_and_hold_the_probe(clock):
    ports = make_ports(clock, FakeCustomerIO(lambda items: 401))
    enqueue(ports, "a")
    with pytest.raises(Deferred) as deferred:
        send_all(ports)
    pause = ports.limiter.auth_pause(WS)
    assert pause is not None and pause.status == 401
    assert pause.fingerprint == configured_fingerprint(ports.settings.workspaces[WS])
    assert deferred.value.delay_s == ports.settings.auth_probe_interval_s
    assert ports.store.claim_probe(WS, 1_000) == ports.settings.auth_probe_interval_s
    assert names(ports) == ["a"]


def test_a_full_dead_letter_queue_keeps_the_refused_entry_at_the_head(clock):
    ports = make_ports(clock, FakeCustomerIO(refuse_bad), dlq_max_entries=1)
    enqueue(ports, "bad", "b")
    ports.store.settle(WS, PARTITION, TOKEN, [], [(dlq_key("fake", WS), {"event": "{}"})])
    with pytest.raises(Deferred) as deferred:
        send_all(ports)
    assert deferred.value.delay_s == DLQ_FULL_RETRY_S
    assert names(ports) == ["bad", "b"]
    assert len(letters(ports)) == 1


def test_a_sender_that_wakes_up_late_reserves_again_giving_its_slot_back(clock):
    ports = make_ports(clock, FakeCustomerIO())
    limiter = ports.limiter
    assert isinstance(limiter, FakeLimiter)
    limiter.waits = [0.3, 0.0]
    clock.oversleep_s = 0.2
    wait_for_slot(ports, ports.settings.workspaces[WS])
    first, second = limiter.reservations
    assert first is None
    assert second is not None and second.reserved and second.wait_s == 0.3
    assert clock.slept == [0.3]


def test_a_sender_that_wakes_up_a_little_late_keeps_its_slot(clock):
    # A busy machine wakes sleepers 10-50 ms late: reserving anew would lose the slot to the workspace's rate
    ports = make_ports(clock, FakeCustomerIO())
    limiter = ports.limiter
    assert isinstance(limiter, FakeLimiter)
    limiter.waits = [0.3]
    clock.oversleep_s = 0.05
    assert clock.oversleep_s < LATE_SEND_TOLERANCE_S
    assert wait_for_slot(ports, ports.settings.workspaces[WS]) is False  # slept: the lease is renewed before sending
    assert limiter.reservations == [None]


def test_a_sender_that_wakes_up_on_time_reserves_once(clock):
    ports = make_ports(clock, FakeCustomerIO())
    limiter = ports.limiter
    assert isinstance(limiter, FakeLimiter)
    limiter.waits = [0.3]
    wait_for_slot(ports, ports.settings.workspaces[WS])
    assert limiter.reservations == [None]


def test_a_far_slot_defers_the_partition_instead_of_sleeping(clock):
    ports = make_ports(clock, FakeCustomerIO())
    limiter = ports.limiter
    assert isinstance(limiter, FakeLimiter)
    limiter.waits = [30.0]
    with pytest.raises(Deferred) as deferred:
        wait_for_slot(ports, ports.settings.workspaces[WS])
    assert deferred.value.delay_s == 30.0 and clock.slept == []


def test_entries_written_after_the_run_began_wait_out_their_own_window(clock):
    ports = make_ports(clock, FakeCustomerIO(lambda items: 503))
    window_ms = int(ports.settings.retry.window_s * 1000)
    enqueue(ports, "a", at_ms=clock.now_ms - window_ms)
    enqueue(ports, "b", at_ms=clock.now_ms - 1_000)
    ports.store.record_failure(WS, PARTITION, TOKEN, RetryState(4, clock.now_ms - window_ms), "HTTP 503")
    with pytest.raises(Deferred):
        send_all(ports)
    assert [letter["outcome"] for letter in letters(ports)] == ["failed_after_retries"]
    assert names(ports) == ["b"]
