"""`mlops demo` (what `make demo` runs): bring up the local cluster and show it working.

It starts the upstream control plane and the node, deploys the operator from manifests/ (as
a user would on any cluster), then runs the retail loop (cli/retail_loop.py): a model trained,
served and monitored, customers' behaviour shifting, the drift detected, the model retrained,
promoted and rolled out without a failed request, and accuracy recovering. It ends with a
timeline, a summary table and a PNG plot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from mlops_operator.cli.loop_common import LoopResult
from mlops_operator.cli.retail_loop import Kubectl, RetailLoop, plot, summary_table
from mlops_operator.localcluster import binaries, cluster, realnode
from mlops_operator.localcluster.forward import free_port

REPO = Path(__file__).resolve().parents[3]
RETAIL_NS = "retail"
RECOMMENDER_NS = "recommender"


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




def _pin_to_real_node(kc: Path, namespace: str) -> None:
    """Create `namespace` with every pod pinned to the real node. Not through `apply`: the
    manifests' own apply of the namespace would drop an annotation recorded as last-applied."""
    if not _exists(kc, namespace):
        _kubectl(kc, "create", "namespace", namespace, show=False)
    _kubectl(kc, "annotate", "--overwrite", "namespace", namespace, "=".join(realnode.PIN_ANNOTATION),
             "kubectl.kubernetes.io/last-applied-configuration-")


def _exists(kc: Path, namespace: str) -> bool:
    argv = [str(binaries.binary_path("kubectl")), "--kubeconfig", str(kc), "get", "namespace", namespace]
    return subprocess.run(argv, capture_output=True).returncode == 0


def _cluster_and_operator(name: str, nodes: list[str] | None) -> tuple[Any, str]:
    """The local cluster up and the operator deployed from manifests/: (config, runtime image)."""
    started = time.monotonic()
    cfg = cluster.up(name, nodes=nodes)
    kc = cfg.kubeconfig_path
    if cfg.has_real_node:
        print("\n== Everything below runs on the real node: the built images under kubelet + containerd ==")
        _pin_to_real_node(kc, "mlops-system")
    print(f"\n== Local cluster {cfg.name!r} ready in {time.monotonic() - started:.1f}s "
          f"(Kubernetes v{cfg.kubernetes_version}, network namespace {cfg.netns}) ==")
    for n, c in cluster.status(name)["components"].items():
        print(f"  {n:<24} {'healthy' if c['healthy'] else c['state']:<8} pid {c['pid']}")
    _kubectl(kc, "get", "nodes", "-o", "wide")
    print("\n== The operator, deployed from manifests/ (CRDs, RBAC per namespace, admission policy, 2 replicas "
          "with leader election) ==")
    _kubectl(kc, "apply", "-k", str(REPO / "manifests" / "overlays" / "local"))
    # the local node runs the working tree's code: restart so a cluster kept from an earlier
    # run gets the current operator (on a real cluster a new image tag does this)
    _kubectl(kc, "rollout", "restart", "deploy/mlops-operator", "-n", "mlops-system")
    _kubectl(kc, "rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)
    dep = json.loads(_kubectl(kc, "get", "deploy", "mlops-operator", "-n", "mlops-system", "-o", "json", show=False))
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0].get("env") or []}
    return cfg, env.get("MLOPS_RUNTIME_IMAGE") or "ghcr.io/mlops-dev/mlops-runtime:0.1.0"


def _fresh_namespace(cfg: Any, namespace: str) -> None:
    kc = cfg.kubeconfig_path
    _kubectl(kc, "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", timeout=300)
    _kubectl(kc, "create", "namespace", namespace)
    # the manifests are namespace-scoped: the operator writes only where an admin allows it
    _kubectl(kc, "apply", "-k", str(REPO / "manifests" / "namespace"), "-n", namespace)
    if cfg.has_real_node:
        _pin_to_real_node(kc, namespace)


def _forwarder(name: str, namespace: str, service: str, forwards: list[subprocess.Popen]) -> Callable[[int], str]:
    """A base URL of the Service's port `remote` per call (mlops port-forward); the caller
    terminates `forwards`."""
    def base_url(remote: int = 80) -> str:
        port = free_port()
        p = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "port-forward", "--name", name,
                              "-n", namespace, f"svc/{service}", f"{port}:{remote}"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        forwards.append(p)
        assert p.stdout is not None  # stdout=PIPE
        p.stdout.readline()  # "Forwarding from ..."
        return f"http://127.0.0.1:{port}"
    return base_url


def _print_result(result: LoopResult, summary: str) -> None:
    print("\n== Timeline ==")
    for t, what in result.timeline:
        print(f"  {t:6.1f}s  {what}")
    print("\n== Summary ==")
    print(summary)


def run_demo(name: str = "local", out_dir: str = "demo-output", nodes: list[str] | None = None) -> int:
    cfg, image = _cluster_and_operator(name, nodes)
    kc = cfg.kubeconfig_path
    print(f"\n== The retail loop in namespace {RETAIL_NS}: train, serve, monitor, drift, retrain, roll out ==")
    _fresh_namespace(cfg, RETAIL_NS)
    forwards: list[subprocess.Popen] = []
    k = Kubectl(str(binaries.binary_path("kubectl")), kc, RETAIL_NS)
    loop = RetailLoop(k, _forwarder(name, RETAIL_NS, "propensity", forwards), image=image)
    try:
        result = loop.run()
    finally:
        for p in forwards:
            p.terminate()
    _print_result(result, summary_table(result))
    png = plot(result, Path(out_dir) / "retail-loop.png")
    print(f"\nplot of accuracy and drift over time: {png}")
    _kubectl(kc, "get", "mlops", "-n", RETAIL_NS)
    print(f"""
Use it yourself:
  export KUBECONFIG={kc}
  export PATH={binaries.kube_bin_dir()}:$PATH        # kubectl v{cfg.kubernetes_version}
  kubectl get mlops -n {RETAIL_NS}; kubectl describe driftmonitor propensity -n {RETAIL_NS}
  .venv/bin/kubectl-mlops -n {RETAIL_NS} runs
  .venv/bin/kubectl-mlops -n {RETAIL_NS} lineage {result.versions.get('v2')}
  .venv/bin/kubectl-mlops -n {RETAIL_NS} compare {result.versions.get('v1')} {result.versions.get('v2')}
  .venv/bin/kubectl-mlops -n {RETAIL_NS} export {result.versions.get('v2')} -o ./bundle
  .venv/bin/mlops port-forward -n {RETAIL_NS} svc/propensity 8080:80   # then: curl http://127.0.0.1:8080/v2/models/propensity
  kubectl logs -n mlops-system deploy/mlops-operator
Stop it with `.venv/bin/mlops down` (or `make down`) (add --purge to delete its state under {cfg.state_dir}).""")
    return 0 if not result.failed else 1


def run_recommender_demo(name: str = "local", out_dir: str = "demo-output", nodes: list[str] | None = None) -> int:
    """`mlops demo-recommender` (`make demo-recommender`): the recommender's loop (issue 20)."""
    from mlops_operator.cli import recommender_loop as rl

    cfg, image = _cluster_and_operator(name, nodes)
    kc = cfg.kubeconfig_path
    print(f"\n== The recommender loop in namespace {RECOMMENDER_NS}: rank, serve the top {rl.K}, count hits, "
          "drift, retrain, promote over the baseline, roll out ==")
    _fresh_namespace(cfg, RECOMMENDER_NS)
    forwards: list[subprocess.Popen] = []
    k = Kubectl(str(binaries.binary_path("kubectl")), kc, RECOMMENDER_NS)
    loop = rl.RecommenderLoop(k, _forwarder(name, RECOMMENDER_NS, rl.MODEL, forwards), image=image)
    try:
        result = loop.run()
    finally:
        for p in forwards:
            p.terminate()
    _print_result(result, rl.summary_table(result))
    png = rl.plot(result, Path(out_dir) / "recommender-loop.png")
    print(f"\nplot of hit rate and drift over time: {png}")
    _kubectl(kc, "get", "mlops", "-n", RECOMMENDER_NS)
    v1, v2 = result.versions.get("v1"), result.versions.get("v2")
    print(f"""
Use it yourself:
  export KUBECONFIG={kc}
  export PATH={binaries.kube_bin_dir()}:$PATH        # kubectl v{cfg.kubernetes_version}
  kubectl get mlops -n {RECOMMENDER_NS}; kubectl describe driftmonitor recommender -n {RECOMMENDER_NS}
  .venv/bin/kubectl-mlops -n {RECOMMENDER_NS} compare {v1} {v2}
  .venv/bin/mlops port-forward -n {RECOMMENDER_NS} svc/recommender 8080:80   # then: curl http://127.0.0.1:8080/v2/models/recommender-topk
Stop it with `.venv/bin/mlops down` (or `make down`) (add --purge to delete its state under {cfg.state_dir}).""")
    return 0 if not result.failed else 1
