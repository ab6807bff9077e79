"""The README's examples are right: a reader who copies them gets what the text promises."""

from __future__ import annotations

import re
import shlex

import orjson

from producers.wire import partition_for
from tests.unit.test_compose import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_raw_xadd_example_writes_to_the_partition_the_formula_gives() -> None:
    commands = [line for line in README.splitlines() if line.startswith("redis-cli XADD ")]
    assert commands, "the README shows a raw XADD example"
    for command in commands:
        words = shlex.split(command)
        stream, fields = words[2], words[4:]
        event = orjson.loads(dict(zip(fields[::2], fields[1::2], strict=True))["event"])
        _, _, tagged, partition = stream.split(":")
        workspace = tagged.strip("{}")
        assert int(partition) == partition_for(event, 16), f"{command!r}: person {event['userId']!r}, {workspace}"


def test_the_partition_command_comment_matches_the_formula() -> None:
    shown = re.findall(
        r"cio-fleet partition --workspace (\S+) (\S+) +# \S+ +partition (\d+) +cio:s:\{(\S+)\}:(\d+)", README
    )
    assert shown, "the README shows the partition command with its output"
    for workspace, key, partition, stream_workspace, stream_partition in shown:
        assert workspace == stream_workspace
        assert int(partition) == int(stream_partition) == partition_for({"userId": key}, 16)
