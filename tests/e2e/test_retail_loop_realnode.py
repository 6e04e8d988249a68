"""The whole loop on the real node: the operator, the snapshot, training and verification Jobs
and the model servers all run from the built images under the upstream kubelet, containerd
and runc, in namespaces that enforce Pod Security "restricted". Then what only a real node
shows at the operator's level: a TrainingRun killed by the kernel for its memory limit, and an
InferenceService whose node is lost and comes back."""

from __future__ import annotations

import json

import pytest

from mlops_operator.cli.retail_loop import MODEL, cond
from mlops_operator.localcluster import cluster
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
    ns = make_namespace(c, request)
    try:
        _loop_in_cluster(c, ns, tmp_path, image=RUNTIME_IMAGE)
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
    ns = make_namespace(c, request)
    node = f"mlops-{c.cfg.name}-real"
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
        wait_for(lambda: _ready(c.get_json("inferenceservice", MODEL, "-n", ns)) == "True", 240, interval=1,
                 what="the InferenceService Ready")
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
    ns = make_namespace(c, request)
    missing = "ghcr.io/mlops-dev/mlops-runtime:0.0.0-missing"
    c.kubectl("set", "env", "deploy/mlops-operator", "-n", "mlops-system", f"MLOPS_RUNTIME_IMAGE={missing}")
    try:
        c.kubectl("rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)
        c.apply(retail_dataset(rows=500, name="waits"), ns)

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
        c.kubectl("rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
