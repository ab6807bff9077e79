"""docker-compose.yml: valid Compose Specification, and right for a scalable, durable worker fleet.

Docker is not available where the tests run, so the file is checked offline: against the vendored Compose
Specification JSON schema (``tests/support/schemas/``) after variable interpolation, then for the fleet's own
rules (scalable worker, stop grace above the shutdown grace, durable Redis, profiles, mounted files).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from worker.settings import Settings

#: The repository root.
REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SCHEMA = REPO / "tests" / "support" / "schemas" / "compose-spec.json"

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_]\w*)(?::?-(?P<default>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable interpolation: ``${NAME:-default}``, ``${NAME}``, ``$NAME`` and ``$$``."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        return env.get(name) or match.group("default") or ""

    return _INTERPOLATION.sub(replace, text)


def interpolated_names(text: str) -> set[str]:
    """The variable names a compose file interpolates."""
    return {m.group("braced") or m.group("bare") for m in _INTERPOLATION.finditer(text) if m.group(0) != "$$"}


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as Compose sees it with an empty environment (every default applied)."""
    document = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(encoding="utf-8")))
    assert isinstance(document, dict)
    return document


def parse_duration(value: str) -> float:
    """Seconds in a Compose duration such as ``30s``, ``1m30s`` or ``1500ms``."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise ValueError(f"not a compose duration: {value!r}")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as a dict, whether written as a mapping or a list."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of the Compose Specification, one line each."""
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    # The vendored copy declares draft 2019-09 under a URL jsonschema does not know: name the draft here.
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def worker(compose: dict[str, Any]) -> dict[str, Any]:
    service = compose["services"]["worker"]
    assert isinstance(service, dict)
    return service


def test_the_compose_file_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    """The vendored schema finds nothing wrong."""
    assert schema_errors(compose) == []


@pytest.mark.parametrize(
    ("path", "bad_value"),
    [
        (("services", "worker", "stop_grace_perod"), "30s"),
        (("services", "redis", "healthcheck", "retries"), "ten"),
        (("services", "worker", "depends_on", "redis", "condition"), "service_ready"),
        (("services", "redis", "restart"), 3),
    ],
)
def test_the_schema_check_catches_a_broken_compose_file(
    compose: dict[str, Any], path: tuple[str, ...], bad_value: object
) -> None:
    """A typo or a wrong type makes the schema check fail: the check above can fail."""
    broken = json.loads(json.dumps(compose))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad_value
    assert schema_errors(broken) != []


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": "y"}, "y"),
        ("${A-x}", {}, "x"),
        ("$A/${B}", {"A": "1", "B": "2"}, "1/2"),
        ("celery@$$HOSTNAME", {"HOSTNAME": "h"}, "celery@$HOSTNAME"),
    ],
)
def test_interpolation_follows_compose_rules(text: str, env: dict[str, str], expected: str) -> None:
    """The helper interpolates as Compose does, so the validated document is the one Compose runs."""
    assert interpolate(text, env) == expected


@pytest.mark.parametrize(
    ("value", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("1500ms", 1.5), ("1h", 3600.0), ("2m", 120.0)]
)
def test_compose_durations_are_read_in_seconds(value: str, seconds: float) -> None:
    """Durations parse like Compose's."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["30", "thirty", "30 s", "s"])
def test_a_malformed_duration_is_refused(value: str) -> None:
    """A duration Compose would refuse is refused here too."""
    with pytest.raises(ValueError, match="not a compose duration"):
        parse_duration(value)


@pytest.mark.parametrize("key", ["container_name", "ports", "hostname", "scale", "deploy"])
def test_the_worker_can_be_scaled_with_compose_up_scale(worker: dict[str, Any], key: str) -> None:
    """Fixed names, host ports or replica counts would break ``docker compose up --scale worker=N``."""
    assert key not in worker


def test_the_worker_stops_gracefully_before_compose_kills_it(worker: dict[str, Any]) -> None:
    """SIGKILL comes at least 5 s after the worker's own shutdown grace has run out."""
    env = service_environment(worker)
    shutdown_grace = float(env.get("CIO_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert parse_duration(worker["stop_grace_period"]) >= shutdown_grace + 5


def test_the_worker_starts_after_redis_is_healthy(worker: dict[str, Any]) -> None:
    """Workers wait for Redis to answer, not only for its container to exist."""
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_worker_healthcheck_asks_its_own_health_endpoint(worker: dict[str, Any]) -> None:
    """A worker is healthy when its /healthz on the metrics port says so (no Celery broadcast per check)."""
    test = " ".join(worker["healthcheck"]["test"])
    port = worker["environment"].get("CIO_METRICS_PORT", "9808")
    assert f"http://127.0.0.1:{port}/healthz" in test
    assert "inspect ping" not in test


def test_redis_is_published_away_from_the_local_6379(compose: dict[str, Any]) -> None:
    """`make demo` and `make test` may run a Redis on 6379: compose's own defaults to another host port."""
    (mapping,) = compose["services"]["redis"]["ports"]
    assert mapping.startswith("127.0.0.1:") and ":-6379}" not in mapping


def test_the_worker_runs_with_a_read_only_root(worker: dict[str, Any]) -> None:
    """The image writes nothing outside /tmp, which is a tmpfs."""
    assert worker["read_only"] is True
    assert "/tmp" in worker["tmpfs"]


def test_the_worker_consumes_the_queue_of_its_key_prefix(worker: dict[str, Any]) -> None:
    """``--queues`` is ``{CIO_KEY_PREFIX}.drain``, the queue producers kick."""
    command = worker["command"]
    prefix = service_environment(worker).get("CIO_KEY_PREFIX", Settings().key_prefix)
    assert command[command.index("--queues") + 1] == f"{prefix}.drain"


@pytest.mark.parametrize(
    ("flag", "value"), [("--appendonly", "yes"), ("--appendfsync", "everysec"), ("--maxmemory-policy", "noeviction")]
)
def test_redis_is_durable_and_never_evicts(compose: dict[str, Any], flag: str, value: str) -> None:
    """AOF with a once-a-second fsync, and no eviction (an evicted stream is lost events)."""
    command = compose["services"]["redis"]["command"]
    assert command[command.index(flag) + 1] == value


def test_redis_keeps_its_data_in_a_named_volume_and_has_a_healthcheck(compose: dict[str, Any]) -> None:
    """The AOF lives in a declared volume at /data, and compose knows when Redis answers."""
    redis = compose["services"]["redis"]
    volume, target = redis["volumes"][0].split(":")[:2]
    assert target == "/data"
    assert volume in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


@pytest.mark.parametrize(
    ("service", "profiles"),
    [
        ("redis", None),
        ("worker", None),
        ("fake-customerio", None),
        ("flower", ["monitoring"]),
        ("prometheus", ["monitoring"]),
        ("rabbitmq", ["rabbitmq"]),
        *((f"redis-node-{n}", ["cluster"]) for n in range(1, 7)),
        ("redis-cluster-init", ["cluster"]),
    ],
)
def test_monitoring_services_start_only_with_their_profile(
    compose: dict[str, Any], service: str, profiles: list[str] | None
) -> None:
    """``docker compose up`` starts the fleet; ``--profile monitoring`` adds flower and prometheus."""
    assert compose["services"][service].get("profiles") == profiles


def test_every_bind_mounted_file_exists(compose: dict[str, Any]) -> None:
    """Relative bind mounts, configs, secrets and the Dockerfile point at files of the repository."""
    paths = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith(".")
    ]
    paths += [entry["file"] for group in ("configs", "secrets") for entry in compose.get(group, {}).values()]
    paths += [
        str(Path(service["build"]["context"]) / service["build"]["dockerfile"])
        for service in compose["services"].values()
        if "build" in service
    ]
    missing = [path for path in paths if not (REPO / path).is_file()]
    assert paths
    assert missing == []


def test_the_workspaces_file_points_at_the_stand_in_and_at_mounted_secrets(
    compose: dict[str, Any], worker: dict[str, Any]
) -> None:
    """Locally every workspace delivers to fake-customerio, with an API key from a secret the worker mounts."""
    mounted = {entry["target"]: entry["source"] for entry in worker["configs"]}
    workspaces_file = service_environment(worker)["CIO_WORKSPACES_FILE"]
    source = compose["configs"][mounted[workspaces_file]]["file"]
    workspaces = tomllib.loads((REPO / source).read_text(encoding="utf-8"))["workspaces"]
    port = compose["services"]["fake-customerio"]["command"][-1]
    assert workspaces
    for table in workspaces.values():
        assert table["track_url"] == f"http://fake-customerio:{port}"
        assert table["api_key_file"] in {f"/run/secrets/{name}" for name in worker["secrets"]}


def test_prometheus_scrapes_every_worker_container(compose: dict[str, Any], worker: dict[str, Any]) -> None:
    """DNS service discovery of the ``worker`` service finds each scaled container on the metrics port."""
    config = yaml.safe_load((REPO / "deploy" / "compose" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["worker"]
    assert discovery["port"] == int(service_environment(worker)["CIO_METRICS_PORT"])
    assert str(discovery["port"]) in worker["expose"]
    mounted = {volume.split(":")[1] for volume in compose["services"]["prometheus"]["volumes"]}
    assert set(config["rule_files"]) <= mounted


def test_the_workers_broker_is_the_events_redis_unless_rabbitmq_is_chosen(worker: dict[str, Any]) -> None:
    """Without ``CIO_BROKER_URL`` the broker is the events Redis; with the profile's URL, the compose RabbitMQ."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    env = service_environment(worker)
    assert env["CIO_BROKER_URL"] == env["CIO_REDIS_URL"]
    chosen = "amqp://cio-fleet:cio-fleet@rabbitmq:5672//"
    rabbitmq_env = yaml.safe_load(interpolate(text, {"CIO_BROKER_URL": chosen}))["services"]["worker"]
    assert service_environment(rabbitmq_env)["CIO_BROKER_URL"] == chosen
    assert chosen in text  # the command shown at the top of the file


#: The profile cluster's nodes (3 masters + 3 replicas once created).
CLUSTER_NODES = [f"redis-node-{n}" for n in range(1, 7)]


def flag_value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


@pytest.mark.parametrize("node", CLUSTER_NODES)
def test_a_cluster_node_is_cluster_enabled_durable_and_announces_its_service_name(
    compose: dict[str, Any], node: str
) -> None:
    """Every node of the profile cluster: cluster mode, AOF, no eviction, its data (and nodes.conf) in a volume,
    a healthcheck, and its service name in MOVED replies (container IPs change when a container is re-created)."""
    service = compose["services"][node]
    command = service["command"]
    assert command[0] == "redis-server"
    assert flag_value(command, "--cluster-enabled") == "yes"
    assert flag_value(command, "--appendonly") == "yes"
    assert flag_value(command, "--maxmemory-policy") == "noeviction"
    assert flag_value(command, "--cluster-announce-hostname") == node == service["hostname"]
    assert flag_value(command, "--cluster-preferred-endpoint-type") == "hostname"
    volume, target = service["volumes"][0].split(":")[:2]
    assert target == "/data" and volume in compose["volumes"]
    assert service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in service  # the cluster is reached inside the compose network only


def test_the_cluster_is_created_once_every_node_answers(compose: dict[str, Any]) -> None:
    """The one-shot init waits for the six nodes to be healthy, then creates 3 masters with 1 replica each over
    all six, unless they already form a cluster (a second ``up`` must not fail)."""
    init = compose["services"]["redis-cluster-init"]
    assert init["depends_on"] == {node: {"condition": "service_healthy"} for node in CLUSTER_NODES}
    (script,) = init["command"]
    assert "cluster_state:ok ||" in script
    assert "redis-cli --cluster create" in script and "--cluster-replicas 1 --cluster-yes" in script
    assert "for n in 1 2 3 4 5 6;" in script and "redis-node-$n" in script
    assert init["restart"] == "no"


def test_with_the_cluster_profile_the_workers_stream_on_the_cluster_and_queue_on_the_standalone_redis() -> None:
    """``CIO_REDIS_URL=redis+cluster://redis-node-1:6379`` (the command at the top) moves the events of every
    service onto the cluster; the broker stays the standalone redis (a cluster cannot be Celery's broker)."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    chosen = "redis+cluster://redis-node-1:6379"
    assert f"CIO_REDIS_URL={chosen} docker compose --profile cluster up" in text
    document = yaml.safe_load(interpolate(text, {"CIO_REDIS_URL": chosen}))
    for name in ("worker", "intake"):
        env = service_environment(document["services"][name])
        assert env["CIO_REDIS_URL"] == chosen
        assert env["CIO_BROKER_URL"] == "redis://redis:6379/0"
        assert document["services"][name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis-node-1" in document["services"]
