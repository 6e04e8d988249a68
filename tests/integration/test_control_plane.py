"""The real upstream control plane of the embedded cluster: health, API machinery, controllers, RBAC."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from mlops_operator.localcluster.config import KUBERNETES_VERSION
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.cluster


def test_api_server_reports_the_pinned_release(local_cluster: Cluster):
    version = json.loads(local_cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == f"v{KUBERNETES_VERSION}"
    assert version["major"] == "1" and version["minor"] == KUBERNETES_VERSION.split(".")[1]


def test_api_server_is_ready_with_every_check_passing(local_cluster: Cluster):
    out = local_cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in out
    assert "[+]etcd ok" in out
    assert "failed" not in out


@pytest.mark.parametrize("component", ["kube-controller-manager", "kube-scheduler"])
def test_controller_manager_and_scheduler_hold_their_leader_leases(local_cluster: Cluster, component: str):
    def renewed_lease():
        lease = local_cluster.get_json("lease", component, "-n", "kube-system")
        spec = lease["spec"]
        renew = dt.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
        age = (dt.datetime.now(dt.timezone.utc) - renew).total_seconds()
        return spec.get("holderIdentity") and age < 30 and spec

    spec = wait_for(renewed_lease, 60, what=f"{component} lease")
    assert spec["holderIdentity"]


def test_cli_status_reports_every_component_healthy(local_cluster: Cluster):
    from mlops_operator.localcluster import cluster

    st = cluster.status(local_cluster.cfg.name)
    assert st["running"]
    assert set(st["components"]) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                     "node-agent", "kube-proxy", "local-path-provisioner"}
    assert all(c["healthy"] and c["pid"] for c in st["components"].values()), st


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.mlops.dev
spec:
  group: test.mlops.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              min: {type: integer}
              max: {type: integer}
            x-kubernetes-validations:
            - rule: "!has(self.min) || !has(self.max) || self.min <= self.max"
              message: "min must not exceed max"
          status:
            type: object
            properties:
              phase: {type: string}
"""


@pytest.fixture(scope="module")
def widget_crd(local_cluster: Cluster):
    local_cluster.kubectl("apply", "-f", "-", input=CRD)
    local_cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.test.mlops.dev", "--timeout=60s")
    yield
    local_cluster.kubectl("delete", "crd", "widgets.test.mlops.dev", "--wait=false", check=False)


def test_custom_resource_round_trips_with_status_subresource(local_cluster: Cluster, namespace: str, widget_crd):
    api = client.CustomObjectsApi(local_cluster.api_client())
    body = {"apiVersion": "test.mlops.dev/v1", "kind": "Widget", "metadata": {"name": "w1"},
            "spec": {"size": 3}, "status": {"phase": "ignored-on-create"}}
    created = api.create_namespaced_custom_object("test.mlops.dev", "v1", namespace, "widgets", body)
    assert created["spec"] == {"size": 3}
    assert "status" not in created or created["status"] != {"phase": "ignored-on-create"}
    api.patch_namespaced_custom_object_status("test.mlops.dev", "v1", namespace, "widgets", "w1",
                                              {"status": {"phase": "Ready"}})
    got = api.get_namespaced_custom_object("test.mlops.dev", "v1", namespace, "widgets", "w1")
    assert got["status"] == {"phase": "Ready"}
    assert got["metadata"]["generation"] == 1  # a status write does not bump the generation
    # the short name works through kubectl
    assert "w1" in local_cluster.kubectl("get", "wdg", "-n", namespace).stdout


@pytest.mark.parametrize("spec,message", [
    ({"size": 11}, "should be less than or equal to 10"),
    ({"size": "big"}, 'spec.size: Invalid value: "string": spec.size in body must be of type integer'),
    ({}, "spec.size: Required value"),
    ({"size": 2, "min": 5, "max": 1}, "min must not exceed max"),
])
def test_invalid_custom_objects_are_rejected_with_their_message(local_cluster: Cluster, namespace: str,
                                                                 widget_crd, spec, message):
    doc = json.dumps({"apiVersion": "test.mlops.dev/v1", "kind": "Widget",
                      "metadata": {"name": "bad", "namespace": namespace}, "spec": spec})
    p = local_cluster.kubectl("apply", "-f", "-", input=doc, check=False)
    assert p.returncode != 0
    assert message in p.stderr
    assert local_cluster.kubectl("get", "widget", "bad", "-n", namespace, check=False).returncode != 0


def test_invalid_builtin_object_is_rejected_by_the_api_server(local_cluster: Cluster, namespace: str):
    doc = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "Bad_Name", "namespace": namespace},
                      "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
                               "template": {"metadata": {"labels": {"a": "c"}},
                                            "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    p = local_cluster.kubectl("apply", "-f", "-", input=doc, check=False)
    assert p.returncode != 0
    assert "metadata.name: Invalid value: \"Bad_Name\"" in p.stderr
    assert "spec.replicas: Invalid value: -1" in p.stderr
    assert "`selector` does not match template `labels`" in p.stderr


def test_deployment_makes_replicaset_and_pods_through_the_real_controllers(local_cluster: Cluster, namespace: str):
    local_cluster.kubectl("create", "deployment", "web", "--image=registry.k8s.io/pause:3.10",
                          "--replicas=2", "-n", namespace)
    rs = wait_for(lambda: local_cluster.get_json("rs", "-n", namespace, "-l", "app=web")["items"], 60,
                  what="ReplicaSet from the deployment controller")
    assert rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    def scheduled_pods():
        pods = local_cluster.pods(namespace, "app=web")
        return len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods) and pods

    pods = wait_for(scheduled_pods, 60, what="two pods bound to the node by the scheduler")
    node = local_cluster.cfg.node_name
    for p in pods:
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert p["spec"]["nodeName"] == node
    local_cluster.kubectl("rollout", "status", "deploy/web", "-n", namespace, "--timeout=60s")


def test_rbac_refuses_an_unbound_service_account_and_allows_a_bound_one(local_cluster: Cluster, namespace: str):
    local_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = local_cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    api_client = local_cluster.api_client()
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_reader = client.CoreV1Api(client.ApiClient(cfg))

    with pytest.raises(ApiException) as refused:
        as_reader.list_namespaced_pod(namespace)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert f'User "system:serviceaccount:{namespace}:reader" cannot list resource "pods"' in message

    local_cluster.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
    local_cluster.kubectl("create", "rolebinding", "reader", "--role=pod-reader",
                          f"--serviceaccount={namespace}:reader", "-n", namespace)
    pods = wait_for(lambda: _try_list(as_reader, namespace), 30, what="RBAC binding to take effect")
    assert isinstance(pods, client.V1PodList)
    # still refused outside what the role grants
    with pytest.raises(ApiException) as still:
        as_reader.list_namespaced_secret(namespace)
    assert still.value.status == 403


def _try_list(api: client.CoreV1Api, ns: str):
    try:
        return api.list_namespaced_pod(ns)
    except ApiException as e:
        if e.status == 403:
            return None
        raise
