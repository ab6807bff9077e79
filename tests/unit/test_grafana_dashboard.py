"""deploy/grafana/: the dashboard is a Grafana dashboard of the schema version it declares, its PromQL parses,
and the compose stack provisions it with the compose Prometheus as its datasource.

Grafana publishes its dashboard schema as CUE (``kinds/dashboard/dashboard_kind.cue``), not as JSON Schema, and
nothing machine-readable is available offline: ``tests/support/schemas/grafana-dashboard-36.json`` transcribes
the kind's required fields and constraints for schemaVersion 36. That the metrics and labels the queries read
are exported by a real worker is checked against a real scrape in ``tests/e2e/test_dashboard_metrics.py``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.promql import (
    DASHBOARD,
    alert_exprs,
    dashboard_exprs,
    load_dashboard,
    panels,
    parse,
    uses,
    variable_uses,
)
from tests.unit.test_compose import REPO, load_compose
from tests.unit.test_deploy_manifests import KNOWN_METRICS

SCHEMA = REPO / "tests" / "support" / "schemas" / "grafana-dashboard-36.json"
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"


def schema_errors(dashboard: dict[str, Any]) -> list[str]:
    """Every violation of the transcribed dashboard schema, one line each."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    errors = sorted(validator.iter_errors(dashboard), key=lambda error: list(error.absolute_path))
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def grafana() -> dict[str, Any]:
    service = load_compose()["services"]["grafana"]
    assert isinstance(service, dict)
    return service


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → repository path of a service's bind mounts."""
    return {volume.split(":")[1]: REPO / volume.split(":")[0] for volume in service["volumes"]}


def provisioning(kind: str) -> dict[str, Any]:
    (path,) = sorted((PROVISIONING / kind).glob("*.yml"))
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_the_dashboard_validates_against_the_schema_version_it_declares(dashboard: dict[str, Any]) -> None:
    """schemaVersion 36, and nothing the transcribed kind requires is missing or malformed."""
    assert dashboard["schemaVersion"] == json.loads(SCHEMA.read_text())["properties"]["schemaVersion"]["const"]
    assert schema_errors(dashboard) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("panels", 1, "gridPos", "w"), 25),
        (("panels", 1, "fieldConfig"), {"defaults": {}}),
        (("panels", 0, "collapsed"), None),
        (("templating", "list", 0, "type"), "dropdown"),
        (("graphTooltip",), 3),
        (("schemaVersion",), 39),
    ],
)
def test_the_schema_check_catches_a_broken_dashboard(dashboard: dict[str, Any], path: tuple, value: object) -> None:
    """A wrong type, a missing required field or an out-of-range position fails: the check above can fail."""
    broken = copy.deepcopy(dashboard)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    assert schema_errors(broken) != []


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    """Grafana places panels by gridPos: two panels on the same cell would hide one another."""
    all_panels = list(panels(dashboard))
    assert len({panel["id"] for panel in all_panels}) == len(all_panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    assert max(x for x, _ in cells) < 24


@pytest.mark.parametrize(
    "row",
    [
        "Intake",
        "Delivery and budget",
        "Latency",
        "Backlog",
        "Retries, pauses, credentials",
        "Dead letters",
        "Stranded events and timestamps",
        "Worker health",
    ],
)
def test_the_dashboard_has_the_rows_on_call_reads(dashboard: dict[str, Any], row: str) -> None:
    """One row per question the issue lists, each followed by at least one panel."""
    titles = [(panel["type"], panel.get("title")) for panel in dashboard["panels"]]
    at = titles.index(("row", row))
    assert at + 1 < len(titles) and titles[at + 1][0] != "row"


def test_every_target_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    """Each query and the variable use the datasource uid the compose provisioning declares."""
    (datasource,) = provisioning("datasources")["datasources"]
    targets = [target for panel in panels(dashboard) for target in panel.get("targets", [])]
    refs = [target["datasource"] for target in targets] + [v["datasource"] for v in dashboard["templating"]["list"]]
    assert targets
    assert {(ref["type"], ref["uid"]) for ref in refs} == {(datasource["type"], datasource["uid"])}


def test_the_workspace_variable_lists_the_configured_workspaces(dashboard: dict[str, Any]) -> None:
    """``$workspace`` comes from the label values of a per-workspace series, and queries filter on it."""
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["multi"], variable["includeAll"]) == (
        "workspace",
        "query",
        True,
        True,
    )
    assert [use.labels for use in variable_uses(dashboard)] == [frozenset({"workspace"})]
    filtered = [expr for expr in dashboard_exprs(dashboard) if 'workspace=~"$workspace"' in expr]
    assert len(filtered) > len(dashboard_exprs(dashboard)) // 2


@pytest.mark.parametrize("expr", [*dashboard_exprs(load_dashboard()), *alert_exprs()])
def test_every_expression_parses_and_names_exported_metrics(expr: str) -> None:
    """promql-parser accepts it, and every metric it reads is one a worker defines (checked offline here)."""
    assert {use.metric for use in uses(expr)} <= KNOWN_METRICS


@pytest.mark.parametrize(
    "expr",
    [
        'sum by (workspace) (rate(cio_fleet_requests_total{status=~"5.."}[5m])',
        "max by (workspace) (cio_fleet_backlog_events) >",
        "rate(cio_fleet_requests_total[five minutes])",
    ],
)
def test_the_parser_refuses_broken_promql(expr: str) -> None:
    """The parse check can fail."""
    with pytest.raises(ValueError):  # noqa: PT011 - the parser raises a bare ValueError with its message
        parse(expr)


def test_grafana_starts_with_the_monitoring_profile_after_prometheus(grafana: dict[str, Any]) -> None:
    """``--profile monitoring`` adds Grafana next to Prometheus, published on 127.0.0.1 only."""
    assert grafana["profiles"] == ["monitoring"]
    assert "prometheus" in grafana["depends_on"]
    assert all(port.startswith("127.0.0.1:") for port in grafana["ports"])


def test_the_provisioning_files_are_mounted_where_grafana_reads_them(grafana: dict[str, Any]) -> None:
    """Both provisioning files exist and are mounted under /etc/grafana/provisioning/{datasources,dashboards}."""
    mounted = mounts(grafana)
    for kind in ("datasources", "dashboards"):
        targets = [target for target in mounted if PurePosixPath(target).parent.name == kind]
        assert targets, f"no {kind} provisioning mounted"
        for target in targets:
            assert target.startswith("/etc/grafana/provisioning/")
            assert mounted[target].is_file(), mounted[target]


def test_the_dashboard_provider_path_holds_the_mounted_dashboard(grafana: dict[str, Any]) -> None:
    """The provider's ``options.path`` is the directory the dashboard file is mounted into."""
    (provider,) = provisioning("dashboards")["providers"]
    mounted = mounts(grafana)
    dashboards = [target for target, source in mounted.items() if source == DASHBOARD]
    assert [str(PurePosixPath(target).parent) for target in dashboards] == [provider["options"]["path"]]
    assert provider["type"] == "file"


def test_the_datasource_is_the_compose_prometheus() -> None:
    """The datasource URL names the compose service and the port Prometheus listens on."""
    (datasource,) = provisioning("datasources")["datasources"]
    prometheus = load_compose()["services"]["prometheus"]
    container_port = prometheus["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{container_port}"
    assert datasource["type"] == "prometheus"


def test_docs_say_what_to_do_about_every_panel(dashboard: dict[str, Any]) -> None:
    """docs/operations.md#dashboard has a row for each panel, under its row's name."""
    docs = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Dashboard") :]
    section = section[: section.index("\n## ", 1)]
    row, undocumented = "", []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        elif f"| {row} | {panel['title']} |" not in section:
            undocumented.append(f"{row} / {panel['title']}")
    assert undocumented == []
