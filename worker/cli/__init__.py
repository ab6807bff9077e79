"""The ``cio-fleet`` command line: one module per command group, assembled here."""

from __future__ import annotations

import typer

from worker.cli import (
    actions_cmd,
    demo_cmd,
    dlq_cmd,
    fake_cmd,
    intake_cmd,
    partition_cmd,
    send_cmd,
    status_cmd,
    transform_cmd,
)
from worker.cli.common import EXIT_CODES_HELP

app = typer.Typer(
    name="cio-fleet",
    help="Deliver Segment-spec events to Customer.io: run the demo, map, send, and drain the dead-letter queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=EXIT_CODES_HELP,
)


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as installed_version

    typer.echo(installed_version("cio-fleet"))


for module in (
    demo_cmd,
    transform_cmd,
    actions_cmd,
    send_cmd,
    partition_cmd,
    fake_cmd,
    status_cmd,
    dlq_cmd,
    intake_cmd,
):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
