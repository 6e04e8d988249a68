"""`mlops demo` (what `make demo` runs): bring up the local cluster and show it working.

Until the ML lifecycle lands this shows the control plane: the release it runs, its
components, the leader leases of the controllers and a Deployment turned into a ReplicaSet
and Pods by the real controller-manager.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from mlops_operator.localcluster import binaries, cluster

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "local-cluster" / "hello.yaml"


def _kubectl(kc: Path, *args: str, show: bool = True, input: str | None = None) -> str:
    argv = [str(binaries.binary_path("kubectl")), "--kubeconfig", str(kc), *args]
    if show:
        print(f"\n$ kubectl {' '.join(args)}", flush=True)
    p = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=120)
    out = (p.stdout + p.stderr).rstrip()
    if show and out:
        print(out, flush=True)
    if p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def run_demo(name: str = "local") -> int:
    started = time.monotonic()
    cfg = cluster.up(name)
    kc = cfg.kubeconfig_path
    print(f"\n== Local cluster {cfg.name!r} ready in {time.monotonic() - started:.1f}s "
          f"(Kubernetes v{cfg.kubernetes_version}, network namespace {cfg.netns}) ==")
    version = json.loads(_kubectl(kc, "version", "-o", "json", show=False))
    print(f"client {version['clientVersion']['gitVersion']}, server {version['serverVersion']['gitVersion']}")
    st = cluster.status(name)
    for n, c in st["components"].items():
        print(f"  {n:<24} {'healthy' if c['healthy'] else c['state']:<8} pid {c['pid']}")
    _kubectl(kc, "get", "--raw", "/readyz")
    _kubectl(kc, "get", "leases", "-n", "kube-system")
    _kubectl(kc, "apply", "-f", str(EXAMPLE))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = json.loads(_kubectl(kc, "get", "pods", "-n", "mlops-hello", "-o", "json", show=False))["items"]
        if len(pods) == 2:
            break
        time.sleep(0.5)
    _kubectl(kc, "get", "deploy,rs,pods", "-n", "mlops-hello")
    print(f"""
The real controller-manager made a ReplicaSet and two Pods from the Deployment. They stay
Pending until the local node agent (the next milestone) runs pods as processes.

Point kubectl at the cluster:
  export KUBECONFIG={kc}
  kubectl get namespaces
Stop it with `mlops down` (add --purge to delete its state under {cfg.state_dir}).""")
    return 0
