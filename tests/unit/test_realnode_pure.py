"""The real node's configuration, add-ons and teardown bookkeeping, without starting anything."""

from __future__ import annotations

import json
import tarfile
import tomllib
from io import BytesIO
from pathlib import Path

import pytest
import yaml

from mlops_operator.localcluster import addons, components, nodebins, realnode
from mlops_operator.localcluster.config import CLUSTER_DNS_IP, ClusterConfig


@pytest.fixture()
def cfg(tmp_path, monkeypatch) -> ClusterConfig:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path / "cache"))
    return ClusterConfig(name="unit", node_kinds=["process", "real"])


def _bins() -> dict[str, Path]:
    paths = {n: Path(f"/bin/{n}") for n in ("etcd", "kube-apiserver", "kube-controller-manager",
                                            "kube-scheduler", "kube-proxy", "kubectl")}
    paths.update(nodebins.node_binary_paths())
    return paths


def test_node_kinds_are_validated():
    assert ClusterConfig(name="a").node_kinds == ["process"]
    with pytest.raises(ValueError, match="choose one or both of process, real"):
        ClusterConfig(name="a", node_kinds=["docker"])
    with pytest.raises(ValueError):
        ClusterConfig(name="a", node_kinds=[])


def test_containerd_config_is_cri_v3_owned_by_the_cluster(cfg):
    doc = tomllib.loads(realnode.containerd_config(cfg, _bins()))
    assert doc["version"] == 3
    state = str(cfg.state_dir)
    assert doc["root"].startswith(state) and doc["state"].startswith("/run/mlops/unit/")
    rt = doc["plugins"]["io.containerd.cri.v1.runtime"]
    # root without CAP_SYS_RESOURCE: runc fails every sandbox otherwise
    assert rt["restrict_oom_score_adj"] is True
    assert rt["netns_mounts_under_state_dir"] is True
    runc = rt["containerd"]["runtimes"]["runc"]
    assert runc["options"]["BinaryName"] == str(nodebins.BUILDS["runc"].paths()["runc"])
    assert runc["options"]["SystemdCgroup"] is False
    assert rt["cni"]["bin_dirs"] == [str(nodebins.cni_bin_dir())]
    assert rt["cni"]["conf_template"].startswith(state)
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == realnode.PAUSE_IMAGE
    assert "io.containerd.internal.v1.opt" in doc["disabled_plugins"]


def test_cni_template_is_routed_ptp_over_the_node_pod_cidr(cfg):
    doc = json.loads(realnode.cni_template(cfg))
    ptp = doc["plugins"][0]
    assert ptp["type"] == "ptp" and ptp["ipMasq"] is False
    assert ptp["ipam"]["ranges"] == [[{"subnet": "{{.PodCIDR}}"}]]
    assert ptp["ipam"]["dataDir"].startswith(str(cfg.state_dir))
    assert {p["type"] for p in doc["plugins"]} == {"ptp", "portmap"}


def test_kubelet_config_authenticates_and_uses_cluster_dns(cfg, monkeypatch):
    monkeypatch.setattr(realnode, "cgroup_v1", lambda: True)
    kc = realnode.kubelet_config(cfg)
    assert kc["authentication"]["anonymous"]["enabled"] is False
    assert kc["authorization"]["mode"] == "Webhook"
    assert kc["readOnlyPort"] == 0
    assert kc["clusterDNS"] == [CLUSTER_DNS_IP]
    assert kc["cgroupRoot"] == "/mlops-unit"
    assert kc["failCgroupV1"] is False
    assert kc["containerRuntimeEndpoint"] == f"unix://{realnode.containerd_socket(cfg)}"
    monkeypatch.setattr(realnode, "cgroup_v1", lambda: False)
    assert "failCgroupV1" not in realnode.kubelet_config(cfg)


def test_unix_socket_path_fits():
    long = ClusterConfig(name="a" * 15)
    assert len(str(realnode.containerd_socket(long))) < 100


def test_components_by_node_kind(cfg):
    names = [c.name for c in components.control_plane(cfg, _bins())]
    assert names.index("containerd") < names.index("node-images") < names.index("kubelet")
    assert "node-agent" in names
    kubelet = next(c for c in components.control_plane(cfg, _bins()) if c.name == "kubelet")
    assert set(kubelet.after) == {"kube-apiserver", "containerd", "node-images"}
    assert "--node-ip" in kubelet.argv and realnode.REAL_NODE_IP in kubelet.argv
    images = next(c for c in components.control_plane(cfg, _bins()) if c.name == "node-images")
    assert images.oneshot

    real_only = ClusterConfig(name="r", node_kinds=["real"])
    comps = {c.name: c for c in components.control_plane(real_only, _bins())}
    assert "node-agent" not in comps
    proxy = comps["kube-proxy"]
    assert proxy.after == ["kubelet"]
    assert realnode.node_name(real_only) in proxy.argv

    process_only = ClusterConfig(name="p")
    comps = {c.name: c for c in components.control_plane(process_only, _bins())}
    assert "kubelet" not in comps and "containerd" not in comps


def test_archive_refs_read_the_oci_index(tmp_path):
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:00", "size": 1,
         "annotations": {realnode.REF_ANNOTATION: "localhost/mlops-pause:3.10"}}]}
    archive = tmp_path / "pause.tar"
    with tarfile.open(archive, "w") as tf:
        data = json.dumps(index).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tf.addfile(info, BytesIO(data))
    assert realnode.archive_refs(archive) == ["localhost/mlops-pause:3.10"]


def test_coredns_manifest_is_restricted_and_pinned_to_the_real_node():
    docs = [d for d in yaml.safe_load_all(addons.coredns_manifest("10.96.0.10", {"mlops.dev/node-kind": "real"}))]
    kinds = {d["kind"] for d in docs}
    assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"}
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"mlops.dev/node-kind": "real"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    svc = next(d for d in docs if d["kind"] == "Service")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert {p["port"] for p in svc["spec"]["ports"]} >= {53}
    corefile = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["Corefile"]
    assert "kubernetes cluster.local 244.10.in-addr.arpa 96.10.in-addr.arpa" in corefile
    assert "forward" not in corefile


def test_process_node_pods_get_the_cluster_resolver_like_a_kubelet_writes():
    from mlops_operator.localcluster.node.podspec import resolv_conf

    pod = {"metadata": {"namespace": "shop"}, "spec": {}}
    assert resolv_conf(pod, CLUSTER_DNS_IP, "cluster.local") == (
        f"nameserver {CLUSTER_DNS_IP}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n")
    assert resolv_conf(pod, None, "cluster.local") is None  # no CoreDNS in the cluster
    assert resolv_conf({"spec": {"dnsPolicy": "Default"}}, CLUSTER_DNS_IP, "cluster.local") is None
    custom = {"metadata": {"namespace": "a"}, "spec": {"dnsConfig": {
        "searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}}
    text = resolv_conf(custom, CLUSTER_DNS_IP, "cluster.local")
    assert "search a.svc.cluster.local svc.cluster.local cluster.local corp.example\n" in text
    assert text.endswith("options ndots:5 ndots:2 edns0\n")


def test_a_kernel_kill_is_named_with_the_limit():
    from mlops_operator.controllers.kube import killed_by_kernel

    msg = killed_by_kernel("OOMKilled", 137, "trainer", "64Mi")
    assert msg.startswith("OOMKilled:") and "'trainer'" in msg and "64Mi" in msg and "137" in msg
    assert "memory available" in killed_by_kernel("OOMKilled", 137, "trainer", None)
    assert killed_by_kernel("Error", 1, "trainer", "64Mi") is None
    assert killed_by_kernel("Completed", 0, "trainer", "64Mi") is None


def test_a_pod_that_cannot_start_is_named_and_traced_to_its_owner():
    from mlops_operator.controllers.kube import stuck_reason
    from mlops_operator.controllers.pods import owner_of

    waiting = {"status": {"containerStatuses": [{"name": "trainer", "state": {"waiting": {
        "reason": "ErrImageNeverPull", "message": 'Container image "x:1" is not present with pull policy of Never'}}}]}}
    assert stuck_reason(waiting) == 'ErrImageNeverPull: Container image "x:1" is not present with pull policy of Never'
    init = {"status": {"initContainerStatuses": [{"name": "fetch", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}
    assert stuck_reason(init) == "ImagePullBackOff: container fetch"
    # waiting that resolves by itself is not stuck
    assert stuck_reason({"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}}) is None
    assert stuck_reason({"status": {"containerStatuses": [{"state": {"running": {}}}]}}) is None
    assert stuck_reason({}) is None
    # a serving pod carries its model version too, but belongs to its InferenceService
    assert owner_of({"mlops.dev/inference-service": "p", "mlops.dev/model-version": "p-v1"}) == ("inferenceservices", "p")
    assert owner_of({"mlops.dev/model-version": "p-v1"}) == ("modelversions", "p-v1")
    assert owner_of({"mlops.dev/training-run": "r"}) == ("trainingruns", "r")
    assert owner_of({"mlops.dev/dataset": "d"}) == ("datasets", "d")
    assert owner_of({"app": "x"}) is None
