"""The operator runs on the cluster from the same manifests a real cluster uses: its own
ServiceAccount and least-privilege ClusterRoles (namespace-scoped writes), two replicas with
leader election, in-cluster config through the `kubernetes` Service — and a Dataset still goes
to Ready once an admin enables its namespace. Before that the operator ignores it (a warning, no
finalizer, no crash); a workload the admission policy refuses shows on its owner; and a managed
namespace holding objects with kopf's finalizer is deleted without hanging."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, Cluster, OperatorProcess, enable_namespace, wait_for

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
        # namespace-scoped: not enabled yet, so the operator may not write there and ignores it
        warning = f"Dataset {namespace}/incluster is ignored: namespace {namespace} is not managed by the operator"
        wait_for(lambda: warning in _logs(local_cluster, pods), 60, interval=1, what="the unmanaged warning")
        ds = local_cluster.get_json("dataset", "incluster", "-n", namespace)
        assert not ds["metadata"].get("finalizers") and not ds.get("status"), ds
        p = subprocess.run([sys.executable, "-m", "mlops_operator.cli.main", "enable-namespace", namespace,
                            "--kubeconfig", str(local_cluster.kubeconfig)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"rolebinding {namespace}/mlops-operator created" in p.stdout, p.stdout
        assert "Dataset/incluster" in p.stdout, p.stdout  # given the event that makes the operator look
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

        # the admission policy refuses a snapshot Job as a ServiceAccount the namespace does not allow:
        # the Dataset says so (Stalled, reason Forbidden, the policy's message) and the operator goes on
        local_cluster.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: builder}
spec:
  source: {type: generator, generator: {rows: 100}}
  job: {serviceAccountName: builder}
""", namespace)

        def stalled():
            ds = local_cluster.get_json("dataset", "builder", "-n", namespace)
            c = next((c for c in (ds.get("status") or {}).get("conditions") or [] if c["type"] == "Stalled"), {})
            return c if c.get("status") == "True" else None
        c = wait_for(stalled, 90, interval=1, what="the Dataset Stalled by the admission policy")
        assert c["reason"] == "Forbidden", c
        assert "ValidatingAdmissionPolicy 'mlops-operator-workloads'" in c["message"], c
        assert f"ServiceAccount builder is not allowed for mlops workloads in namespace {namespace}" in c["message"]
        assert any(e["reason"] == "Forbidden" and e["involvedObject"]["name"] == "builder"
                   for e in local_cluster.get_json("events", "-n", namespace)["items"])
        for pod in local_cluster.pods("mlops-system", "app.kubernetes.io/name=mlops-operator"):
            assert all(cs["restartCount"] == 0 for cs in pod["status"]["containerStatuses"]), pod["status"]

        # deleting a managed namespace deletes its RoleBinding with its objects: the operator can
        # still release kopf's finalizer (patching its kinds is cluster-wide), so nothing hangs
        gone = f"t-deleted-{namespace[-6:]}"
        local_cluster.kubectl("create", "namespace", gone)
        enable_namespace(local_cluster, gone)
        local_cluster.apply(f"""
apiVersion: mlops.dev/v1alpha1
kind: ModelVersion
metadata: {{name: m-v1}}
spec:
  model: m
  version: 1
  artifact: {{uri: "file:///store/models/m/{'a' * 64}/", digest: "{'a' * 64}"}}
""", gone)
        wait_for(lambda: local_cluster.get_json("modelversion", "m-v1", "-n", gone)["metadata"].get("finalizers"),
                 60, interval=1, what="kopf's finalizer on the ModelVersion")
        p = local_cluster.kubectl("delete", "namespace", gone, "--timeout=120s", check=False, timeout=130)
        assert p.returncode == 0, p.stderr
    finally:
        local_cluster.kubectl("delete", "deploy", "mlops-operator", "-n", "mlops-system", "--wait=true", check=False,
                              timeout=120)
        operator.start()


def _logs(c: Cluster, pods: list[dict]) -> str:
    return "".join(c.kubectl("logs", "-n", "mlops-system", p["metadata"]["name"], check=False).stdout for p in pods)
