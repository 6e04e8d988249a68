"""`kubectl wait --for=condition=Ready` returns on every kind after create, after a spec change
and after an alias change, on the real API server with the operator running.

kubectl wait skips a condition whose observedGeneration is older than metadata.generation (and
an object whose status.observedGeneration is), as kstatus (Flux) and Argo CD do: this is what
hung forever on a promoted ModelVersion before every reconcile re-observed the generation.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cluster, OperatorProcess
from tests.integration.test_training import get, retail_dataset, run

pytestmark = pytest.mark.cluster

RUN = """
  estimator: {type: LogisticRegression}
  promotion: {policy: always}
"""
ISVC = """
apiVersion: mlops.dev/v1alpha1
kind: InferenceService
metadata: {name: propensity}
spec: {model: propensity, alias: production, replicas: 1}
"""
DM = """
apiVersion: mlops.dev/v1alpha1
kind: DriftMonitor
metadata: {name: propensity}
spec:
  inferenceService: propensity
  interval: 5s
  window: {duration: 1m, minSamples: 50}
"""


def wait_ready(c: Cluster, ns: str, obj: str, timeout: int = 240) -> dict:
    p = c.kubectl("wait", "--for=condition=Ready", obj, "-n", ns, f"--timeout={timeout}s", check=False,
                  timeout=timeout + 30)
    kind, name = obj.split("/")
    got = get(c, kind, ns, name)
    assert p.returncode == 0, f"kubectl wait {obj}: {p.stderr}\n{json.dumps(got.get('status'), indent=1)[:3000]}"
    gen, st = got["metadata"]["generation"], got.get("status") or {}
    assert st.get("observedGeneration") == gen, (obj, gen, st.get("observedGeneration"))
    assert all(x.get("observedGeneration") == gen for x in st.get("conditions") or []), st.get("conditions")
    return got


def patch(c: Cluster, ns: str, obj: str, body: dict) -> int:
    c.kubectl("patch", obj, "-n", ns, "--type=merge", "-p", json.dumps(body))
    kind, name = obj.split("/")
    return get(c, kind, ns, name)["metadata"]["generation"]


def test_kubectl_wait_ready_returns_on_every_kind(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=1500), ns)
    wait_ready(c, ns, "dataset/retail")
    assert patch(c, ns, "dataset/retail", {"spec": {"versionHistoryLimit": 5}}) == 2
    ds = wait_ready(c, ns, "dataset/retail")
    assert ds["status"]["observedGeneration"] == 2

    c.apply(run("first", RUN), ns)
    tr = wait_ready(c, ns, "trainingrun/first")
    assert tr["status"]["phase"] == "Succeeded"
    assert not any(x["type"] in ("Reconciling", "Stalled") for x in tr["status"]["conditions"])

    mv = wait_ready(c, ns, "modelversion/propensity-v1")
    assert mv["metadata"]["generation"] >= 2  # the promotion added an alias: a spec change
    gen = patch(c, ns, "modelversion/propensity-v1", {"spec": {"aliases": ["production", "staging"]}})
    mv = wait_ready(c, ns, "modelversion/propensity-v1", timeout=60)
    assert mv["metadata"]["generation"] == gen and "staging" in mv["status"]["heldAliases"]

    c.apply(ISVC, ns)
    wait_ready(c, ns, "inferenceservice/propensity")
    assert patch(c, ns, "inferenceservice/propensity", {"spec": {"replicas": 2}}) == 2
    isvc = wait_ready(c, ns, "inferenceservice/propensity")
    assert isvc["status"]["replicas"] == 2

    c.apply(DM, ns)
    wait_ready(c, ns, "driftmonitor/propensity", timeout=120)
    assert patch(c, ns, "driftmonitor/propensity", {"spec": {"interval": "7s"}}) == 2
    wait_ready(c, ns, "driftmonitor/propensity", timeout=60)

    # a second version moves production: both versions are re-observed
    c.apply(run("second", RUN), ns)
    wait_ready(c, ns, "trainingrun/second")
    wait_ready(c, ns, "modelversion/propensity-v2", timeout=60)
    v1 = wait_ready(c, ns, "modelversion/propensity-v1", timeout=60)
    assert "production" not in (v1["spec"].get("aliases") or [])


@pytest.mark.parametrize("kind", ["dataset", "trainingrun", "modelversion", "inferenceservice", "driftmonitor"])
def test_kubectl_explain_documents_every_kind(local_cluster: Cluster, operator: OperatorProcess, kind: str):
    """`kubectl explain` as a user runs it against the API server: the kind, spec and status
    have descriptions (DriftMonitor.spec showed `<empty>`), and none names internals."""
    for path in (kind, f"{kind}.spec", f"{kind}.status"):
        out = local_cluster.kubectl("explain", path).stdout
        desc = out.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0].strip()
        assert desc and "<empty>" not in desc, (path, out[:500])
        assert "spec_rules" not in out, path
    full = local_cluster.kubectl("explain", kind, "--recursive").stdout
    assert "<empty>" not in full
