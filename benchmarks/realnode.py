"""Benchmark: the real node (kubelet + containerd + runc, the built images) against the process node.

Measures, in one run, side by side on the same control plane:
- `mlops up` to a healthy cluster with a process node, and with a real node (warm caches);
- pod start latency, `kubectl apply` to Ready, of the same pod (the model server image running
  an HTTP server with a readiness probe) on each kind of node, in one mixed cluster;
- a one-pod Job (`python3 -c "print('ok')"`) from `kubectl apply` to Complete on each;
- the one-time costs a fresh machine pays, as recorded when they happened: the Go builds of
  the control plane and of each real-node binary, and each image build; and the image sizes.

    .venv/bin/python -m benchmarks.realnode [--repeat 5]

kind, the tool a user with Docker would pick for a real node, cannot run on our machines (no
Docker daemon), so the side-by-side comparison here is with our own process node.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlops_operator.localcluster import binaries, cluster, images, nodebins, realnode
from mlops_operator.localcluster.config import ClusterConfig

RESULTS = Path(__file__).parent / "results" / "realnode.json"
SERVER = "ghcr.io/mlops-dev/mlops-server:0.1.0"


def _quiet(_msg: str) -> None:
    pass


def _kubectl(cfg: ClusterConfig, *args: str, input: str | None = None) -> str:
    return subprocess.run([str(binaries.binary_path("kubectl")), "--kubeconfig", str(cfg.kubeconfig_path), *args],
                          input=input, text=True, check=True, capture_output=True).stdout


def measure_up(repeat: int) -> dict[str, list[float]]:
    """`mlops up` from a cold state directory to healthy, for each kind of node."""
    out: dict[str, list[float]] = {"up_process_s": [], "up_real_s": []}
    for _ in range(repeat):
        for kind in ("process", "real"):
            name = f"bench-{kind[:4]}"
            cluster.down(name, purge=True, say=_quiet)
            t = time.perf_counter()
            cluster.up(name, nodes=[kind], say=_quiet, timeout=420)
            out[f"up_{kind}_s"].append(time.perf_counter() - t)
            cluster.down(name, purge=True, say=_quiet)
    return out


def _pod(name: str, node: str, command: list[str], probe: bool) -> str:
    container = {"name": "main", "image": SERVER, "imagePullPolicy": "Never", "command": command,
                 "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]}}}
    if probe:
        container["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bench"}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "restartPolicy": "Always" if probe else "Never", "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container]}})


def _wait(cfg: ClusterConfig, name: str, what: str) -> None:
    jsonpath = ("{.status.conditions[?(@.type=='Ready')].status}" if what == "ready" else "{.status.phase}")
    want = "True" if what == "ready" else "Succeeded"
    while _kubectl(cfg, "get", "pod", name, "-n", "bench", "-o", f"jsonpath={jsonpath}").strip() != want:
        time.sleep(0.02)


def measure_pods(cfg: ClusterConfig, repeat: int) -> dict[str, list[float]]:
    """The same pods on each node: apply to Ready (a server) and apply to Succeeded (a one-shot)."""
    nodes = {"process": cfg.node_name, "real": realnode.node_name(cfg)}
    _kubectl(cfg, "create", "namespace", "bench")
    out: dict[str, list[float]] = {}
    try:
        for i in range(repeat):
            for kind, node in nodes.items():  # interleaved, so drift of the machine hits both alike
                name = f"srv-{kind}-{i}"
                t = time.perf_counter()
                _kubectl(cfg, "apply", "-f", "-", input=_pod(name, node, ["python3", "-m", "http.server", "8080"],
                                                              True))
                _wait(cfg, name, "ready")
                out.setdefault(f"server_pod_ready_{kind}_s", []).append(time.perf_counter() - t)
                name = f"once-{kind}-{i}"
                t = time.perf_counter()
                _kubectl(cfg, "apply", "-f", "-", input=_pod(name, node, ["python3", "-c", "print('ok')"], False))
                _wait(cfg, name, "done")
                out.setdefault(f"oneshot_pod_done_{kind}_s", []).append(time.perf_counter() - t)
    finally:
        _kubectl(cfg, "delete", "namespace", "bench", "--wait=true", "--timeout=120s")
    return out


def recorded_one_time_costs() -> dict[str, object]:
    """What the first run on a fresh machine paid, as recorded by the builds themselves."""
    builds = {}
    for d in [binaries.kube_bin_dir(), binaries.etcd_bin_dir(), *(s.bin_dir for s in nodebins.BUILDS.values())]:
        f = d / "build-info.json"
        if f.exists():
            info = json.loads(f.read_text())
            builds[f"{info['what']} {info['version']}"] = info["seconds"]
    state = images.load_state()
    imgs = {n: {"uncompressed_MB": round(e["uncompressed_bytes"] / 1e6),
                "compressed_MB": round(e["compressed_bytes"] / 1e6),
                "build_s": e["build_seconds"]} for n, e in sorted(state.get("images", {}).items())}
    base = state.get("base") or {}
    return {"go_builds_s": builds, "base_rootfs_s": base.get("build_seconds"), "images": imgs}


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--up-repeat", type=int, default=2)
    a = ap.parse_args()
    images.build(say=_quiet)
    res: dict[str, object] = {"machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()}}
    res["up"] = measure_up(a.up_repeat)
    cfg = cluster.up("bench-mixed", nodes=["process", "real"], say=_quiet, timeout=420)
    try:
        res["pods"] = measure_pods(cfg, a.repeat)
    finally:
        cluster.down("bench-mixed", purge=True, say=_quiet)
    res["one_time"] = recorded_one_time_costs()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    for group in ("up", "pods"):
        for k, xs in res[group].items():  # type: ignore[attr-defined]
            print(f"{k:<32} median {_median(xs):>8.3f}  runs {', '.join(f'{x:.3f}' for x in xs)}")
    pods = res["pods"]
    for what in ("server_pod_ready", "oneshot_pod_done"):
        r = _median(pods[f"{what}_real_s"]) / _median(pods[f"{what}_process_s"])  # type: ignore[index]
        print(f"ratio {what} real / process: {r:.2f}x")
    print(json.dumps(res["one_time"], indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
