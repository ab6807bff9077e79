"""The picture of ``cio-fleet status --watch`` in the README (docs/status-watch.svg), rendered by rich.

The fleet is a fixed seed (three workspaces during an incident: one draining a backlog near its budget, one
throttled, one with revoked credentials), so the picture changes only when the view's code does.
``make picture`` writes it; tests/unit/test_status_picture.py fails when the committed file is stale.

    python -m tests.support.status_picture docs/status-watch.svg
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console

from worker.cli.status_rates import Rates
from worker.cli.status_watch import WatchView, render_frame
from worker.store.fleet_status import FleetStatus, WorkerStatus, WorkspaceStatus

REPO = Path(__file__).resolve().parents[2]
PICTURE = REPO / "docs" / "status-watch.svg"
#: Columns of the recorded terminal.
WIDTH = 172
#: 2026-11-29T12:00:00Z, the seed's Redis time.
AT_MS = 1_795_953_600_000


def _workspace(name: str, backlog: int, oldest_s: float | None, busy: int, **state: object) -> WorkspaceStatus:
    defaults: dict[str, object] = dict(
        paused=None, pause_reason=None, pause_remaining_s=None, auth_status=None, auth_since_ms=None
    )
    defaults.update(state)
    return WorkspaceStatus(
        name=name, partitions=16, backlog=backlog, oldest_age_s=oldest_s, busy=busy,
        retrying=int(str(defaults.pop("retrying", 0))), dead_letters=int(str(defaults.pop("dead_letters", 0))),
        **defaults,  # type: ignore[arg-type]
    )  # fmt: skip


def seeded_view() -> WatchView:
    """The fixed fleet of the picture."""
    workspaces = (
        _workspace("acme", 12_480, 94.0, 16, dead_letters=3),
        _workspace("globex", 2_310, 1_260.0, 0, retrying=16, paused="throttled", pause_remaining_s=42.0),
        _workspace("initech", 880, 5_400.0, 0, paused="unauthorized", auth_status=401, auth_since_ms=AT_MS - 5_400_000),
    )
    workers = tuple(WorkerStatus(f"worker-{n}:1", AT_MS / 1_000 - n, float(n), True) for n in range(3))
    rates = {
        "acme": Rates(1_834.0, 1_831.5, 150.0, 96.7, 0.967),
        "globex": Rates(0.0, 0.0, 0.0, 0.0, 0.0),
        "initech": Rates(0.0, 0.0, 0.0, 0.3, 0.003),
    }
    history = {
        "acme": (
            *(0, 0, 300, 2_100, 4_800, 7_600, 9_900, 12_800, 15_200, 17_100, 18_400, 19_100),
            *(19_300, 18_900, 18_200, 17_500, 16_900, 16_100, 15_300, 14_700, 14_100, 13_600, 13_200, 12_480),
        ),
        "globex": (*(0,) * 12, 120, 410, 780, 1_020, 1_330, 1_610, 1_840, 2_050, 2_190, 2_250, 2_290, 2_310),
        "initech": (0, 0, 0, *range(40, 840, 40), 880),
    }
    budgets = {"acme": 100.0, "globex": 50.0, "initech": 100.0}
    status = FleetStatus(AT_MS, workspaces, workers)
    return WatchView(status, rates, history, budgets, refreshes=42, interval_s=2.0, scraping=True)


def render_svg() -> str:
    """The seeded view as rich renders it to SVG."""
    console = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(render_frame(seeded_view()))
    return console.export_svg(title="cio-fleet status --watch")


def main(argv: list[str]) -> None:
    """Write the picture to the path given (docs/status-watch.svg by default)."""
    target = Path(argv[1]) if len(argv) > 1 else PICTURE
    target.write_text(render_svg(), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
