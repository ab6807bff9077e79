"""`cio-fleet fake-customerio`: run the local Customer.io stand-in in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _initial_faults(latency_ms: float, error_rate: float) -> list[dict[str, Any]]:
    """The fault rule the command-line options describe (none when both are zero)."""
    rule: dict[str, Any] = {}
    if latency_ms:
        rule["latency_ms"] = latency_ms
    if error_rate:
        rule["error_rate"] = error_rate
    return [rule] if rule else []


def fake_customerio(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one (printed at start).")] = 8899,
    credentials: Annotated[
        list[str] | None,
        typer.Option("--credentials", help="Accepted SITE_ID:API_KEY (repeatable); none: any pair passes."),
    ] = None,
    record: Annotated[
        Path | None, typer.Option("--record", help="Append every accepted operation to this JSON Lines file.")
    ] = None,
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="Check operations against Customer.io's schema.")
    ] = True,
    latency_ms: Annotated[float, typer.Option(min=0, help="Answer every API request after this delay.")] = 0.0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Answer this share of API requests 500 or 503.")
    ] = 0.0,
) -> None:
    """Run a local Customer.io Track API v2 stand-in until Ctrl-C or SIGTERM.

    Prints one line with its URL once it listens. It answers POST /api/v2/batch and /api/v2/entity as Customer.io
    does (Basic auth, size limits, schema checks, 207 with batch_index) and is driven by control endpoints.
    """
    from worker.local.fake_customerio import FakeCustomerIO, serve_forever
    from worker.local.fake_customerio.auth import parse_credential_pairs

    try:
        pairs = parse_credential_pairs(credentials or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--credentials") from None
    fake = FakeCustomerIO(host, port, pairs, validate, record, faults=_initial_faults(latency_ms, error_rate))

    def _announce(url: str) -> None:
        typer.echo(f"fake Customer.io listening on {url}", nl=True)
        typer.get_text_stream("stdout").flush()

    serve_forever(fake, _announce)


def control_help() -> str:
    """The help's epilog: every control endpoint and every fault rule key, read from the stand-in itself."""
    from worker.local.fake_customerio.control import ROUTES
    from worker.local.fake_customerio.faults import rule_keys

    endpoints = ", ".join(f"{method} {path}" for method, path in ROUTES)
    return (
        f"Control endpoints (no auth): {endpoints}. "
        "Faults: PUT /_fake/faults with a JSON rule or list of rules (the first whose site_id/path scope matches "
        f"applies); rule keys: {', '.join(rule_keys())}. "
        """Example: curl -X PUT localhost:8899/_fake/faults -d '{"error_rate": 0.1, "latency_ms": 150}'. """
        "README.md, 'The local stand-in', explains each key."
    )


def register(app: typer.Typer) -> None:
    """Add the ``fake-customerio`` command to ``app``."""
    app.command("fake-customerio", epilog=control_help())(fake_customerio)
