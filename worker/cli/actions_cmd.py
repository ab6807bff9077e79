"""`cio-fleet actions`: a workspace's actions, as the origin document's Actions tab shows them.

For each action (catalogue order, each added instance after its action): its name, whether it is on, the
operation it builds, its trigger, its ``convert_timestamps`` and each field's mapping. What differs from the
default is marked ``*`` (``--json``: ``"changed": true``). Nothing is sent; API keys are never printed.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from worker.cli.common import Exit, JsonFlag, WorkspacesFile, fail, load
from worker.mapping.actions import ActionView, compile_actions
from worker.settings import ConfigError, WorkspaceConfig

#: Exit status for a bad configuration or an unknown workspace.
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


def actions_command(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Only this workspace (default: all).", show_default=False)
    ] = None,
    as_json: JsonFlag = False,
    workspaces: WorkspacesFile = None,
) -> None:
    """Show each workspace's actions: trigger, on/off and field mappings, marking what differs from the default.

    Exit codes: 0 shown; 2 invalid configuration or unknown workspace.
    """
    settings = load(workspaces)
    try:
        chosen = (
            [settings.workspace(workspace)]
            if workspace
            else [settings.workspaces[n] for n in sorted(settings.workspaces)]
        )
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)
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
