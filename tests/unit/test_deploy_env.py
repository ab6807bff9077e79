"""Every CIO_ variable that ops set is a real setting, and the shipped values load into ``Settings``.

The set of valid names is built from ``worker.settings.Settings`` itself (nested models joined with ``__``,
workspaces as ``CIO_WORKSPACES__<NAME>__<FIELD>``), so a renamed or removed setting breaks this test instead
of being silently ignored in production (``Settings`` ignores unknown variables).
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from tests.unit.test_compose import REPO, interpolate, interpolated_names, load_compose, service_environment
from tests.unit.test_deploy_manifests import BUILDS, configured_env, worker_container
from worker.settings import Settings, WorkspaceConfig

ENV_PREFIX = "CIO_"
ENV_EXAMPLE = REPO / "deploy" / "env.example"
#: ``api_key_file`` is read by ``WorkspaceConfig`` before validation; ``name`` is set from the table's key.
WORKSPACE_EXTRA_FIELDS = {"api_key_file"}
WORKSPACE_DERIVED_FIELDS = {"name"}
#: Files whose every CIO_ word must be a setting: the compose file, everything in deploy/, the ops guide.
SCANNED_FILES = sorted(
    [REPO / "docker-compose.yml", REPO / "docs" / "operations.md"]
    + [path for path in (REPO / "deploy").rglob("*") if path.is_file() and "secrets" not in path.parts]
)
_CIO_WORD = re.compile(r"\bCIO_[A-Z0-9_]*[A-Z0-9]")
_ENV_LINE = re.compile(r"^\s*#?\s*(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field's annotation, if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def setting_names(model: type[BaseModel], prefix: str = ENV_PREFIX) -> set[str]:
    """Every environment variable name a settings model reads, nested groups joined with ``__``."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name.upper()}"
        nested = _model_in(field.annotation)
        if nested is not None:
            names |= setting_names(nested, f"{name}__")
        else:
            names.add(name)
    return names


def workspace_field_names() -> set[str]:
    """The upper-case fields a ``CIO_WORKSPACES__<NAME>__<FIELD>`` variable may set."""
    fields = set(WorkspaceConfig.model_fields) - WORKSPACE_DERIVED_FIELDS | WORKSPACE_EXTRA_FIELDS
    return {field.upper() for field in fields}


def workspaces_field() -> str:
    """The Settings field holding workspaces: the one typed ``dict[str, WorkspaceConfig]``."""
    (name,) = [
        name
        for name, field in Settings.model_fields.items()
        if typing.get_args(field.annotation) == (str, WorkspaceConfig)
    ]
    return name


def is_setting(name: str) -> bool:
    """Whether ``Settings`` reads this environment variable."""
    if name in setting_names(Settings):
        return True
    workspaces = f"{ENV_PREFIX}{workspaces_field().upper()}__"
    if not name.startswith(workspaces):
        return False
    workspace, _, field = name.removeprefix(workspaces).partition("__")
    return bool(workspace) and field in workspace_field_names()


def env_file_entries(path: Path, *, commented: bool) -> dict[str, str]:
    """NAME=value lines of an env file; with ``commented``, also the ``# NAME=value`` examples."""
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ENV_LINE.match(line)
        if match and (commented or not line.lstrip().startswith("#")):
            entries[match["name"]] = match["value"]
    return entries


def compose_variable_names() -> set[str]:
    """Names set in any service's environment or interpolated anywhere in the compose file."""
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    names = interpolated_names(text)
    for service in raw["services"].values():
        names |= set(service_environment(service))
    return names


def dockerfile_env_names() -> set[str]:
    """Names the Dockerfile's ENV instructions set (``ENV A=1 \\ B=2``)."""
    text = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("ENV ")]
    return {pair.split("=", 1)[0] for line in lines for pair in line.split()}


def kubernetes_env_names() -> set[str]:
    """Names the worker container gets, from ``env`` and its ConfigMap, in every build."""
    names: set[str] = set()
    for resources in BUILDS.values():
        names |= {entry["name"] for entry in worker_container(resources).get("env", [])}
        names |= set(configured_env(resources))
    return names


SOURCES = {
    "docker-compose.yml": compose_variable_names,
    "deploy/Dockerfile": dockerfile_env_names,
    "deploy/env.example": lambda: set(env_file_entries(ENV_EXAMPLE, commented=True)),
    "kubernetes manifests": kubernetes_env_names,
}


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("CIO_REDIS_URL", True),
        ("CIO_RETRY__WINDOW_S", True),
        ("CIO_BATCHING__LINGER_MS", True),
        ("CIO_HTTP__TIMEOUT_S", True),
        ("CIO_WORKSPACES__ACME__SITE_ID", True),
        ("CIO_WORKSPACES__ACME__API_KEY_FILE", True),
        ("CIO_RETRY__WINDOWS_S", False),
        ("CIO_RETRY", False),
        ("CIO_WORKSPACES__ACME__NAME", False),
        ("CIO_WORKSPACES____SITE_ID", False),
        ("CIO_WORKSPACES__ACME__SITEID", False),
        ("CIO_SHUTDOWN_GRACE", False),
        ("CIO_TEST_REDIS_URL", False),
    ],
)
def test_setting_names_come_from_the_settings_model(name: str, valid: bool) -> None:
    """The checker accepts real settings and refuses typos, so the checks below can fail."""
    assert is_setting(name) is valid


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_cio_variable_ops_set_is_a_setting(source: str) -> None:
    """Names in environment blocks, ConfigMaps, ENV lines and env.example are all read by Settings."""
    names = {name for name in SOURCES[source]() if name.startswith(ENV_PREFIX)}
    assert names
    assert sorted(name for name in names if not is_setting(name)) == []


@pytest.mark.parametrize("path", SCANNED_FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_cio_word_in_deploy_files_and_docs_is_a_setting(path: Path) -> None:
    """Comments, alert texts and docs name only real settings too."""
    words = set(_CIO_WORD.findall(path.read_text(encoding="utf-8")))
    assert sorted(word for word in words if not is_setting(word)) == []


_API_KEY_FILE = re.compile(r'^(?P<lead>\s*api_key_file\s*=\s*)"(?P<path>[^"]+)"', re.MULTILINE)


def api_key_files_made_real(toml_text: str, directory: Path) -> Path:
    """A copy of a workspaces file whose ``api_key_file`` entries point at files that exist."""

    def relocate(match: re.Match[str]) -> str:
        key_file = directory / Path(match["path"]).name
        key_file.write_text("test-key\n", encoding="utf-8")
        return f'{match["lead"]}"{key_file}"'

    path = directory / "workspaces.toml"
    path.write_text(_API_KEY_FILE.sub(relocate, toml_text), encoding="utf-8")
    return path


def load_settings_from(
    env: dict[str, str], toml_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """``Settings()`` as a worker with this environment and workspaces file would build it."""
    workspaces_file = api_key_files_made_real(toml_text, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CIO_WORKSPACES_FILE", str(workspaces_file))
    return Settings()


def compose_case() -> tuple[dict[str, str], str]:
    worker = load_compose()["services"]["worker"]
    toml_text = (REPO / "deploy" / "compose" / "workspaces.toml").read_text(encoding="utf-8")
    return service_environment(worker), toml_text


def kubernetes_case(build: str) -> tuple[dict[str, str], str]:
    resources = BUILDS[build]
    (workspaces,) = [r for r in resources if r["metadata"]["name"] == "cio-fleet-workspaces"]
    env = configured_env(resources) | {"CIO_REDIS_URL": "redis://redis:6379/0"}
    return env, workspaces["data"]["workspaces.toml"]


def env_example_case() -> tuple[dict[str, str], str]:
    return env_file_entries(ENV_EXAMPLE, commented=False), kubernetes_case("base")[1]


CASES = {
    "compose": compose_case,
    "kubernetes-base": lambda: kubernetes_case("base"),
    "kubernetes-production": lambda: kubernetes_case("production"),
    "kubernetes-rabbitmq": lambda: kubernetes_case("rabbitmq"),
    "env.example": env_example_case,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_shipped_configuration_loads_into_settings(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values have the right types and ranges, and every workspace validates."""
    env, toml_text = CASES[case]()
    settings = load_settings_from(env, toml_text, tmp_path, monkeypatch)
    assert settings.workspaces
    assert set(settings.workspaces) == set(tomllib.loads(toml_text)["workspaces"])
    if "CIO_SHUTDOWN_GRACE_S" in env:
        assert settings.shutdown_grace_s == float(env["CIO_SHUTDOWN_GRACE_S"])


def test_env_example_values_reach_their_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each uncommented line of env.example changes the setting it names (no name is silently ignored)."""
    env, toml_text = env_example_case()
    settings = load_settings_from(env, toml_text, tmp_path, monkeypatch).model_dump()
    for name, value in env.items():
        if name in {"CIO_WORKSPACES_FILE", "CIO_REDIS_URL"}:
            continue
        node: Any = settings
        for part in name.removeprefix(ENV_PREFIX).lower().split("__"):
            node = node[part]
        assert str(node) == value or float(node) == float(value), name


def test_a_wrongly_typed_value_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Type drift (a duration written as ``25s``) fails the load: the check above can fail."""
    env, toml_text = env_example_case()
    with pytest.raises(ValueError, match="shutdown_grace_s"):
        load_settings_from(env | {"CIO_SHUTDOWN_GRACE_S": "25s"}, toml_text, tmp_path, monkeypatch)


def test_interpolated_defaults_of_compose_are_settings_values() -> None:
    """``${CIO_LOG_LEVEL:-INFO}`` style defaults resolve to plain values."""
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert "${" not in interpolate(text)


def test_env_example_documents_every_setting() -> None:
    """A setting added to Settings is listed for ops in deploy/env.example (workspaces by example)."""
    documented = set(env_file_entries(ENV_EXAMPLE, commented=True))
    workspaces = f"{ENV_PREFIX}{workspaces_field().upper()}"
    assert sorted(setting_names(Settings) - {workspaces} - documented) == []
