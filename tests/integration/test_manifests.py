"""The manifests a cluster admin applies, proven against the real API server: every
kustomization builds and is accepted by a server-side dry run, and every pod the operator
generates is admitted by Pod Security "restricted"."""

from __future__ import annotations

import json

import pytest
import yaml

from mlops_operator.cli.export import export_pod
from mlops_operator.settings import Settings
from mlops_operator.resources.model_version import verify_job
from mlops_operator.resources.serving import canary_deployment, deployment
from mlops_operator.resources.snapshot_job import snapshot_job
from mlops_operator.resources.training_job import training_job
from tests.conftest import REPO, Cluster

pytestmark = pytest.mark.cluster

# kustomizations whose kinds all exist on a bare cluster (monitoring/ and argocd/ need the
# Prometheus Operator's and Argo CD's CRDs: they are built, not applied)
APPLIED = ["crds", "manifests/base", "manifests/overlays/local", "manifests/overlays/dev",
           "manifests/overlays/production", "manifests/namespace"]
BUILT_ONLY = ["manifests/monitoring", "manifests/argocd"]


@pytest.mark.parametrize("path", APPLIED + BUILT_ONLY)
def test_kustomization_builds(local_cluster: Cluster, path: str):
    if not (REPO / path / "kustomization.yaml").exists():
        pytest.fail(f"{path} has no kustomization.yaml")
    out = local_cluster.kubectl("kustomize", str(REPO / path)).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert docs and all(d.get("kind") and d.get("apiVersion") for d in docs)


@pytest.mark.parametrize("path", APPLIED)
def test_kustomization_is_accepted_by_a_server_side_dry_run(local_cluster: Cluster, path: str):
    c = local_cluster
    c.kubectl("apply", "-k", str(REPO / "crds"))  # the overlays' custom resources need them
    # a dry run creates nothing, so the namespaces the bundle's other objects live in must exist
    docs = [d for d in yaml.safe_load_all(c.kubectl("kustomize", str(REPO / path)).stdout) if d]
    for ns in (d for d in docs if d["kind"] == "Namespace"):
        c.kubectl("apply", "-f", "-", input=json.dumps(ns))
    p = c.kubectl("apply", "--dry-run=server", "-k", str(REPO / path), check=False)
    assert p.returncode == 0, p.stderr


def _owner(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": "x", "uid": "00000000-0000-0000-0000-000000000000",
                         "generation": 1}, "spec": spec}


def generated_pod_specs() -> dict[str, dict]:
    s = Settings.from_env()
    ds = _owner("Dataset", "d", {"source": {"type": "generator", "generator": {"rows": 10}}})
    run = _owner("TrainingRun", "r", {"modelName": "m", "dataset": {"name": "d"},
                                      "estimator": {"type": "LogisticRegression"},
                                      "job": {"resources": {"requests": {"cpu": "100m"}}}})
    mv = _owner("ModelVersion", "m-v1", {"model": "m", "version": 1,
                                         "artifact": {"uri": "file:///store/models/m/" + "a" * 64 + "/",
                                                      "digest": "a" * 64}})
    isvc = _owner("InferenceService", "m", {"model": "m", "alias": "production", "replicas": 1})
    base = yaml.safe_load_all((REPO / "manifests" / "base" / "operator.yaml").read_text())
    op = next(d for d in base if d and d.get("kind") == "Deployment")
    return {
        "operator": op["spec"]["template"]["spec"],
        "snapshot Job": snapshot_job(ds, "t", None, s)["spec"]["template"]["spec"],
        "training Job": training_job(run, s)["spec"]["template"]["spec"],
        "verify Job": verify_job(mv, "t", s)["spec"]["template"]["spec"],
        "model server": deployment(isvc, mv, s)["spec"]["template"]["spec"],
        "canary model server": canary_deployment(isvc, mv, 1, s)["spec"]["template"]["spec"],
        "kubectl mlops export": export_pod("e", "x", "m-v1", mv["spec"]["artifact"]["uri"], "a" * 64,
                                            "token")["spec"],
    }


def test_every_generated_pod_is_admitted_under_pod_security_restricted(local_cluster: Cluster, namespace: str):
    c = local_cluster
    c.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
              "pod-security.kubernetes.io/enforce-version=latest", "--overwrite")
    # the check has teeth: a privileged pod is refused in this namespace
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]}}
    p = c.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0 and "violates PodSecurity" in p.stderr
    c.kubectl("create", "serviceaccount", "mlops-operator", "-n", namespace)  # the operator pod names it
    refused = {}
    for what, spec in generated_pod_specs().items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": spec}
        p = c.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
        if p.returncode != 0:
            refused[what] = p.stderr.strip()
    assert not refused, refused
