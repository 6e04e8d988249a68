"""The operator runs on the cluster from the same manifests a real cluster uses: its own
ServiceAccount and least-privilege ClusterRole, two replicas with leader election, in-cluster
config through the `kubernetes` Service — and a Dataset still goes to Ready."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import REPO, Cluster, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster


def test_operator_deployment_reconciles_under_its_own_rbac(local_cluster: Cluster, operator: OperatorProcess,
                                                          namespace: str):
    operator.stop()  # only the in-cluster replicas may act during this test
    try:
        local_cluster.kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "local"))
        local_cluster.kubectl("rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=120s",
                              timeout=130)
        pods = local_cluster.pods("mlops-system", "app.kubernetes.io/name=mlops-operator")
        assert len(pods) == 2
        assert all(p["spec"]["serviceAccountName"] == "mlops-operator" for p in pods)
        # leader election settles once both replicas have announced themselves in the peering
        def peers() -> int:
            p = local_cluster.kubectl("get", "clusterkopfpeering", "mlops-operator", "-o", "json", check=False)
            return len(json.loads(p.stdout).get("status") or {}) if p.returncode == 0 else 0
        wait_for(lambda: peers() == 2, 90, what="both replicas in the peering")
        time.sleep(3)  # each replica reacts to the other's announcement (kopf pauses the lower one)
        local_cluster.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: incluster}
spec:
  source: {type: generator, generator: {rows: 1000, seed: 5}}
  labelColumn: purchased
""", namespace)
        st = wait_for(lambda: (local_cluster.get_json("dataset", "incluster", "-n", namespace).get("status") or {})
                      .get("latestValid") and local_cluster.get_json("dataset", "incluster", "-n", namespace)["status"],
                      180, interval=1, what="Dataset Ready through the in-cluster operator")
        assert st["latestValid"]["rows"] == 1000
        logs = "".join(local_cluster.kubectl("logs", "-n", "mlops-system", p["metadata"]["name"]).stdout for p in pods)
        lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
        assert any("connecting to cluster https://10.96.0.1:443" in x["message"] for x in lines)
        # structured logs: the object a line is about is a field, not only text
        assert any(x.get("object", {}).get("name") == "incluster" and "dataset_changed" in x["message"]
                   for x in lines)
        # the replicas elected one: exactly one handled the dataset
        acted = [p for p in pods if "dataset_changed" in
                 local_cluster.kubectl("logs", "-n", "mlops-system", p["metadata"]["name"]).stdout]
        assert len(acted) == 1
        forbidden = [x for x in lines if "forbidden" in x["message"].lower()]
        assert forbidden == [], forbidden[:3]
    finally:
        local_cluster.kubectl("delete", "deploy", "mlops-operator", "-n", "mlops-system", "--wait=true", check=False,
                              timeout=120)
        operator.start()
