"""The real node: the upstream kubelet with containerd and runc runs the project's built images.

What the process node cannot prove is checked here against the kernel and the runtime:
Pod Security "restricted" enforced at run time (user, read-only root, seccomp, no privilege
escalation), memory limits the kernel enforces, exec / port-forward / logs -f through the
real kubelet, cluster DNS from both kinds of node, a missing image reported, containerd
restarting under running containers, and a node lost and regained."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from mlops_operator.localcluster import binaries, cluster, realnode
from mlops_operator.localcluster.forward import free_port
from tests.conftest import Cluster, make_namespace, wait_for

pytestmark = pytest.mark.cluster

SERVER_IMAGE = "ghcr.io/mlops-dev/mlops-server:0.1.0"
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
POD_SC = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
HTTP_SERVER = ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "-d", "/etc"]


def pod(name: str, command: list[str], *, image: str = SERVER_IMAGE, labels: dict | None = None,
        restart: str = "Always", limits: dict | None = None, node_selector: dict | None = None,
        pod_sc: dict | None = None, container_sc: dict | None = None, pull: str = "Never",
        extra: dict | None = None) -> str:
    spec = {
        "restartPolicy": restart, "securityContext": POD_SC if pod_sc is None else pod_sc,
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": image, "imagePullPolicy": pull, "command": command,
                        "securityContext": RESTRICTED if container_sc is None else container_sc,
                        "resources": {"limits": limits or {"memory": "256Mi", "cpu": "500m"}}}],
        **(extra or {}),
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                       "spec": spec})


def running(c: Cluster, ns: str, name: str, timeout: float = 90) -> dict:
    def ready():
        p = c.get_json("pod", name, "-n", ns)
        st = p.get("status", {})
        ok = any(x["type"] == "Ready" and x["status"] == "True" for x in st.get("conditions", []))
        return p if ok else None
    return wait_for(ready, timeout, what=f"pod {ns}/{name} Ready")


def waiting_reason(c: Cluster, ns: str, name: str) -> str:
    st = c.get_json("pod", name, "-n", ns).get("status", {})
    return ((st.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting") or {}).get("reason", "")


def test_the_real_node_joins_beside_the_process_node(real_cluster: Cluster):
    c = real_cluster
    nodes = {n["metadata"]["name"]: n for n in c.get_json("nodes")["items"]}
    real = nodes[realnode.node_name(c.cfg)]
    assert c.cfg.node_name in nodes  # the process node is in the same cluster
    info = real["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"] == "containerd://2.4.2"
    assert info["kubeletVersion"] == f"v{c.cfg.kubernetes_version}"
    assert real["metadata"]["labels"]["mlops.dev/node-kind"] == "real"
    assert {"type": "InternalIP", "address": realnode.REAL_NODE_IP} in real["status"]["addresses"]
    assert any(x["type"] == "Ready" and x["status"] == "True" for x in real["status"]["conditions"])
    st = cluster.status(c.cfg.name)
    assert st["nodeKinds"] == ["process", "real"]
    assert st["realNode"]["cgroups"].startswith("v1" if realnode.cgroup_v1() else "v2")
    assert {"containerd", "kubelet", "node-agent"} <= set(st["components"])
    # the node is authorised as itself only (Node authorizer + NodeRestriction)
    kc = c.cfg.path("kubeconfigs", "node-real.conf")
    kubectl = str(binaries.binary_path("kubectl"))
    other = subprocess.run([kubectl, "--kubeconfig", str(kc), "--server", c.cfg.server_url, "label", "node",
                            c.cfg.node_name, "x=y"], capture_output=True, text=True)
    assert other.returncode != 0 and "forbidden" in other.stderr.lower(), other.stderr


def test_restricted_pod_is_enforced_by_the_runtime(real_cluster: Cluster, real_namespace: str):
    c, ns = real_cluster, real_namespace
    c.apply(pod("restricted", ["sleep", "3600"], limits={"memory": "200Mi", "cpu": "250m"}), ns)
    p = running(c, ns, "restricted")
    assert p["spec"]["nodeName"] == realnode.node_name(c.cfg)
    script = ("id -u; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; "
              "touch /probe 2>&1 || true; grep -E '^CapEff' /proc/self/status; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
    out = c.kubectl("exec", "-n", ns, "restricted", "--", "sh", "-c", script).stdout
    lines = out.split("\n")
    assert lines[0] == "1000"
    assert "NoNewPrivs:\t1" in out  # allowPrivilegeEscalation: false
    assert "Seccomp:\t2" in out  # RuntimeDefault: a filter is installed
    assert "Read-only file system" in out  # readOnlyRootFilesystem
    assert "CapEff:\t0000000000000000" in out  # capabilities dropped
    assert str(200 * 1024 * 1024) in out  # the cgroup memory limit is the pod's
    # admission: a privileged pod never reaches the node
    bad = c.kubectl("apply", "-n", ns, "-f", "-", check=False, input=pod(
        "privileged", ["sleep", "1"], container_sc={"privileged": True}))
    assert bad.returncode != 0 and "violates PodSecurity" in bad.stderr, bad.stderr


def test_the_kubelet_refuses_root_where_non_root_is_required(real_cluster: Cluster, request):
    """Not admission: a namespace without Pod Security; the kubelet itself refuses to start it."""
    c = real_cluster
    ns = make_namespace(c, request, restricted=False)
    try:
        c.apply(pod("asroot", ["sleep", "60"], pod_sc={"runAsNonRoot": True, "runAsUser": 0}), ns)
        wait_for(lambda: waiting_reason(c, ns, "asroot") == "CreateContainerConfigError", 60,
                 what="CreateContainerConfigError")
        msg = c.get_json("pod", "asroot", "-n", ns)["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        assert "non-root" in msg, msg
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_kernel_enforces_the_memory_limit(real_cluster: Cluster, real_namespace: str):
    c, ns = real_cluster, real_namespace
    c.apply(pod("hog", ["python3", "-c", "x = bytearray(400 * 1024 * 1024); print(len(x))"], restart="Never",
                limits={"memory": "64Mi"}), ns)

    def terminated():
        st = c.get_json("pod", "hog", "-n", ns).get("status", {})
        return ((st.get("containerStatuses") or [{}])[0].get("state") or {}).get("terminated")
    t = wait_for(terminated, 90, what="the memory hog to end")
    assert t["reason"] == "OOMKilled" and t["exitCode"] == 137, t


def test_logs_follow_exec_and_port_forward(real_cluster: Cluster, real_namespace: str):
    c, ns = real_cluster, real_namespace
    c.apply(pod("counter", ["python3", "-c", "import time\nfor i in range(30):\n print('line', i, flush=True)\n"
                            " time.sleep(0.1)"], restart="Never"), ns)
    wait_for(lambda: c.get_json("pod", "counter", "-n", ns).get("status", {}).get("phase") in
             ("Running", "Succeeded"), 60, what="counter started")
    # -f returns when the container exits, with every line
    out = c.kubectl("logs", "-f", "-n", ns, "counter", timeout=60).stdout.splitlines()
    assert out == [f"line {i}" for i in range(30)], out[-3:]

    c.apply(pod("web", HTTP_SERVER), ns)
    running(c, ns, "web")
    assert c.kubectl("exec", "-n", ns, "web", "--", "python3", "-c", "print(6*7)").stdout.strip() == "42"
    failed = c.kubectl("exec", "-n", ns, "web", "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3  # the exit code comes back through the kubelet
    port = free_port()
    fwd = subprocess.Popen([str(binaries.binary_path("kubectl")), "--kubeconfig", str(c.kubeconfig),
                            "port-forward", "-n", ns, "pod/web", f"{port}:8080"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "Forwarding from" in fwd.stdout.readline()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/os-release", timeout=10).read().decode()
        assert "bookworm" in body  # the image's own /etc, not the host's
    finally:
        fwd.terminate()
        fwd.wait(10)


def test_cluster_dns_from_both_kinds_of_node(real_cluster: Cluster, request):
    c = real_cluster
    ns = make_namespace(c, request, pin_real=False, restricted=False)
    try:
        real_sel = {"mlops.dev/node-kind": "real"}
        c.apply(pod("web", HTTP_SERVER, labels={"app": "web"}, node_selector=real_sel), ns)
        c.apply(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}), ns)
        fetch = ("import socket, urllib.request\n"
                 f"print(socket.gethostbyname('web.{ns}.svc.cluster.local'))\n"
                 "print(urllib.request.urlopen('http://web/os-release', timeout=5).read().decode().count('bookworm') > 0)\n")
        # the process node has no exec: each client retries the lookup until it works, once
        retrying = ("import time\nfor _ in range(120):\n try:\n" + "".join(f"  {x}\n" for x in fetch.splitlines())
                    + "  break\n except OSError:\n  time.sleep(0.5)\n")
        c.apply(pod("client-real", ["python3", "-c", retrying], node_selector=real_sel, restart="Never"), ns)
        c.apply(pod("client-process", ["python3", "-c", retrying], restart="Never",
                    node_selector={"kubernetes.io/hostname": c.cfg.node_name}), ns)
        running(c, ns, "web")
        svc_ip = c.get_json("service", "web", "-n", ns)["spec"]["clusterIP"]
        for client in ("client-real", "client-process"):
            wait_for(lambda client=client: c.get_json("pod", client, "-n", ns).get("status", {}).get("phase")
                     == "Succeeded", 90,
                     what=f"{client} to resolve and reach the Service")
            out = c.kubectl("logs", "-n", ns, client).stdout
            assert out.split()[-2:] == [svc_ip, "True"], (client, out)  # earlier tries may print the IP only
        c.apply(pod("client-real-exec", ["sleep", "3600"], node_selector=real_sel), ns)
        running(c, ns, "client-real-exec")
        # names outside the cluster fail fast (no upstream resolver), they do not hang
        t0 = time.monotonic()
        miss = c.kubectl("exec", "-n", ns, "client-real-exec", "--", "python3", "-c",
                         "import socket\ntry:\n socket.gethostbyname('example.invalid')\nexcept OSError as e:\n"
                         " print('failed', e)", check=False)
        assert "failed" in miss.stdout and time.monotonic() - t0 < 20
    finally:
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_a_missing_image_is_named_not_hung(real_cluster: Cluster, real_namespace: str):
    c, ns = real_cluster, real_namespace
    c.apply(pod("never", ["true"], image="ghcr.io/mlops-dev/not-built:0.0.0"), ns)
    wait_for(lambda: waiting_reason(c, ns, "never") == "ErrImageNeverPull", 60, what="ErrImageNeverPull")
    # IfNotPresent tries the registry, which this cluster cannot reach: a pull error, not a hang
    c.apply(pod("pull", ["true"], image="ghcr.io/mlops-dev/not-built:0.0.0", pull="IfNotPresent"), ns)
    wait_for(lambda: waiting_reason(c, ns, "pull") in ("ErrImagePull", "ImagePullBackOff"), 120,
             what="a pull error")


def _container(c: Cluster, ns: str, name: str) -> tuple[str, int]:
    st = c.get_json("pod", name, "-n", ns)["status"]["containerStatuses"][0]
    return st["containerID"], st["restartCount"]


def test_containers_survive_a_containerd_restart(real_cluster: Cluster, real_namespace: str):
    c, ns = real_cluster, real_namespace
    c.apply(pod("web", HTTP_SERVER), ns)
    running(c, ns, "web")
    before = _container(c, ns, "web")
    cluster.hold_component(c.cfg.name, "containerd", hold=True)
    try:
        wait_for(lambda: not cluster.status(c.cfg.name)["components"]["containerd"]["pid"], 30,
                 what="containerd stopped")
        # the container keeps serving while containerd is down
        ip = c.get_json("pod", "web", "-n", ns)["status"]["podIP"]
        from tests.integration.test_node import http_from_cluster_ns
        assert "bookworm" in http_from_cluster_ns(c, f"http://{ip}:8080/os-release")
    finally:
        cluster.hold_component(c.cfg.name, "containerd", hold=False)
    wait_for(lambda: cluster.status(c.cfg.name)["components"]["containerd"]["healthy"], 60, what="containerd back")
    out = wait_for(lambda: (lambda p: p.stdout if p.returncode == 0 else None)(
        c.kubectl("exec", "-n", ns, "web", "--", "python3", "-c", "print('alive')", check=False)), 60,
        what="exec after the restart")
    assert out.strip() == "alive"
    assert _container(c, ns, "web") == before  # same container, never restarted


def _node_ready(c: Cluster, name: str) -> str:
    n = c.get_json("node", name)
    return next(x["status"] for x in n["status"]["conditions"] if x["type"] == "Ready")


def test_a_lost_node_goes_not_ready_its_pods_are_evicted_and_replaced(real_cluster: Cluster, real_namespace: str):
    c, ns = real_cluster, real_namespace
    node = realnode.node_name(c.cfg)
    short = [{"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
             for t in ("not-ready", "unreachable")]
    template = json.loads(pod("x", HTTP_SERVER, labels={"app": "web"}, extra={"tolerations": short}))
    c.apply(json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                                 "template": {"metadata": template["metadata"], "spec": template["spec"]}}}), ns)
    first = wait_for(lambda: [p for p in c.pods(ns, "app=web") if p["status"].get("phase") == "Running"], 90,
                     what="the web pod")[0]["metadata"]["name"]
    cluster.hold_component(c.cfg.name, "kubelet", hold=True)
    try:
        wait_for(lambda: _node_ready(c, node) != "True", 60, interval=1, what="the node NotReady")
        # evicted after its 2 s toleration; the ReplicaSet makes a replacement, which waits
        # for a real node (the namespace is pinned to one)
        wait_for(lambda: any(p["metadata"]["name"] != first for p in c.pods(ns, "app=web")), 90, interval=1,
                 what="a replacement pod")
        wait_for(lambda: (lambda p: p is None or p.get("metadata", {}).get("deletionTimestamp"))(
            next((p for p in c.pods(ns, "app=web") if p["metadata"]["name"] == first), None)), 60, interval=1,
            what="the lost pod marked for deletion")
    finally:
        cluster.hold_component(c.cfg.name, "kubelet", hold=False)
    wait_for(lambda: _node_ready(c, node) == "True", 90, interval=1, what="the node Ready again")
    # the old pod is cleaned up by the returning kubelet and the replacement runs
    wait_for(lambda: [p["metadata"]["name"] for p in c.pods(ns, "app=web")
                      if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
             and all(p["metadata"]["name"] != first for p in c.pods(ns, "app=web")), 120, interval=1,
             what="the replacement Running and the lost pod gone")
