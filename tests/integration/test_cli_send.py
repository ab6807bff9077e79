"""`cio-fleet send` end to end: a JSON Lines file into the real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from typer.testing import CliRunner

from producers import partition_for
from producers.keys import drain_queue, stream_key
from worker.cli import app
from worker.cli.common import Exit
from worker.store.layout import publish_workspaces
from worker.store.replies import stream_rows

WS = "acme"
PARTITIONS = 4


@pytest.fixture
def workspaces(tmp_path: Path) -> Path:
    path = tmp_path / "workspaces.toml"
    path.write_text(f'[workspaces.{WS}]\nsite_id = "site"\napi_key = "secret-api-key"\npartitions = {PARTITIONS}\n')
    return path


@pytest.fixture
def env(redis_url: str, key_prefix: str) -> dict[str, str]:
    return {"CIO_REDIS_URL": redis_url, "CIO_KEY_PREFIX": key_prefix}


def written(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    found = []
    for partition in range(PARTITIONS):
        found += [orjson.loads(f[b"event"]) for _, f in stream_rows(client.xrange(stream_key(prefix, WS, partition)))]
    return found


LINES = [
    '{"type": "identify", "userId": "u1", "traits": {"email": "a@x.io"}}',
    "",
    '{"type": "track", "userId": "u1", "event": "Bought", "custom": {"kept": true}}',
    '{"type": "track", "userId": "u2"}',
    "{not json",
    "   ",
    '{"type": "alias", "userId": "u1", "previousId": "anon"}',
    "[1, 2]",
]


def test_a_file_of_good_and_bad_lines_enqueues_the_good_and_reports_the_bad(
    tmp_path: Path, workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(LINES) + "\n")
    result = CliRunner().invoke(app, ["send", "--workspace", WS, "--workspaces", str(workspaces), str(source)], env=env)
    assert result.exit_code == 1
    assert result.stdout == "enqueued 3 event(s)\n"
    rejected = result.stderr.splitlines()
    assert rejected[0] == "line 2: line is empty"
    assert rejected[1] == "line 4: event: required for track"
    assert rejected[2].startswith("line 5: not valid JSON: ") and rejected[2].endswith(" at column 2")
    assert rejected[3] == "line 6: line is empty"
    assert rejected[4] == "line 8: (event): must be a JSON object"
    assert len(rejected) == 5
    events = written(redis_client, key_prefix)
    assert sorted(e["type"] for e in events) == ["alias", "identify", "track"]
    assert next(e for e in events if e["type"] == "track")["custom"] == {"kept": True}
    assert redis_client.xlen(stream_key(key_prefix, WS, partition_for({"userId": "u1"}, PARTITIONS))) == 3
    assert redis_client.llen(drain_queue(key_prefix)) == 1


def test_stdin_with_only_good_lines_exits_zero(
    workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    lines = "".join(f'{{"type": "page", "userId": "u{n}"}}\n' for n in range(1_500))
    result = CliRunner().invoke(app, ["send", "-w", WS, "--workspaces", str(workspaces), "-"], input=lines, env=env)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "enqueued 1500 event(s)\n", "")
    assert len(written(redis_client, key_prefix)) == 1_500


def test_the_workspaces_file_may_come_from_the_environment(
    tmp_path: Path, workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text('{"type": "screen", "anonymousId": "a", "name": "Home"}\n')
    result = CliRunner().invoke(
        app, ["send", "-w", WS, str(source)], env={**env, "CIO_WORKSPACES_FILE": str(workspaces)}
    )
    assert (result.exit_code, result.stdout) == (0, "enqueued 1 event(s)\n")


def test_a_full_backlog_stops_with_exit_4_after_enqueuing_what_fits(
    tmp_path: Path, workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    source = tmp_path / "many.jsonl"
    source.write_text("".join(f'{{"type": "track", "userId": "u{n}", "event": "e"}}\n' for n in range(5)))
    result = CliRunner().invoke(
        app, ["send", "-w", WS, "--workspaces", str(workspaces), str(source)], env={**env, "CIO_BACKLOG_CAP": "3"}
    )
    assert result.exit_code == Exit.QUEUE_FULL  # 5, its own code: 4 is "no such dead letter"
    assert result.stdout == "enqueued 3 event(s)\n"
    assert "is full" in result.stderr
    assert len(written(redis_client, key_prefix)) == 3


def test_a_workspace_the_running_fleet_does_not_serve_exits_2_and_enqueues_nothing(
    tmp_path: Path, workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given workers (with another workspaces file) that serve only "other"
    publish_workspaces(redis_client, key_prefix, ["other"])
    source = tmp_path / "one.jsonl"
    source.write_text('{"type": "track", "userId": "u1", "event": "e"}\n')
    result = CliRunner().invoke(app, ["send", "-w", WS, "--workspaces", str(workspaces), str(source)], env=env)
    assert result.exit_code == 2
    assert "workspace 'acme' is not served by the fleet (it serves: other)" in result.stderr
    assert written(redis_client, key_prefix) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-w", "unknown"], "unknown workspace 'unknown'"),
        (["-w", WS, "/no/such/file.jsonl"], "cannot read '/no/such/file.jsonl'"),
    ],
)
def test_configuration_and_input_errors_exit_2(
    workspaces: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["send", "--workspaces", str(workspaces), *args], env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "secret-api-key" not in result.output + result.stderr


def test_an_unreachable_redis_exits_3_naming_the_url_without_its_password(
    tmp_path: Path, workspaces: Path, key_prefix: str
) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text('{"type": "track", "userId": "u", "event": "e"}\n')
    env = {"CIO_REDIS_URL": "redis://admin:hunter2@127.0.0.1:1/0", "CIO_KEY_PREFIX": key_prefix}
    result = CliRunner().invoke(app, ["send", "-w", WS, "--workspaces", str(workspaces), str(source)], env=env)
    assert result.exit_code == 3
    assert "redis://admin:***@127.0.0.1:1/0" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def run_send(env: dict[str, str], workspaces: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """``cio-fleet send`` as a real process."""
    command = [str(Path(sys.executable).with_name("cio-fleet")), "send", "-w", WS, "--workspaces", str(workspaces)]
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("CIO_")}, **env}
    return subprocess.run([*command, *args], env=full_env, input=stdin, capture_output=True, text=True, timeout=60)


def test_json_errors_name_the_input_line_and_a_column_only(
    workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    # A truncated object: orjson would say "line 2 column 1" of the one-line document; only the file's line counts
    done = run_send(env, workspaces, "-", stdin='{"type": "track", "userId": "u", "event": "e"}\n{"type":\n')
    assert done.returncode == 1
    (problem,) = done.stderr.splitlines()
    assert problem.startswith("line 2: not valid JSON: ") and problem.endswith(" at column 9")
    assert "line 1" not in problem and "column 1 " not in problem


def test_check_refuses_what_the_mapping_would_reject_and_enqueues_the_rest(
    workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    lines = [
        '{"type": "page", "userId": "u1", "name": "Home"}',
        '{"type": "page", "userId": "u1", "properties": {"url": "https://example.com/"}}',
    ]
    unchecked = run_send(env, workspaces, "-", stdin="\n".join(lines) + "\n")
    assert (unchecked.returncode, unchecked.stdout) == (0, "enqueued 2 event(s)\n")
    checked = run_send(env, workspaces, "--check", "-", stdin="\n".join(lines) + "\n")
    assert (checked.returncode, checked.stdout) == (1, "enqueued 1 event(s)\n")
    (refusal,) = checked.stderr.splitlines()
    assert refusal.startswith("line 1: the mapping rejects it: ") and "url" in refusal
    assert len(written(redis_client, key_prefix)) == 3


def test_json_prints_one_summary_with_the_rejected_lines(
    workspaces: Path, env: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    done = run_send(env, workspaces, "--json", "-", stdin='{"type": "track", "userId": "u"}\n\n' + LINES[0] + "\n")
    assert (done.returncode, done.stderr) == (1, "")
    assert orjson.loads(done.stdout) == {
        "enqueued": 1,
        "rejected": [{"line": 1, "reason": "event: required for track"}, {"line": 2, "reason": "line is empty"}],
        "exit_code": 1,
        "error": None,
    }
