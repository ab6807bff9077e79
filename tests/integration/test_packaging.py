"""Building the project's wheel gives no warning from its own packaging (a fresh clone's `make setup` is clean)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.test_compose import REPO


def test_the_wheel_builds_without_a_packaging_warning(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "--wheel-dir", str(tmp_path), str(REPO)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    warnings = [line for line in output.splitlines() if "Warning" in line and "Location 'file:" not in line]
    assert warnings == [], "\n".join(warnings)
    assert [path.name for path in tmp_path.glob("cio_fleet-*.whl")]
