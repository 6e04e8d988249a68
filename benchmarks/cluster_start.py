"""Benchmark: how fast the embedded local cluster starts.

Measures, in one run: the one-time binary build (as recorded when it happened, or measured
afresh with --cold-build), time from `mlops up` to a ready API server with a cold state dir
(new PKI, empty etcd) and with a warm one (restart of an existing cluster), a second `up`
that reuses a running cluster, `kubectl apply` of a one-pod Job until Complete against the
same command run as a plain subprocess, and pods started per second for a 50-replica
Deployment.

    .venv/bin/python -m benchmarks.cluster_start [--repeat 3] [--cold-build]

kind, the tool a user with Docker would pick instead, cannot run on our machines (no
container engine), so no side-by-side ratio is measured here; README.md says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_operator.localcluster import binaries, cluster

NAME = "bench-start"
RESULTS = Path(__file__).parent / "results" / "cluster_start.json"


def _quiet(_msg: str) -> None:
    pass


def _timed_up() -> float:
    t = time.perf_counter()
    cluster.up(NAME, say=_quiet)
    return time.perf_counter() - t


def measure_starts(repeat: int) -> dict[str, list[float]]:
    cold, warm, reuse = [], [], []
    for _ in range(repeat):
        cluster.down(NAME, purge=True, say=_quiet)
        cold.append(_timed_up())
        t = time.perf_counter()
        cluster.up(NAME, say=_quiet)
        reuse.append(time.perf_counter() - t)
        cluster.down(NAME, say=_quiet)
        warm.append(_timed_up())
        cluster.down(NAME, purge=True, say=_quiet)
    return {"cold_state_s": cold, "warm_state_s": warm, "reuse_running_s": reuse}


JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: bench-%(i)d, namespace: bench}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: python:3.11-slim, command: %(cmd)s}]
"""
JOB_COMMAND = [sys.executable, "-c", "print('ok')"]


def _clients(cfg):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(cfg.kubeconfig_path))
    return client.BatchV1Api(api), client.AppsV1Api(api), client.CoreV1Api(api)


def _kubectl(cfg, *args: str, input: str | None = None) -> None:
    subprocess.run([str(binaries.binary_path("kubectl")), "--kubeconfig", str(cfg.kubeconfig_path), *args],
                   input=input, text=True, check=True, capture_output=True)


def measure_job_vs_subprocess(cfg, repeat: int) -> dict[str, list[float]]:
    """`kubectl apply` of a one-pod Job until Complete, against the same command as a subprocess."""
    batch, _, core = _clients(cfg)
    _kubectl(cfg, "create", "namespace", "bench")
    job_s, sub_s = [], []
    for i in range(repeat):
        t = time.perf_counter()
        subprocess.run(JOB_COMMAND, check=True, capture_output=True)
        sub_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        _kubectl(cfg, "apply", "-f", "-", input=JOB % {"i": i, "cmd": json.dumps(JOB_COMMAND)})
        while True:
            st = batch.read_namespaced_job_status(f"bench-{i}", "bench").status
            if st.succeeded:
                break
            if st.failed:
                raise RuntimeError("benchmark job failed")
            time.sleep(0.02)
        job_s.append(time.perf_counter() - t)
    _kubectl(cfg, "delete", "namespace", "bench", "--wait=true", "--timeout=120s")
    return {"job_apply_to_complete_s": job_s, "plain_subprocess_s": sub_s}


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: many, namespace: bench-many}
spec:
  replicas: %(n)d
  selector: {matchLabels: {app: many}}
  template:
    metadata: {labels: {app: many}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: pause, image: registry.k8s.io/pause:3.10}]
"""


def measure_deployment(cfg, n: int) -> dict[str, float]:
    """Time from `kubectl apply` of an n-replica Deployment until all n pods are ready."""
    _, apps, _ = _clients(cfg)
    _kubectl(cfg, "create", "namespace", "bench-many")
    t = time.perf_counter()
    _kubectl(cfg, "apply", "-f", "-", input=DEPLOY % {"n": n})
    while (apps.read_namespaced_deployment_status("many", "bench-many").status.ready_replicas or 0) < n:
        time.sleep(0.05)
    took = time.perf_counter() - t
    _kubectl(cfg, "delete", "namespace", "bench-many", "--wait=true", "--timeout=300s")
    return {"replicas": n, "all_ready_s": round(took, 2), "pods_per_s": round(n / took, 2)}


def recorded_builds() -> dict[str, dict]:
    out = {}
    for what, d in (("kubernetes", binaries.kube_bin_dir()), ("etcd", binaries.etcd_bin_dir())):
        f = d / "build-info.json"
        out[what] = json.loads(f.read_text()) if f.exists() else {"seconds": None, "note": "downloaded or pre-cached"}
    return out


def cold_build() -> dict[str, float]:
    """Rebuild everything with empty Go build and module caches (takes tens of minutes)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_CACHE_DIR"] = tmp
        os.environ["GOCACHE"] = str(Path(tmp) / "gocache")
        os.environ["GOMODCACHE"] = str(Path(tmp) / "gomodcache")
        t = time.perf_counter()
        binaries.build_kubernetes(binaries.kube_bin_dir())
        k = time.perf_counter() - t
        t = time.perf_counter()
        binaries.build_etcd(binaries.etcd_bin_dir())
        e = time.perf_counter() - t
        os.system(f"chmod -R u+w {tmp}")  # the Go module cache is read-only
    return {"kubernetes": round(k, 1), "etcd": round(e, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=50)
    ap.add_argument("--cold-build", action="store_true", help="also rebuild the binaries from scratch")
    a = ap.parse_args()
    binaries.ensure_binaries()
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "kernel": platform.release()}}
    res["recorded_build"] = recorded_builds()
    if a.cold_build:
        res["cold_build_s"] = cold_build()
    res["starts"] = measure_starts(a.repeat)
    cfg = cluster.up(NAME, say=_quiet)
    try:
        res["job"] = measure_job_vs_subprocess(cfg, a.repeat * 2)
        res["deployment"] = measure_deployment(cfg, a.replicas)
    finally:
        cluster.down(NAME, purge=True, say=_quiet)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print("| measurement | median (s) | runs |")
    print("|---|---|---|")
    for k, v in res["starts"].items():
        print(f"| {k} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
    for k, v in res["job"].items():
        print(f"| {k} | {statistics.median(v):.3f} | {', '.join(f'{x:.3f}' for x in v)} |")
    job = res["job"]
    ratio = statistics.median(job["job_apply_to_complete_s"]) / statistics.median(job["plain_subprocess_s"])
    print(f"| Job on the local node / plain subprocess | {ratio:.1f}x | |")
    d = res["deployment"]
    print(f"| {d['replicas']}-replica Deployment all ready | {d['all_ready_s']} | {d['pods_per_s']} pods/s |")
    for what, info in res["recorded_build"].items():
        print(f"| one-time build of {what} (recorded) | {info.get('seconds')} | |")
    for what, s in res.get("cold_build_s", {}).items():
        print(f"| one-time build of {what} (measured now) | {s} | |")


if __name__ == "__main__":
    main()
