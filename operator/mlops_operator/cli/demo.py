"""`mlops demo` (what `make demo` runs): bring up the local cluster and show it working.

Until the ML lifecycle lands this shows the platform it stands on: the upstream control
plane, the node running a Job and a Deployment behind a Service, `kubectl logs`, and the
Service answering through kube-proxy and through `mlops port-forward`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from mlops_operator.localcluster import binaries, cluster
from mlops_operator.localcluster.forward import free_port, start_forward

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "local-cluster" / "hello.yaml"
NS = "mlops-hello"


def _kubectl(kc: Path, *args: str, show: bool = True, timeout: float = 120) -> str:
    argv = [str(binaries.binary_path("kubectl")), "--kubeconfig", str(kc), *args]
    if show:
        print(f"\n$ kubectl {' '.join(args)}", flush=True)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out = (p.stdout + p.stderr).rstrip()
    if show and out:
        print(out, flush=True)
    if p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


async def _get_through_forward(cfg, ip: str, port: int, times: int) -> list[str]:
    """GET the ClusterIP `times` times through a loopback forward (what `mlops port-forward` does)."""
    local = free_port()
    server = await start_forward(cfg.netns, local, (ip, port))
    try:
        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                return r.read().decode().strip()
        return [await asyncio.to_thread(get) for _ in range(times)]
    finally:
        server.close()
        await server.wait_closed()


def run_demo(name: str = "local") -> int:
    started = time.monotonic()
    cfg = cluster.up(name)
    kc = cfg.kubeconfig_path
    print(f"\n== Local cluster {cfg.name!r} ready in {time.monotonic() - started:.1f}s "
          f"(Kubernetes v{cfg.kubernetes_version}, network namespace {cfg.netns}) ==")
    for n, c in cluster.status(name)["components"].items():
        print(f"  {n:<24} {'healthy' if c['healthy'] else c['state']:<8} pid {c['pid']}")
    _kubectl(kc, "get", "nodes", "-o", "wide")
    _kubectl(kc, "apply", "-f", str(EXAMPLE))
    _kubectl(kc, "wait", "--for=condition=Complete", "job/hello", "-n", NS, "--timeout=120s")
    _kubectl(kc, "logs", "-n", NS, "job/hello")
    pod = json.loads(_kubectl(kc, "get", "pods", "-n", NS, "-l", "job-name=hello", "-o", "json", show=False))["items"][0]
    msg = pod["status"]["containerStatuses"][0]["state"]["terminated"].get("message", "")
    print(f"termination message of {pod['metadata']['name']}: {msg}")
    _kubectl(kc, "rollout", "status", "deploy/web", "-n", NS, "--timeout=120s")
    _kubectl(kc, "get", "deploy,rs,pods,svc,endpointslices", "-n", NS, "-o", "wide")
    svc = json.loads(_kubectl(kc, "get", "svc", "web", "-n", NS, "-o", "json", show=False))
    ip = svc["spec"]["clusterIP"]
    answers = asyncio.run(_get_through_forward(cfg, ip, 80, 6))
    print(f"\nGET http://{ip}/ (ClusterIP, load-balanced by kube-proxy), six times:")
    for a in answers:
        print(f"  {a}")
    print("""
The real controllers ran the Job and the Deployment; the node agent runs each pod as processes
in its own network namespace, and kube-proxy routes the Service.

== The operator, deployed from manifests/ (CRDs, RBAC, 2 replicas with leader election) ==""")
    _kubectl(kc, "apply", "-k", str(REPO / "manifests" / "overlays" / "local"))
    _kubectl(kc, "rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)
    print("\n== Data: the retail company's sessions, snapshotted, profiled and validated ==")
    _kubectl(kc, "apply", "-f", str(REPO / "examples" / "retail" / "dataset.yaml"))
    deadline = time.monotonic() + 300
    st: dict = {}
    while time.monotonic() < deadline:
        st = json.loads(_kubectl(kc, "get", "dataset", "retail-sessions", "-o", "json", show=False)).get("status") or {}
        if st.get("latestValid") and not st.get("activeJob"):
            break
        time.sleep(1)
    _kubectl(kc, "get", "mlops")
    if st.get("latestValid"):
        v, prof = st["latestValid"], st.get("profile") or {}
        print(f"version {v['id']}: {v['rows']} rows, {v['columns']} columns, stored at {v['uri']}")
        print(f"label distribution: {prof.get('labelDistribution')}; missing values: {prof.get('nullCounts')}")
    print(f"""

Use it yourself:
  export KUBECONFIG={kc}
  export PATH={binaries.kube_bin_dir()}:$PATH        # kubectl v{cfg.kubernetes_version}
  kubectl get pods -A
  kubectl get mlops; kubectl describe dataset retail-sessions
  kubectl annotate dataset retail-sessions mlops.dev/refresh="$(date +%s)" --overwrite   # snapshot again
  kubectl logs -n mlops-system deploy/mlops-operator
  .venv/bin/mlops port-forward -n {NS} svc/web 8080:80   # then: curl http://127.0.0.1:8080/
Stop it with `.venv/bin/mlops down` (or `make down`) (add --purge to delete its state under {cfg.state_dir}).""")
    return 0
