"""Leader election: with two operator replicas in one kopf peering, only the higher priority acts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlops_operator.localcluster.forward import free_port

from tests.conftest import REPO, Cluster, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster


def _replica(c: Cluster, priority: int, log, log_format: str) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=str(c.kubeconfig), MLOPS_RUNTIME_IMAGE="mlops-runtime:test")
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--peering", "mlops-operator",
         "--priority", str(priority), "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--metrics-port", "0",
         "--log-format", log_format],
        env=env, stdout=log, stderr=subprocess.STDOUT)


def test_lower_priority_replica_pauses_while_the_leader_reconciles(local_cluster: Cluster, operator: OperatorProcess,
                                                                  namespace: str, tmp_path):
    operator.stop()  # the session's standalone operator would act regardless of peering
    local_cluster.kubectl("apply", "-f", str(REPO / "manifests" / "base" / "kopf-peering-crds.yaml"))
    local_cluster.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    local_cluster.kubectl("apply", "-f", str(REPO / "manifests" / "base" / "kopf-peering.yaml"))
    logs = {p: tmp_path / f"replica-{p}.log" for p in (10, 20)}
    # kopf's JSON format drops its peering messages, so the paused replica logs plain text
    procs = [_replica(local_cluster, p, open(logs[p], "w"), fmt) for p, fmt in ((10, "plain"), (20, "json"))]
    try:
        wait_for(lambda: "Pausing operations in favour of" in logs[10].read_text(), 60, interval=0.5,
                 what="the low-priority replica to pause")
        local_cluster.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: elected}
spec:
  source: {type: generator, generator: {rows: 300, seed: 2}}
  labelColumn: purchased
""", namespace)
        wait_for(lambda: (local_cluster.get_json("dataset", "elected", "-n", namespace).get("status") or {})
                 .get("latestValid"), 120, what="the leader to snapshot the dataset")
        assert "dataset_changed" in logs[20].read_text()
        assert "dataset_changed" not in logs[10].read_text()
        lines = [json.loads(x) for x in logs[20].read_text().splitlines() if x.startswith("{")]
        assert any("dataset_changed" in x["message"] and x.get("object", {}).get("name") == "elected"
                   for x in lines)  # structured: the object a line is about is a field
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        operator.start()
