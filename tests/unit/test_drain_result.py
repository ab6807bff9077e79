"""How the drain task turns a drain's result into the drain tasks it queues (pure: no Celery, no Redis)."""

from __future__ import annotations

import pytest

from worker.pipeline.drain import DrainResult
from worker.tasks import MAX_COUNTDOWN_S


@pytest.mark.parametrize(
    ("result", "kicks"),
    [
        (DrainResult("done"), []),
        (DrainResult("busy"), []),
        (DrainResult("parked"), []),
        (DrainResult("requeue"), [(3, None)]),
        (DrainResult("later", delay_s=2.5), [(3, 2.5)]),
        (DrainResult("later", delay_s=0.0), [(3, 0.001)]),
        (DrainResult("later", delay_s=MAX_COUNTDOWN_S), [(3, MAX_COUNTDOWN_S)]),
        (DrainResult("later", delay_s=MAX_COUNTDOWN_S + 1), []),
        (DrainResult("done", unparked=(5, 7)), [(5, None), (7, None)]),
        (DrainResult("requeue", unparked=(1,)), [(3, None), (1, None)]),
        (DrainResult("later", delay_s=3_600, unparked=(1,)), [(1, None)]),
    ],
)
def test_a_drain_result_becomes_the_kicks_the_task_queues(result, kicks):
    assert result.kicks(3, MAX_COUNTDOWN_S) == kicks
