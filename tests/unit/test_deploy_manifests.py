"""deploy/: the kustomize base and the production overlay, validated offline.

kustomize and a cluster are not available here, so the tests read the kustomizations themselves: built-in
objects are checked against the Kubernetes OpenAPI schemas shipped by ``kubernetes_validate`` (strict: an
unknown field fails), KEDA and prometheus-operator objects structurally, and the overlay is built with a small
strategic merge (merge keys of the fields it patches) and validated again.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis
import yaml

from tests.unit.test_compose import REPO, parse_duration
from worker.ops.metrics import FleetMetrics, RedisStateCollector
from worker.settings import Settings

DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "production"
#: The overlay that puts the drain tasks on RabbitMQ (``CIO_BROKER_URL``).
RABBITMQ_OVERLAY = DEPLOY / "overlays" / "rabbitmq"
#: Kubernetes versions the manifests must be valid for: an older supported minor and the newest known one.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
#: API groups served by CRDs, validated structurally rather than against the Kubernetes schemas.
CRD_API_VERSIONS = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}
#: Metrics the alerts, KEDA and dashboards rely on (ops' contract with worker/ops/metrics.py).
OPS_METRICS = {
    "cio_fleet_backlog_events",
    "cio_fleet_oldest_event_age_seconds",
    "cio_fleet_dead_letter_entries",
    "cio_fleet_events_dead_lettered_total",
    "cio_fleet_workspace_paused",
    "cio_fleet_requests_total",
    "cio_fleet_dead_letter_alarm",
    "cio_fleet_end_to_end_latency_seconds_bucket",
    "cio_fleet_redis_up",
    "cio_fleet_stranded_events",
}
#: Series names each Prometheus metric type exposes, by suffix.
_SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_metric_names() -> set[str]:
    """Series names a worker exposes: its own metrics and the Redis state collector's, plus Prometheus' ``up``."""
    collector = RedisStateCollector(redis.Redis(), "cio", {}, dlq_max_entries=1, dlq_alarm_ratio=0.8)
    families = [*FleetMetrics().registry.collect(), *collector.describe()]
    return {f"{f.name}{suffix}" for f in families for suffix in _SAMPLE_SUFFIXES[f.type]} | {"up"}


KNOWN_METRICS = exported_metric_names()
#: List fields the overlay patches, with the key kubectl's strategic merge matches their items on.
MERGE_KEYS = {
    "containers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "topologySpreadConstraints": "topologyKey",
}

Resource = dict[str, Any]


def load_documents(path: Path) -> list[Resource]:
    """The non-empty YAML documents of one file."""
    with path.open(encoding="utf-8") as handle:
        return [document for document in yaml.safe_load_all(handle) if document]


def kustomization(directory: Path) -> Resource:
    """The kustomization.yaml of a directory."""
    (document,) = load_documents(directory / "kustomization.yaml")
    return document


def base_resources() -> list[Resource]:
    """Every object the base's kustomization lists, in order."""
    return [doc for name in kustomization(BASE)["resources"] for doc in load_documents(BASE / name)]


def identity(resource: Resource) -> tuple[str, str]:
    """(kind, name): how kustomize matches a patch to its target within one build."""
    return resource["kind"], resource["metadata"]["name"]


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """kubectl's strategic merge for the shapes the overlay uses: maps merge, keyed lists merge by key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value, key) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        items = {item[key]: item for item in base}
        for item in patch:
            items[item[key]] = strategic_merge(items[item[key]], item) if item[key] in items else item
        return list(items.values())
    return patch


def apply_images(resource: Resource, images: list[Resource]) -> None:
    """kustomize's ``images`` transformer on a workload's containers."""
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        name, _, tag = container["image"].partition(":")
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def build_overlay(directory: Path) -> list[Resource]:
    """What ``kustomize build`` would print for an overlay of the base (namespace, images, patches)."""
    config = kustomization(directory)
    assert config["resources"] == ["../../base"]
    built = {identity(resource): copy.deepcopy(resource) for resource in base_resources()}
    for entry in config.get("patches", []):
        for patch in load_documents(directory / entry["path"]):
            target = identity(patch)
            assert target in built, f"{entry['path']} patches {target}, which the base does not define"
            if patch.get("$patch") == "delete":
                del built[target]
            else:
                built[target] = strategic_merge(built[target], patch)
    for resource in built.values():
        resource["metadata"]["namespace"] = config["namespace"]
        apply_images(resource, config.get("images", []))
    return list(built.values())


def find(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    """The one object of that kind (and name)."""
    (match,) = [r for r in resources if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]
    return match


def builds() -> dict[str, list[Resource]]:
    """The builds the tests check: the base alone, the production overlay and the RabbitMQ overlay."""
    return {"base": base_resources(), "production": build_overlay(OVERLAY), "rabbitmq": build_overlay(RABBITMQ_OVERLAY)}


BUILDS = builds()
BUILT_IN = [
    pytest.param(build, resource, id=f"{build}-{resource['kind']}-{resource['metadata']['name']}")
    for build, resources in BUILDS.items()
    for resource in resources
    if resource["apiVersion"] not in CRD_API_VERSIONS
]


def worker_container(resources: list[Resource]) -> Resource:
    """The worker container of the Deployment."""
    (container,) = find(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def configured_env(resources: list[Resource]) -> dict[str, str]:
    """The CIO_ settings the worker gets from its ConfigMap."""
    envs = worker_container(resources)["envFrom"]
    (name,) = [env["configMapRef"]["name"] for env in envs if "configMapRef" in env]
    return {key: str(value) for key, value in find(resources, "ConfigMap", name)["data"].items()}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("build", "resource"), BUILT_IN)
def test_built_in_objects_are_valid_kubernetes(build: str, resource: Resource, version: str) -> None:
    """Strict schema validation: a misspelt or misplaced field fails."""
    assert kubernetes_validate.validate(resource, version, strict=True)


def test_the_kubernetes_validation_catches_a_misspelt_field() -> None:
    """The check above can fail: a typo in the security context is refused."""
    deployment = copy.deepcopy(find(base_resources(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_base_resource_file_exists_and_names_are_unique() -> None:
    """The kustomization lists real files, and no two objects share kind and name."""
    resources = base_resources()
    assert len({identity(r) for r in resources}) == len(resources)
    assert {"Deployment", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"} <= {r["kind"] for r in resources}


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_pod_stops_gracefully_before_kubernetes_kills_it(build: str) -> None:
    """terminationGracePeriodSeconds leaves at least 5 s after CIO_SHUTDOWN_GRACE_S."""
    resources = BUILDS[build]
    grace = float(configured_env(resources).get("CIO_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    pod = find(resources, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= grace + 5


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize(
    ("level", "path", "expected"),
    [
        ("pod", ("runAsNonRoot",), True),
        ("pod", ("runAsUser",), 10001),
        ("pod", ("seccompProfile", "type"), "RuntimeDefault"),
        ("container", ("allowPrivilegeEscalation",), False),
        ("container", ("readOnlyRootFilesystem",), True),
        ("container", ("privileged",), False),
        ("container", ("capabilities", "drop"), ["ALL"]),
    ],
)
def test_the_worker_runs_locked_down(build: str, level: str, path: tuple[str, ...], expected: object) -> None:
    """Non-root, read-only root, no privilege escalation, no capabilities, the runtime's seccomp profile."""
    resources = BUILDS[build]
    pod = find(resources, "Deployment")["spec"]["template"]["spec"]
    node = pod["securityContext"] if level == "pod" else worker_container(resources)["securityContext"]
    for key in path:
        node = node[key]
    assert node == expected


def test_the_only_writable_path_is_an_empty_dir_on_tmp() -> None:
    """A read-only root still needs /tmp; it is an emptyDir, and the other mounts are read-only."""
    resources = base_resources()
    volumes = {v["name"]: v for v in find(resources, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in worker_container(resources)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")


def test_probes_use_the_workers_own_health_endpoints() -> None:
    """Startup and liveness ask /livez, readiness /healthz, on CIO_METRICS_PORT: no Celery client per probe."""
    resources = base_resources()
    container = worker_container(resources)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == int(configured_env(resources)["CIO_METRICS_PORT"])
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert all("exec" not in container[probe] for probe in ("livenessProbe", "startupProbe", "readinessProbe"))


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_keda_owns_the_replica_count(build: str) -> None:
    """No build sets replicas on the Deployment: every apply would reset the count KEDA chose."""
    assert "replicas" not in find(BUILDS[build], "Deployment")["spec"]
    assert find(BUILDS[build], "ScaledObject")["spec"]["minReplicaCount"] >= 2


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_pods_are_scraped_once_by_the_service_monitor(build: str) -> None:
    """A ServiceMonitor and prometheus.io annotations together would scrape every pod twice."""
    template = find(BUILDS[build], "Deployment")["spec"]["template"]
    annotations = template["metadata"].get("annotations", {})
    assert not any(key.startswith("prometheus.io/") for key in annotations)
    assert find(BUILDS[build], "ServiceMonitor")


def test_the_keda_redis_example_reads_a_key_the_example_secret_has() -> None:
    """The TriggerAuthentication's secret key exists, and the list length per pod is the pod's concurrency."""
    documents = load_documents(DEPLOY / "examples" / "scaledobject-redis-list.yaml")
    auth = next(doc for doc in documents if doc["kind"] == "TriggerAuthentication")
    scaled = next(doc for doc in documents if doc["kind"] == "ScaledObject")
    secrets = {doc["metadata"]["name"]: doc for doc in load_documents(DEPLOY / "base" / "secret.example.yaml")}
    for target in auth["spec"]["secretTargetRef"]:
        assert target["key"] in secrets[target["name"]]["stringData"]
    args = worker_container(base_resources())["args"]
    concurrency = args[args.index("--concurrency") + 1]
    assert scaled["spec"]["triggers"][0]["metadata"]["listLength"] == concurrency


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_worker_has_requests_and_limits(build: str) -> None:
    """The scheduler and KEDA need requests; memory is bounded."""
    resources = worker_container(BUILDS[build])["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_the_worker_consumes_the_queue_of_its_key_prefix() -> None:
    """``--queues`` is ``{CIO_KEY_PREFIX}.drain``."""
    resources = base_resources()
    args = worker_container(resources)["args"]
    assert args[args.index("--queues") + 1] == f"{configured_env(resources)['CIO_KEY_PREFIX']}.drain"


@pytest.mark.parametrize("kind", ["Service", "PodDisruptionBudget", "ServiceMonitor"])
def test_selectors_select_the_worker_pods(kind: str) -> None:
    """Service, PDB and ServiceMonitor select exactly the pods the Deployment creates."""
    resources = base_resources()
    pod_labels = find(resources, "Deployment")["spec"]["template"]["metadata"]["labels"]
    spec = find(resources, kind)["spec"]
    selector = spec["selector"].get("matchLabels", spec["selector"])
    assert selector
    assert selector.items() <= pod_labels.items()


def test_the_service_monitor_scrapes_a_port_the_service_has() -> None:
    """The ServiceMonitor's endpoint names a port of the Service, which targets the container's port."""
    resources = base_resources()
    service_ports = {p["name"]: p for p in find(resources, "Service")["spec"]["ports"]}
    (endpoint,) = find(resources, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert service_ports[endpoint["port"]]["targetPort"] in {p["name"] for p in worker_container(resources)["ports"]}


#: Fields of a pod spec that name a ConfigMap or a Secret, with the key holding the name.
_REFERENCES = {
    "configMapRef": ("ConfigMap", "name"),
    "configMapKeyRef": ("ConfigMap", "name"),
    "configMap": ("ConfigMap", "name"),
    "secretRef": ("Secret", "name"),
    "secretKeyRef": ("Secret", "name"),
    "secret": ("Secret", "secretName"),
}


def references(node: Any) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod spec refers to."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _REFERENCES and isinstance(value, dict):
                kind, name_key = _REFERENCES[key]
                found.add((kind, value[name_key]))
            found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_referenced_config_maps_and_secrets_exist_or_are_documented(build: str) -> None:
    """Every ConfigMap the pod uses is in the build; every Secret is one of the base's examples."""
    resources = BUILDS[build]
    used = references(find(resources, "Deployment")["spec"]["template"]["spec"])
    config_maps = {name for kind, name in used if kind == "ConfigMap"}
    secrets = {name for kind, name in used if kind == "Secret"}
    assert config_maps == {r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"}
    assert secrets == {r["metadata"]["name"] for r in base_resources() if r["kind"] == "Secret"}


def test_the_example_secrets_hold_only_placeholders() -> None:
    """No real credential is committed: every value asks to be replaced."""
    for secret in (r for r in base_resources() if r["kind"] == "Secret"):
        assert "data" not in secret
        assert all("REPLACE_WITH" in value for value in secret["stringData"].values())


def test_the_api_keys_named_by_the_workspaces_file_are_mounted() -> None:
    """Each ``api_key_file`` is a key of the api-keys Secret under its mount path."""
    resources = base_resources()
    volumes = {v["name"]: v for v in find(resources, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in worker_container(resources)["volumeMounts"]}
    (secret_volume,) = [name for name, volume in volumes.items() if "secret" in volume]
    secret = find(resources, "Secret", volumes[secret_volume]["secret"]["secretName"])
    expected = {f"{mounts[secret_volume]}/{key}" for key in secret["stringData"]}
    for build in BUILDS.values():
        toml_text = find(build, "ConfigMap", "cio-fleet-workspaces")["data"]["workspaces.toml"]
        workspaces = tomllib.loads(toml_text)["workspaces"]
        assert {table["api_key_file"] for table in workspaces.values()} <= expected


def test_the_workspaces_file_is_mounted_where_cio_workspaces_file_points() -> None:
    """CIO_WORKSPACES_FILE names the ConfigMap's workspaces.toml inside the mount."""
    resources = base_resources()
    volumes = {v["name"]: v for v in find(resources, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in worker_container(resources)["volumeMounts"]}
    (volume,) = [name for name, v in volumes.items() if "configMap" in v]
    config_map = find(resources, "ConfigMap", volumes[volume]["configMap"]["name"])
    assert configured_env(resources)["CIO_WORKSPACES_FILE"] in {f"{mounts[volume]}/{key}" for key in config_map["data"]}


@pytest.mark.parametrize("overlay", [OVERLAY, RABBITMQ_OVERLAY], ids=lambda path: path.name)
def test_every_overlay_patch_targets_a_base_resource(overlay: Path) -> None:
    """A patch of a renamed or removed base object would be an error in kustomize: catch it here."""
    config = kustomization(overlay)
    patch_files = {entry["path"] for entry in config["patches"]}
    on_disk = {path.name for path in overlay.glob("*.yaml")} - {"kustomization.yaml"}
    assert patch_files == on_disk
    base = {identity(resource) for resource in base_resources()}
    for name in patch_files:
        for patch in load_documents(overlay / name):
            assert identity(patch) in base, name


def test_the_overlay_build_catches_a_patch_of_a_missing_resource(tmp_path: Path) -> None:
    """The builder refuses a patch whose target the base lacks, as kustomize does."""
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [../../base]\nnamespace: x\npatches:\n  - path: p.yaml\n", encoding="utf-8"
    )
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nope\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="nope"):
        build_overlay(tmp_path)


def test_the_production_overlay_removes_the_example_secrets_and_pins_the_image() -> None:
    """Production never applies placeholder Secrets, and runs a registry image with a fixed tag."""
    production = BUILDS["production"]
    assert [r for r in production if r["kind"] == "Secret"] == []
    image = worker_container(production)["image"]
    assert image.startswith(kustomization(OVERLAY)["images"][0]["newName"])
    assert not image.endswith(":latest")
    assert {r["metadata"]["namespace"] for r in production} == {"cio-fleet"}


def test_the_production_overlay_patches_replicas_resources_and_region() -> None:
    """The overlay changes what it says it changes, and keeps the base's hardening."""
    base, production = BUILDS["base"], BUILDS["production"]
    minimum = find(production, "ScaledObject")["spec"]["minReplicaCount"]
    assert minimum > find(base, "ScaledObject")["spec"]["minReplicaCount"]
    assert worker_container(production)["resources"] != worker_container(base)["resources"]
    assert worker_container(production)["securityContext"] == worker_container(base)["securityContext"]
    toml_text = find(production, "ConfigMap", "cio-fleet-workspaces")["data"]["workspaces.toml"]
    assert {table["region"] for table in tomllib.loads(toml_text)["workspaces"].values()} == {"eu"}


def scaled_objects() -> list[tuple[str, Resource]]:
    """Every KEDA ScaledObject: the base's and the alternative example's."""
    examples = [
        (path.name, doc) for path in sorted((DEPLOY / "examples").glob("*.yaml")) for doc in load_documents(path)
    ]
    found = [("base", find(base_resources(), "ScaledObject")), *examples]
    return [(source, doc) for source, doc in found if doc["kind"] == "ScaledObject"]


@pytest.mark.parametrize(("source", "scaled"), scaled_objects(), ids=[s for s, _ in scaled_objects()])
def test_keda_scaled_objects_are_well_formed(source: str, scaled: Resource) -> None:
    """apiVersion, a target that exists, sane bounds (at least one worker runs the sweeper), typed triggers."""
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    deployment = find(base_resources(), "Deployment")
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"]
    for trigger in spec["triggers"]:
        assert trigger["type"] in {"prometheus", "redis", "redis-streams", "rabbitmq"}
        assert all(isinstance(value, str) for value in trigger["metadata"].values()), "KEDA metadata values are strings"


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_keda_scales_on_the_backlog_through_prometheus(build: str) -> None:
    """The preferred trigger reads the backlog gauge; the overlay's bounds still hold."""
    scaled = find(BUILDS[build], "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "cio_fleet_backlog_events" in trigger["metadata"]["query"]
    assert metric_names(trigger["metadata"]["query"]) <= KNOWN_METRICS
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_the_redis_list_alternative_watches_the_drain_queue() -> None:
    """The non-Prometheus example scales on the Celery queue list ``{prefix}.drain``."""
    (scaled,) = [doc for source, doc in scaled_objects() if source == "scaledobject-redis-list.yaml"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["listName"] == f"{configured_env(base_resources())['CIO_KEY_PREFIX']}.drain"


def test_the_rabbitmq_overlay_reads_the_broker_url_from_the_secret_and_its_scaler_the_drain_queue() -> None:
    """``CIO_BROKER_URL`` comes from a Secret (it holds a password); KEDA's RabbitMQ example reads the same queue."""
    env = {item["name"]: item for item in worker_container(BUILDS["rabbitmq"])["env"]}
    assert env["CIO_BROKER_URL"]["valueFrom"]["secretKeyRef"] == {"name": "cio-fleet-secrets", "key": "broker-url"}
    assert "CIO_BROKER_URL" not in {item["name"] for item in worker_container(BUILDS["base"])["env"]}
    (scaled,) = [doc for source, doc in scaled_objects() if source == "scaledobject-rabbitmq.yaml"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == f"{configured_env(base_resources())['CIO_KEY_PREFIX']}.drain"


_PROMQL_WORDS = {"sum", "max", "min", "by", "on", "unless", "or", "and", "rate", "increase", "absent", "vector"}
_PROMQL_WORDS |= {"histogram_quantile", "le", "job", "instance", "status", "workspace", "reason", "outcome"}


def metric_names(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that are neither functions, keywords nor label names."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges)) - _PROMQL_WORDS


def alert_rules() -> list[Resource]:
    """The rules of the base's PrometheusRule."""
    rule = find(base_resources(), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_rules_are_complete_and_use_exported_metrics(rule: Resource) -> None:
    """Each alert has an expression on real metric names, a duration, a severity and a summary."""
    assert metric_names(rule["expr"]) <= KNOWN_METRICS
    assert rule["expr"].count("(") == rule["expr"].count(")")
    assert parse_duration(rule["for"]) > 0
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]


@pytest.mark.parametrize(
    "subject",
    [
        "cio_fleet_oldest_event_age_seconds",
        "cio_fleet_events_dead_lettered_total",
        "cio_fleet_workspace_paused",
        'status=~"5..',
        "cio_fleet_dead_letter_alarm",
        "cio_fleet_stranded_events",
    ],
)
def test_the_alerts_cover_what_on_call_needs(subject: str) -> None:
    """Backlog age, dead-letter growth, paused workspaces, 5xx rate and the dead-letter alarm are alerted on."""
    assert any(subject in rule["expr"] for rule in alert_rules())


def test_the_workers_export_every_metric_ops_rely_on() -> None:
    """Renaming a metric in worker/ops/metrics.py breaks this test, not the alerts in production."""
    assert sorted(OPS_METRICS - KNOWN_METRICS) == []


def test_metric_name_extraction_sees_a_misspelt_metric() -> None:
    """The metric-name check can fail."""
    assert metric_names('sum by (workspace) (rate(cio_fleet_request_total{status=~"5.."}[5m]))') - KNOWN_METRICS == {
        "cio_fleet_request_total"
    }


def test_compose_prometheus_loads_the_same_alerts_as_kubernetes() -> None:
    """deploy/compose/alerts.yml and the PrometheusRule never drift apart."""
    (compose_rules,) = load_documents(DEPLOY / "compose" / "alerts.yml")
    assert compose_rules == find(base_resources(), "PrometheusRule")["spec"]
