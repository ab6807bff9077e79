"""What a PromQL expression reads: the metrics it selects and the labels it matches or groups by.

Parsed with ``promql-parser`` (Python bindings of the Rust parser GreptimeDB maintains), not with regular
expressions: an expression that does not parse fails here first. Grafana's variables are replaced by a
value of the right kind before parsing (``$workspace`` by a regex, ``$__rate_interval`` by a duration).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "cio-fleet.json"
ALERTS = REPO / "deploy" / "compose" / "alerts.yml"

#: Labels Prometheus attaches to every series of a target, which no /metrics page shows.
TARGET_LABELS = frozenset({"job", "instance"})
#: Series Prometheus makes itself for each target.
TARGET_SERIES = frozenset({"up"})
#: Grafana's variables, with a stand-in of the right kind.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$workspace": ".+"}
_LABEL_VALUES = re.compile(r"^label_values\((?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*(?P<label>[a-zA-Z_]\w*)\)$")


@dataclass(frozen=True)
class Use:
    """One metric an expression reads, with the labels it needs that metric to carry."""

    metric: str
    labels: frozenset[str]


def substitute(expr: str) -> str:
    """``expr`` with Grafana's variables replaced by stand-ins PromQL accepts."""
    for name, stand_in in sorted(_GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, stand_in)
    return expr


def parse(expr: str) -> Any:
    """The AST of a PromQL expression (Grafana variables substituted); raises ``ValueError`` when invalid."""
    return promql_parser.parse(substitute(expr))


def _selectors(node: Any) -> list[Any]:
    found: list[Any] = []

    def visit(child: Any) -> None:
        if isinstance(child, promql_parser.VectorSelector):
            found.append(child)

    promql_parser.walk(node, visit)
    return found


def _grouping(node: Any) -> tuple[list[str], list[Any]]:
    """Labels an aggregation or a vector matching names, and the subtrees whose metrics must carry them."""
    if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
        return list(node.modifier.labels), [node.expr]
    if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None and node.modifier.matching:
        return list(node.modifier.matching.labels), [node.lhs, node.rhs]
    return [], []


def uses(expr: str) -> list[Use]:
    """Every (metric, labels) an expression needs: matcher labels of each selector, and grouping labels (``by``,
    ``on``, ``ignoring``, ``without``) for every metric under the aggregation or on each side of the matching."""
    tree = parse(expr)
    needed: dict[str, set[str]] = {}
    for selector in _selectors(tree):
        needed.setdefault(selector.name, set()).update(m.name for m in selector.matchers.matchers)

    def visit(node: Any) -> None:
        labels, subtrees = _grouping(node)
        for subtree in subtrees:
            for selector in _selectors(subtree):
                needed[selector.name].update(labels)

    promql_parser.walk(tree, visit)
    return [Use(metric, frozenset(labels)) for metric, labels in sorted(needed.items())]


def load_dashboard() -> dict[str, Any]:
    """deploy/grafana/cio-fleet.json."""
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target."""
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]


def variable_uses(dashboard: dict[str, Any]) -> list[Use]:
    """What the template variables' ``label_values(metric, label)`` queries read."""
    found = []
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: not a label_values(metric, label) query: {query!r}"
        found.append(Use(match["metric"], frozenset({match["label"]})))
    return found


def alert_exprs() -> list[str]:
    """The expressions of the compose alert rules (the same as the Kubernetes PrometheusRule's)."""
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def missing(used: list[Use], exported: dict[str, set[str]]) -> list[str]:
    """What ``used`` reads that ``exported`` (series name → its labels) lacks, one line each."""
    problems = []
    for use in used:
        if use.metric in TARGET_SERIES:
            continue
        if use.metric not in exported:
            problems.append(f"metric {use.metric} is not exported")
            continue
        absent = use.labels - exported[use.metric] - TARGET_LABELS - {"__name__"}
        problems += [f"label {label} is not on {use.metric}" for label in sorted(absent)]
    return problems
