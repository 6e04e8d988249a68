"""Benchmark: how fast the embedded local cluster starts.

Measures, in one run: the one-time binary build (as recorded when it happened, or measured
afresh with --cold-build), time from `mlops up` to a ready API server with a cold state dir
(new PKI, empty etcd) and with a warm one (restart of an existing cluster), and a second `up`
that reuses a running cluster.

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
    ap.add_argument("--cold-build", action="store_true", help="also rebuild the binaries from scratch")
    a = ap.parse_args()
    binaries.ensure_binaries()
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "kernel": platform.release()}}
    res["recorded_build"] = recorded_builds()
    if a.cold_build:
        res["cold_build_s"] = cold_build()
    res["starts"] = measure_starts(a.repeat)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print("| measurement | median (s) | runs |")
    print("|---|---|---|")
    for k, v in res["starts"].items():
        print(f"| {k} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
    for what, info in res["recorded_build"].items():
        print(f"| one-time build of {what} (recorded) | {info.get('seconds')} | |")
    for what, s in res.get("cold_build_s", {}).items():
        print(f"| one-time build of {what} (measured now) | {s} | |")


if __name__ == "__main__":
    main()
