"""The README's producer snippet runs as shown, against a real Redis (under the test's own key prefix)."""

from __future__ import annotations

import functools
import re

import pytest
import redis

import producers
from producers.keys import stream_key
from tests.unit.test_compose import REPO

SNIPPETS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.DOTALL)
PRODUCER_SNIPPET = next(snippet for snippet in SNIPPETS if "Producer(" in snippet)


def test_the_producer_snippet_runs_and_enqueues_what_it_says(
    key_prefix: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(producers, "Producer", functools.partial(producers.Producer, key_prefix=key_prefix, kick=False))
    exec(compile(PRODUCER_SNIPPET, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    streams = [stream_key(key_prefix, "acme", n) for n in range(16)]
    assert sum(int(redis_client.xlen(key)) for key in streams) == 3
    assert printed[0] == "1 {1: 'event'}"
    assert printed[1].startswith("event ")
