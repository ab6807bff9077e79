"""What a dead letter keeps of its stream entry, and what replay puts back (real Redis, the stand-in, no Celery).

An entry that cannot be delivered as it is (no ``event`` field, an unknown wire version, extra fields) is
dead-lettered with every field it had, and replay writes those fields back as they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from producers.keys import stream_key
from tests.integration.test_cli_dlq import cli_environment, run
from tests.integration.test_deadletter_store import letter, put
from tests.integration.test_pipeline import KEY, SITE, dead_letters, make_deps
from worker.deadletter.api import DeadLetterFilter, replay
from worker.local.fake_customerio import FakeCustomerIO
from worker.pipeline.drain import drain

#: Bookkeeping fields replay adds to every entry it writes back (docs/architecture.md).
BOOKKEEPING = {b"attempts", b"first_failed_at"}


@pytest.fixture
def stand_in() -> Iterator[FakeCustomerIO]:
    fake = FakeCustomerIO(credentials={SITE: KEY}).start()
    yield fake
    fake.stop()


def waiting(client, prefix: str) -> list[list[tuple[bytes, bytes]]]:
    """The fields of every entry waiting in the partition, in order, as (name, value) pairs."""
    return [list(fields.items()) for _, fields in client.xrange(stream_key(prefix, "ws", 0))]


@pytest.mark.parametrize(
    "fields",
    [
        [(b"v", b"1"), (b"foo", b"bar")],  # no event at all
        [(b"v", b"2"), (b"event", b'{"type":"track"}'), (b"trace", b"t-1")],  # a wire version from the future
        [(b"\xffraw", b"\x00\xfe"), (b"event", b"\xff not json"), (b"v", b"1")],  # bytes, in an odd order
    ],
    ids=["no-event", "unknown-version", "binary"],
)
def test_an_undeliverable_entry_is_dead_lettered_with_every_field_and_replayed_as_it_was(
    redis_client, key_prefix, stand_in, fields
):
    # Given an entry that cannot be delivered as it is, written straight into the stream
    redis_client.xadd(stream_key(key_prefix, "ws", 0), dict(fields))
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    # When it is drained
    drain(deps, "ws", 0)
    (letter,) = dead_letters(redis_client, key_prefix)
    assert waiting(redis_client, key_prefix) == []
    # When it is replayed
    replay(redis_client, key_prefix, DeadLetterFilter(), lambda _: 1)
    # Then the entry written back has the original fields, in order, then replay's bookkeeping
    (restored,) = waiting(redis_client, key_prefix)
    assert [pair for pair in restored if pair[0] not in BOOKKEEPING] == fields
    assert [name for name, _ in restored[len(fields) :]] == [b"attempts", b"first_failed_at"]
    # And the dead letter held every field of the entry, in order
    assert letter.entry_fields == tuple(fields)
    # And it fails again the same way, nothing lost or altered, its attempts counted
    drain(deps, "ws", 0)
    (again,) = dead_letters(redis_client, key_prefix)
    assert (again.entry_fields[: len(fields)], again.reason, again.attempts) == (tuple(fields), letter.reason, 2)
    assert stand_in.requests() == []


def test_dlq_show_prints_the_original_entrys_fields(redis_client, key_prefix, tmp_path, redis_url):
    # Given the dead letter of an entry without an event field
    entry_fields = ((b"v", b"1"), (b"foo", b"bar"))
    stream_id = put(redis_client, key_prefix, letter(event=b"", reason="event: missing", entry_fields=entry_fields))
    env = cli_environment(tmp_path, redis_url, key_prefix)
    # When on-call looks at it, as JSON and as text
    shown = json.loads(run(env, "dlq", "show", f"acme/{stream_id}", "--json").stdout)
    text = run(env, "dlq", "show", f"acme/{stream_id}").stdout
    # Then both show every field the entry had
    assert shown["entry"] == [["v", "1"], ["foo", "bar"]]
    assert "v=1, foo=bar" in text
