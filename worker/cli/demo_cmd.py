"""``cio-fleet demo``: the main job end to end, with a summary of what was delivered."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from worker.cli.common import Exit, fail
from worker.settings import ConfigError, load_settings


class TargetChoice(StrEnum):
    """Where ``cio-fleet demo`` sends its events."""

    AUTO = "auto"
    STANDIN = "standin"
    CONFIGURED = "configured"


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)


def demo(
    target: Annotated[
        TargetChoice,
        typer.Option(
            "--target",
            help="standin: a local Customer.io stand-in; configured: Customer.io with a configured workspace; "
            "auto: configured when workspaces are configured (CIO_WORKSPACES_FILE or CIO_WORKSPACES__*), else standin.",
        ),
    ] = TargetChoice.AUTO,
    workspace: str | None = typer.Option(None, help="Workspace to send to with --target configured."),
    synthetic: int | None = typer.Option(
        None, min=0, help="Synthetic events besides the origin examples (default 3000 with the stand-in, 0 otherwise)."
    ),
    timeout: float = typer.Option(120.0, min=1, help="Seconds to wait for every event to have an outcome."),
) -> None:
    """Start a worker, send the origin document's examples plus synthetic events, and summarise the outcome.

    The first line says where the events go. Exit code 1 (done in part): some events had no outcome within
    --timeout.
    """
    from worker.local.demo import choose_target, describe_target, run_demo

    try:
        settings = load_settings()
        chosen = choose_target(settings, target.value)
        typer.echo(describe_target(settings, chosen, workspace))
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)
    count = synthetic if synthetic is not None else (3000 if chosen == "standin" else 0)
    summary = run_demo(
        settings, target=chosen, workspace_name=workspace, synthetic=count, timeout_s=timeout, say=typer.echo
    )
    rate = summary.settled / summary.elapsed_s if summary.elapsed_s else 0.0
    typer.echo("")
    typer.echo(f"target               {summary.target}")
    typer.echo(f"sent                 {summary.sent}")
    if summary.refused_by_producer:
        typer.echo(f"refused by producer  {summary.refused_by_producer}")
    typer.echo(f"delivered            {summary.delivered}")
    typer.echo(f"skipped              {summary.skipped}")
    typer.echo(f"rejected by mapping  {summary.rejected}")
    typer.echo(f"dead-lettered        {summary.dead_lettered}  (rejected by the mapping or by Customer.io)")
    typer.echo(f"requests made        {summary.requests}  {summary.requests_by_status}")
    if summary.accepted_by_standin is not None:
        typer.echo(f"stand-in accepted    {summary.accepted_by_standin} operations")
    typer.echo(f"elapsed              {summary.elapsed_s:.2f} s  ({rate:,.0f} events/s)")
    if summary.settled < summary.sent:
        raise typer.Exit(Exit.INCOMPLETE)
