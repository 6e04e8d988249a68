"""The local node runs real workloads for the upstream controllers: Jobs, Deployments, Services,
probes, volumes, logs, deletion, in-cluster API access, and an agent restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from mlops_operator.localcluster import cluster, netns
from mlops_operator.localcluster.forward import free_port
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.cluster


def job(name: str, command: list[str], backoff: int = 0, extra_spec: str = "", pod_extra: str = "",
        container_extra: str = "") -> str:
    return f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: {backoff}
{extra_spec}
  template:
    spec:
      restartPolicy: Never
{pod_extra}
      containers:
      - name: main
        image: python:3.11-slim
        command: {json.dumps(command)}
{container_extra}
"""


def wait_job(c: Cluster, ns: str, name: str, condition: str, timeout: float = 90) -> dict:
    def check():
        j = c.get_json("job", name, "-n", ns)
        conds = {x["type"]: x for x in j.get("status", {}).get("conditions", []) if x["status"] == "True"}
        return j if condition in conds else None

    return wait_for(check, timeout, what=f"job {name} {condition}")


def processes_with(marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def in_cluster_ns(c: Cluster, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(netns.exec_prefix(c.cfg.netns) + list(cmd), capture_output=True, text=True, timeout=timeout)


def http_from_cluster_ns(c: Cluster, url: str) -> str:
    code = ("import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")
    p = in_cluster_ns(c, sys.executable, "-c", code, url)
    return p.stdout.strip() if p.returncode == 0 else ""


def test_job_completes_with_termination_message_and_logs(local_cluster: Cluster, namespace: str):
    script = ("import json, os, socket; print('hello from', socket.gethostname(), flush=True); "
              "open('/dev/termination-log','w').write(json.dumps({'rows': 42, 'ns': os.environ['POD_NS']}))")
    env = "        env:\n        - name: POD_NS\n          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}"
    local_cluster.apply(job("hello", ["python", "-c", script], container_extra=env), namespace)
    wait_job(local_cluster, namespace, "hello", "Complete")
    pod = local_cluster.pods(namespace, "job-name=hello")[0]
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert json.loads(term["message"]) == {"rows": 42, "ns": namespace}
    assert pod["status"]["phase"] == "Succeeded"
    logs = local_cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert logs == f"hello from {pod['metadata']['name']}\n"


def test_kubectl_logs_follow_streams_until_the_container_exits(local_cluster: Cluster, namespace: str):
    script = "import time\nfor i in range(4):\n    print('line', i, flush=True); time.sleep(0.5)"
    local_cluster.apply(job("follow", ["python", "-c", script]), namespace)
    pod = wait_for(lambda: [p for p in local_cluster.pods(namespace, "job-name=follow")
                            if p["status"].get("phase") == "Running"], 60, what="running pod")[0]
    out = local_cluster.kubectl("logs", "-f", "-n", namespace, pod["metadata"]["name"], timeout=60).stdout
    assert out.splitlines() == [f"line {i}" for i in range(4)]


def test_failing_pods_are_retried_with_backoff_until_the_job_fails(local_cluster: Cluster, namespace: str):
    local_cluster.apply(job("fails", ["python", "-c", "import sys; print('boom'); sys.exit(3)"], backoff=1), namespace)
    j = wait_job(local_cluster, namespace, "fails", "Failed", timeout=120)
    failed = next(c for c in j["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 2
    pods = sorted(local_cluster.pods(namespace, "job-name=fails"), key=lambda p: p["metadata"]["creationTimestamp"])
    assert len(pods) == 2
    for p in pods:
        assert p["status"]["phase"] == "Failed"
        assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    # the Job controller waited (backoff) before creating the retry
    first_end = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    assert pods[1]["metadata"]["creationTimestamp"] >= first_end


def test_bad_container_commands_are_reported_not_crashed(local_cluster: Cluster, namespace: str):
    local_cluster.apply(job("nocmd", ["definitely-not-a-program-xyz"]), namespace)
    wait_job(local_cluster, namespace, "nocmd", "Failed")
    term = local_cluster.pods(namespace, "job-name=nocmd")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError"
    assert "definitely-not-a-program-xyz" in term["message"]
    assert term["exitCode"] == 127

    local_cluster.apply("""
apiVersion: v1
kind: Pod
metadata: {name: unknown-image}
spec:
  containers: [{name: c, image: example.com/some/app:1.0}]
""", namespace)
    def waiting():
        pod = local_cluster.get_json("pod", "unknown-image", "-n", namespace)
        st = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
        return st if st.get("reason") == "CreateContainerError" else None
    st = wait_for(waiting, 30, what="CreateContainerError")
    assert "has no entrypoint known to the local node; set `command`" in st["message"]


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: python:3.11-slim
        command: ["python", "-c", "import http.server, os, socket\\nclass H(http.server.BaseHTTPRequestHandler):\\n    def do_GET(self):\\n        self.send_response(200); self.end_headers(); self.wfile.write(socket.gethostname().encode())\\n    def log_message(self, *a): pass\\nhttp.server.HTTPServer(('', 8080), H).serve_forever()"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


def test_deployment_behind_a_service_answers_through_kube_proxy_and_port_forward(local_cluster: Cluster,
                                                                                  namespace: str):
    local_cluster.apply(DEPLOYMENT, namespace)
    local_cluster.kubectl("rollout", "status", "deploy/web", "-n", namespace, "--timeout=90s", timeout=100)
    dep = local_cluster.get_json("deploy", "web", "-n", namespace)
    assert {c["type"]: c["status"] for c in dep["status"]["conditions"]}["Available"] == "True"
    pods = local_cluster.pods(namespace, "app=web")
    ips = sorted(p["status"]["podIP"] for p in pods)
    assert len(set(ips)) == 2  # both listen on 8080, each in its own network namespace

    def ready_endpoints():
        slices = local_cluster.get_json("endpointslices", "-n", namespace,
                                        "-l", "kubernetes.io/service-name=web")["items"]
        eps = [e for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready")]
        return sorted(a for e in eps for a in e["addresses"]) == ips
    wait_for(ready_endpoints, 30, what="ready EndpointSlice addresses")

    cluster_ip = local_cluster.get_json("svc", "web", "-n", namespace)["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in pods}
    answers = {http_from_cluster_ns(local_cluster, f"http://{cluster_ip}/") for _ in range(12)}
    assert answers <= names and answers, answers  # every answer comes from one of the two pods

    port = free_port()
    pf = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "port-forward", "--name",
                           local_cluster.cfg.name, "-n", namespace, "svc/web", f"{port}:80"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "Forwarding from 127.0.0.1" in pf.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.read().decode() in names
    finally:
        pf.terminate()
        pf.wait(10)


def test_liveness_probe_failure_restarts_the_container(local_cluster: Cluster, namespace: str):
    local_cluster.apply("""
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: app
    image: python:3.11-slim
    command: ["sh", "-c", "touch /state/alive; echo started; sleep 2; rm /state/alive; sleep 600"]
    volumeMounts: [{name: state, mountPath: /state}]
    livenessProbe:
      exec: {command: ["test", "-f", "/state/alive"]}
      initialDelaySeconds: 1  # the first probe must not race the `touch`
      periodSeconds: 1
      failureThreshold: 1
  terminationGracePeriodSeconds: 1
""", namespace)

    def restarted():
        pod = local_cluster.get_json("pod", "flaky", "-n", namespace)
        cs = (pod["status"].get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 1 else None
    cs = wait_for(restarted, 60, what="a liveness restart")
    assert cs["lastState"]["terminated"]["exitCode"] != 0
    prev = local_cluster.kubectl("logs", "-n", namespace, "flaky", "--previous").stdout
    assert prev == "started\n"


def test_deleting_a_pod_kills_its_processes_within_the_grace_period(local_cluster: Cluster, namespace: str):
    marker = f"ignore-term-{uuid.uuid4().hex[:8]}"
    local_cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: python:3.11-slim
    command: ["python", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)", "{marker}"]
""", namespace)
    local_cluster.wait_pod(namespace, "stubborn", "Running")
    assert len(processes_with(marker)) == 1
    t = time.monotonic()
    local_cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=true", timeout=60)
    took = time.monotonic() - t
    assert processes_with(marker) == []
    assert took >= 2.5  # SIGTERM was ignored, so only the grace period's SIGKILL ended it
    assert local_cluster.kubectl("get", "pod", "stubborn", "-n", namespace, check=False).returncode != 0


def test_deleting_a_deployment_cascades_to_pods_and_processes(local_cluster: Cluster, namespace: str):
    marker = f"cascade-{uuid.uuid4().hex[:8]}"
    local_cluster.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sleeper}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: sleeper}}}}
  template:
    metadata: {{labels: {{app: sleeper}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers: [{{name: s, image: busybox, command: ["python", "-c", "import time; time.sleep(600)"], args: ["{marker}"]}}]
""", namespace)
    local_cluster.kubectl("rollout", "status", "deploy/sleeper", "-n", namespace, "--timeout=60s", timeout=70)
    wait_for(lambda: len(processes_with(marker)) == 2, 20, what="two container processes")
    local_cluster.kubectl("delete", "deploy", "sleeper", "-n", namespace, "--cascade=foreground", "--wait=true",
                          timeout=90)
    wait_for(lambda: local_cluster.pods(namespace, "app=sleeper") == [], 60, what="pods gone")
    wait_for(lambda: processes_with(marker) == [], 30, what="processes gone")
    assert local_cluster.get_json("rs", "-n", namespace, "-l", "app=sleeper")["items"] == []


def test_pvc_is_shared_between_pods_and_configmap_keys_are_files(local_cluster: Cluster, namespace: str, tmp_path):
    host_dir = tmp_path / "pv"
    host_dir.mkdir()
    pv = f"pv-{namespace}"[:63]
    local_cluster.apply(f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {pv}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteMany]
  storageClassName: manual
  hostPath: {{path: {host_dir}}}
  claimRef: {{namespace: {namespace}, name: shared}}
""")
    try:
        local_cluster.apply("""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: manual
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, target: world}
""", namespace)
        mounts = """
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: settings, mountPath: /etc/settings}"""
        vols = """
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: shared}}
      - {name: settings, configMap: {name: settings}}"""
        writer = ("import os; open('/data/shared.txt','w').write(open('/etc/settings/greeting').read() + ' ' + "
                  "open('/etc/settings/target').read()); print(sorted(os.listdir('/etc/settings')))")
        local_cluster.apply(job("writer", ["python", "-c", writer], pod_extra=vols, container_extra=mounts), namespace)
        wait_job(local_cluster, namespace, "writer", "Complete")
        reader = "open('/dev/termination-log','w').write(open('/data/shared.txt').read())"
        local_cluster.apply(job("reader", ["python", "-c", reader], pod_extra=vols, container_extra=mounts), namespace)
        wait_job(local_cluster, namespace, "reader", "Complete")
        term = local_cluster.pods(namespace, "job-name=reader")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["message"] == "hello world"
        assert (host_dir / "shared.txt").read_text() == "hello world"
        w = local_cluster.pods(namespace, "job-name=writer")[0]["metadata"]["name"]
        assert local_cluster.kubectl("logs", "-n", namespace, w).stdout.strip() == "['greeting', 'target']"
    finally:
        local_cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_in_cluster_client_uses_the_kubernetes_service_and_its_rbac(local_cluster: Cluster, namespace: str):
    local_cluster.kubectl("create", "serviceaccount", "lister", "-n", namespace)
    local_cluster.kubectl("create", "role", "pods", "--verb=list", "--resource=pods", "-n", namespace)
    local_cluster.kubectl("create", "rolebinding", "lister", "--role=pods", f"--serviceaccount={namespace}:lister",
                          "-n", namespace)
    script = """
import json, os
from kubernetes import client, config
config.load_incluster_config()
api = client.CoreV1Api()
ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()
out = {'host': os.environ['KUBERNETES_SERVICE_HOST'], 'pods': len(api.list_namespaced_pod(ns).items)}
try:
    api.list_namespaced_secret(ns)
    out['secrets'] = 'allowed'
except client.ApiException as e:
    out['secrets'] = e.status
open('/dev/termination-log', 'w').write(json.dumps(out))
"""
    local_cluster.apply(job("incluster", ["python", "-c", script], pod_extra="      serviceAccountName: lister"),
                        namespace)
    wait_job(local_cluster, namespace, "incluster", "Complete")
    term = local_cluster.pods(namespace, "job-name=incluster")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    out = json.loads(term["message"])
    assert out["host"] == "10.96.0.1"
    assert out["pods"] >= 1
    assert out["secrets"] == 403


def _node_ready(c: Cluster) -> str:
    node = c.get_json("node", c.cfg.node_name)
    return next(x["status"] for x in node["status"]["conditions"] if x["type"] == "Ready")


def test_node_goes_not_ready_without_its_agent_and_adopts_its_pods_on_return(local_cluster: Cluster, namespace: str):
    marker = f"survivor-{uuid.uuid4().hex[:8]}"
    local_cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: survivor}}
spec:
  containers:
  - name: app
    image: python:3.11-slim
    command: ["python", "-c", "import time; time.sleep(900)", "{marker}"]
""", namespace)
    local_cluster.wait_pod(namespace, "survivor", "Running")
    pids = processes_with(marker)
    assert len(pids) == 1
    name = local_cluster.cfg.name
    cluster.hold_component(name, "node-agent", hold=True)
    try:
        wait_for(lambda: _node_ready(local_cluster) == "Unknown", 90, interval=1,
                 what="node NotReady (Unknown) after its agent stopped")
        assert processes_with(marker) == pids  # pods keep running without the agent
    finally:
        cluster.hold_component(name, "node-agent", hold=False)
    wait_for(lambda: _node_ready(local_cluster) == "True", 90, interval=1, what="node Ready again")
    pod = local_cluster.wait_pod(namespace, "survivor", "Running")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert processes_with(marker) == pids  # adopted, not restarted
    local_cluster.kubectl("delete", "pod", "survivor", "-n", namespace, "--wait=true", "--timeout=60s", timeout=70)
    assert processes_with(marker) == []


def test_a_plain_pvc_is_provisioned_by_the_default_storage_class(local_cluster: Cluster, namespace: str):
    local_cluster.apply("""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: scratch}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
""", namespace)
    pvc = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Bound" else None)(
        local_cluster.get_json("pvc", "scratch", "-n", namespace)), 30, what="PVC Bound")
    assert pvc["spec"]["storageClassName"] == "standard"
    pv = local_cluster.get_json("pv", pvc["spec"]["volumeName"])
    host = Path(pv["spec"]["hostPath"]["path"])
    assert host.is_relative_to(local_cluster.cfg.path("volumes"))
    vols = "      volumes: [{name: s, persistentVolumeClaim: {claimName: scratch}}]"
    mounts = "        volumeMounts: [{name: s, mountPath: /scratch}]"
    local_cluster.apply(job("touch", ["python", "-c", "open('/scratch/hello','w').write('hi')"],
                            pod_extra=vols, container_extra=mounts), namespace)
    wait_job(local_cluster, namespace, "touch", "Complete")
    assert (host / "hello").read_text() == "hi"
    local_cluster.kubectl("delete", "job", "touch", "-n", namespace, "--wait=true")
    local_cluster.kubectl("delete", "pvc", "scratch", "-n", namespace, "--wait=true")
    wait_for(lambda: local_cluster.kubectl("get", "pv", pv["metadata"]["name"], check=False).returncode != 0, 60,
             what="released volume deleted")
    assert not host.exists()


def test_restricted_pod_runs_as_its_user_with_a_read_only_root(local_cluster: Cluster, namespace: str):
    script = ("import json, os, sklearn\n"
              "out = {'uid': os.getuid(), 'gid': os.getgid(), 'home': os.environ['HOME']}\n"
              "open('/tmp/scratch', 'w').write('ok')\n"
              "try:\n    open('/etc/not-allowed', 'w')\n    out['root'] = 'writable'\n"
              "except OSError as e:\n    out['root'] = e.errno\n"
              "open('/dev/termination-log', 'w').write(json.dumps(out))\n")
    # a volume over the project's own directory (as an emptyDir at /tmp is over a checkout
    # under /tmp) must not hide the interpreter and packages the container runs with; and a
    # mount target inside another volume is created in the container's view
    project = Path(sys.prefix).parent
    pod_extra = """      securityContext: {runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000,
                        seccompProfile: {type: RuntimeDefault}}
      volumes: [{name: tmp, emptyDir: {}}, {name: over, emptyDir: {}}, {name: nested, emptyDir: {}}]"""
    container_extra = f"""        volumeMounts: [{{name: tmp, mountPath: /tmp}}, {{name: over, mountPath: {project}}},
                       {{name: nested, mountPath: /tmp/inside/a/volume}}]
        securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
                          capabilities: {{drop: [ALL]}}}}"""
    local_cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    local_cluster.apply(job("restricted", ["python", "-c", script], pod_extra=pod_extra,
                            container_extra=container_extra), namespace)
    wait_job(local_cluster, namespace, "restricted", "Complete")
    term = local_cluster.pods(namespace, "job-name=restricted")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert json.loads(term["message"]) == {"uid": 1000, "gid": 1000, "home": "/", "root": 30}  # EROFS
