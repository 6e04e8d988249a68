"""Start-up through the operator with the artifact store on a PVC (`file://`) against S3
(`s3://`, SeaweedFS in the cluster's network): how long a user waits, from `kubectl apply` to the
condition they watch, for a Dataset snapshot, a TrainingRun and an InferenceService
(issue 18, item 6).

    python -m benchmarks.store_startup --cluster bench-store --repeat 3 [--rows 20000]

Starts (or reuses) the local cluster `--cluster` with SeaweedFS (`mlops up --s3`), then for each
mode runs the operator as a local process (PVC store, or MLOPS_STORE=s3://... with the cluster's
keys in a Secret) and, per repeat in a fresh namespace, applies:

1. a Dataset (the retail generator, `--rows` rows): apply -> Ready (snapshot Job: generate,
   validate, profile, write data.parquet into the store);
2. a TrainingRun (LogisticRegression on it, promoted): apply -> Succeeded (training Job reads the
   snapshot from the store, writes model.onnx; verification Job);
3. an InferenceService of the promoted model, one replica: apply -> Ready (s3 mode: the init
   container fetches the model by digest into an emptyDir first; PVC mode: the server verifies
   the model in place).

The modes alternate per repeat (file, s3, file, s3, ...) so that a change of load on the machine
falls on both. Results: benchmarks/results/store_startup.json. The cluster is left running (take
it down with `mlops down --name <cluster> --purge`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mlops_operator.localcluster import binaries, cluster, s3cluster
from mlops_operator.localcluster.forward import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "store_startup.json"
PREFIX = "bench"
STEPS = ("dataset", "training", "serving")


class Kube:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        p = subprocess.run([str(binaries.binary_path("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
                           input=stdin, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr}")
        return p.stdout

    def obj(self, kind: str, name: str, ns: str) -> dict[str, Any]:
        out = self("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out) if out else {}


def _cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


def _until(pred, what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def one_round(k: Kube, ns: str, rows: int) -> dict[str, float]:
    """Seconds from apply to the watched condition, per step, in namespace `ns`."""
    out: dict[str, float] = {}
    k("apply", "-n", ns, "-f", "-", stdin=json.dumps({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "retail"},
        "spec": {"source": {"type": "generator", "generator": {"kind": "retail", "rows": rows, "seed": 1}},
                 "labelColumn": "purchased"}}))
    t = time.perf_counter()
    _until(lambda: _cond(k.obj("dataset", "retail", ns), "Ready").get("status") == "True", "the Dataset Ready")
    out["dataset"] = time.perf_counter() - t
    k("apply", "-n", ns, "-f", "-", stdin=json.dumps({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "v1"},
        "spec": {"modelName": "propensity", "dataset": {"name": "retail"},
                 "estimator": {"type": "LogisticRegression"}, "metric": "roc_auc",
                 "promotion": {"policy": "always", "alias": "production"}}}))
    t = time.perf_counter()

    def trained() -> bool:
        st = k.obj("trainingrun", "v1", ns).get("status") or {}
        if st.get("phase") == "Failed":
            raise RuntimeError(f"TrainingRun failed: {st.get('message')}")
        return st.get("phase") == "Succeeded"
    _until(trained, "the TrainingRun Succeeded")
    out["training"] = time.perf_counter() - t
    k("apply", "-n", ns, "-f", "-", stdin=json.dumps({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService", "metadata": {"name": "propensity"},
        "spec": {"model": "propensity", "alias": "production", "replicas": 1}}))
    t = time.perf_counter()
    _until(lambda: _cond(k.obj("inferenceservice", "propensity", ns), "Ready").get("status") == "True",
           "the InferenceService Ready")
    out["serving"] = time.perf_counter() - t
    return out


def start_operator(kubeconfig: Path, store: str | None, log: Path) -> subprocess.Popen:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    env.pop("MLOPS_STORE", None)
    if store:
        env["MLOPS_STORE"] = store
    return subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
                             "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--metrics-port", "0"],
                            env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster", default="bench-store")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20000)
    a = ap.parse_args(argv)
    cfg = cluster.up(a.cluster, timeout=600, s3=True)
    k = Kube(cfg.kubeconfig_path)
    k("apply", "-k", str(REPO / "crds"))
    for crd in (REPO / "crds").glob("*.mlops.dev.yaml"):
        k("wait", "--for=condition=Established", f"crd/{crd.stem}", "--timeout=60s")
    keys = dict(line.split("=", 1) for line in s3cluster.credentials_file(cfg).read_text().splitlines() if "=" in line)
    log = Path(cfg.state_dir) / "bench-operator.log"
    runs: dict[str, list[dict[str, float]]] = {"file": [], "s3": []}
    load = [os.getloadavg()[0]]
    for i in range(a.repeat):
        for mode in ("file", "s3"):
            ns = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
            k("create", "namespace", ns)
            if mode == "s3":
                k("apply", "-n", ns, "-f", "-", stdin=json.dumps({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlops-store-s3"}, "stringData": keys}))
            op = start_operator(cfg.kubeconfig_path, s3cluster.store_uri(PREFIX) if mode == "s3" else None, log)
            try:
                got = one_round(k, ns, a.rows)
            finally:
                stop(op)
                k("delete", "namespace", ns, "--wait=false", check=False)
            runs[mode].append(got)
            print(f"repeat {i + 1} {mode}: " + ", ".join(f"{s} {got[s]:.1f} s" for s in STEPS), flush=True)
            load.append(os.getloadavg()[0])
    med = {m: {s: statistics.median(r[s] for r in runs[m]) for s in STEPS} for m in runs}
    doc = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "rows": a.rows, "repeat": a.repeat, "load_average": load, "runs_s": runs, "median_s": med,
           "ratio_s3_over_file": {s: med["s3"][s] / med["file"][s] for s in STEPS}}
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print("| step | file:// (PVC) | s3:// (SeaweedFS) | ratio s3 / file |\n|---|---|---|---|")
    for s in STEPS:
        print(f"| {s} | {med['file'][s]:.1f} s | {med['s3'][s]:.1f} s | {med['s3'][s] / med['file'][s]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
