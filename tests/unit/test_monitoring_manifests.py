"""manifests/monitoring: the kustomization, the PodMonitors, the PrometheusRule and the Grafana
dashboard are consistent with the metrics the operator and the model server really expose.

- every file parses and the kustomization lists every file (and builds, where kubectl is found);
- every PromQL expression (rules, dashboard panels, dashboard variables) parses with a real
  PromQL parser (promql-parser, the Rust parser of GreptimeDB), and the rules pass
  `promtool check rules` and a few `promtool test rules` cases where promtool is installed
  (Debian's `prometheus` package ships it; `make system-deps` and .ci/run install it);
- every metric name queried, and every label it is filtered on, exists in real /metrics output:
  a model server started in-process after a few requests (infer, a 4xx, feedback), and the
  operator's prometheus_client registry after one sample of each labelled metric. Only the
  names in EXTERNAL come from elsewhere, each named with its source.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import promql_parser as promql  # noqa: E402  (dev extra: parses the PromQL expressions)

REPO = Path(__file__).resolve().parents[2]
MON = REPO / "manifests" / "monitoring"
DASHBOARD = MON / "mlops-dashboard.json"

#: metrics the manifests query that neither the operator nor the model server exposes
EXTERNAL = {
    "up": "Prometheus itself, one series per scrape target",
}
#: labels Prometheus adds to every scraped series (PodMonitor target labels and relabelings)
TARGET_LABELS = {"namespace", "pod", "container", "job", "instance", "model_version", "track", "inference_service"}
#: Grafana's variables, replaced by something PromQL-valid before parsing
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


# ------------------------------------------------------------------------------ files

def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MON / "kustomization.yaml").read_text())


def rules() -> list[dict[str, Any]]:
    doc = load_all(MON / "prometheusrule.yaml")[0]
    return [r for g in doc["spec"]["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_every_file_parses_and_the_kustomization_lists_every_file():
    listed = set()
    k = kustomization()
    listed.update(k.get("resources") or [])
    for gen in k.get("configMapGenerator") or []:
        listed.update(f.split("=", 1)[-1] for f in gen.get("files") or [])
    files = {p.name for p in MON.iterdir() if p.is_file() and p.name != "kustomization.yaml"}
    assert listed == files
    for name in files:
        if name.endswith((".yaml", ".yml")):
            docs = load_all(MON / name)
            assert docs and all(d["apiVersion"] and d["kind"] and d["metadata"]["name"] for d in docs)
    assert dashboard()["panels"]


def test_monitors_select_what_the_operator_creates():
    from mlops_operator.settings import Settings
    from mlops_operator.resources.serving import canary_deployment, deployment

    server = load_all(MON / "podmonitor-model-server.yaml")[0]
    assert server["kind"] == "PodMonitor" and server["spec"]["namespaceSelector"] == {"any": True}
    ep = server["spec"]["podMetricsEndpoints"][0]
    assert ep["path"] == "/metrics"
    # the Prometheus Operator sets the target label `endpoint` to the port name; the server's own
    # `endpoint` label (infer, predict, feedback), which rules and panels filter on, must win
    assert ep["honorLabels"] is True
    # the pods of both tracks the operator builds match the selector and have the named port
    isvc = {"apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "propensity", "namespace": "retail", "uid": "u1"},
            "spec": {"model": "propensity", "alias": "production", "replicas": 2}}
    mv = {"metadata": {"name": "propensity-v1"},
          "spec": {"model": "propensity", "version": 1, "artifact": {"uri": "file:///s/", "digest": "b" * 64}}}
    for dep in (deployment(isvc, mv, Settings.from_env()), canary_deployment(isvc, mv, 1, Settings.from_env())):
        pod = dep["spec"]["template"]
        assert server["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert ep["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
        for r in ep["relabelings"]:  # __meta_kubernetes_pod_label_<sanitised name>
            label = r["sourceLabels"][0].removeprefix("__meta_kubernetes_pod_label_")
            assert label in {re.sub(r"[^a-zA-Z0-9_]", "_", k) for k in pod["metadata"]["labels"]}, label
            assert r["targetLabel"] in TARGET_LABELS
    op = load_all(MON / "podmonitor-operator.yaml")[0]
    base = [d for d in load_all(REPO / "manifests" / "base" / "operator.yaml") if d["kind"] == "Deployment"][0]
    tmpl = base["spec"]["template"]
    assert op["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in tmpl["spec"]["containers"][0]["ports"]}
    assert ports[op["spec"]["podMetricsEndpoints"][0]["port"]] == 8081
    assert op["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True  # the drift gauges' own namespace label


def _kubectl() -> str | None:
    from mlops_operator.localcluster import binaries

    found = shutil.which("kubectl")
    cached = binaries.kube_bin_dir() / "kubectl"
    return found or (str(cached) if cached.exists() else None)


def test_kustomization_builds_with_the_dashboard_configmap():
    kubectl = _kubectl()
    assert kubectl is not None, "no kubectl on PATH or in the binary cache: run `make binaries` (make test does)"
    out = subprocess.run([kubectl, "kustomize", str(MON)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["kind"] for d in docs} == {"PodMonitor", "PrometheusRule", "ConfigMap"}
    assert all(d["metadata"]["namespace"] == "mlops-system" for d in docs)
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"] == {DASHBOARD.name: DASHBOARD.read_text()}
    server = next(d for d in docs if d["metadata"]["name"] == "mlops-model-server")
    assert "release" not in server["spec"]["selector"]["matchLabels"]  # labels never leak into selectors


# ------------------------------------------------------------------------------ PromQL

def rule_exprs() -> list[tuple[str, str]]:
    return [(r.get("alert") or r.get("record"), r["expr"]) for r in rules()]


def dashboard_exprs() -> list[tuple[str, str]]:
    d = dashboard()
    out = []
    for p in d["panels"]:
        for t in p.get("targets") or []:
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, q
            out.append((f"variable {v['name']}", m.group(1)))
    return out


def grafana_to_promql(expr: str) -> str:
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    # dashboard variables appear only inside label matcher strings (regex matchers)
    return re.sub(r"\$\{?\w+\}?", "x", expr)


def selectors(expr: str) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql.VectorSelector):
            found.append(node)
        return True

    promql.walk(promql.parse(expr), visit)
    return found


def all_exprs() -> list[tuple[str, str]]:
    return rule_exprs() + [(w, grafana_to_promql(e)) for w, e in dashboard_exprs()]


@pytest.mark.parametrize("where, expr", all_exprs(), ids=[w for w, _ in all_exprs()])
def test_every_expression_parses(where, expr):
    assert selectors(expr), f"{where}: no metric selector in {expr}"


def test_dashboard_panels_and_variables():
    d = dashboard()
    titles = " | ".join(p["title"] for p in d["panels"])
    for want in ("Request rate", "latency p50 / p99", "Drift score per feature", "Drift share",
                 "Window accuracy", "Serving model versions"):
        assert want in titles, titles
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in d["templating"]["list"]}
    for _, expr in dashboard_exprs():
        for var in re.findall(r"\$\{?(\w+)\}?", expr):
            assert var in names or f"${var}" in GRAFANA_VARS, var
    latency = [t["expr"] for p in d["panels"] for t in p.get("targets") or [] if "duration_seconds_bucket" in t["expr"]]
    assert any(e.startswith("histogram_quantile(0.5,") for e in latency)
    assert any(e.startswith("histogram_quantile(0.99,") for e in latency)


def test_rules_have_the_alerts_the_issue_asks_for():
    by_name = {r["alert"]: r for r in rules()}
    assert "mlops_drift_detected" in by_name["MLOpsDataDriftDetected"]["expr"]
    assert "mlops_window_accuracy" in by_name["MLOpsAccuracyBelowThreshold"]["expr"]
    assert 'code=~"5.."' in by_name["MLOpsServingErrorRate"]["expr"]
    assert "mlops_serving_ready == 0" in by_name["MLOpsServingNotReady"]["expr"]
    assert "MLOpsTrainingFailed" in by_name and "MLOpsReconcileErrors" in by_name
    for r in by_name.values():
        assert r["labels"]["severity"] in {"warning", "critical"} and r["annotations"]["summary"]


def _promtool() -> str:
    p = shutil.which("promtool")
    assert p is not None, "promtool is missing: `make system-deps` installs Debian's prometheus package (.ci/run too)"
    return p


def test_promtool_checks_the_rules(tmp_path):
    promtool = _promtool()
    f = tmp_path / "rules.yaml"
    f.write_text(yaml.safe_dump(load_all(MON / "prometheusrule.yaml")[0]["spec"]))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules())} rules found" in r.stdout


PROMTOOL_TESTS = {
    "evaluation_interval": "1m",
    "tests": [
        {   # drift for longer than `for` fires, with the monitor's labels
            "interval": "1m",
            "input_series": [
                {"series": 'mlops_drift_detected{namespace="retail",monitor="propensity",pod="op-0"}',
                 "values": "0 0 1x10"},
                {"series": 'mlops_window_accuracy{namespace="retail",monitor="propensity",metric="accuracy"}',
                 "values": "0.82x5 0.70x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "MLOpsDataDriftDetected", "exp_alerts": []},
                {"eval_time": "9m", "alertname": "MLOpsDataDriftDetected", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "retail", "monitor": "propensity"},
                     "exp_annotations": {
                         "summary": "DriftMonitor retail/propensity detected data drift",
                         "description": "The last evaluated window drifted at dataset level and the next one has "
                                        "not cleared it. `kubectl -n retail describe driftmonitor propensity` "
                                        "lists the drifted features and the retraining it started, if its "
                                        "spec.retrain allows."}}]},
                {"eval_time": "16m", "alertname": "MLOpsAccuracyBelowThreshold", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "retail", "monitor": "propensity"},
                     "exp_annotations": {
                         "summary": "retail/propensity: accuracy 0.700 on labelled feedback",
                         "description": "Windowed accuracy on ground-truth feedback is below 0.75 (tune per "
                                        "model)."}}]},
                {"eval_time": "16m", "alertname": "MLOpsAccuracyDropped", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "retail", "monitor": "propensity"},
                     "exp_annotations": {
                         "summary": "retail/propensity: accuracy dropped 0.120 below its 24 h best",
                         "description": "Windowed accuracy fell more than 0.05 (tune) below its best window of "
                                        "the last day."}}]},
            ],
        },
        {   # 5% of the requests answered 500: the error-rate alert fires; 400s alone never do
            "interval": "1m",
            "input_series": [
                {"series": 'mlops_serving_requests_total{namespace="retail",model="propensity",version="2",'
                           'endpoint="infer",code="200"}', "values": "0+95x20"},
                {"series": 'mlops_serving_requests_total{namespace="retail",model="propensity",version="2",'
                           'endpoint="infer",code="500"}', "values": "0+5x20"},
                {"series": 'mlops_serving_requests_total{namespace="retail",model="propensity",version="1",'
                           'endpoint="infer",code="200"}', "values": "0+50x20"},
                {"series": 'mlops_serving_requests_total{namespace="retail",model="propensity",version="1",'
                           'endpoint="infer",code="400"}', "values": "0+50x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "MLOpsServingErrorRate", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "retail", "model": "propensity",
                                    "version": "2"},
                     "exp_annotations": {
                         "summary": "Model propensity v2 answers 5% of requests with 5xx",
                         "description": "More than 1% of the requests to retail/propensity version 2 failed with "
                                        "a server error over 5 minutes (4xx, the clients' own errors, are not "
                                        "counted). `kubectl -n retail logs -l app.kubernetes.io/name=model-server` "
                                        "shows why."}}]},
            ],
        },
        {   # a failed TrainingRun (the operator's counter) names its model
            "interval": "1m",
            "input_series": [
                {"series": 'mlops_training_runs_total{namespace="retail",model="propensity",result="failed"}',
                 "values": "0 0 1 1 1"},
                {"series": 'mlops_training_runs_total{namespace="retail",model="propensity",result="succeeded"}',
                 "values": "0 1 2 3 4"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "MLOpsTrainingFailed", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "retail", "model": "propensity"},
                     "exp_annotations": {
                         "summary": "A TrainingRun of model propensity failed in retail",
                         "description": "The serving model stays. `kubectl -n retail get trainingruns` shows "
                                        "which run, and its status.message says why. Resolves 30 minutes after "
                                        "the last failure."}}]},
            ],
        },
    ],
}


def test_promtool_unit_tests_of_the_alerts(tmp_path):
    promtool = _promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(load_all(MON / "prometheusrule.yaml")[0]["spec"]))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], **PROMTOOL_TESTS}))
    r = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------------ metric names

def exposed(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, from a Prometheus text exposition."""
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


@pytest.fixture(scope="module")
def server_metrics(tmp_path_factory) -> dict[str, set[str]]:
    from tests.unit.test_serving import ServerThread, build_artifact, v2_inputs

    art = build_artifact(tmp_path_factory.mktemp("monitoring"), rows=600)
    with ServerThread(art.cfg()) as srv, requests.Session() as http:
        body = orjson.dumps({"inputs": v2_inputs(art.test.iloc[:5], art.feats)})
        for _ in range(3):
            r = http.post(srv.url + "/v2/models/retail/infer", data=body, timeout=30)
            assert r.status_code == 200, r.text
        assert http.post(srv.url + "/v2/models/retail/infer", data=b"{", timeout=30).status_code == 400
        r = http.post(srv.url + "/v2/models/retail/feedback", timeout=30,
                      data=orjson.dumps({"predictions": [1, 0, 1], "labels": [1, 1, 0]}))
        assert r.status_code == 200, r.text
        text = http.get(srv.url + "/metrics", timeout=30).text
    return exposed(text)


@pytest.fixture(scope="module")
def operator_metrics() -> dict[str, set[str]]:
    from mlops_operator.controllers import metrics
    from mlops_operator.controllers import monitor_gauges as driftmonitor

    ns, mon = "test-monitoring-manifests", "probe"  # labels no other test uses: removed afterwards
    samples = [
        (metrics.RECONCILES, ("MonitoringProbe", "error")),
        (metrics.DURATION, ("MonitoringProbe",)),
        (metrics.TRAINING_RUNS, (ns, "probe-model", "failed")),
        (driftmonitor.SCORE, (ns, mon, "age", "wasserstein")),
        (driftmonitor.DRIFTED, (ns, mon, "age")),
        (driftmonitor.SHARE, (ns, mon)),
        (driftmonitor.DATASET, (ns, mon)),
        (driftmonitor.ACCURACY, (ns, mon, "accuracy")),
        (driftmonitor.SAMPLES, (ns, mon)),
    ]
    for m, labels in samples:
        m.labels(*labels)  # a child at 0 is exposed with its labels; no value changes
    try:
        return exposed(generate_latest(REGISTRY).decode())
    finally:
        for m, labels in samples:
            m.remove(*labels)


def test_every_labelled_operator_gauge_was_sampled(operator_metrics):
    # a new Gauge/Counter in the controllers must be added to operator_metrics above
    import prometheus_client

    from mlops_operator.controllers import driftmonitor, metrics, monitor_gauges

    defined = {v._name for mod in (driftmonitor, metrics, monitor_gauges) for v in vars(mod).values()
               if isinstance(v, prometheus_client.metrics.MetricWrapperBase)}
    for name in defined:
        assert any(s == name or s.startswith(name + "_") for s in operator_metrics), name


def test_every_queried_metric_and_label_exists(server_metrics, operator_metrics):
    real: dict[str, set[str]] = {}
    for src in (server_metrics, operator_metrics):
        for k, v in src.items():
            real.setdefault(k, set()).update(v)
    missing, bad_labels, used = [], [], set()
    for where, expr in all_exprs():
        for sel in selectors(expr):
            name = sel.name
            used.add(name)
            if name in EXTERNAL:
                continue
            if name not in real:
                missing.append(f"{where}: {name}")
                continue
            for m in sel.matchers.matchers:
                if m.name not in real[name] and m.name not in TARGET_LABELS:
                    bad_labels.append(f"{where}: {name} has no label {m.name}")
    assert not missing, "metrics no component exposes:\n" + "\n".join(missing)
    assert not bad_labels, "\n".join(bad_labels)
    assert used & set(EXTERNAL) == set(EXTERNAL), "drop unused entries from EXTERNAL"
    # the serving and drift metrics the issue names are all on the dashboard or in a rule
    for name in ("mlops_serving_requests_total", "mlops_serving_request_duration_seconds_bucket",
                 "mlops_serving_ready", "mlops_drift_score", "mlops_drift_share", "mlops_drift_detected",
                 "mlops_window_accuracy", "mlops_operator_reconcile_total"):
        assert name in used, name
