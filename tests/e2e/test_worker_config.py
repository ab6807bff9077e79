"""A worker with a bad configuration stops at start with one clear message, never showing the API key."""

from __future__ import annotations

import os
import subprocess

import pytest

from worker.local.localfleet import worker_command

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[workspaces.acme]\napi_key = "sk-very-secret"\n', "workspace 'acme', field 'site_id'"),
        ('[workspaces.acme]\nsite_id = "s"\napi_key = "sk-very-secret"\nregion = "mars"\n', "field 'region'"),
        ('[workspaces.acme]\nsite_id = "s"\napi_key = "sk-very-secret"\nrate_limit_rps = 0\n', "rate_limit_rps"),
    ],
)
def test_a_worker_refuses_to_start_with_a_bad_workspace(tmp_path, redis_url, toml, expected):
    path = tmp_path / "workspaces.toml"
    path.write_text(toml)
    env = {**os.environ, "CIO_WORKSPACES_FILE": str(path), "CIO_REDIS_URL": redis_url}
    result = subprocess.run(worker_command(concurrency=2), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "sk-very-secret" not in result.stdout + result.stderr
