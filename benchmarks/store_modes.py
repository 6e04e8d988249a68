"""The artifact store's two modes side by side: `file://` (a directory, the PVC) against `s3://`
(SeaweedFS on loopback), through the code the pods and Jobs run (issue 18, item 6).

    python -m benchmarks.store_modes --repeat 5            # builds weed on first use (~8 min)

1. Model fetch at pod start, the init container's path (`python -m mlops_operator.store.fetch`):
   a 1 MB and a 100 MB model.onnx (+ model.json) copied from the shared store into an empty
   directory (the emptyDir), verified at both ends. Measured as the whole command (interpreter
   start, imports, transfer, hashing, the staged rename), because that is what delays a serving
   pod, and in-process (`fetch.fetch`) for the transfer alone. The PVC mode's own cost, where the
   server reads the model where it lies, is the third column: `FileStore.local_path` with the
   digest (one sha256 pass, no copy).
2. A snapshot Job's and a training Job's artifact writes and the reads that follow, through
   `open_store(uri).put_version / local_path`: a dataset version (data.parquet of 10 MB and
   100 MB + profile.json + validation.json) and a model version (model.onnx 1 MB + model.json).
   Each repeat writes new bytes (a new digest), so no write is the store's no-op for a version
   that exists. Reads: a cold read (empty cache: the s3 store downloads and verifies) and a warm
   one (the s3 store's verified cache, re-hashed; the file store hashes in place both times).

The files hold random bytes: the store never looks inside them, and random bytes neither
compress nor deduplicate anywhere on the way. Results go to benchmarks/results/store_modes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from mlops_operator.localcluster.seaweedfs import S3Identity, SeaweedServer, ensure_weed
from mlops_operator.store import fetch as fetch_mod
from mlops_operator.store import open_store
from mlops_operator.store.store import sha256_file

MB = 1_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "store_modes.json"
IDENT = S3Identity("bench", "AKBENCHSTORE001", "bench-store-secret-9Xq2Lm7Vz4")
BUCKET = "mlops-bench"


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


def _fresh(path: Path) -> None:
    """New content (a new digest) at the same size: overwrite the first 32 bytes."""
    with open(path, "r+b") as f:
        f.write(os.urandom(32))


def _timed(fn: Callable[..., object], *args: object) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def _summary(times: list[float], size: int | None = None) -> dict:
    med = statistics.median(times)
    d = {"median_s": round(med, 4), "runs_s": [round(t, 4) for t in times]}
    if size:
        d["mb_per_s"] = round(size / MB / med, 1)
    return d


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _fetch_command(root: str, name: str, digest: str, dest: Path, env: dict, cpu: list[float]) -> None:
    """What the init container runs; its CPU seconds (user + sys) go to `cpu`, which the other
    tenants' load changes less than the wall time."""
    before = _cpu_children()
    p = subprocess.run([sys.executable, "-m", "mlops_operator.store.fetch", "--store", root, "--name", name,
                        "--digest", digest, "--extra", "model.json", "--dest", str(dest),
                        "--termination-log", "/dev/null"], env=env, capture_output=True, text=True)
    if p.returncode != 0 or '"ok": true' not in p.stdout:
        raise RuntimeError(f"fetch failed: {p.stdout} {p.stderr}")
    cpu.append(_cpu_children() - before)
    shutil.rmtree(dest)


def _fetch_in_process(root: str, name: str, digest: str, dest: Path) -> None:
    r = fetch_mod.fetch(root, "models", name, digest, ["model.json"], dest)
    if not r["ok"]:
        raise RuntimeError(str(r))
    shutil.rmtree(dest)


def _dest(work: Path) -> Path:
    return work / f"dest-{uuid.uuid4().hex[:8]}"


def bench_fetch(roots: dict[str, str], work: Path, sizes_mb: list[int], repeat: int, env: dict) -> dict:
    out: dict = {}
    for mb in sizes_mb:
        size, name = mb * MB, f"m{mb}"
        src = _random_file(work / f"model-{mb}.onnx", size)
        man = work / f"model-{mb}.json"
        digest = sha256_file(src)
        man.write_text(json.dumps({"format": "mlops.dev/model/v1", "onnxSha256": digest}))
        row: dict = {"bytes": size}
        for mode, root in roots.items():
            open_store(root, cache_dir=work / "writer-cache").put_version("models", name, src, {"model.json": man})
            cpu: list[float] = []
            # one run first, not counted: the page cache and the server's first-use paths
            _fetch_command(root, name, digest, _dest(work), env, [])
            command = [_timed(_fetch_command, root, name, digest, _dest(work), env, cpu) for _ in range(repeat)]
            inproc = [_timed(_fetch_in_process, root, name, digest, _dest(work)) for _ in range(repeat)]
            row[mode] = {"command": {**_summary(command, size), "cpu_median_s": round(statistics.median(cpu), 4)},
                         "in_process": _summary(inproc, size)}
        # the PVC mode's own cost: the server verifies the model where it lies (no copy)
        fstore = open_store(roots["file"])
        uri = fstore.uri("models", name, digest)
        row["pvc_in_place"] = _summary([_timed(fstore.local_path, uri, "model.onnx", digest)
                                        for _ in range(repeat)], size)
        for how in ("command", "in_process"):
            row[f"ratio_s3_over_file_{how}"] = round(row["s3"][how]["median_s"] / row["file"][how]["median_s"], 2)
        out[f"{mb}MB"] = row
        print(json.dumps({f"fetch {mb} MB": row}), flush=True)
    return out


def _import(module: str, env: dict, cpu: list[float]) -> None:
    before = _cpu_children()
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True)
    cpu.append(_cpu_children() - before)


def bench_imports(repeat: int, env: dict) -> dict:
    """Interpreter start + import of each store backend: what every fetch command pays first."""
    out = {}
    for name, module in (("file", "mlops_operator.store.store"), ("s3", "mlops_operator.store.s3")):
        cpu: list[float] = []
        _import(module, env, [])
        times = [_timed(_import, module, env, cpu) for _ in range(repeat)]
        out[name] = {**_summary(times), "cpu_median_s": round(statistics.median(cpu), 4), "module": module}
    print(json.dumps({"imports": out}), flush=True)
    return out


def bench_artifacts(roots: dict[str, str], work: Path, dataset_mb: list[int], model_mb: int, repeat: int) -> dict:
    out: dict = {}
    extras_ds = {"profile.json": work / "profile.json", "validation.json": work / "validation.json"}
    extras_ds["profile.json"].write_bytes(os.urandom(200_000))
    extras_ds["validation.json"].write_bytes(os.urandom(2_000))
    model_json = work / "model.json"
    model_json.write_bytes(os.urandom(20_000))
    cases = [("snapshot", "datasets", mb, extras_ds) for mb in dataset_mb] + \
        [("training", "models", model_mb, {"model.json": model_json})]
    for job, kind, mb, extras in cases:
        size = mb * MB
        primary = _random_file(work / f"{kind}-{mb}.bin", size)
        primary_name = "data.parquet" if kind == "datasets" else "model.onnx"
        row: dict = {"bytes": size, "kind": kind}
        for mode, root in roots.items():
            writes, cold, warm = [], [], []
            for _ in range(repeat):
                _fresh(primary)
                cache = work / f"cache-{uuid.uuid4().hex[:8]}"
                store = open_store(root, cache_dir=cache)  # a Job's process opens the store once
                t = time.perf_counter()
                digest, uri = store.put_version(kind, "bench", primary, extras)
                writes.append(time.perf_counter() - t)
                reader = open_store(root, cache_dir=cache)  # the next Job (validation, training): cold
                t = time.perf_counter()
                reader.local_path(uri, primary_name, digest)
                cold.append(time.perf_counter() - t)
                t = time.perf_counter()
                reader.local_path(uri, primary_name, digest)
                warm.append(time.perf_counter() - t)
                shutil.rmtree(cache, ignore_errors=True)
            row[mode] = {"write": _summary(writes, size), "read_cold": _summary(cold, size),
                         "read_warm": _summary(warm, size)}
        for what in ("write", "read_cold", "read_warm"):
            row[f"ratio_s3_over_file_{what}"] = round(row["s3"][what]["median_s"] / row["file"][what]["median_s"], 2)
        out[f"{job} {mb}MB"] = row
        print(json.dumps({f"{job} {mb} MB": row}), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--fetch-mb", default="1,100", help="model sizes for the fetch benchmark (MB, comma-separated)")
    ap.add_argument("--dataset-mb", default="10,100", help="dataset sizes for the snapshot benchmark")
    ap.add_argument("--model-mb", type=int, default=1, help="model size for the training benchmark")
    ap.add_argument("--workdir", type=Path, default=None, help="where the file store, SeaweedFS data and "
                    "copies go (default: a temporary directory; the same disk for both modes)")
    a = ap.parse_args(argv)
    weed = ensure_weed()
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=a.workdir) as tmp:
        work = Path(tmp)
        with SeaweedServer(work / "weed", [IDENT], binary=weed) as srv:
            srv.create_bucket(BUCKET)
            roots = {"file": (work / "filestore").as_uri(), "s3": f"s3://{BUCKET}/bench?endpoint={srv.endpoint}"}
            env = dict(os.environ, AWS_ACCESS_KEY_ID=IDENT.access_key, AWS_SECRET_ACCESS_KEY=IDENT.secret_key)
            os.environ.update(AWS_ACCESS_KEY_ID=IDENT.access_key, AWS_SECRET_ACCESS_KEY=IDENT.secret_key)
            load_before = os.getloadavg()
            result = {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "load_avg_before": [round(x, 1) for x in load_before]},
                "server": f"SeaweedFS {weed.parent.parent.name} (weed server -filer -s3, loopback)",
                "repeat": a.repeat,
                "imports": bench_imports(a.repeat, env),
                "fetch": bench_fetch(roots, work, [int(x) for x in a.fetch_mb.split(",")], a.repeat, env),
                "artifacts": bench_artifacts(roots, work, [int(x) for x in a.dataset_mb.split(",")],
                                             a.model_mb, a.repeat),
            }
            result["machine"]["load_avg_after"] = [round(x, 1) for x in os.getloadavg()]
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
