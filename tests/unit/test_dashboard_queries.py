"""The Grafana dashboard's PromQL as Prometheus gets it (cli/dashboard.py): every panel target and
variable, its variables expanded; the e2e loop sends these to a real Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_operator.cli import dashboard

BOARD = json.loads((Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "mlops-dashboard.json")
                   .read_text())
VALUES = {"namespace": "retail", "model": "propensity", "monitor": "propensity", "datasource": "prometheus",
          "__rate_interval": "20s", "__interval": "5s"}


def test_every_panel_target_and_query_variable_is_listed_and_expanded():
    qs = dashboard.queries(BOARD, VALUES)
    targets = sum(len(p.get("targets") or []) for p in BOARD["panels"])
    variables = [v for v in BOARD["templating"]["list"] if v["type"] == "query"]
    assert len(qs) == targets + len(variables)
    assert all("$" not in q.promql for q in qs), [q.promql for q in qs if "$" in q.promql]
    assert {q.label for q in qs if q.where.startswith("variable")} == {"namespace", "model", "monitor"}
    rate = next(q for q in qs if q.where.startswith("panel 'Request rate"))
    assert 'namespace=~"retail"' in rate.promql and "[20s]" in rate.promql


def test_expand_forms_and_a_missing_value():
    assert dashboard.expand('x{a=~"$a", b=~"${b}", c=~"${c:regex}"}', {"a": "1", "b": "2", "c": "3"}) == \
        'x{a=~"1", b=~"2", c=~"3"}'
    with pytest.raises(KeyError, match=r"\$missing"):
        dashboard.expand('x{a=~"$missing"}', {})


def test_rate_interval_is_four_scrapes():
    assert dashboard.rate_interval("5s") == "20s" and dashboard.rate_interval("30s") == "120s"


def test_a_variable_that_is_not_label_values_is_an_error():
    board = {"templating": {"list": [{"name": "x", "type": "query", "query": "query_result(up)"}]}}
    with pytest.raises(ValueError, match="label_values"):
        dashboard.queries(board, {})
