"""Benchmark: a recommender's top k in one request (`<name>-topk`, one ONNX graph with a TopK
node, serving/topk.py) against what a user of a pointwise model server does instead: send every
(customer, candidate) pair to the scorer (`<name>`, V2 infer, the customer's features repeated
per row) and sort the scores on the client. Same server process, same model, same candidates,
same answer (the top 10 item ids are checked equal before timing).

    .venv/bin/python -m benchmarks.topk [--candidates 100,1000] [--requests 300] [--estimator ...]

One keep-alive connection, requests one after another (latency, not throughput): p50, p99 and
the mean per request, and the bytes sent. The client's sort is counted in the pointwise path
(it is part of getting a top k that way). Results: benchmarks/results/topk.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlops_operator.localcluster.forward import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "topk.json"


def _bundle(tmp: Path, estimator: str) -> tuple[str, dict[str, Any], Any, Any]:
    """A ranking bundle trained here (the trainer the TrainingRun Job runs) and its data."""
    import pyarrow.parquet as pq

    from mlops_operator.data import snapshot
    from mlops_operator.store.model_manifest import read_manifest
    from mlops_operator.store.store import FileStore
    from mlops_operator.training import job

    store_uri = (tmp / "store").as_uri()
    ds_spec = yaml.safe_load((REPO / "examples/recommender/dataset.yaml").read_text())["spec"]
    ds_spec["source"]["generator"].update(rows=12000, behaviourShift=0.0, seed=3)
    work = tmp / "snap"
    work.mkdir()
    snap = snapshot.run({"name": "newsletters", "spec": ds_spec}, store_uri, tmp, work)
    ds = {"name": "newsletters", "digest": snap["digest"], "uri": snap["uri"],
          "schema": ds_spec["schema"]["columns"], "label": "purchased"}
    run = yaml.safe_load((REPO / "examples/recommender/trainingrun.yaml").read_text())["spec"]
    run["estimator"] = {"type": estimator, "params": {"max_iter": 100} if "HistGradient" in estimator else {}}
    out = job.train({"name": "bench", "modelName": "recommender", "spec": run, "dataset": ds, "champion": None},
                    store_uri)
    store = FileStore(tmp / "store")
    man = read_manifest(store.local_path(out["uri"], "model.json"))
    data = pq.read_table(store.local_path(ds["uri"], "data.parquet", ds["digest"])).to_pandas()
    return store_uri, out, man, data


def _candidates(data, n: int, seed: int):
    """n candidates for one customer: rows of the data with unique ids (the catalogue has 120
    items, so larger lists repeat an item's features under new ids, as a bigger catalogue would)."""
    g = np.random.default_rng(seed)
    rows = data.iloc[g.integers(0, len(data), n)].reset_index(drop=True)
    rows["item_id"] = [f"i{j}" for j in range(n)]
    return rows


def _tensor(name: str, f_type: str, vals: list[Any]) -> dict[str, Any]:
    if f_type == "categorical":
        return {"name": name, "datatype": "BYTES", "shape": [len(vals), 1], "data": [str(v) for v in vals]}
    return {"name": name, "datatype": "FP32", "shape": [len(vals), 1], "data": [float(v) for v in vals]}


def _bodies(man, cands, k: int) -> tuple[bytes, bytes]:
    ctx = set(man.ranking.context_features)
    topk = [_tensor(f.name, f.type, cands[f.name].tolist()[:1] if f.name in ctx else cands[f.name].tolist())
            for f in man.inputs]
    topk.append({"name": "item_ids", "datatype": "BYTES", "shape": [len(cands)], "data": cands.item_id.tolist()})
    pointwise = [_tensor(f.name, f.type, [cands[f.name].iloc[0]] * len(cands) if f.name in ctx
                         else cands[f.name].tolist()) for f in man.inputs]
    return (json.dumps({"inputs": topk, "parameters": {"k": k}}).encode(),
            json.dumps({"inputs": pointwise, "outputs": [{"name": "probabilities"}]}).encode())


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> dict[str, Any]:
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
    return json.loads(data)


def _top_from_scores(doc: dict[str, Any], ids: list[str], k: int) -> list[str]:
    probs = np.asarray(next(o for o in doc["outputs"] if o["name"] == "probabilities")["data"]).reshape(-1, 2)[:, 1]
    order = np.lexsort((np.arange(len(ids)), -probs))[:k]
    return [ids[i] for i in order]


def _time(fn, n: int) -> dict[str, float]:
    for _ in range(max(10, n // 10)):
        fn()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    a = np.array(lat) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()),
            "requests": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", default="100,1000")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--estimator", default="HistGradientBoostingClassifier")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        store_uri, out, man, data = _bundle(tmp, args.estimator)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "mlops_operator.serving", "--store-uri", store_uri,
                                 "--model-uri", out["uri"], "--digest", out["digest"], "--name", "recommender",
                                 "--port", str(port), "--grpc-port", "0", "--drain-delay-seconds", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            while True:  # ready: the model is loaded and warmed up
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("GET", "/v2/health/ready")
                    ready = conn.getresponse()
                    ready.read()
                    if ready.status == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the server did not become ready: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.2)
            rows = []
            for n in (int(x) for x in args.candidates.split(",")):
                cands = _candidates(data, n, seed=n)
                ids = cands.item_id.tolist()
                topk_body, point_body = _bodies(man, cands, args.k)
                got = next(o for o in _post(conn, "/v2/models/recommender-topk/infer", topk_body)["outputs"]
                           if o["name"] == "topk_items")["data"]
                want = _top_from_scores(_post(conn, "/v2/models/recommender/infer", point_body), ids, args.k)
                if got != want:
                    raise SystemExit(f"top-k differs from the scorer's ranking at {n} candidates: {got} vs {want}")
                ours = _time(lambda b=topk_body: _post(conn, "/v2/models/recommender-topk/infer", b), args.requests)
                other = _time(lambda b=point_body, i=ids: _top_from_scores(
                    _post(conn, "/v2/models/recommender/infer", b), i, args.k), args.requests)
                row = {"candidates": n, "k": args.k, "topk": ours, "pointwise_then_sort": other,
                       "bytes_topk": len(topk_body), "bytes_pointwise": len(point_body),
                       "speedup_p50": other["p50_ms"] / ours["p50_ms"], "speedup_p99": other["p99_ms"] / ours["p99_ms"]}
                rows.append(row)
                print(f"{n:>5} candidates: top-k p50 {ours['p50_ms']:.2f} ms p99 {ours['p99_ms']:.2f} ms | "
                      f"scorer+sort p50 {other['p50_ms']:.2f} ms p99 {other['p99_ms']:.2f} ms | "
                      f"{row['speedup_p50']:.2f}x at p50; body {len(topk_body):,} vs {len(point_body):,} bytes")
        finally:
            proc.terminate()
            proc.wait(30)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"estimator": args.estimator, "machine": platform.machine(),
                                   "cpus": os.cpu_count(), "load": os.getloadavg(), "rows": rows}, indent=2) + "\n")
    print(f"results: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
