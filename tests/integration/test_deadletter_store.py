"""Scans, lookups and statistics of the dead-letter streams, on the real Redis."""

from __future__ import annotations

import pytest
import redis

from producers.keys import dlq_key
from worker.deadletter.api import DeadLetter, DeadLetterFilter, dlq_size, dlq_workspaces, get_entry, iter_entries, stats
from worker.deadletter.store import SCAN_CHUNK, STATS_CHUNK
from worker.store.replies import entry_fields, string

pytestmark = pytest.mark.single_and_cluster

NOW_MS = 1_764_324_000_000
HOUR_MS = 3_600_000


def letter(workspace: str = "acme", n: int = 0, **changes: object) -> DeadLetter:
    """A dead letter of person ``u{n}``."""
    event = f'{{"type":"track","event":"E","userId":"u{n}","messageId":"m{n}"}}'.encode()
    fields: dict[str, object] = {
        "workspace": workspace, "partition": 0, "event": event, "outcome": "rejected", "reason": "HTTP 400: bad",
        "status": 400, "message_id": f"m{n}", "event_type": "track", "event_name": "E",
    }  # fmt: skip
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def put(client: redis.Redis, prefix: str, item: DeadLetter, stream_id: str = "*") -> str:
    """Write a dead letter as the pipeline does; return its stream id."""
    return string(client.xadd(dlq_key(prefix, item.workspace), entry_fields(item.to_fields()), id=stream_id)).decode()


def test_size_counts_the_workspace_entries(redis_client: redis.Redis, key_prefix: str) -> None:
    for n in range(3):
        put(redis_client, key_prefix, letter(n=n))
    put(redis_client, key_prefix, letter("beta"))
    assert (dlq_size(redis_client, key_prefix, "acme"), dlq_size(redis_client, key_prefix, "none")) == (3, 0)


def test_workspaces_with_dead_letters_are_found_next_to_the_configured_ones(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    put(redis_client, key_prefix, letter("beta"))
    redis_client.xadd(f"{key_prefix}:dlq-audit", {"action": "purge"})
    assert dlq_workspaces(redis_client, key_prefix, ["acme"]) == ["acme", "beta"]


def test_an_entry_is_found_by_its_id(redis_client: redis.Redis, key_prefix: str) -> None:
    stream_id = put(redis_client, key_prefix, letter(n=1))
    entry = get_entry(redis_client, key_prefix, f"acme/{stream_id}")
    assert entry is not None
    assert (entry.id, entry.letter) == (f"acme/{stream_id}", letter(n=1))


def test_an_unknown_id_gives_none(redis_client: redis.Redis, key_prefix: str) -> None:
    assert get_entry(redis_client, key_prefix, "acme/1-0") is None


def test_entries_come_newest_first_across_workspaces(redis_client: redis.Redis, key_prefix: str) -> None:
    for n, (workspace, ms) in enumerate([("acme", 10), ("beta", 20), ("acme", 30), ("beta", 40)]):
        put(redis_client, key_prefix, letter(workspace, n), f"{ms}-0")
    entries = iter_entries(redis_client, key_prefix, ["acme", "beta"], DeadLetterFilter())
    assert [e.id for e in entries] == ["beta/40-0", "acme/30-0", "beta/20-0", "acme/10-0"]


def test_entries_come_oldest_first_when_asked(redis_client: redis.Redis, key_prefix: str) -> None:
    for n, (workspace, ms) in enumerate([("acme", 10), ("beta", 20), ("acme", 30)]):
        put(redis_client, key_prefix, letter(workspace, n), f"{ms}-0")
    entries = iter_entries(redis_client, key_prefix, ["acme", "beta"], DeadLetterFilter(), newest_first=False)
    assert [e.id for e in entries] == ["acme/10-0", "beta/20-0", "acme/30-0"]


def test_a_long_stream_is_read_in_chunks_without_losing_or_repeating_entries(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    total = SCAN_CHUNK * 2 + 17
    pipe = redis_client.pipeline()
    for n in range(total):
        pipe.xadd(dlq_key(key_prefix, "acme"), entry_fields(letter(n=n, status=400 if n % 2 else 500).to_fields()))
    pipe.execute()
    for newest_first in (True, False):
        found = list(iter_entries(redis_client, key_prefix, ["acme"], DeadLetterFilter(), newest_first=newest_first))
        assert len({e.id for e in found}) == total
    only_400 = list(iter_entries(redis_client, key_prefix, ["acme"], DeadLetterFilter(status=400)))
    assert len(only_400) == total // 2


def test_the_limit_stops_the_scan(redis_client: redis.Redis, key_prefix: str) -> None:
    for n in range(5):
        put(redis_client, key_prefix, letter(n=n), f"{n + 1}-0")
    entries = iter_entries(redis_client, key_prefix, ["acme"], DeadLetterFilter(), limit=2)
    assert [e.id for e in entries] == ["acme/5-0", "acme/4-0"]


def test_the_time_range_selects_by_dead_lettering_time_inclusively(redis_client: redis.Redis, key_prefix: str) -> None:
    for n, ms in enumerate([1_000, 2_000, 2_000, 3_000, 4_000]):
        put(redis_client, key_prefix, letter(n=n), f"{ms}-{n}")
    flt = DeadLetterFilter(since_ms=2_000, until_ms=3_000)
    assert [e.id for e in iter_entries(redis_client, key_prefix, ["acme"], flt)] == [
        "acme/3000-3",
        "acme/2000-2",
        "acme/2000-1",
    ]


def test_the_workspace_filter_scans_that_workspace_only(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter("acme"))
    put(redis_client, key_prefix, letter("beta"))
    entries = iter_entries(redis_client, key_prefix, ["acme"], DeadLetterFilter(workspace="beta"))
    assert [e.letter.workspace for e in entries] == ["beta"]


def test_stats_count_by_workspace_outcome_reason_status_and_age(redis_client: redis.Redis, key_prefix: str) -> None:
    seeds = [
        ("acme", NOW_MS - 3 * 24 * HOUR_MS, "rejected", 400, "bad"),
        ("acme", NOW_MS - 2 * HOUR_MS, "failed_after_retries", 503, "gave up"),
        ("acme", NOW_MS - 10 * 60_000, "rejected", 400, "bad"),
        ("beta", NOW_MS - 30 * 24 * HOUR_MS, "item_rejected", None, "bad item"),
    ]
    for n, (workspace, ms, outcome, status, reason) in enumerate(seeds):
        put(redis_client, key_prefix, letter(workspace, n, outcome=outcome, status=status, reason=reason), f"{ms}-0")
    result = stats(redis_client, key_prefix, ["acme", "beta", "empty"], now_ms=NOW_MS).as_dict()
    assert result == {
        "total": 4,
        "by_workspace": {"acme": 3, "beta": 1},
        "by_outcome": {"rejected": 2, "failed_after_retries": 1, "item_rejected": 1},
        "by_reason": {"bad": 2, "gave up": 1, "bad item": 1},
        "by_status": {"400": 2, "503": 1, "none": 1},
        "by_age": {"<1h": 1, "1h-1d": 1, "1d-7d": 1, ">7d": 1},
        "oldest_ms": NOW_MS - 30 * 24 * HOUR_MS,
        "newest_ms": NOW_MS - 10 * 60_000,
    }


def test_stats_over_several_chunks_count_every_entry_once(redis_client: redis.Redis, key_prefix: str) -> None:
    total = STATS_CHUNK + 3
    pipe = redis_client.pipeline()
    for n in range(total):
        pipe.xadd(dlq_key(key_prefix, "acme"), entry_fields(letter(n=n).to_fields()))
    pipe.execute()
    result = stats(redis_client, key_prefix, ["acme"], now_ms=NOW_MS * 2)
    assert (result.total, result.by_status["400"], result.by_age[">7d"]) == (total, total, total)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (DeadLetterFilter(reason_contains="ÉCHEC"), ["m1"]),
        (DeadLetterFilter(reason_contains="Timeout"), ["m2"]),
        (DeadLetterFilter(status=400, event_name="E"), ["m1"]),
        (DeadLetterFilter(outcome="failed_after_retries", event_type="track"), ["m2"]),
        (DeadLetterFilter(event_type="identify"), []),
    ],
)
def test_filters_evaluated_inside_redis_agree_with_python(
    redis_client: redis.Redis, key_prefix: str, flt: DeadLetterFilter, expected: list[str]
) -> None:
    put(redis_client, key_prefix, letter(n=1, reason="échec de livraison"))
    put(redis_client, key_prefix, letter(n=2, reason="TIMEOUT", status=503, outcome="failed_after_retries"))
    found = iter_entries(redis_client, key_prefix, ["acme"], flt, newest_first=False)
    assert [e.letter.message_id for e in found] == expected
