"""`mlops prometheus` against the local cluster: Debian's Prometheus, configured from the
PodMonitors of manifests/monitoring, discovers a model-server pod, scrapes it through the API
server's pod proxy with the least-privilege ServiceAccount's token, and labels its series as the
PodMonitor says; the PrometheusRule's alerts are loaded. The alerts firing and resolving during the
retail loop, and the dashboard's queries returning data, are checked in tests/e2e/test_retail_loop.py."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from mlops_operator.localcluster.forward import free_port

from ..conftest import TEST_CLUSTER, Cluster, wait_for

SERVER = """\
from prometheus_client import Counter, start_http_server
import time
Counter("mlops_ui_probe_requests", "a counter the test looks for").inc(3)
start_http_server(8080)
time.sleep(3600)
"""


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]["result"]
    except OSError:
        return []


def test_prometheus_scrapes_a_model_server_pod_as_the_podmonitor_says(local_cluster: Cluster, namespace: str,
                                                                       tmp_path: Path):
    c = local_cluster
    labels = {"app.kubernetes.io/name": "model-server", "app.kubernetes.io/part-of": "mlops",
              "mlops.dev/model-version": "probe-v1", "mlops.dev/track": "stable",
              "mlops.dev/inference-service": "probe"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe-server", "labels": labels},
           "spec": {"containers": [{"name": "server", "image": "python:3.11-slim",
                                    "command": ["python", "-c", SERVER],
                                    "ports": [{"name": "http", "containerPort": 8080}]}]}}
    c.apply(yaml.safe_dump(pod), namespace)
    c.wait_pod(namespace, "probe-server", "Running", timeout=90)
    port, sd_port = free_port(), free_port()
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "prometheus", "--name", TEST_CLUSTER,
                             "--port", str(port), "--sd-port", str(sd_port), "--out", str(tmp_path / "prom")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        want = f'up{{job="mlops-system/mlops-model-server",namespace="{namespace}"}}'
        try:
            got = wait_for(lambda: [r for r in query(port, want) if r["value"][1] == "1"], timeout=150, interval=2,
                           what="the probe pod scraped")
        except AssertionError:
            raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:]) from None
        m = got[0]["metric"]
        ip = c.get_json("pod", "probe-server", "-n", namespace)["status"]["podIP"]
        assert m == {"__name__": "up", "job": "mlops-system/mlops-model-server", "namespace": namespace,
                     "pod": "probe-server", "container": "server", "endpoint": "http", "instance": f"{ip}:8080",
                     "model_version": "probe-v1", "track": "stable", "inference_service": "probe"}
        series = query(port, f'mlops_ui_probe_requests_total{{namespace="{namespace}"}}')
        assert series and series[0]["value"][1] == "3" and series[0]["metric"]["model_version"] == "probe-v1"
        # the PrometheusRule's alerts are loaded
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules?type=alert", timeout=10) as r:
            rules = [rule["name"] for g in json.loads(r.read())["data"]["groups"] for rule in g["rules"]]
        assert any("Drift" in n for n in rules), rules
        # Prometheus' ServiceAccount may read pods through the proxy, and not secrets
        sa = "--as=system:serviceaccount:mlops-monitoring:prometheus"
        assert c.kubectl("auth", "can-i", "get", "pods/proxy", "-A", sa, check=False).stdout.strip() == "yes"
        assert c.kubectl("auth", "can-i", "list", "secrets", "-A", sa, check=False).stdout.strip() == "no"
        assert (tmp_path / "prom" / "token").stat().st_mode & 0o077 == 0  # the token file is private
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
