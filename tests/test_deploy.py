"""deploy/: the Grafana dashboard and the Prometheus alerts use only metrics the service exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swapwatch.server.metrics import ServiceMetrics

DEPLOY = Path(__file__).parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "swapwatch-dashboard.json"
METRIC = re.compile(r"swapwatch_[a-z_]+")
# The series a family of each type exposes (prometheus_client drops "_total" from family names).
SERIES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported() -> dict[str, set[str]]:
    """Family name -> the series names it exposes."""
    families = ServiceMetrics().registry.collect()
    return {f.name: {f.name + suffix for suffix in SERIES[f.type]} for f in families}


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]


@pytest.mark.parametrize(
    "path", [DASHBOARD, DEPLOY / "prometheus" / "alerts.yml"], ids=lambda p: p.name
)
def test_every_metric_referenced_exists(path: Path) -> None:
    known = set().union(*exported().values())
    referenced = set(METRIC.findall(path.read_text()))
    assert referenced, f"{path} names no swapwatch metric"
    assert referenced <= known, f"{path} uses unknown metrics: {sorted(referenced - known)}"


def test_the_dashboard_shows_every_metric() -> None:
    referenced = set(METRIC.findall(DASHBOARD.read_text()))
    missing = [family for family, series in exported().items() if not series & referenced]
    assert not missing, f"no dashboard panel for {missing}"
