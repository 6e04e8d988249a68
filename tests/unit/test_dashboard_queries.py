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


def test_the_5xx_share_is_0_without_errors_and_the_share_with_them(tmp_path):
    """Run by Debian's promtool: the panel's query returned no series while every request succeeded
    (seen during the e2e loop); it says 0 then, and the share once a 5xx comes."""
    import shutil
    import subprocess

    import yaml

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make system-deps` installs Debian's prometheus package"
    panel = next(q for q in dashboard.queries(BOARD, {**VALUES, "__rate_interval": "2m"})
                 if q.where.startswith("panel 'Server errors"))
    series = 'mlops_serving_requests_total{{namespace="retail",model="propensity",version="1",endpoint="predict",code="{}"}}'
    (tmp_path / "empty.yml").write_text("groups: []\n")
    tests = {"rule_files": ["empty.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": series.format("200"), "values": "0+60x10"},
                         {"series": series.format("503"), "values": "_x6 0+60x4"}],
        "promql_expr_test": [
            {"expr": panel.promql, "eval_time": "4m",  # only 200s so far: 0, not nothing
             "exp_samples": [{"labels": '{namespace="retail",model="propensity",version="1"}', "value": 0}]},
            {"expr": panel.promql, "eval_time": "10m",  # from 6m on, one request in two failed
             "exp_samples": [{"labels": '{namespace="retail",model="propensity",version="1"}', "value": 0.5}]},
        ]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests))
    r = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
