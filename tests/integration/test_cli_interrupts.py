"""Ctrl-C in long commands (real CLI processes, real Redis): the chunk in hand finishes, then a summary, an audit
record marked interrupted, exit 130, and every event in exactly one place."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import redis

from producers.keys import stream_key
from tests.e2e.conftest import wait_for
from tests.integration.test_cli_dlq import CLI, PARTITIONS, cli_environment
from tests.integration.test_deadletter_store import letter, put
from worker.deadletter.api import DeadLetterFilter, audit, dlq_size, import_, purge

LETTERS = 300


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return cli_environment(tmp_path, redis_url, key_prefix)


def waiting_events(client: redis.Redis, prefix: str) -> int:
    return sum(int(client.xlen(stream_key(prefix, "acme", p))) for p in range(PARTITIONS))


def test_ctrl_c_during_a_replay_stops_after_the_chunk_in_hand_with_a_summary_and_an_audit_record(
    cli_env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given 300 dead letters replayed at 30 a second (10 s in all)
    for n in range(LETTERS):
        put(redis_client, key_prefix, letter(n=n))
    replay = subprocess.Popen(
        [CLI, "dlq", "replay", "--workspace", "acme", "--rate", "30", "--no-kick"],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # When Ctrl-C comes once some have gone back
    wait_for(lambda: waiting_events(redis_client, key_prefix) >= 10, 30, "the replay to move some")
    replay.send_signal(signal.SIGINT)
    out, err = replay.communicate(timeout=30)
    # Then it exits 130 and says how many it moved, which is what moved, and the audit trail records it
    assert replay.returncode == 130, (out, err)
    moved = waiting_events(redis_client, key_prefix)
    assert 10 <= moved < LETTERS
    assert f"moved {moved} of {LETTERS} dead letter(s)" in out and "interrupted" in out
    (record,) = audit(redis_client, key_prefix)
    assert (record.action, record.count, record.interrupted) == ("replay", moved, True)
    # And every event is in exactly one place
    assert moved + dlq_size(redis_client, key_prefix, "acme") == LETTERS
    assert "Traceback" not in err


def test_ctrl_c_during_send_names_the_lines_handled(
    cli_env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given `send` reading stdin, whose first chunk of 1,000 lines has been enqueued
    send = subprocess.Popen(
        [CLI, "send", "--workspace", "acme", "-"], env=cli_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert send.stdin is not None
    lines = [f'{{"type":"track","userId":"u{n}","event":"E","messageId":"m{n}"}}\n' for n in range(2_500)]
    send.stdin.writelines(lines[:1_500])
    send.stdin.flush()
    wait_for(lambda: waiting_events(redis_client, key_prefix) == 1_000, 30, "the first chunk")
    # When Ctrl-C comes, and more lines follow
    send.send_signal(signal.SIGINT)
    out, err = send.communicate("".join(lines[1_500:]), timeout=30)
    # Then it stops before the next chunk, says which lines were handled, and exits 130
    assert send.returncode == 130, (out, err)
    assert out == "enqueued 1000 event(s)\n"
    assert "interrupted (Ctrl-C): lines 1 to 1000 were handled, none after" in err
    assert waiting_events(redis_client, key_prefix) == 1_000


def test_purge_and_import_stop_between_chunks_and_audit_what_they_did(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    for n in range(1_500):
        put(redis_client, key_prefix, letter(n=n))
    asked = iter([False, True])
    result = purge(redis_client, key_prefix, DeadLetterFilter(), should_stop=lambda: next(asked))
    assert result.interrupted and 0 < result.removed < 1_500
    assert dlq_size(redis_client, key_prefix, "acme") == 1_500 - result.removed
    (record,) = audit(redis_client, key_prefix)
    assert (record.action, record.count, record.interrupted) == ("purge", result.removed, True)
    lines = [
        f'{{"workspace":"beta","partition":0,"event":"e{n}","outcome":"rejected","reason":"r"}}' for n in range(1_500)
    ]
    asked = iter([False, True])
    imported = import_(redis_client, key_prefix, lines, source="x.jsonl", should_stop=lambda: next(asked))
    assert imported.interrupted and dlq_size(redis_client, key_prefix, "beta") == imported.imported < 1_500
    assert audit(redis_client, key_prefix)[0].interrupted
