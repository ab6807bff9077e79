"""The README's first command, `cio-fleet demo`, end to end (stand-in mode)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import standin_workspaces
from worker.local.demo import free_port

pytestmark = pytest.mark.e2e


def test_demo_delivers_the_origin_examples_and_synthetic_events_and_summarises(redis_url):
    # Given no workspace configured, so the demo uses its local stand-in
    cli = str(Path(sys.executable).parent / "cio-fleet")
    env = {"PATH": str(Path(sys.executable).parent), "CIO_REDIS_URL": redis_url}
    # When it runs with 200 synthetic events
    result = subprocess.run([cli, "demo", "--synthetic", "200"], env=env, capture_output=True, text=True, timeout=120)
    # Then it exits 0 and its summary accounts for every event
    assert result.returncode == 0, result.stdout + result.stderr
    figures = dict(re.findall(r"^(sent|delivered|skipped|rejected by mapping)\s+(\d+)", result.stdout, re.M))
    assert figures == {"sent": "210", "delivered": "207", "skipped": "2", "rejected by mapping": "1"}
    assert re.search(r"^stand-in accepted\s+207 operations", result.stdout, re.M)


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cli = str(Path(sys.executable).parent / "cio-fleet")
    full_env = {"PATH": str(Path(sys.executable).parent), **env}
    return subprocess.run([cli, "demo", *args], env=full_env, capture_output=True, text=True, timeout=120)


def test_with_workspaces_configured_the_demo_says_it_goes_to_them_and_is_not_raced_by_a_running_fleet(
    redis_url, key_prefix, stand_in, make_fleet
):
    # Given a configured workspace (its track_url is a stand-in here) and a fleet already draining that prefix
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    fleet.start(1)
    env = {"CIO_REDIS_URL": redis_url, "CIO_KEY_PREFIX": key_prefix, "CIO_WORKSPACES_FILE": str(fleet.workspaces_file)}
    # When the demo runs with the default target
    result = run_demo(env, "--timeout", "30")
    # Then its first line names the target, and it finishes with every event accounted for by its own worker
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].startswith(f"target: Customer.io, configured workspace 'wsa' ({stand_in.url}")
    assert re.search(r"^sent\s+10$", result.stdout, re.M)
    assert re.search(r"^delivered\s+7$", result.stdout, re.M)
    assert len(stand_in.accepted("site-a")) == 7


def test_target_standin_ignores_configured_workspaces_and_says_so(redis_url, key_prefix, stand_in, make_fleet):
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    env = {"CIO_REDIS_URL": redis_url, "CIO_KEY_PREFIX": key_prefix, "CIO_WORKSPACES_FILE": str(fleet.workspaces_file)}
    result = run_demo(env, "--target", "standin", "--synthetic", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        "target: a local Customer.io stand-in; 1 configured workspace(s) ignored (`--target configured` sends to "
        "Customer.io)"
    )
    assert re.search(r"^stand-in accepted\s+27 operations", result.stdout, re.M)
    assert stand_in.accepted("site-a") == []


def test_a_demo_that_cannot_finish_stops_at_its_timeout_and_keeps_the_waiting_events(
    redis_url, key_prefix, make_fleet, redis_client
):
    # Given a configured workspace whose Customer.io cannot be reached
    fleet = make_fleet({"wsa": {"site_id": "s", "api_key": "k", "track_url": f"http://127.0.0.1:{free_port()}"}})
    env = {"CIO_REDIS_URL": redis_url, "CIO_KEY_PREFIX": key_prefix, "CIO_WORKSPACES_FILE": str(fleet.workspaces_file)}
    result = run_demo(env, "--target", "configured", "--timeout", "3")
    # Then it says how far it got, exits 1, and names where the undelivered events wait
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^timed out after 3 s: \d+ of 10 events have an outcome$", result.stdout, re.M)
    (prefix,) = re.findall(r"kept under the key prefix '(cio-demo-[0-9a-f]+)'", result.stdout)
    kept = list(redis_client.scan_iter(match=f"{prefix}:s:*"))
    assert kept
    redis_client.delete(*redis_client.scan_iter(match=f"{prefix}*"))
