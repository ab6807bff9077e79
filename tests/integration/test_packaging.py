"""Building the project's wheel gives no warning from its own packaging (a fresh clone's `make setup` is clean)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.unit.test_compose import REPO


def test_the_wheel_builds_without_a_packaging_warning(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: pip builds in the source tree, which must stay clean
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("producers", "worker"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--verbose",
        "--wheel-dir",
        str(tmp_path),
        str(source),
    ]
    built = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    warnings = [line for line in output.splitlines() if "Warning" in line and "Location 'file:" not in line]
    assert warnings == [], "\n".join(warnings)
    assert [path.name for path in tmp_path.glob("cio_fleet-*.whl")]
