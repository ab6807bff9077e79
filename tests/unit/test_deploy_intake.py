"""The intake's deployment, validated offline like the workers': the compose service and the Kubernetes
Deployment + Service in deploy/intake/ (strict Kubernetes schemas, selectors, ports, probes, lock-down), and the
configuration each ships loads into Settings with a write key per workspace."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.unit.test_compose import REPO, load_compose, service_environment
from tests.unit.test_deploy_env import is_setting, load_settings_from
from tests.unit.test_deploy_manifests import (
    KUBERNETES_VERSIONS,
    base_resources,
    configured_env,
    find,
    kustomization,
    load_documents,
)

INTAKE = REPO / "deploy" / "intake"


def intake_resources() -> list[dict[str, Any]]:
    return [doc for name in kustomization(INTAKE)["resources"] for doc in load_documents(INTAKE / name)]


RESOURCES = intake_resources()


def container() -> dict[str, Any]:
    (only,) = find(RESOURCES, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: f"{r['kind']}-{r['metadata']['name']}")
def test_intake_objects_are_valid_kubernetes(resource: dict[str, Any], version: str) -> None:
    assert kubernetes_validate.validate(resource, version, strict=True)


def test_the_strict_check_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(find(RESOURCES, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_service_selects_the_intake_pods_only_and_targets_the_served_port() -> None:
    pod_labels = find(RESOURCES, "Deployment")["spec"]["template"]["metadata"]["labels"]
    worker_labels = find(base_resources(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = find(RESOURCES, "Service")["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert not service["selector"].items() <= worker_labels.items()
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert [port["targetPort"] for port in service["ports"]] == ["http"]
    assert int(option(container()["args"], "--port")) == ports["http"]


def test_the_intake_runs_the_intake_command_with_readiness_on_health() -> None:
    assert container()["command"] == ["cio-fleet"] and container()["args"][0] == "intake"
    assert container()["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert "memory" in container()["resources"]["limits"]


def test_the_intake_runs_locked_down() -> None:
    pod = find(RESOURCES, "Deployment")["spec"]["template"]["spec"]
    security = container()["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_every_config_map_and_secret_the_intake_uses_exists() -> None:
    known = {(r["kind"], r["metadata"]["name"]) for r in [*base_resources(), *RESOURCES]}
    spec = find(RESOURCES, "Deployment")["spec"]["template"]["spec"]
    used = {("ConfigMap", e["configMapRef"]["name"]) for e in container()["envFrom"] if "configMapRef" in e}
    used |= {("Secret", e["secretRef"]["name"]) for e in container()["envFrom"] if "secretRef" in e}
    used |= {("ConfigMap", v["configMap"]["name"]) for v in spec["volumes"] if "configMap" in v}
    used |= {("Secret", v["secret"]["secretName"]) for v in spec["volumes"] if "secret" in v}
    used |= {("Secret", e["valueFrom"]["secretKeyRef"]["name"]) for e in container()["env"]}
    assert used - known == set()


def test_the_shipped_kubernetes_configuration_gives_the_workspace_its_write_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = find(RESOURCES, "Secret")
    assert all(is_setting(name) for name in secret["stringData"])
    assert all("REPLACE_WITH" in value for value in secret["stringData"].values())
    resources = base_resources()
    (workspaces,) = [r for r in resources if r["metadata"]["name"] == "cio-fleet-workspaces"]
    env = configured_env(resources) | secret["stringData"] | {"CIO_REDIS_URL": "redis://redis:6379/0"}
    settings = load_settings_from(env, workspaces["data"]["workspaces.toml"], tmp_path, monkeypatch)
    assert set(settings.write_key_owners().values()) == set(settings.workspaces)


def test_the_compose_intake_serves_every_workspace_and_is_healthchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = load_compose()["services"]["intake"]
    assert intake["entrypoint"] == ["cio-fleet"] and intake["command"][0] == "intake"
    port = option(intake["command"], "--port")
    assert any(mapping.endswith(f":{port}") for mapping in intake["ports"])
    assert f"127.0.0.1:{port}/health" in " ".join(intake["healthcheck"]["test"])
    assert intake["depends_on"]["redis"]["condition"] == "service_healthy"
    assert intake["read_only"] is True
    toml_text = (REPO / "deploy" / "compose" / "workspaces.toml").read_text(encoding="utf-8")
    settings = load_settings_from(service_environment(intake), toml_text, tmp_path, monkeypatch)
    assert set(settings.write_key_owners().values()) == set(tomllib.loads(toml_text)["workspaces"])
