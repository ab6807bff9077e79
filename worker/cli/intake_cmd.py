"""`cio-fleet intake`: serve Segment's HTTP Tracking API, so any Segment SDK enqueues through cio-fleet."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.common import Exit, fail
from worker.intake.limits import BODY_TIMEOUT_S, HEADER_TIMEOUT_S
from worker.settings import ConfigError

#: Exit code of a configuration problem.


def intake(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (each with its own metrics).")] = 1,
    header_timeout_s: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help=f"Close a connection whose request headers take longer [default: CIO_INTAKE_HEADER_TIMEOUT_S, "
            f"else {HEADER_TIMEOUT_S:g}].",
        ),
    ] = None,
    body_timeout_s: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help=f"Answer 408 to a request whose body takes longer [default: CIO_INTAKE_BODY_TIMEOUT_S, "
            f"else {BODY_TIMEOUT_S:g}].",
        ),
    ] = None,
) -> None:
    """Serve the intake: POST /v1/track, /v1/batch… with the workspaces' write keys; GET /health, /metrics.

    Configured like the workers (CIO_* variables and the workspaces file; write_keys and cors_origins per
    workspace). Point an SDK's host at it; see the README, "Sending from any language".
    """
    from worker.intake.options import IntakeOptions
    from worker.intake.server import serve

    given = {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s}
    try:
        options = IntakeOptions().model_copy(update={name: value for name, value in given.items() if value is not None})
        serve(host, port, workers=workers, options=options)
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)


def register(app: typer.Typer) -> None:
    """Add ``intake`` to the CLI."""
    app.command("intake")(intake)
