"""The Prometheus scrape configuration generated from manifests/monitoring's PodMonitors: the jobs,
what their relabelling keeps and labels (run on example targets with Prometheus' relabelling
semantics), errors for what it cannot translate, and `promtool check config` on the result."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_operator.cli import promconfig as pc

MON = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
ACCESS = pc.ApiAccess("https://127.0.0.1:16443", "/etc/prom/ca.crt", token_file="/etc/prom/token")


def apply_relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus' relabelling (replace, keep, drop; anchored RE2 regexes; defaults regex (.*),
    separator ';', replacement $1), as in prometheus/model/relabel. None: the target is dropped."""
    labels = dict(labels)
    for r in rules:
        action = r.get("action", "replace")
        value = r.get("separator", ";").join(labels.get(s, "") for s in r.get("source_labels") or [])
        m = re.fullmatch(r.get("regex", "(.*)"), value)
        if action == "keep" and not m:
            return None
        if action == "drop" and m:
            return None
        if action == "replace" and m:
            out = m.expand(re.sub(r"\$(\d+)", r"\\g<\1>", r.get("replacement", "$1")))
            if out:
                labels[r["target_label"]] = out
            else:
                labels.pop(r["target_label"], None)
    return labels


def pod_target(ns: str, pod: str, labels: dict[str, str], port_name: str, port: int, phase: str = "Running",
               container: str = "server") -> dict[str, str]:
    """The labels Kubernetes SD (role pod) gives one container port of one pod."""
    t = {"__address__": f"10.244.0.7:{port}", "__meta_kubernetes_namespace": ns, "__meta_kubernetes_pod_name": pod,
         "__meta_kubernetes_pod_ip": "10.244.0.7", "__meta_kubernetes_pod_phase": phase,
         "__meta_kubernetes_pod_container_name": container, "__meta_kubernetes_pod_container_port_name": port_name,
         "__meta_kubernetes_pod_container_port_number": str(port)}
    for k, v in labels.items():
        s = pc.sanitize(k)
        t[f"__meta_kubernetes_pod_label_{s}"] = v
        t[f"__meta_kubernetes_pod_labelpresent_{s}"] = "true"
    return t


SERVER_LABELS = {"app.kubernetes.io/name": "model-server", "app.kubernetes.io/part-of": "mlops",
                 "mlops.dev/model-version": "propensity-v2", "mlops.dev/track": "stable",
                 "mlops.dev/inference-service": "propensity"}


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict]:
    monitors, _ = pc.load_kustomization(MON)
    cfg = pc.prometheus_config(monitors)
    return {j["job_name"]: j for j in cfg["scrape_configs"]}


def test_one_job_per_podmonitor_endpoint_named_as_the_prometheus_operator_names_them(jobs):
    assert sorted(jobs) == ["podMonitor/mlops-system/mlops-model-server/0", "podMonitor/mlops-system/mlops-operator/0"]
    server, operator = jobs["podMonitor/mlops-system/mlops-model-server/0"], jobs["podMonitor/mlops-system/mlops-operator/0"]
    # namespaceSelector any: every namespace; none: the PodMonitor's own (the kustomization's namespace)
    assert "namespaces" not in server["kubernetes_sd_configs"][0]
    assert operator["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["mlops-system"]}
    assert server["honor_labels"] is True and server["scrape_interval"] == "30s" and server["metrics_path"] == "/metrics"


def test_a_model_server_pod_is_scraped_with_the_podmonitors_labels(jobs):
    rules = jobs["podMonitor/mlops-system/mlops-model-server/0"]["relabel_configs"]
    got = apply_relabel(pod_target("retail", "propensity-abc", SERVER_LABELS, "http", 8080), rules)
    assert got is not None
    assert {k: v for k, v in got.items() if not k.startswith("__")} == {
        "namespace": "retail", "pod": "propensity-abc", "container": "server", "job": "mlops-system/mlops-model-server",
        "endpoint": "http", "model_version": "propensity-v2", "track": "stable", "inference_service": "propensity"}
    assert got["__address__"] == "10.244.0.7:8080"


@pytest.mark.parametrize("change", [
    {"port_name": "metrics"},                                              # another port of the pod
    {"labels": {**SERVER_LABELS, "app.kubernetes.io/part-of": "other"}},   # a selector label differs
    {"labels": {k: v for k, v in SERVER_LABELS.items() if k != "app.kubernetes.io/name"}},  # missing
    {"phase": "Succeeded"},                                                # a finished pod
])
def test_what_the_podmonitor_does_not_select_is_dropped(jobs, change):
    rules = jobs["podMonitor/mlops-system/mlops-model-server/0"]["relabel_configs"]
    args = {"labels": SERVER_LABELS, "port_name": "http", "phase": "Running", **change}
    assert apply_relabel(pod_target("retail", "p", args["labels"], args["port_name"], 8080, args["phase"]), rules) is None


def test_the_operator_job_keeps_its_metrics_port_only(jobs):
    rules = jobs["podMonitor/mlops-system/mlops-operator/0"]["relabel_configs"]
    op = {"app.kubernetes.io/name": "mlops-operator"}
    assert apply_relabel(pod_target("mlops-system", "op-1", op, "metrics", 8081), rules)["endpoint"] == "metrics"
    assert apply_relabel(pod_target("mlops-system", "op-1", op, "healthz", 8080), rules) is None


def test_through_the_api_server_proxy_the_labels_stay_and_the_address_changes():
    monitors, _ = pc.load_kustomization(MON)
    job = pc.prometheus_config(monitors, ACCESS, via_proxy=True)["scrape_configs"][0]
    got = apply_relabel(pod_target("retail", "propensity-abc", SERVER_LABELS, "http", 8080), job["relabel_configs"])
    assert got["__address__"] == "127.0.0.1:16443"
    assert got["__metrics_path__"] == "/api/v1/namespaces/retail/pods/propensity-abc:8080/proxy/metrics"
    assert got["instance"] == "10.244.0.7:8080" and got["model_version"] == "propensity-v2"
    assert job["scheme"] == "https" and job["authorization"] == {"credentials_file": "/etc/prom/token"}
    sd = job["kubernetes_sd_configs"][0]
    assert sd["api_server"] == "https://127.0.0.1:16443" and sd["tls_config"] == {"ca_file": "/etc/prom/ca.crt"}


def monitor(**endpoint) -> dict:
    return {"kind": "PodMonitor", "metadata": {"name": "m", "namespace": "ns"},
            "spec": {"namespaceSelector": {"matchNames": ["a", "b"]},
                     "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                                       {"key": "canary", "operator": "DoesNotExist"}]},
                     "podMetricsEndpoints": [{"port": "web", **endpoint}]}}


def test_match_expressions_and_relabelings_translate():
    m = monitor(relabelings=[{"action": "LabelMap", "regex": "__meta_kubernetes_pod_label_(team)"}],
                metricRelabelings=[{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}])
    job = pc.scrape_configs(m)[0]
    assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["a", "b"]}
    assert {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(team)"} in job["relabel_configs"]
    assert job["metric_relabel_configs"] == [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]
    rules = job["relabel_configs"]
    assert apply_relabel(pod_target("a", "p", {"tier": "api"}, "web", 80), rules) is not None
    assert apply_relabel(pod_target("a", "p", {"tier": "db"}, "web", 80), rules) is None
    assert apply_relabel(pod_target("a", "p", {"tier": "web", "canary": "1"}, "web", 80), rules) is None


@pytest.mark.parametrize("endpoint,message", [
    ({"basicAuth": {"username": {"name": "s", "key": "u"}}}, "fields not translated"),
    ({"relabelings": [{"sourceLabels": ["a"], "targetLabel": "b", "bogus": 1}]}, "relabeling fields"),
])
def test_what_it_cannot_translate_is_an_error(endpoint, message):
    with pytest.raises(pc.PodMonitorError, match=message):
        pc.scrape_configs(monitor(**endpoint))
    with pytest.raises(pc.PodMonitorError, match="proxy"):
        pc.scrape_configs(monitor(), via_proxy=True)


def test_labels_with_regex_characters_are_quoted():
    assert pc.quote("a.b+c") == r"a\.b\+c"
    m = monitor()
    m["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/version": "1.2"}}
    rules = pc.scrape_configs(m)[0]["relabel_configs"]
    assert apply_relabel(pod_target("a", "p", {"app.kubernetes.io/version": "1x2"}, "web", 80), rules) is None
    assert apply_relabel(pod_target("a", "p", {"app.kubernetes.io/version": "1.2"}, "web", 80), rules) is not None


def test_pod_targets_carry_the_labels_kubernetes_sd_gives():
    """The HTTP SD form (Debian's Prometheus has no Kubernetes SD): the same relabelling selects the same target."""
    pod = {"metadata": {"name": "propensity-abc", "namespace": "retail", "labels": SERVER_LABELS},
           "spec": {"containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 8080}]},
                                   {"name": "sidecar", "ports": [{"name": "admin", "containerPort": 9000}]}]},
           "status": {"podIP": "10.244.0.7", "phase": "Running"}}
    groups = pc.pod_targets([pod, {"metadata": {"name": "no-ip"}, "spec": pod["spec"], "status": {}}])
    assert [g["targets"] for g in groups] == [["10.244.0.7:8080"], ["10.244.0.7:9000"]]
    monitors, _ = pc.load_kustomization(MON)
    job = pc.prometheus_config(monitors, http_sd="http://127.0.0.1:9091/pods")["scrape_configs"][0]
    assert job["http_sd_configs"] == [{"url": "http://127.0.0.1:9091/pods", "refresh_interval": "10s"}]
    kept = [apply_relabel({"__address__": g["targets"][0], **g["labels"]}, job["relabel_configs"]) for g in groups]
    expected = apply_relabel(pod_target("retail", "propensity-abc", SERVER_LABELS, "http", 8080), job["relabel_configs"])
    assert kept[1] is None and {k: v for k, v in kept[0].items() if not k.startswith("__")} == \
        {k: v for k, v in expected.items() if not k.startswith("__")}
    op = pc.prometheus_config(monitors, http_sd="http://127.0.0.1:9091/pods")["scrape_configs"][1]
    assert op["http_sd_configs"][0]["url"] == "http://127.0.0.1:9091/pods?namespace=mlops-system"


def test_promtool_accepts_the_generated_configuration(tmp_path):
    """Debian's promtool knows no kubernetes_sd_configs (built without it): the HTTP SD form is checked."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: .ci/run installs Debian's prometheus package"
    monitors, rules = pc.load_kustomization(MON)
    (tmp_path / "ca.crt").write_text("")
    (tmp_path / "token").write_text("t")
    access = pc.ApiAccess("https://127.0.0.1:16443", str(tmp_path / "ca.crt"), token_file=str(tmp_path / "token"))
    (tmp_path / "rules.yml").write_text(pc.dump(pc.rule_groups(rules)))
    for proxy in (False, True):
        cfg = pc.prometheus_config(monitors, access, via_proxy=proxy, rule_files=["rules.yml"],
                                   http_sd="http://127.0.0.1:9091/pods")
        (tmp_path / "prometheus.yml").write_text(pc.dump(cfg))
        r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "SUCCESS" in r.stdout + r.stderr
    assert yaml.safe_load((tmp_path / "rules.yml").read_text())["groups"]


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400),
                                           ("500ms", 0.5), ("2m30s", 150)])
def test_prometheus_durations(text, seconds):
    assert pc.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "1.5m", "-1s"])
def test_what_is_not_a_duration_is_an_error(text):
    with pytest.raises(pc.PodMonitorError, match="not a Prometheus duration"):
        pc.parse_duration(text)


def test_max_for_caps_the_alerts_durations_and_changes_nothing_else():
    _, rules = pc.load_kustomization(MON)
    shipped, short = pc.rule_groups(rules), pc.rule_groups(rules, max_for="6s")
    assert [g["name"] for g in short["groups"]] == [g["name"] for g in shipped["groups"]]
    fors = []
    for g0, g1 in zip(shipped["groups"], short["groups"]):
        assert len(g0["rules"]) == len(g1["rules"])
        for r0, r1 in zip(g0["rules"], g1["rules"]):
            # only `for` differs, and only where it was longer than the cap
            assert {k: v for k, v in r0.items() if k != "for"} == {k: v for k, v in r1.items() if k != "for"}
            assert ("for" in r0) == ("for" in r1)
            if "for" in r0:
                fors.append((r0["for"], r1["for"]))
                assert r1["for"] == ("6s" if pc.parse_duration(r0["for"]) > 6 else r0["for"])
    assert ("5m", "6s") in fors and ("10m", "6s") in fors
    # the shipped rules are not modified in place
    assert pc.rule_groups(rules) == shipped and any(f == "5m" for f, _ in fors)


def test_scrape_interval_replaces_every_podmonitors_interval():
    monitors, _ = pc.load_kustomization(MON)
    cfg = pc.prometheus_config(monitors, scrape_interval="2s")
    assert cfg["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s"}
    assert {j["scrape_interval"] for j in cfg["scrape_configs"]} == {"2s"}
    # the jobs are otherwise those of the PodMonitors
    plain = pc.prometheus_config(monitors)
    assert [{k: v for k, v in j.items() if k != "scrape_interval"} for j in cfg["scrape_configs"]] == \
        [{k: v for k, v in j.items() if k != "scrape_interval"} for j in plain["scrape_configs"]]
    with pytest.raises(pc.PodMonitorError):
        pc.prometheus_config(monitors, scrape_interval="often")
