"""The Grafana dashboard and the docs name exactly the metrics raylane exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raylane.cluster.metrics import FAMILIES, PRIORITY_BINS, Family, priority_label

ROOT = Path(__file__).parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
OPERATING = (ROOT / "docs" / "operating.md").read_text()
NAME = re.compile(r"\braylane_[a-z_]+")
EXPORTED = {series for family in FAMILIES for series in family.series()}


def queries(node: object) -> list[str]:
    """Every PromQL expression and variable query in a dashboard (nested panels too)."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "definition") and isinstance(v, str)]
        return found + [q for v in node.values() for q in queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in queries(v)]
    return []


USED = {name for query in queries(DASHBOARD) for name in NAME.findall(query)}


def test_the_dashboard_uses_only_metrics_raylane_exports() -> None:
    assert USED, "the dashboard has no raylane queries"
    assert USED <= EXPORTED, f"not exported: {sorted(USED - EXPORTED)}"


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_every_exported_metric_has_a_panel_and_a_line_in_the_docs(family: Family) -> None:
    assert set(family.series()) & USED, f"{family.name} is on no panel"
    assert f"`{family.name}`" in OPERATING


def test_every_panel_reads_the_chosen_data_source() -> None:
    panels = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


@pytest.mark.parametrize("priority", range(-15, 16))
def test_queue_depth_and_latency_label_a_priority_alike(priority: int) -> None:
    """The depth gauge counts queue scores per bin; the histograms label jobs directly."""
    bins = [label for label, low, high in PRIORITY_BINS
            if _above(priority, low) and _below(priority, high)]
    assert bins == [priority_label(priority)]


def _above(value: int, bound: float | str) -> bool:
    return bound == "-inf" or value >= float(bound)


def _below(value: int, bound: float | str) -> bool:
    text = str(bound)
    if text == "+inf":
        return True
    return value < float(text[1:]) if text.startswith("(") else value <= float(text)
