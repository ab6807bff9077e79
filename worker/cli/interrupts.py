"""Ctrl-C in long commands: finish the chunk in hand, then stop with a summary, an audit record and exit 130.

A first SIGINT only sets a flag that the command's loop reads between chunks (a chunk is one Redis round trip,
never cut in half), so what was done is known exactly and said: the summary line, the dead-letter audit trail
(``interrupted``) and the exit code ``Exit.INTERRUPTED`` (130). A second SIGINT stops at once, as Ctrl-C usually does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer


class Interrupt:
    """True once Ctrl-C was pressed: pass it as a ``should_stop`` callback."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    """Within the block, a first Ctrl-C sets the yielded flag; a second one raises ``KeyboardInterrupt``."""
    flag = Interrupt()

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        typer.echo("interrupted: finishing the chunk in hand (Ctrl-C again to stop at once)", err=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
