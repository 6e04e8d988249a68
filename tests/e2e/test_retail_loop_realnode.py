"""The whole loop on the real node: the operator, the snapshot, training and verification Jobs
and the model servers all run from the built images under the upstream kubelet, containerd
and runc, in namespaces that enforce Pod Security "restricted". Then what only a real node
shows at the operator's level: a TrainingRun killed by the kernel for its memory limit, and an
InferenceService whose node is lost and comes back."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from mlops_operator.cli.retail_loop import MODEL, cond
from mlops_operator.localcluster import cluster, realnode
from tests.conftest import REAL_NODE_SELECTOR, REPO, Cluster, make_namespace, wait_for
from tests.e2e.test_retail_loop import _loop_in_cluster
from tests.integration.test_training import retail_dataset, run, wait_phase

pytestmark = pytest.mark.cluster

RUNTIME_IMAGE = "ghcr.io/mlops-dev/mlops-runtime:0.1.0"


@pytest.fixture(scope="module")
def operator_on_real_node(real_cluster: Cluster):
    """mlops-system pinned to the real node before the manifests create the operator there."""
    c = real_cluster
    # create + annotate, not apply: the manifests' own apply of the Namespace would drop an
    # annotation that an earlier apply recorded in last-applied-configuration
    c.kubectl("create", "namespace", "mlops-system", check=False)
    c.kubectl("annotate", "--overwrite", "namespace", "mlops-system",
              *(f"{k}={v}" for k, v in REAL_NODE_SELECTOR.items()),
              "kubectl.kubernetes.io/last-applied-configuration-")
    c.kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "local"))
    c.kubectl("rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)
    yield c
    c.kubectl("delete", "deploy", "mlops-operator", "-n", "mlops-system", "--wait=true", check=False, timeout=120)


def test_the_loop_closes_on_the_real_node(operator_on_real_node: Cluster, request, tmp_path):
    c = operator_on_real_node
    ns = make_namespace(c, request)  # _loop_in_cluster enables it, as an admin does
    try:
        def restart_containerd() -> str:
            cluster.hold_component(c.cfg.name, "containerd", hold=True)
            wait_for(lambda: not cluster.status(c.cfg.name)["components"]["containerd"]["pid"], 30,
                     what="containerd stopped")
            time.sleep(2)
            cluster.hold_component(c.cfg.name, "containerd", hold=False)
            return "containerd stopped and started again while retraining"

        r = _loop_in_cluster(c, ns, tmp_path, image=RUNTIME_IMAGE, also_while_retraining=restart_containerd)
        assert any("containerd stopped and started" in what for _, what in r.timeline)
        assert cluster.status(c.cfg.name)["components"]["containerd"]["restarts"] == 0  # held, not crashed
        real = {p["spec"]["nodeName"] for p in c.pods(ns) + c.pods("mlops-system")}
        assert real == {f"mlops-{c.cfg.name}-real"}, real  # nothing ran on the process node
        images = {ctr["image"] for p in c.pods(ns) + c.pods("mlops-system") for ctr in p["spec"]["containers"]}
        assert {"ghcr.io/mlops-dev/mlops-operator:0.1.0", "ghcr.io/mlops-dev/mlops-server:0.1.0"} <= images
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _ready(obj: dict) -> str:
    return cond(obj, "Ready").get("status", "")


def test_the_kernel_kills_a_starved_training_run_and_a_lost_node_takes_serving_down(
        operator_on_real_node: Cluster, request):
    c = operator_on_real_node
    ns = make_namespace(c, request, managed=True)
    try:
        c.apply(retail_dataset(rows=3000), ns)
        # scikit-learn alone needs more than 48 MiB: the kernel ends the trainer, the run says so
        c.apply(run("starved", "  estimator: {type: LogisticRegression}\n"
                               "  job: {resources: {limits: {memory: 48Mi}}}"), ns)
        st = wait_phase(c, ns, "starved", timeout=300)
        assert st["phase"] == "Failed", st
        assert "OOMKilled" in st["message"] and "48Mi" in st["message"], st["message"]
        assert any(e["reason"] == "Failed" and "OOMKilled" in e["message"]
                   for e in c.get_json("events", "-n", ns)["items"])

        c.apply(run("fed", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
        assert wait_phase(c, ns, "fed", timeout=300)["phase"] == "Succeeded"
        short = [{"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute",
                  "tolerationSeconds": 2} for t in ("not-ready", "unreachable")]
        c.apply(f"""
apiVersion: mlops.dev/v1alpha1
kind: InferenceService
metadata: {{name: {MODEL}}}
spec:
  model: {MODEL}
  alias: production
  replicas: 1
  pod: {{tolerations: {json.dumps(short)}}}
""", ns)
        isvc = wait_for(lambda: (lambda o: o if _ready(o) == "True" else None)(
            c.get_json("inferenceservice", MODEL, "-n", ns)), 240, interval=1, what="the InferenceService Ready")
        # the status URL answers from another pod, by cluster DNS
        url = isvc["status"]["url"]
        assert url == f"http://{MODEL}.{ns}.svc/v2/models/{MODEL}", url
        fetch = ("import json, time, urllib.request\nfor _ in range(60):\n try:\n"
                 f"  meta = json.load(urllib.request.urlopen({url!r}, timeout=3))\n"
                 f"  ready = urllib.request.urlopen({url + '/ready'!r}, timeout=3).status\n"
                 "  print(meta['name'], ready)\n  break\n except OSError:\n  time.sleep(1)\n")
        c.apply(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "main", "image": "ghcr.io/mlops-dev/mlops-server:0.1.0", "imagePullPolicy": "Never",
                            "command": ["python3", "-c", fetch],
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}}}]}}), ns)
        wait_for(lambda: c.get_json("pod", "client", "-n", ns).get("status", {}).get("phase") == "Succeeded", 120,
                 interval=1, what="the client pod to reach the status URL")
        assert c.kubectl("logs", "-n", ns, "client").stdout.split() == [MODEL, "200"]
        cluster.hold_component(c.cfg.name, "kubelet", hold=True)
        try:
            isvc = wait_for(lambda: (lambda o: o if _ready(o) == "False" else None)(
                c.get_json("inferenceservice", MODEL, "-n", ns)), 120, interval=1,
                what="the InferenceService not Ready while its node is lost")
            print("while the node was lost:", cond(isvc, "Ready"))
            # the serving pod was evicted (2 s toleration) and a replacement waits for a node
            wait_for(lambda: any(p["metadata"].get("deletionTimestamp") for p in c.pods(ns, f"mlops.dev/inference-service={MODEL}")),
                     90, interval=1, what="the serving pod evicted")
        finally:
            cluster.hold_component(c.cfg.name, "kubelet", hold=False)
        wait_for(lambda: _ready(c.get_json("inferenceservice", MODEL, "-n", ns)) == "True", 240, interval=1,
                 what="the InferenceService Ready again once the node is back")
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_a_missing_runtime_image_is_named_on_the_dataset(operator_on_real_node: Cluster, request):
    """The operator's runtime image is not on the node and cannot be pulled: the snapshot Job's
    pod never starts, and the Dataset says why instead of waiting silently."""
    c = operator_on_real_node
    ns = make_namespace(c, request, managed=True)
    missing = "ghcr.io/mlops-dev/mlops-runtime:0.0.0-missing"
    c.kubectl("set", "env", "deploy/mlops-operator", "-n", "mlops-system", f"MLOPS_RUNTIME_IMAGE={missing}")
    try:
        _only_operators_with(c, missing)
        c.apply(retail_dataset(rows=1000, name="waits"), ns)

        def degraded():
            ds = c.get_json("dataset", "waits", "-n", ns)
            d = cond(ds, "Degraded")
            return d if d.get("status") == "True" else None
        d = wait_for(degraded, 180, interval=1, what="the Dataset Degraded by its pod")
        assert d["reason"] == "PodCannotStart", d
        assert missing in d["message"] and ("ErrImagePull" in d["message"] or "ImagePullBackOff" in d["message"]), d
        assert any(e["reason"] == "PodCannotStart" for e in c.get_json("events", "-n", ns)["items"])
    finally:
        c.kubectl("set", "env", "deploy/mlops-operator", "-n", "mlops-system", f"MLOPS_RUNTIME_IMAGE={RUNTIME_IMAGE}")
        _only_operators_with(c, RUNTIME_IMAGE)
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _only_operators_with(c: Cluster, runtime_image: str) -> None:
    """After a rollout, old replicas still act while they terminate: wait until every operator
    pod left is a new one, running with `runtime_image`."""
    c.kubectl("rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)

    def settled() -> bool:
        pods = c.pods("mlops-system", "app.kubernetes.io/name=mlops-operator")
        envs = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0].get("env") or []} for p in pods]
        return bool(pods) and all(not p["metadata"].get("deletionTimestamp") for p in pods) and \
            all(e.get("MLOPS_RUNTIME_IMAGE") == runtime_image for e in envs)
    wait_for(settled, 120, interval=1, what=f"only operator pods with {runtime_image}")


def test_a_pvc_store_on_another_node_is_named_on_the_dataset(operator_on_real_node: Cluster, request, tmp_path):
    """The multi-node trap of the PVC store, on the real scheduler: the namespace's store claim
    is bound to a volume that lives on the real node (as a local or zonal disk lives on one node),
    and the Dataset's snapshot Job must run on the process node. The scheduler says the node
    "didn't match PersistentVolume's node affinity"; the Dataset says why, with the way out,
    instead of waiting silently."""
    from mlops_operator.controllers.pods import NOT_SHARED

    c = operator_on_real_node
    ns = make_namespace(c, request, pin_real=False, managed=True)
    pv = f"store-{ns}"[:63]
    try:
        c.apply(json.dumps({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(tmp_path / "vol")},
            "claimRef": {"namespace": ns, "name": "mlops-store"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [realnode.node_name(c.cfg)]}]}]}}}}))
        # the admin made the store claim on that volume (the operator adopts an existing claim as it is)
        c.apply(json.dumps({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "mlops-store"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                                     "resources": {"requests": {"storage": "1Gi"}}}}), ns)
        ds = yaml.safe_load(retail_dataset(rows=500, name="elsewhere"))
        ds["spec"]["job"] = {"nodeSelector": {"kubernetes.io/hostname": c.cfg.node_name}}
        c.apply(yaml.safe_dump(ds), ns)

        def degraded():
            d = cond(c.get_json("dataset", "elsewhere", "-n", ns), "Degraded")
            return d if d.get("status") == "True" else None
        d = wait_for(degraded, 180, interval=1, what="the Dataset Degraded by the store's node")
        assert d["reason"] == NOT_SHARED, d
        assert "mlops-store" in d["message"] and "PersistentVolume's node affinity" in d["message"], d
        assert "s3://" in d["message"] and "ReadWriteMany" in d["message"], d  # the ways out
        assert any(e["reason"] == NOT_SHARED for e in c.get_json("events", "-n", ns)["items"])
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        c.kubectl("delete", "pv", pv, "--wait=false", check=False)
