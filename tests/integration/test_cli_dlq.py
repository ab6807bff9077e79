"""`cio-fleet dlq …` as on-call runs it: the installed console script against the real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from producers.connect import is_cluster_url, sync_client
from producers.keys import dlq_key, drain_queue, lease_key, stream_key
from producers.wire import KICKED, partition_for
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_deadletter_store import letter, put
from worker.cli.common import Exit
from worker.deadletter.api import DeadLetter, dlq_size
from worker.store.replies import stream_rows

pytestmark = pytest.mark.single_and_cluster

CLI = str(Path(sys.executable).parent / "cio-fleet")
API_KEY = "sk-live-DO-NOT-PRINT-4242"
PARTITIONS = 4


def cli_environment(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    """The environment of a CLI run: the test's Redis, prefix and a workspaces file with an API key."""
    workspaces = tmp_path / "workspaces.toml"
    workspaces.write_text(
        f'[workspaces.acme]\nsite_id = "site-acme"\napi_key = "{API_KEY}"\npartitions = {PARTITIONS}\n'
        f'[workspaces.beta]\nsite_id = "site-beta"\napi_key = "{API_KEY}-beta"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    env.update(CIO_REDIS_URL=redis_url, CIO_KEY_PREFIX=key_prefix, CIO_WORKSPACES_FILE=str(workspaces), COLUMNS="200")
    if is_cluster_url(redis_url):  # a cluster is no Celery broker: replay kicks go to the shared Redis
        env["CIO_BROKER_URL"] = TEST_REDIS_URL
    return env


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return cli_environment(tmp_path, redis_url, key_prefix)


def run(env: dict[str, str], *args: str, stdin: str = "", code: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``cio-fleet`` and check its exit code; no output may ever hold the API key."""
    done = subprocess.run([CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert API_KEY not in done.stdout + done.stderr
    return done


def run_json(env: dict[str, str], *args: str) -> object:
    return json.loads(run(env, *args, "--json").stdout)


@pytest.fixture
def seeded(redis_client: redis.Redis, key_prefix: str) -> dict[str, str]:
    """Five dead letters in two workspaces; message id → dead-letter id."""
    items = [
        letter(n=0, status=400, reason="HTTP 400: attribute too long"),
        letter(n=1, status=503, outcome="failed_after_retries", reason="gave up after 4h"),
        letter(n=2, status=None, outcome="rejected", reason="missing userId", event_type="identify", event_name=None),
        letter("beta", n=3, status=400, outcome="item_rejected", reason="batch item 0", event_name="Order Completed"),
        letter(n=4, status=400, reason="HTTP 400: attribute too long"),
    ]
    base_ms = int(time.time() * 1_000) - 60_000
    return {
        item.message_id or "": f"{item.workspace}/{put(redis_client, key_prefix, item, f'{base_ms + n}-0')}"
        for n, item in enumerate(items)
    }


def test_stats_json_counts_everything(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    data = run_json(cli_env, "dlq", "stats")
    assert isinstance(data, dict)
    assert (data["total"], data["by_workspace"], data["by_status"]) == (
        5,
        {"acme": 4, "beta": 1},
        {"400": 3, "503": 1, "none": 1},
    )
    assert data["alarm"] == []


def test_stats_text_shows_the_total_and_the_reasons(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    out = run(cli_env, "dlq", "stats").stdout
    assert "Dead letters: 5" in out
    assert "attribute too long" in out


def test_stats_raise_the_alarm_near_capacity(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    env = {**cli_env, "CIO_DLQ_MAX_ENTRIES": "4", "CIO_DLQ_ALARM_RATIO": "0.5"}
    assert run_json(env, "dlq", "stats")["alarm"] == ["acme"]  # type: ignore[index]
    assert "ALARM" in run(env, "dlq", "stats").stdout


@pytest.mark.parametrize(
    ("options", "message_ids"),
    [
        ([], ["m4", "m3", "m2", "m1", "m0"]),
        (["--workspace", "beta"], ["m3"]),
        (["--outcome", "failed_after_retries"], ["m1"]),
        (["--reason", "TOO LONG"], ["m4", "m0"]),
        (["--status", "400"], ["m4", "m3", "m0"]),
        (["--type", "identify"], ["m2"]),
        (["--event", "Order Completed"], ["m3"]),
        (["--since", "1h"], ["m4", "m3", "m2", "m1", "m0"]),
        (["--until", "1h"], []),
        (["--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01T00:00:00Z"], ["m4", "m3", "m2", "m1", "m0"]),
        (["--limit", "2"], ["m4", "m3"]),
    ],
)
def test_list_applies_each_filter_newest_first(
    cli_env: dict[str, str], seeded: dict[str, str], options: list[str], message_ids: list[str]
) -> None:
    data = run_json(cli_env, "dlq", "list", *options)
    assert isinstance(data, list)
    assert [item["message_id"] for item in data] == message_ids
    assert all(item["id"] == seeded[item["message_id"]] for item in data)


def test_list_text_shows_ids_and_reasons(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    out = run(cli_env, "dlq", "list").stdout
    assert seeded["m3"] in out
    assert "missing userId" in out


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--since", "yesterday"], "--since"),
        (["--until", "soon"], "--until"),
        (["--outcome", "lost"], "--outcome"),
        (["--status", "abc"], "--status"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_a_bad_filter_exits_2_naming_the_option(cli_env: dict[str, str], options: list[str], named: str) -> None:
    done = run(cli_env, "dlq", "list", *options, code=2)
    assert named in done.stderr


def test_show_prints_the_event_its_mapping_and_its_history(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    data = run_json(cli_env, "dlq", "show", seeded["m1"])
    assert isinstance(data, dict)
    assert (data["id"], data["attempts"], data["status"], data["reason"]) == (seeded["m1"], 1, 503, "gave up after 4h")
    assert json.loads(data["event"])["userId"] == "u1"
    assert data["maps_to"]["outcome"] in {"deliver", "skip", "reject", "unknown"}
    out = run(cli_env, "dlq", "show", seeded["m1"]).stdout
    assert "gave up after 4h" in out
    assert "Maps to now" in out


@pytest.mark.parametrize(("dead_letter_id", "code"), [("acme/1-0", 4), ("nobody/1-0", 4), ("not-an-id", 2)])
def test_show_of_an_unknown_or_malformed_id_fails_clearly(
    cli_env: dict[str, str], seeded: dict[str, str], dead_letter_id: str, code: int
) -> None:
    done = run(cli_env, "dlq", "show", dead_letter_id, code=code)
    assert dead_letter_id in done.stderr


def test_replay_moves_matching_entries_and_kicks_their_partitions(
    cli_env: dict[str, str], seeded: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    data = run_json(cli_env, "dlq", "replay", "--status", "400", "--workspace", "acme")
    assert data == {
        "matched": 2,
        "moved": 2,
        "missing": 0,
        "dry_run": False,
        "kicked_partitions": 2,
        "interrupted": False,
    }
    for n in (0, 4):
        partition = partition_for({"userId": f"u{n}"}, PARTITIONS)
        assert (
            stream_rows(redis_client.xrange(stream_key(key_prefix, "acme", partition)))[0][1][b"event"]
            == letter(n=n).event
        )
        assert redis_client.get(lease_key(key_prefix, "acme", partition)) == KICKED.encode()
    broker = sync_client(cli_env.get("CIO_BROKER_URL", cli_env["CIO_REDIS_URL"]))  # a cluster's broker is elsewhere
    assert broker.llen(drain_queue(key_prefix)) == 2
    broker.delete(drain_queue(key_prefix))
    broker.close()
    assert dlq_size(redis_client, key_prefix, "acme") == 2


def test_replay_text_reports_the_moved_count(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    done = run(cli_env, "dlq", "replay", "--workspace", "beta", "--no-kick", "--rate", "100")
    assert "moved 1 of 1" in done.stdout


def test_a_dry_replay_moves_nothing(
    cli_env: dict[str, str], seeded: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    assert "would replay 5" in run(cli_env, "dlq", "replay", "--dry-run").stdout
    assert dlq_size(redis_client, key_prefix, "acme") == 4


def test_purge_without_a_filter_is_refused(
    cli_env: dict[str, str], seeded: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    done = run(cli_env, "dlq", "purge", "--yes", code=2)
    assert "--all" in done.stderr
    assert dlq_size(redis_client, key_prefix, "acme") == 4


def test_purge_all_asks_first_and_a_no_deletes_nothing(
    cli_env: dict[str, str], seeded: dict[str, str], redis_client: redis.Redis, key_prefix: str
) -> None:
    done = run(cli_env, "dlq", "purge", "--all", stdin="n\n", code=Exit.ABORTED)
    assert "Delete 5 dead letter(s)" in done.stdout
    assert dlq_size(redis_client, key_prefix, "acme") == 4


@pytest.mark.parametrize(
    ("options", "stdin", "removed", "left"),
    [
        (["--all"], "y\n", 5, 0),
        (["--all", "--yes"], "", 5, 0),
        (["--status", "400", "--yes"], "", 3, 2),
        (["--reason", "gave up"], "y\n", 1, 4),
    ],
)
def test_purge_removes_what_was_confirmed(
    cli_env: dict[str, str],
    seeded: dict[str, str],
    redis_client: redis.Redis,
    key_prefix: str,
    options: list[str],
    stdin: str,
    removed: int,
    left: int,
) -> None:
    done = run(cli_env, "dlq", "purge", *options, stdin=stdin)
    assert f"removed {removed} dead letter(s)" in done.stdout
    assert dlq_size(redis_client, key_prefix, "acme") + dlq_size(redis_client, key_prefix, "beta") == left


def test_export_purge_import_round_trip_restores_identical_entries(
    cli_env: dict[str, str], redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    put(redis_client, key_prefix, DeadLetter("acme", 2, b"\xff\xfe raw \x00", "rejected", "not JSON", host="h"))
    put(
        redis_client,
        key_prefix,
        letter(n=7, attempts=9, response="r" * 1_000, first_failed_at_ms=1, last_failed_at_ms=2),
    )
    before = stream_rows(redis_client.xrange(dlq_key(key_prefix, "acme")))
    dump = tmp_path / "dump.jsonl"
    assert "exported 2" in run(cli_env, "dlq", "export", "--out", str(dump)).stderr
    run(cli_env, "dlq", "purge", "--all", "--yes")
    assert "imported 2 dead letter(s), skipped 0" in run(cli_env, "dlq", "import", str(dump)).stdout
    after = stream_rows(redis_client.xrange(dlq_key(key_prefix, "acme")))
    assert [fields for _, fields in after] == [fields for _, fields in before]
    assert "imported 0 dead letter(s), skipped 2" in run(cli_env, "dlq", "import", str(dump)).stdout


def test_export_to_stdout_writes_one_json_object_per_line(cli_env: dict[str, str], seeded: dict[str, str]) -> None:
    lines = run(cli_env, "dlq", "export", "--status", "400").stdout.splitlines()
    assert sorted(json.loads(line)["message_id"] for line in lines) == ["m0", "m3", "m4"]


@pytest.mark.parametrize(("content", "message"), [("{oops\n", "line 1"), (None, "cannot be read")])
def test_import_of_a_bad_or_missing_file_exits_2(
    cli_env: dict[str, str], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    assert message in run(cli_env, "dlq", "import", str(path), code=2).stderr


def test_audit_lists_replays_purges_and_imports_newest_first(
    cli_env: dict[str, str], seeded: dict[str, str], tmp_path: Path
) -> None:
    run(cli_env, "dlq", "replay", "--workspace", "beta", "--no-kick")
    run(cli_env, "dlq", "purge", "--status", "503", "--yes")
    data = run_json(cli_env, "dlq", "audit")
    assert isinstance(data, list)
    assert [(r["action"], r["filters"], r["count"]) for r in data] == [
        ("purge", "status=503", 1),
        ("replay", "workspace=beta", 1),
    ]
    assert "purge" in run(cli_env, "dlq", "audit", "--limit", "1").stdout


def test_the_workspaces_option_replaces_the_environment_file(
    cli_env: dict[str, str], seeded: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other.toml"
    other.write_text(f'[workspaces.gamma]\nsite_id = "g"\napi_key = "{API_KEY}"\n')
    env = {k: v for k, v in cli_env.items() if k != "CIO_WORKSPACES_FILE"}
    data = run_json(env, "dlq", "stats", "--workspaces", str(other))
    assert data["by_workspace"] == {"acme": 4, "beta": 1}  # type: ignore[index]


def test_a_bad_workspaces_file_exits_2_without_the_key(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[workspaces.acme]\napi_key = "{API_KEY}"\n')
    done = run({**cli_env, "CIO_WORKSPACES_FILE": str(bad)}, "dlq", "stats", code=2)
    assert "site_id" in done.stderr


@pytest.mark.parametrize("command", [["dlq", "stats"], ["dlq", "list"], ["dlq", "replay"], ["status"]])
def test_unreachable_redis_exits_3_naming_host_and_port_but_not_the_password(
    cli_env: dict[str, str], command: list[str]
) -> None:
    env = {**cli_env, "CIO_REDIS_URL": "redis://admin:hunter2-secret@127.0.0.1:1/0"}
    done = run(env, *command, code=3)
    assert "127.0.0.1:1" in done.stderr
    assert "hunter2-secret" not in done.stdout + done.stderr


def test_help_documents_the_exit_codes(cli_env: dict[str, str]) -> None:
    """The one exit-code table is shown once, by ``cio-fleet --help``, not repeated in each command's help."""
    assert "3 Redis unreachable" in " ".join(run(cli_env, "--help").stdout.split())
    assert "Redis unreachable" not in " ".join(run(cli_env, "dlq", "purge", "--help").stdout.split())
