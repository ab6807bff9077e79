"""The CLI in a narrow terminal and with nothing configured (real CLI processes, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import redis

from tests.integration.test_cli_dlq import API_KEY, CLI, cli_environment, run
from tests.integration.test_deadletter_store import letter, put

LONG_REASON = "HTTP 400: attribute 'favourite_colour' is longer than Customer.io accepts for an attribute value"


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return cli_environment(tmp_path, redis_url, key_prefix)


@pytest.fixture
def dead_letter(redis_client: redis.Redis, key_prefix: str) -> str:
    return "acme/" + put(redis_client, key_prefix, letter(n=7, reason=LONG_REASON))


def test_a_listing_too_wide_for_80_columns_is_printed_as_one_block_per_row(
    cli_env: dict[str, str], dead_letter: str
) -> None:
    narrow = run({**cli_env, "COLUMNS": "80"}, "dlq", "list").stdout
    assert f"- id: {dead_letter}" in narrow.splitlines()
    assert f"    reason: {LONG_REASON}" in narrow.splitlines()
    assert "┃" not in narrow
    wide = run({**cli_env, "COLUMNS": "250"}, "dlq", "list").stdout
    assert "┃" in wide and LONG_REASON in wide


def test_dlq_show_never_breaks_the_event_json_however_narrow_the_terminal(
    cli_env: dict[str, str], dead_letter: str
) -> None:
    out = run({**cli_env, "COLUMNS": "40"}, "dlq", "show", dead_letter).stdout.splitlines()
    event = json.loads(out[out.index("Event") + 1])
    assert event == {"type": "track", "event": "E", "userId": "u7", "messageId": "m7"}
    assert json.loads(out[out.index("Maps to now") + 1])["outcome"] == "deliver"


def test_status_with_nothing_configured_says_what_is_missing(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    env.update(CIO_REDIS_URL=redis_url, CIO_KEY_PREFIX=key_prefix, COLUMNS="200")
    done = subprocess.run([CLI, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no workspace is configured" in done.stderr and "CIO_WORKSPACES_FILE" in done.stderr
    assert "Workspaces" not in done.stdout and API_KEY not in done.stdout
