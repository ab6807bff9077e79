"""Purge, export and import of dead letters, on the real Redis."""

from __future__ import annotations

import io
import json

import pytest
import redis

from producers.keys import dlq_key
from tests.integration.test_deadletter_store import letter, put
from worker.deadletter.api import (
    DeadLetter,
    DeadLetterFilter,
    ImportFormatError,
    audit,
    dlq_size,
    export,
    import_,
    iter_entries,
    purge,
)


def letters_in(client: redis.Redis, prefix: str, workspace: str = "acme") -> list[DeadLetter]:
    return [e.letter for e in iter_entries(client, prefix, [workspace], DeadLetterFilter(), newest_first=False)]


def test_purge_deletes_only_matching_entries_and_counts_them(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter(n=1, status=400))
    put(redis_client, key_prefix, letter(n=2, status=500))
    put(redis_client, key_prefix, letter("beta", n=3, status=400))
    assert purge(redis_client, key_prefix, DeadLetterFilter(status=400)).removed == 2
    assert letters_in(redis_client, key_prefix) == [letter(n=2, status=500)]
    assert dlq_size(redis_client, key_prefix, "beta") == 0


def test_a_dry_purge_counts_and_deletes_nothing(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter())
    assert purge(redis_client, key_prefix, DeadLetterFilter(), dry_run=True).removed == 1
    assert dlq_size(redis_client, key_prefix, "acme") == 1


def test_a_purge_is_audited(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter())
    purge(redis_client, key_prefix, DeadLetterFilter(workspace="acme"))
    [record] = audit(redis_client, key_prefix)
    assert (record.action, record.filters, record.count, record.dry_run) == ("purge", "workspace=acme", 1, False)


def test_export_purge_import_restores_identical_entries(redis_client: redis.Redis, key_prefix: str) -> None:
    originals = [
        letter(n=1, attempts=3, response="x" * 1_000, host="h", first_failed_at_ms=5, last_failed_at_ms=9),
        DeadLetter("acme", 4, b"\xff\x00 binary \xe9", "rejected", "not JSON"),
        letter(n=2, outcome="item_rejected", status=None, message_id=None, event_type=None, event_name=None),
    ]
    for item in originals:
        put(redis_client, key_prefix, item)
    out = io.StringIO()
    assert export(redis_client, key_prefix, DeadLetterFilter(), out) == 3
    purge(redis_client, key_prefix, DeadLetterFilter())
    result = import_(redis_client, key_prefix, out.getvalue().splitlines(), source="dump.jsonl")
    assert (result.imported, result.skipped) == (3, 0)
    assert letters_in(redis_client, key_prefix) == originals


def test_importing_twice_adds_nothing_the_second_time(redis_client: redis.Redis, key_prefix: str) -> None:
    put(redis_client, key_prefix, letter(n=1))
    out = io.StringIO()
    export(redis_client, key_prefix, DeadLetterFilter(), out)
    lines = out.getvalue().splitlines()
    assert import_(redis_client, key_prefix, lines).skipped == 1
    assert dlq_size(redis_client, key_prefix, "acme") == 1


def test_export_follows_the_filter_and_the_limit(redis_client: redis.Redis, key_prefix: str) -> None:
    for n in range(4):
        put(redis_client, key_prefix, letter(n=n, status=400 if n < 3 else 500))
    out = io.StringIO()
    assert export(redis_client, key_prefix, DeadLetterFilter(status=400), out, limit=2) == 2
    assert [json.loads(line)["message_id"] for line in out.getvalue().splitlines()] == ["m0", "m1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "line 1"),
        ('{"workspace":"acme","outcome":"rejected","event":"{}"}\n[1]\n', "line 2: not a JSON object"),
        ('{"workspace":"acme","outcome":"lost","event":"{}"}\n', "line 1: outcome"),
    ],
)
def test_a_bad_import_file_is_refused_and_nothing_is_written(
    redis_client: redis.Redis, key_prefix: str, content: str, message: str
) -> None:
    with pytest.raises(ImportFormatError, match=message):
        import_(redis_client, key_prefix, content.splitlines())
    assert redis_client.exists(dlq_key(key_prefix, "acme")) == 0


def test_an_import_is_audited_with_the_file_name(redis_client: redis.Redis, key_prefix: str) -> None:
    import_(redis_client, key_prefix, ['{"workspace":"acme","outcome":"rejected","event":"{}"}'], source="d.jsonl")
    [record] = audit(redis_client, key_prefix)
    assert (record.action, record.filters, record.count) == ("import", "file=d.jsonl", 1)
