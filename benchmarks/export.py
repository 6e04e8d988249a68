"""`kubectl mlops export` of a large model: from a PVC store through the export pod and the API
server's pod proxy, against straight from an s3:// store (SeaweedFS on loopback), against a plain
copy of the same file on this machine (the floor) (issue 18, item 5).

    python -m benchmarks.export --cluster bench-export --size-mb 100 --repeat 3

Starts (or reuses) the local cluster named `--cluster` and a SeaweedFS server, writes one version of
a `--size-mb` model.onnx (random bytes) into both stores as a Job would, creates the ModelVersions
and times `kubectl_plugin.main(["export", ...])` end to end: pod creation, readiness, the transfer,
both digest checks and the pod's deletion for the PVC way; the download with its digest check for
the s3 way. Results go to benchmarks/results/export.json. The cluster is left running (take it down
with `mlops down --name <cluster> --purge`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from mlops_operator.cli.kubectl_plugin import main as plugin
from mlops_operator.localcluster import binaries, cluster
from mlops_operator.localcluster.seaweedfs import S3Identity, SeaweedServer, ensure_weed
from mlops_operator.store import FileStore, open_store
from mlops_operator.store.store import sha256_file

MB = 1_000_000
REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "export.json"
IDENT = S3Identity("bench", "AKBENCHEXPORT01", "bench-export-secret-4Rt8Wq1Zp6")
BUCKET = "mlops-bench"


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    p = subprocess.run([str(binaries.binary_path("kubectl")), "--kubeconfig", str(kubeconfig), *args],
                       input=stdin, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr}")
    return p.stdout


def _mv(ns: str, name: str, uri: str, digest: str) -> str:
    return json.dumps({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"model": "big", "version": int(name.rsplit("v", 1)[1]),
                                "artifact": {"uri": uri, "digest": digest}}})


def _time_export(argv: list[str], out: Path, phases: list[dict]) -> float:
    """Seconds of one export, end to end; its own split (pod ready, transfer) goes to `phases`."""
    buf = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = plugin([*argv, "-o", str(out), "--format", "json"])
    dt = time.perf_counter() - t
    if rc != 0 or not (out / "model.onnx").exists():
        raise RuntimeError(f"export failed: {argv}")
    phases.append(json.loads(buf.getvalue())["seconds"])
    shutil.rmtree(out)
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster", default="bench-export")
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    cfg = cluster.up(a.cluster, timeout=600)
    kc = cfg.kubeconfig_path
    _kubectl(kc, "apply", "-k", str(REPO / "crds"))
    _kubectl(kc, "wait", "--for=condition=Established", "crd/modelversions.mlops.dev", "--timeout=60s")
    ns = f"bench-export-{uuid.uuid4().hex[:6]}"
    _kubectl(kc, "create", "namespace", ns)
    os.environ.setdefault("MLOPS_RUNTIME_IMAGE", "mlops-runtime:bench")
    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLOPS_STORE"):
        os.environ.pop(v, None)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp, \
                SeaweedServer(Path(tmp) / "weed", [IDENT], binary=ensure_weed()) as srv:
            work = Path(tmp)
            srv.create_bucket(BUCKET)
            model = work / "model.onnx"
            with open(model, "wb") as f:
                for _ in range(a.size_mb):
                    f.write(os.urandom(MB))
            digest = sha256_file(model)
            man = work / "model.json"
            man.write_text(json.dumps({"format": "mlops.dev/model/v1", "onnxSha256": digest}))
            # the PVC store, as the operator makes it, and the version in it as a Job writes it
            _kubectl(kc, "apply", "-n", ns, "-f", "-", stdin=json.dumps({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "mlops-store"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
            _kubectl(kc, "wait", "-n", ns, "--for=jsonpath={.status.phase}=Bound", "pvc/mlops-store",
                     "--timeout=60s")
            pv = json.loads(_kubectl(kc, "get", "-n", ns, "pvc", "mlops-store", "-o", "json"))["spec"]["volumeName"]
            root = Path(json.loads(_kubectl(kc, "get", "pv", pv, "-o", "json"))["spec"]["hostPath"]["path"])
            FileStore(root).put_version("models", "big", model, {"model.json": man})
            _kubectl(kc, "apply", "-f", "-", stdin=_mv(ns, "big-v1", f"file:///store/models/big/{digest}/", digest))
            # the s3 store, and the namespace's Secret the plugin reads
            store_uri = f"s3://{BUCKET}?endpoint={srv.endpoint}"
            os.environ.update(AWS_ACCESS_KEY_ID=IDENT.access_key, AWS_SECRET_ACCESS_KEY=IDENT.secret_key)
            _, uri = open_store(f"s3://{BUCKET}/ops/{ns}?endpoint={srv.endpoint}",
                                cache_dir=work / "c").put_version("models", "big", model, {"model.json": man})
            for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.pop(v)
            _kubectl(kc, "apply", "-n", ns, "-f", "-", stdin=json.dumps({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlops-store-s3"},
                "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(IDENT.access_key.encode()).decode(),
                         "AWS_SECRET_ACCESS_KEY": base64.b64encode(IDENT.secret_key.encode()).decode()}}))
            _kubectl(kc, "apply", "-f", "-", stdin=_mv(ns, "big-v2", uri, digest))

            base = ["--kubeconfig", str(kc), "-n", ns, "export"]
            ways = {"pvc_pod_proxy": [*base, "big-v1"], "s3_direct": [*base, "big-v2", "--store", store_uri]}
            result: dict = {"size_bytes": a.size_mb * MB, "repeat": a.repeat, "cluster": a.cluster,
                            "load_avg_before": [round(x, 1) for x in os.getloadavg()]}
            for way, args in ways.items():
                _time_export(args, work / "warm", [])  # not counted: first-use paths
                phases: list[dict] = []
                times = [_time_export(args, work / f"out-{i}", phases) for i in range(a.repeat)]
                med = statistics.median(times)
                result[way] = {"median_s": round(med, 3), "runs_s": [round(t, 3) for t in times],
                               "mb_per_s": round(a.size_mb / med, 1),
                               **{f"{k}_median_s": round(statistics.median(p[k] for p in phases), 3)
                                  for k in phases[0]}}
                print(json.dumps({way: result[way]}), flush=True)
            copies = []
            for i in range(a.repeat):
                t = time.perf_counter()
                shutil.copyfile(model, work / f"copy-{i}")
                sha256_file(work / f"copy-{i}")
                copies.append(time.perf_counter() - t)
            result["local_copy_and_hash"] = {"median_s": round(statistics.median(copies), 3),
                                             "runs_s": [round(t, 3) for t in copies]}
            for way in ways:
                result[f"ratio_{way}_over_local_copy"] = round(
                    result[way]["median_s"] / result["local_copy_and_hash"]["median_s"], 1)
            result["ratio_pvc_pod_proxy_over_s3_direct"] = round(
                result["pvc_pod_proxy"]["median_s"] / result["s3_direct"]["median_s"], 2)
            result["load_avg_after"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        _kubectl(kc, "delete", "namespace", ns, "--wait=false")
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
