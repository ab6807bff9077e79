"""The README's first command, `cio-fleet demo`, end to end (stand-in mode)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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
