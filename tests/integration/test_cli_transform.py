"""`cio-fleet transform`, run as the installed console script in a subprocess."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.schema import validate_operation

CLI = str(Path(sys.executable).with_name("cio-fleet"))
API_KEY = "sekret-api-key-4f1c9a"
GOOD_WORKSPACE = f"""
[workspaces.acme]
site_id = "site-1"
api_key = "{API_KEY}"
region = "eu"

[workspaces.raw]
site_id = "site-2"
api_key = "{API_KEY}"
convert_timestamps = false
object_type_id = "3"
"""

#: (input line, expected output line) — every outcome, and every kind of bad line.
MIXED: list[tuple[str, dict[str, Any]]] = [
    (
        '{"type":"identify","userId":"u1","traits":{"since":"2024-01-01"},"timestamp":"2024-01-01T00:00:00Z"}',
        {
            "outcome": "deliver",
            "operations": [
                {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": "u1"},
                    "attributes": {"since": 1704067200},
                    "timestamp": 1704067200,
                }
            ],
        },
    ),
    (
        '{"type":"track","event":"Order Completed","anonymousId":"a1","messageId":"m1"}',
        {
            "outcome": "deliver",
            "operations": [
                {
                    "type": "person",
                    "action": "event",
                    "identifiers": {"anonymous_id": "a1"},
                    "name": "Order Completed",
                    "id": "m1",
                }
            ],
        },
    ),
    (
        '{"type":"group","groupId":"acme"}',
        {
            "outcome": "deliver",
            "operations": [
                {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "acme"}}
            ],
        },
    ),
    ("", {"outcome": "reject", "reason": "line is empty"}),
    ("   ", {"outcome": "reject", "reason": "line is empty"}),
    ("this is not json", {"outcome": "reject", "reason": "payload: not valid JSON"}),
    ('[{"type":"identify","userId":"u1"}]', {"outcome": "reject", "reason": "payload: not a JSON object"}),
    ('{"type":"purchase","userId":"u1"}', {"outcome": "reject", "reason": "type: unsupported event type"}),
    ('{"type":"identify","anonymousId":"a1"}', {"outcome": "skip", "reason": "no userId or email"}),
    ('{"type":"track","userId":"u1"}', {"outcome": "reject", "reason": "event: required for track"}),
    (
        '{"type":"alias","userId":"u1","previousId":"u0"}',
        {
            "outcome": "deliver",
            "operations": [{"type": "person", "action": "merge", "primary": {"id": "u1"}, "secondary": {"id": "u0"}}],
        },
    ),
]


@pytest.fixture
def workspaces_file(tmp_path: Path) -> Path:
    path = tmp_path / "workspaces.toml"
    path.write_text(GOOD_WORKSPACE, encoding="utf-8")
    return path


def run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLI, "transform", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env=env or dict(os.environ),
    )


def output_lines(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr.decode()
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    for line in lines:
        for operation in line.get("operations", []):
            validate_operation(operation)
    return lines


def test_a_mixed_file_gives_one_outcome_line_per_input_line_in_order(tmp_path: Path, workspaces_file: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(line for line, _ in MIXED) + "\n", encoding="utf-8")
    result = run("--workspace", "acme", "--workspaces", str(workspaces_file), str(events))
    assert output_lines(result) == [expected for _, expected in MIXED]
    assert result.stderr == b""


@pytest.mark.parametrize("file_args", [[], ["-"]], ids=["absent", "dash"])
def test_stdin_is_read_when_the_file_is_absent_or_a_dash(workspaces_file: Path, file_args: list[str]) -> None:
    stdin = b'{"type":"identify","userId":"u1"}\r\nnot json'
    result = run("-w", "acme", "--workspaces", str(workspaces_file), *file_args, stdin=stdin)
    assert [line["outcome"] for line in output_lines(result)] == ["deliver", "reject"]


def test_the_workspaces_mapping_options_apply(workspaces_file: Path) -> None:
    stdin = b'{"type":"group","groupId":"g","traits":{"since":"2024-01-01"}}\n'
    (line,) = output_lines(run("-w", "raw", "--workspaces", str(workspaces_file), stdin=stdin))
    operation = line["operations"][0]
    assert operation["identifiers"]["object_type_id"] == "3"
    assert operation["attributes"] == {"since": "2024-01-01"}


def test_the_workspaces_option_wins_over_the_environment(tmp_path: Path, workspaces_file: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[workspaces.raw]\nsite_id = "s"\napi_key = "k-other-1"\nobject_type_id = "9"\n', encoding="utf-8")
    env = {**os.environ, "CIO_WORKSPACES_FILE": str(other)}
    stdin = b'{"type":"group","groupId":"g"}\n'
    (line,) = output_lines(run("-w", "raw", "--workspaces", str(workspaces_file), stdin=stdin, env=env))
    assert line["operations"][0]["identifiers"]["object_type_id"] == "3"


def test_the_workspaces_file_comes_from_the_environment_by_default(workspaces_file: Path) -> None:
    env = {**os.environ, "CIO_WORKSPACES_FILE": str(workspaces_file)}
    (line,) = output_lines(run("-w", "acme", stdin=b'{"type":"identify","userId":"u"}\n', env=env))
    assert line["outcome"] == "deliver"


@pytest.mark.parametrize(
    ("table", "field"),
    [
        (f'api_key = "{API_KEY}"', "site_id"),
        (f'site_id = "s"\napi_key = "{API_KEY}"\nregion = "mars"', "region"),
        (f'site_id = "s"\napi_key = "{API_KEY}"\ntrack_url = "ftp://x"', "track_url"),
    ],
    ids=["missing-site_id", "bad-region", "bad-track_url"],
)
def test_an_invalid_configuration_exits_2_naming_workspace_and_field_never_the_key(
    tmp_path: Path, table: str, field: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[workspaces.broken]\n{table}\n", encoding="utf-8")
    result = run("-w", "broken", "--workspaces", str(path), stdin=b'{"type":"identify","userId":"u"}\n')
    assert result.returncode == 2
    assert result.stdout == b""
    message = result.stderr.decode()
    assert "'broken'" in message
    assert f"'{field}'" in message
    assert API_KEY not in message


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-w", "nobody"], "unknown workspace 'nobody'"),
        (["-w", "acme", "does-not-exist.jsonl"], "does-not-exist.jsonl"),
    ],
    ids=["unknown-workspace", "missing-input-file"],
)
def test_an_unknown_workspace_or_missing_input_exits_2(workspaces_file: Path, args: list[str], needle: str) -> None:
    result = run("--workspaces", str(workspaces_file), *args)
    assert result.returncode == 2
    assert needle in result.stderr.decode()
    assert API_KEY.encode() not in result.stdout + result.stderr


def test_an_unreadable_workspaces_file_exits_2(tmp_path: Path) -> None:
    result = run("-w", "acme", "--workspaces", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "cannot be read" in result.stderr.decode()


#: Events whose times cannot be read, and the line each gives: delivered, the unreadable field named.
UNREADABLE_TIMES: list[tuple[bytes, dict[str, Any]]] = [
    (
        b'{"type":"track","userId":"u1","event":"E","messageId":"m1","timestamp":"2018-03-04T12:08:56.235 PDT"}',
        {
            "outcome": "deliver",
            "operations": [{"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "E", "id": "m1"}],
            "dropped_timestamps": ["timestamp"],
        },
    ),
    (
        b'{"type":"identify","userId":"u1","traits":{"createdAt":"soon"},"timestamp":"yesterday"}',
        {
            "outcome": "deliver",
            "operations": [
                {
                    "type": "person",
                    "action": "identify",
                    "identifiers": {"id": "u1"},
                    "attributes": {"created_at": "soon"},
                }
            ],
            "dropped_timestamps": ["created_at", "timestamp"],
        },
    ),
    (
        b'{"type":"track","userId":"u1","event":"Application Opened","timestamp":"never",'
        b'"context":{"device":{"token":"tok","type":"android"}}}',
        {
            "outcome": "deliver",
            "operations": [
                {
                    "type": "person",
                    "action": "add_device",
                    "identifiers": {"id": "u1"},
                    "device": {"token": "tok", "platform": "android"},
                }
            ],
            "dropped_timestamps": ["device.last_used"],
        },
    ),
    (
        b'{"type":"group","groupId":"g","anonymousId":"a1"}',
        {
            "outcome": "deliver",
            "operations": [
                {
                    "type": "object",
                    "action": "identify_anonymous",
                    "identifiers": {"object_type_id": "1", "object_id": "g"},
                    "attributes": {"anonymous_id": "a1"},
                    "cio_relationships": [{"identifiers": {"anonymous_id": "a1"}}],
                }
            ],
        },
    ),
]


def test_a_dropped_timestamp_is_shown_and_the_event_still_delivered(workspaces_file: Path) -> None:
    stdin = b"\n".join(line for line, _ in UNREADABLE_TIMES) + b"\n"
    result = run("-w", "acme", "--workspaces", str(workspaces_file), stdin=stdin)
    assert output_lines(result) == [expected for _, expected in UNREADABLE_TIMES]


def test_without_conversion_created_at_passes_as_given(workspaces_file: Path) -> None:
    stdin = b'{"type":"identify","userId":"u1","created_at":"1679407797","timestamp":"2024-01-01"}\n'
    (line,) = output_lines(run("-w", "raw", "--workspaces", str(workspaces_file), stdin=stdin))
    assert line == {
        "outcome": "deliver",
        "operations": [
            {
                "type": "person",
                "action": "identify",
                "identifiers": {"id": "u1"},
                "attributes": {"created_at": "1679407797"},
                "timestamp": 1704067200,
            }
        ],
    }


def test_output_is_streamed_line_by_line_before_the_input_ends(workspaces_file: Path) -> None:
    with subprocess.Popen(
        [CLI, "transform", "-w", "acme", "--workspaces", str(workspaces_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b'{"type":"identify","userId":"u1"}\n')
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        ready: list[Any] = []
        while not ready and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        assert ready, "no output line before the input was closed"
        assert orjson.loads(proc.stdout.readline())["outcome"] == "deliver"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_a_preview_needs_no_workspace_nor_credentials(tmp_path: Path) -> None:
    # No workspaces file at all, and no CIO_ variable: the default mapping options apply
    event = b'{"type":"identify","userId":"u1","traits":{"created_at":"2024-01-01T00:00:00Z"}}\n'
    converted = output_lines(run("-", stdin=event, env={"CIO_WORKSPACES_FILE": str(tmp_path / "none.toml")}))
    as_given = output_lines(run("--no-convert-timestamps", "-", stdin=event, env={}))
    assert converted[0]["operations"][0]["attributes"] == {"created_at": 1704067200}
    assert as_given[0]["operations"][0]["attributes"] == {"created_at": "2024-01-01T00:00:00Z"}
