"""`mlops uninstall` (issue 16): the mlops objects go while the operator still runs (it releases
kopf's finalizer), then the operator's RBAC, admission policy and namespace; with the operator
gone, what still holds its finalizer is named, and `--strip-finalizers` releases it. The CRDs
are kept here (`--keep-crds`): the session's other tests use them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, Cluster, OperatorProcess, enable_namespace, wait_for

pytestmark = pytest.mark.cluster

FINALIZER = "mlops.dev/finalizer"


def model_version(name: str, finalizers: list[str] | None = None) -> str:
    return f"""
apiVersion: mlops.dev/v1alpha1
kind: ModelVersion
metadata: {{name: {name}, finalizers: {finalizers or []}}}
spec:
  model: m
  version: 1
  artifact: {{uri: "file:///store/models/m/{'a' * 64}/", digest: "{'a' * 64}"}}
"""


def uninstall(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_operator.cli.main", "uninstall", "--keep-crds",
                           "--kubeconfig", str(c.kubeconfig), *args], capture_output=True, text=True, timeout=300)


def gone(c: Cluster, *args: str) -> bool:
    return c.kubectl("get", *args, check=False).returncode != 0


def test_uninstall_deletes_the_objects_first_then_the_operator(local_cluster: Cluster, operator: OperatorProcess,
                                                              namespace: str):
    c, ns = local_cluster, namespace
    base = REPO / "manifests" / "base"
    c.kubectl("apply", "-f", str(base / "namespace.yaml"), "-f", str(base / "rbac.yaml"),
              "-f", str(base / "admission-policy.yaml"))
    enable_namespace(c, ns)
    c.apply(model_version("m-v1"), ns)
    wait_for(lambda: FINALIZER in (c.get_json("modelversion", "m-v1", "-n", ns)["metadata"].get("finalizers") or []),
             60, interval=0.5, what="the operator's finalizer")
    try:
        p = uninstall(c, "--timeout", "120")
        assert p.returncode == 0, p.stderr
        assert re.search(r"deleting \d+ mlops object\(s\) in namespace\(s\) .*" + ns, p.stdout), p.stdout
        assert gone(c, "modelversion", "m-v1", "-n", ns)  # released by the running operator, not stripped
        assert "removed the operator's finalizer" not in p.stdout
        for what in (("rolebinding", "mlops-operator", "-n", ns), ("clusterrole", "mlops-operator"),
                     ("clusterrole", "mlops-operator-namespace"), ("clusterrolebinding", "mlops-operator"),
                     ("validatingadmissionpolicy", "mlops-operator-workloads"),
                     ("validatingadmissionpolicybinding", "mlops-operator-workloads"),
                     ("serviceaccount", "mlops-operator", "-n", "mlops-system")):
            assert gone(c, *what), what
        assert not gone(c, "crd", "modelversions.mlops.dev")  # --keep-crds

        # the operator is gone: a finalizer it put there stays, and uninstall says which object
        operator.stop()
        c.apply(model_version("m-v2", [FINALIZER]), ns)
        p = uninstall(c, "--timeout", "3")
        assert p.returncode == 1 and f"ModelVersion/{ns}/m-v2" in p.stderr and "--strip-finalizers" in p.stderr, \
            (p.stdout, p.stderr)
        p = uninstall(c, "--strip-finalizers")
        assert p.returncode == 0, p.stderr
        assert "removed the operator's finalizer from" in p.stdout and f"ModelVersion/{ns}/m-v2" in p.stdout, p.stdout
        wait_for(lambda: gone(c, "modelversion", "m-v2", "-n", ns), 30, what="the stripped ModelVersion deleted")
    finally:
        operator.start()
        wait_for(lambda: gone(c, "namespace", "mlops-system"), 120, interval=1, what="mlops-system deleted")
