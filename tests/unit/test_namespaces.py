"""Least privilege per namespace (issue 16), the parts without a cluster: which namespaces the
operator handles, kopf's refused patches, a refused child shown on its owner, the manifests
the CLI mirrors, and the two roles' split. tests/integration/test_rbac.py proves the RBAC and
the admission policy on a real API server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import yaml
from kubernetes.client.rest import ApiException

from mlops_operator.controllers import dataset as dsc
from mlops_operator.controllers import kube, namespaces
from mlops_operator.settings import Settings

from .fakekube import FakeKube

REPO = Path(__file__).resolve().parents[2]
SETTINGS = Settings(runtime_image="runtime", store_claim="mlops-store", store_size="1Gi",
                    store_access_mode="ReadWriteOnce", store_storage_class=None, server_image="server")


def load(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / path).read_text()) if d]


@pytest.fixture
def reviews(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """The API server's answers per namespace (popped in order; the last one stays)."""
    answers: dict[str, list] = {}
    asked: list[str] = []

    def review(ns: str):
        asked.append(ns)
        got = answers[ns]
        return got.pop(0) if len(got) > 1 else got[0]

    namespaces.forget()
    monkeypatch.setattr(namespaces, "review", review)
    answers["_asked"] = asked
    yield answers
    namespaces.forget()


def body(kind: str = "Dataset", name: str = "d") -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": kind, "metadata": {"name": name}}


def test_a_managed_namespace_is_handled_and_asked_about_once_a_minute(reviews):
    reviews["team"] = [True]
    assert namespaces.managed(namespace="team", body=body())
    assert namespaces.managed(namespace="team", body=body("TrainingRun", "r"))
    assert reviews["_asked"] == ["team"]


def test_an_unmanaged_namespace_is_ignored_with_one_warning_per_object(reviews, caplog, monkeypatch):
    reviews["other"] = [False]
    with caplog.at_level(logging.WARNING, logger="mlops.namespaces"):
        assert not namespaces.managed(namespace="other", body=body())
        assert not namespaces.managed(namespace="other", body=body())  # the same event's next handler
        assert not namespaces.managed(namespace="other", body={"kind": "Job", "metadata": {"name": "j"}})
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "Dataset other/d is ignored" in warnings[0] and "mlops enable-namespace other" in warnings[0]
    assert reviews["_asked"] == ["other"]  # the "no" is shared for UNMANAGED_TTL


def test_a_namespace_enabled_later_is_handled_at_its_next_event(reviews, monkeypatch):
    reviews["late"] = [False, True]
    assert not namespaces.managed(namespace="late", body=body())
    monkeypatch.setattr(namespaces, "UNMANAGED_TTL", 0.0)
    namespaces.forget()
    assert namespaces.managed(namespace="late", body=body())


def test_no_answer_means_act_as_before(reviews):
    reviews["x"] = [None]
    assert namespaces.managed(namespace="x", body=body())
    assert namespaces.managed(namespace=None, body=body())  # cluster-scoped: nothing to ask


def test_every_handler_is_filtered_by_managed():
    """A handler without the filter would put kopf's finalizer on objects in any namespace."""
    import kopf

    from mlops_operator.controllers.handlers import register_all

    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        register_all(SETTINGS)
    finally:
        kopf.set_default_registry(previous)
    handlers = [*registry._changing._handlers, *registry._watching._handlers, *registry._spawning._handlers]
    assert len(handlers) >= 15
    unfiltered = [h.id for h in handlers if h.when is not namespaces.managed and h.when is not dsc._ticking]
    assert not unfiltered, unfiltered


def test_a_refused_kopf_patch_is_logged_not_fatal(monkeypatch, caplog):
    """kopf turns a 403 on its own patch into an operator exit; the guard keeps it to one object."""
    from kopf._cogs.clients import errors, patching

    calls = []

    async def refused(**kwargs):
        calls.append(kwargs)
        raise errors.APIForbiddenError({"message": "forbidden"}, status=403, headers={})

    monkeypatch.setattr(patching, "patch_obj", refused)
    assert namespaces.guard_kopf_patches()
    assert namespaces.guard_kopf_patches()  # installed once
    resource = type("R", (), {"plural": "datasets", "group": "mlops.dev"})()
    with caplog.at_level(logging.ERROR, logger="mlops.namespaces"):
        got = asyncio.run(patching.patch_obj(namespace="team", name="d", resource=resource, patch={}, settings=None,
                                             logger=logging.getLogger()))
    assert got == (None, None) and len(calls) == 1
    assert "datasets.mlops.dev team/d was not updated" in caplog.text
    with pytest.raises(errors.APIForbiddenError):  # peering, cluster-scoped: kopf's own behaviour
        asyncio.run(patching.patch_obj(namespace=None, name="p", resource=resource, patch={}, settings=None,
                                       logger=logging.getLogger()))


def test_a_403_on_a_child_is_refused_with_the_api_servers_message():
    message = ('jobs.batch "j" is forbidden: ValidatingAdmissionPolicy \'mlops-operator-workloads\' with binding '
               '\'mlops-operator-workloads\' denied request: ServiceAccount builder is not allowed')
    e = ApiException(status=403, reason="Forbidden")
    e.body = json.dumps({"kind": "Status", "message": message})
    err = kube._refused(e, "create", {"kind": "Job", "metadata": {"name": "j", "namespace": "team"}})
    assert isinstance(err, kube.Refused) and err.reason == "Forbidden"
    assert str(err).startswith("the API server refused to create Job j in namespace team: ")
    assert "ServiceAccount builder is not allowed" in str(err)
    other = ApiException(status=500)
    assert kube._refused(other, "create", {"kind": "Job", "metadata": {"name": "j"}}) is other


def test_a_refused_snapshot_job_stalls_the_dataset_with_reason_forbidden(fake: FakeKube, monkeypatch):
    import kopf

    fake.add("datasets", {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
                          "spec": {"source": {"type": "generator", "generator": {"rows": 100}},
                                   "job": {"serviceAccountName": "builder"}}})
    create = fake.create_or_adopt

    async def refusing(obj):
        if obj["kind"] == "Job":
            raise kube.Refused(f"the API server refused to create Job {obj['metadata']['name']}: ServiceAccount "
                               "builder is not allowed")
        return await create(obj)

    monkeypatch.setattr(kube, "create_or_adopt", refusing)
    with pytest.raises(kopf.TemporaryError):  # retried: an admin may allow the ServiceAccount
        asyncio.run(dsc.reconcile("ns", "d", SETTINGS))
    ds = fake.get("datasets", "d")
    stalled = next(c for c in ds["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "Forbidden"
    assert "builder is not allowed" in stalled["message"]
    assert [(t, r) for t, r, _ in fake.events] == [("Warning", "Forbidden")]


# ------------------------------------------------------------------------------ the manifests

def test_the_cli_creates_the_rolebinding_of_manifests_namespace():
    from mlops_operator.cli.access import role_binding

    (rb,) = load("manifests/namespace/rolebinding.yaml")
    rb["metadata"]["namespace"] = "team"
    assert role_binding("team") == rb


def test_cluster_wide_mode_binds_the_same_role_to_the_same_subject():
    (rb,) = load("manifests/namespace/rolebinding.yaml")
    (crb,) = load("manifests/components/cluster-wide/clusterrolebinding.yaml")
    assert crb["kind"] == "ClusterRoleBinding"
    assert crb["roleRef"] == rb["roleRef"] and crb["subjects"] == rb["subjects"]
    assert yaml.safe_load((REPO / "manifests/components/cluster-wide/kustomization.yaml").read_text())["kind"] == \
        "Component"


def test_the_cluster_wide_role_creates_nothing_and_writes_no_workload():
    """What a stolen token can do in a namespace nobody enabled: read, and patch mlops objects
    (kopf's finalizers), never create, update or delete anything, nor any subresource."""
    from mlops_operator.localcluster import audit

    roles = {d["metadata"]["name"]: d for d in load("manifests/base/rbac.yaml") if d["kind"] == "ClusterRole"}
    wide = audit.granted(roles["mlops-operator"])
    writes = {(g, r, v) for g, r, v in wide if v not in ("get", "list", "watch")}
    assert writes == {("mlops.dev", p, "patch") for p in ("datasets", "trainingruns", "modelversions",
                                                           "inferenceservices", "driftmonitors")} | \
        {("kopf.dev", "clusterkopfpeerings", v) for v in ("patch", "create")}
    ns_role = audit.granted(roles["mlops-operator-namespace"])
    assert ("batch", "jobs", "create") in ns_role and ("apps", "deployments", "create") in ns_role
    assert not {p for p in ns_role if p[2] in ("list", "watch")}  # watching is cluster-wide
    # which ClusterRole is bound how
    bindings = {d["metadata"]["name"]: d for d in load("manifests/base/rbac.yaml") if d["kind"].endswith("Binding")}
    assert [b["roleRef"]["name"] for b in bindings.values()] == ["mlops-operator"]


def test_the_admission_policy_matches_only_the_operator():
    policy, binding = load("manifests/base/admission-policy.yaml")
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    (cond,) = policy["spec"]["matchConditions"]
    assert cond["expression"] == \
        'request.userInfo.username == "system:serviceaccount:mlops-system:mlops-operator"'
    resources = {r for rule in policy["spec"]["matchConstraints"]["resourceRules"] for r in rule["resources"]}
    assert resources == {"pods", "jobs", "cronjobs", "deployments", "replicasets", "statefulsets", "daemonsets"}
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert "admission-policy.yaml" in yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())[
        "resources"]
