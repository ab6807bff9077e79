"""`cio-fleet actions`: a workspace's actions, as the origin document's Actions tab shows them.

For each action (catalogue order, each added instance after its action): its name, whether it is on, the
operation it builds, its trigger, its ``convert_timestamps`` and each field's mapping. What differs from the
default is marked ``*`` (``--json``: ``"changed": true``). Nothing is sent; API keys are never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer

from worker.actions import ActionView, compile_actions
from worker.settings import ConfigError, Settings, WorkspaceConfig, load_settings, read_workspaces_file

#: Exit status for a bad configuration or an unknown workspace.
EXIT_USAGE = 2
_MARK = " *"


def workspace_actions(ws: WorkspaceConfig) -> tuple[ActionView, ...]:
    """Every action of ``ws``, configured or default, in catalogue order."""
    return compile_actions([entry.model_dump(exclude_none=True) for entry in ws.actions]).described


def _convert(view: ActionView, ws: WorkspaceConfig) -> bool:
    return ws.convert_timestamps if view.convert_timestamps is None else view.convert_timestamps


def action_record(view: ActionView, ws: WorkspaceConfig) -> dict[str, Any]:
    """One action as JSON: what it is, whether it is on, its trigger and fields, each marked when changed."""
    return {
        "name": view.name,
        "action": view.action,
        "added": view.name != view.action,
        "operation": view.operation,
        "enabled": view.enabled,
        "trigger": {"subscription": view.trigger, "changed": view.trigger_changed},
        "convert_timestamps": {"value": _convert(view, ws), "changed": view.convert_timestamps is not None},
        "fields": {name: {"mapping": shown, "changed": changed} for name, shown, changed in view.fields},
    }


def render_text(ws: WorkspaceConfig, views: tuple[ActionView, ...]) -> list[str]:
    """The Actions tab of ``ws`` as lines of text."""
    lines = [f"workspace {ws.name}  (* differs from the default)"]
    for view in views:
        title = view.name if view.name == view.action else f"{view.name} ({view.action}, added)"
        state = "on" if view.enabled else "off" + _MARK
        lines.append(f"  {title}  [{state}]  -> {view.operation}")
        lines.append(f"    trigger: {view.trigger}" + (_MARK if view.trigger_changed else ""))
        changed_convert = _MARK if view.convert_timestamps is not None else ""
        lines.append(f"    convert_timestamps: {str(_convert(view, ws)).lower()}{changed_convert}")
        lines.extend(f"    {name}: {shown}" + (_MARK if changed else "") for name, shown, changed in view.fields)
    return lines


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _settings(workspaces_file: Path | None) -> Settings:
    if workspaces_file is not None:
        return load_settings(workspaces=read_workspaces_file(workspaces_file))
    return load_settings()


def actions_command(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Only this workspace (default: all).", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")] = False,
    workspaces: Annotated[
        Path | None,
        typer.Option("--workspaces", help="Workspaces TOML file (default: $CIO_WORKSPACES_FILE).", show_default=False),
    ] = None,
) -> None:
    """Show each workspace's actions: trigger, on/off and field mappings, marking what differs from the default.

    Exit codes: 0 shown; 2 invalid configuration or unknown workspace.
    """
    try:
        settings = _settings(workspaces)
        chosen = (
            [settings.workspace(workspace)]
            if workspace
            else [settings.workspaces[n] for n in sorted(settings.workspaces)]
        )
    except ConfigError as exc:
        _fail(str(exc))
    if as_json:
        document = [
            {"workspace": ws.name, "actions": [action_record(view, ws) for view in workspace_actions(ws)]}
            for ws in chosen
        ]
        typer.echo(orjson.dumps({"workspaces": document}, option=orjson.OPT_INDENT_2).decode())
        return
    for ws in chosen:
        typer.echo("\n".join(render_text(ws, workspace_actions(ws))))


def register(app: typer.Typer) -> None:
    """Add ``actions`` to ``app``."""
    app.command("actions")(actions_command)
