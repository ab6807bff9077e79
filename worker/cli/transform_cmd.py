"""`cio-fleet transform`: show what the worker would do with each event of a JSON Lines file, offline.

One output line per input line, in order: ``{"outcome":"deliver","operations":[...]}``,
``{"outcome":"skip","reason":"..."}`` or ``{"outcome":"reject","reason":"..."}``. A delivered event whose time
could not be read also names the field: ``"dropped_timestamps":["timestamp"]``. Output is streamed, so
``tail -f events.jsonl | cio-fleet transform -w acme`` works. Nothing is sent anywhere; the workspace only
supplies its mapping options, and its API key is never printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, BinaryIO

import orjson
import typer

from worker.cli.common import Exit, WorkspacesFile, fail, load
from worker.mapping.transform import Deliver, Outcome, Reject, Skip, TransformOptions, transform_raw
from worker.settings import ConfigError

#: The reason given for a blank input line (kept as a line so that output lines match input lines).
EMPTY_LINE_REASON = "line is empty"


def encode_outcome(outcome: Outcome) -> bytes:
    """One output line (without its newline) for one outcome.

    Args:
        outcome: What the transform decided.

    Returns:
        The JSON object, reusing the operations' own encodings.
    """
    if isinstance(outcome, Deliver):
        line = b'{"outcome":"deliver","operations":[' + b",".join(outcome.encoded) + b"]"
        if outcome.dropped_timestamps:
            line += b',"dropped_timestamps":' + orjson.dumps(outcome.dropped_timestamps)
        return line + b"}"
    kind = "skip" if isinstance(outcome, Skip) else "reject"
    return orjson.dumps({"outcome": kind, "reason": outcome.reason})


def transform_lines(lines: Iterator[bytes], options: TransformOptions) -> Iterator[bytes]:
    """Transform each JSON line; a blank line is rejected as ``line is empty``.

    Args:
        lines: Raw input lines, with or without their line endings.
        options: The workspace's mapping options.

    Yields:
        One encoded outcome per input line, in order.
    """
    for line in lines:
        if not line.strip():
            yield encode_outcome(Reject(EMPTY_LINE_REASON))
        else:
            yield encode_outcome(transform_raw(line, options))


@contextmanager
def _open_input(file: str) -> Iterator[BinaryIO]:
    if file == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = Path(file).open("rb")  # noqa: SIM115 - closed by the with below; only opening errors are caught
    except OSError as exc:
        fail(f"input file {file!r} cannot be read: {exc.strerror}", Exit.USAGE)
    with handle:
        yield handle


def _write_all(outputs: Iterator[bytes]) -> None:
    out = sys.stdout.buffer
    try:
        for line in outputs:
            out.write(line + b"\n")
            out.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def transform_command(
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace", "-w", help="Workspace whose mapping options apply (none: the defaults).", show_default=False
        ),
    ] = None,
    file: Annotated[str, typer.Argument(help="JSON Lines input; '-' or absent reads stdin.")] = "-",
    workspaces: WorkspacesFile = None,
    convert_timestamps: Annotated[
        bool | None,
        typer.Option(
            "--convert-timestamps/--no-convert-timestamps",
            help="Override the workspace's convert_timestamps (a preview needs no workspace, nor credentials).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Map Segment events (JSON Lines) to Customer.io operations and print one outcome line per event.

    A preview needs no credentials: without --workspace the default mapping options apply (and no configuration
    is read). Rejected events are output, not errors: the exit code is 0.
    """
    options = TransformOptions()
    if workspace is not None:
        try:
            options = TransformOptions.for_workspace(load(workspaces).workspace(workspace))
        except ConfigError as exc:
            fail(str(exc), Exit.USAGE)
    if convert_timestamps is not None:
        options = replace(options, convert_timestamps=convert_timestamps)
    with _open_input(file) as handle:
        _write_all(transform_lines(iter(handle), options))


def register(app: typer.Typer) -> None:
    """Add ``transform`` to ``app``."""
    app.command("transform")(transform_command)
