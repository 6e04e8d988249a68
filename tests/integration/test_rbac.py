"""Least privilege per namespace (issue 16), proven on the real API server as the operator's
ServiceAccount (the admin kubeconfig impersonating it, `kubectl --as`): after applying
manifests/base's RBAC and admission policy, the operator may create workloads only in a
namespace an admin enabled (manifests/namespace), never in kube-system, and even there only
with a ServiceAccount the namespace allows and without host access.

Every request is a server-side dry run: authorization and admission run in full, nothing is
created."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import REPO, Cluster, enable_namespace

pytestmark = pytest.mark.cluster

OPERATOR = "system:serviceaccount:mlops-system:mlops-operator"
POLICY = "ValidatingAdmissionPolicy 'mlops-operator-workloads' with binding 'mlops-operator-workloads' denied request"


@pytest.fixture(scope="module")
def rbac(local_cluster: Cluster) -> Cluster:
    c = local_cluster
    base = REPO / "manifests" / "base"
    c.kubectl("apply", "-f", str(base / "namespace.yaml"), "-f", str(base / "rbac.yaml"),
              "-f", str(base / "admission-policy.yaml"))
    return c


@pytest.fixture
def managed(rbac: Cluster, namespace: str) -> str:
    """A namespace enabled as an admin does, whose admin allows two more ServiceAccounts."""
    enable_namespace(rbac, namespace)
    rbac.kubectl("annotate", "namespace", namespace, "mlops.dev/allowed-service-accounts=trainer, server")
    return namespace


@pytest.fixture
def unmanaged(rbac: Cluster):
    name = f"t-unmanaged-{uuid.uuid4().hex[:6]}"
    rbac.kubectl("create", "namespace", name)
    yield name
    rbac.kubectl("delete", "namespace", name, "--wait=false", check=False)


def job(pod: dict | None = None, container: dict | None = None) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": "probe-"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", **(pod or {}), "containers": [
                {"name": "c", "image": "mlops-runtime:test", "command": ["true"], **(container or {})}]}}}}


def deployment(pod: dict | None = None) -> dict:
    labels = {"app": "probe"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generateName": "probe-"},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                **(pod or {}), "containers": [{"name": "c", "image": "mlops-server:test"}]}}}}


def cronjob(pod: dict | None = None) -> dict:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"generateName": "probe-"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": job(pod)["spec"]}}}


def as_operator(c: Cluster, namespace: str, obj: dict, user: str | None = OPERATOR) -> tuple[bool, str]:
    """(created, stderr) of a server-side dry-run create in `namespace`, as `user` (None: the admin)."""
    p = c.kubectl("create", *([f"--as={user}"] if user else []), "-n", namespace, "--dry-run=server",
                  "-f", "-", input=json.dumps(obj), check=False)
    return p.returncode == 0, p.stderr.strip()


def can_i(c: Cluster, *args: str) -> bool:
    p = c.kubectl("auth", "can-i", f"--as={OPERATOR}", *args, check=False)
    return p.stdout.strip() == "yes"


def test_the_operator_creates_workloads_only_in_an_enabled_namespace(rbac: Cluster, managed: str, unmanaged: str):
    c = rbac
    assert as_operator(c, managed, job()) == (True, "")
    assert as_operator(c, managed, deployment())[0]
    for ns in (unmanaged, "kube-system"):
        for obj, what in ((job(), 'cannot create resource "jobs" in API group "batch"'),
                          (deployment(), 'cannot create resource "deployments" in API group "apps"')):
            ok, err = as_operator(c, ns, obj)
            assert not ok and "Forbidden" in err and what in err and f'in the namespace "{ns}"' in err, (ns, err)
    # what the cluster-wide role leaves to a stolen token: reads, and patches of mlops objects
    assert can_i(c, "list", "jobs", "--all-namespaces") and can_i(c, "watch", "pods", "--all-namespaces")
    assert can_i(c, "patch", "datasets.mlops.dev", "-n", unmanaged)  # kopf releases its finalizer anywhere
    assert not can_i(c, "create", "jobs", "-n", unmanaged)
    assert not can_i(c, "patch", "datasets.mlops.dev", "--subresource=status", "-n", unmanaged)
    assert not can_i(c, "create", "pods", "-n", managed)  # only its Jobs and Deployments make pods
    assert not can_i(c, "get", "secrets", "-n", managed) and not can_i(c, "get", "secrets", "-n", "kube-system")
    assert not can_i(c, "create", "rolebindings", "-n", managed)
    assert not can_i(c, "create", "serviceaccounts", "--subresource=token", "-n", managed)


def test_the_admission_policy_allows_only_the_namespaces_service_accounts(rbac: Cluster, managed: str):
    c = rbac
    for sa in ("default", "trainer", "server"):  # the annotation lists "trainer, server"
        assert as_operator(c, managed, job({"serviceAccountName": sa}))[0], sa
    refused = {
        "Job": job({"serviceAccountName": "builder"}),
        "Job (deprecated serviceAccount)": job({"serviceAccount": "builder"}),
        "Deployment": deployment({"serviceAccountName": "builder"}),
    }
    for what, obj in refused.items():
        ok, err = as_operator(c, managed, obj)
        assert not ok and "is forbidden" in err and POLICY in err, (what, err)
        assert (f"ServiceAccount builder is not allowed for mlops workloads in namespace {managed}: its admin lists "
                'the allowed ones in the namespace annotation mlops.dev/allowed-service-accounts (now: '
                '"trainer,server")') in err, (what, err)
    # only the operator is held to it: the same Job from anyone else is the namespace's business
    assert as_operator(c, managed, job({"serviceAccountName": "builder"}), user=None) == (True, "")
    # without the annotation only `default` is allowed
    c.kubectl("annotate", "namespace", managed, "mlops.dev/allowed-service-accounts-")
    ok, err = as_operator(c, managed, job({"serviceAccountName": "trainer"}))
    assert not ok and 'ServiceAccount trainer is not allowed' in err and '(now: "")' in err, err


def test_the_policy_covers_every_workload_kind_beyond_what_the_rbac_grants(rbac: Cluster, managed: str):
    """Pods, CronJobs, ReplicaSets, StatefulSets and DaemonSets are not in the operator's roles;
    should an admin (or a later version) grant them, the policy holds them too."""
    c = rbac
    kinds = {"pods": ("", "v1", "Pod"), "cronjobs": ("batch", "batch/v1", "CronJob"),
             "replicasets": ("apps", "apps/v1", "ReplicaSet"), "statefulsets": ("apps", "apps/v1", "StatefulSet"),
             "daemonsets": ("apps", "apps/v1", "DaemonSet")}
    c.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "more-workloads"},
         "rules": [{"apiGroups": [g], "resources": [r], "verbs": ["create"]} for r, (g, _, _) in kinds.items()]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "more-workloads"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "more-workloads"},
         "subjects": [{"kind": "ServiceAccount", "name": "mlops-operator", "namespace": "mlops-system"}]},
        # both exist (a pod naming a missing one is refused before the policy): `builder` stands
        # for a powerful account of the namespace's own (a CI deployer, say)
        *({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}} for sa in ("trainer", "builder"))]}),
        managed)

    def workload(resource: str, sa: str) -> dict:
        _, api, kind = kinds[resource]
        pod = job({"serviceAccountName": sa})["spec"]["template"]["spec"]
        if kind == "Pod":
            return {"apiVersion": api, "kind": kind, "metadata": {"generateName": "probe-"}, "spec": pod}
        if kind == "CronJob":
            return cronjob({"serviceAccountName": sa})
        labels = {"app": "probe"}
        pod = dict(pod, restartPolicy="Always")
        spec: dict = {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}}
        if kind == "StatefulSet":
            spec["serviceName"] = "probe"
        return {"apiVersion": api, "kind": kind, "metadata": {"generateName": "probe-"}, "spec": spec}

    for resource in kinds:
        assert as_operator(c, managed, workload(resource, "trainer")) == (True, ""), resource
        ok, err = as_operator(c, managed, workload(resource, "builder"))
        assert not ok and POLICY in err and "ServiceAccount builder is not allowed" in err, (resource, err)


@pytest.mark.parametrize("what, pod, container, message", [
    ("hostPath", {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, None,
     "mlops workloads may not mount a hostPath volume"),
    ("privileged", None, {"securityContext": {"privileged": True}},
     "mlops workloads may not run a privileged container or add capabilities"),
    ("capabilities", None, {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
     "mlops workloads may not run a privileged container or add capabilities"),
    ("hostNetwork", {"hostNetwork": True}, None, "mlops workloads may not use the node's network, PID or IPC"),
    ("hostPID", {"hostPID": True}, None, "mlops workloads may not use the node's network, PID or IPC"),
])
def test_the_admission_policy_refuses_host_access(rbac: Cluster, managed: str, what, pod, container, message):
    ok, err = as_operator(rbac, managed, job(pod, container))
    assert not ok and POLICY in err and message in err, (what, err)
    init = job(pod)
    if container:  # init containers are held to it too
        init["spec"]["template"]["spec"]["initContainers"] = [{"name": "i", "image": "x", **container}]
        ok, err = as_operator(rbac, managed, init)
        assert not ok and message in err, (what, err)


def test_cluster_wide_mode_still_keeps_the_operator_out_of_system_namespaces(rbac: Cluster, unmanaged: str):
    """components/cluster-wide binds the write role everywhere (RBAC no longer refuses
    kube-system): the admission policy still does, with its own message."""
    c = rbac
    component = REPO / "manifests" / "components" / "cluster-wide" / "clusterrolebinding.yaml"
    c.kubectl("apply", "-f", str(component))
    try:
        assert as_operator(c, unmanaged, job())[0]  # every namespace is managed now
        for ns in ("kube-system", "kube-public", "kube-node-lease", "mlops-system"):
            for obj, resource in ((job(), "jobs"), (deployment(), "deployments")):
                ok, err = as_operator(c, ns, obj)
                assert not ok and POLICY in err, (ns, err)
                assert f"the mlops operator may not create or update {resource} in the system namespace {ns}" in err
    finally:
        c.kubectl("delete", "-f", str(component), "--ignore-not-found")
    assert not as_operator(c, unmanaged, job())[0]
