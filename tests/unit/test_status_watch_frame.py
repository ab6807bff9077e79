"""One frame of ``cio-fleet status --watch``: the figures of ``status``, the rates once known, and the trend."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from tests.support.status_picture import seeded_view
from worker.cli.status_watch import WatchView, render_frame
from worker.store.fleet_status import UnconfiguredStatus


def text_of(view: WatchView) -> str:
    console = Console(width=220, record=True, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(render_frame(view))
    return capture.get()


def test_the_first_frame_has_no_rates_yet() -> None:
    """Rates need two readings: before the second one every rate column shows ``-``."""
    view = dataclasses.replace(seeded_view(), rates={}, refreshes=1)
    acme = next(line for line in text_of(view).splitlines() if "acme" in line)
    assert acme.count(" - ") >= 5 and "12,480" in acme


def test_without_metrics_the_footer_says_how_to_get_requests() -> None:
    """Redis holds no count of requests: the view says which option adds them."""
    view = dataclasses.replace(seeded_view(), scraping=False)
    assert "add --metrics http://<worker>:9808/metrics" in text_of(view)
    assert "add --metrics" not in text_of(seeded_view())


def test_events_above_the_partition_count_and_unconfigured_workspaces_are_shown() -> None:
    """As in ``status``: streams above the count are part of the backlog, stranded events are loud."""
    base = seeded_view()
    acme = dataclasses.replace(base.status.workspaces[0], out_of_range_events=300)
    stray = UnconfiguredStatus("acme-typo", (3,), 42, 60.0)
    status = dataclasses.replace(base.status, workspaces=(acme, *base.status.workspaces[1:]), unconfigured=(stray,))
    text = text_of(dataclasses.replace(base, status=status))
    assert "12,480 (300 in partitions >= 16)" in text
    assert "UNCONFIGURED WORKSPACE acme-typo: 42 events stranded" in text


def test_scrape_problems_are_shown() -> None:
    """A worker that cannot be scraped is named, in the frame, not in a traceback."""
    view = dataclasses.replace(seeded_view(), problems=("cannot scrape http://w:9808/metrics (URLError)",))
    assert "cannot scrape http://w:9808/metrics (URLError)" in text_of(view)
