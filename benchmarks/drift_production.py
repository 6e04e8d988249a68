"""Benchmark: the production drift path (issue 17): what the serving pods' counting costs, what it
holds in memory, and what merging the pods' counters and judging a window costs the operator,
side by side with Evidently's DataDriftPreset on the same window's raw rows.

    .venv/bin/python -m benchmarks.drift_production [--pods 1,10,100] [--rows-per-pod 1000] [--no-save]
    .venv/bin/python -m benchmarks.drift_production --part capture     # the capture cost alone

The model is the retail model's 18 features (12 numeric, 2 boolean, 4 categorical;
`retail.generate`), its reference profiled by the real profiler (data/profile.py) from 20,000
training rows and turned into model.json's reference (training/artifact.reference_of).

* capture: `Monitor.observe` + the deferred counting (`sync`) per row, requests of 1 and 32 rows,
  the median of 7 runs of 20,000 rows each, in this process (no HTTP: the full serving benchmark
  needs `wrk`, and on this shared 2-core machine its noise, up to 1.5x, would hide a few percent).
  `--part capture` runs only this part and works against the code before issue 17 too (its
  Monitor took a reservoir), which is how the "before" number is measured: run it with
  `PYTHONPATH=<old checkout>/operator`.
* memory: the bytes each pod holds per numeric feature (its counters and the copies kept for
  cursors), the size of a stats document, of the operator's state per pod and of a window.
* merge + evaluate: for 1, 10 and 100 pods that each counted `--rows-per-pod` rows, the
  operator's work per tick (parse the pods' stats documents with the stdlib's json as the
  controller does, `accumulate` them into the window, the state to and from JSON) and per window
  (`evaluate`). Evidently's time is its report on the
  same window's raw rows against the 20,000 raw reference rows (as benchmarks/drift.py runs it);
  the ratio is Evidently's time over ours (tick + evaluate).

Results: benchmarks/results/drift_production.json; benchmarks/README.md has the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "drift_production.json"
REF_ROWS = 20_000


def retail_model(ref_rows: int = REF_ROWS, seed: int = 3) -> tuple[Any, Any, Any]:
    """(model namespace for Monitor, the prepared reference frame, a prepared traffic frame)."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_operator.data import retail
    from mlops_operator.data.profile import Profiler
    from mlops_operator.store.model_manifest import Feature, ModelManifest, Output
    from mlops_operator.training import pipeline
    from mlops_operator.training.artifact import reference_of

    df = retail.generate(ref_rows + 60_000, seed=seed).to_pandas()
    feats = pipeline.feature_columns(retail.RETAIL_SCHEMA, retail.LABEL)
    x = pipeline.prepare_frame(df, feats)
    ref, traffic = x.iloc[:ref_rows].reset_index(drop=True), x.iloc[ref_rows:].reset_index(drop=True)
    cols = {}
    for c in feats:
        v = ref[c["name"]]
        if c["type"] == "categorical":
            cols[c["name"]] = pa.array([None if s == "" else s for s in v.astype(str)], type=pa.string())
        elif c["type"] == "boolean":
            cols[c["name"]] = pa.array([None if a != a else bool(a) for a in v.to_numpy(float)], type=pa.bool_())
        else:
            cols[c["name"]] = pa.array(v.to_numpy(float), from_pandas=True, type=pa.float64())
    table = pa.table(cols)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.parquet"
        pq.write_table(table, path)
        prof = Profiler([{"name": c["name"], "type": c["type"], "role": "feature"} for c in feats], None)
        for b in table.to_batches(max_chunksize=65536):
            prof.add(b)
        profile = orjson.loads(orjson.dumps(prof.finish(path)))
    reference = reference_of(profile, feats, None, "y", "retail", "0" * 64)
    inputs = [Feature(name=c["name"], type=c["type"], datatype="BYTES" if c["type"] == "categorical" else "FP32")
              for c in feats]
    manifest = ModelManifest(model="retail", task="classification", estimator="e", target="y", inputs=inputs,
                             outputs=[Output(name="label", datatype="INT64", shape=[-1]),
                                      Output(name="probabilities", datatype="FP32", shape=[-1, 2])],
                             classes=["0", "1"], onnx_sha256="0" * 64, reference=reference)
    model = types.SimpleNamespace(manifest=manifest, num_features=[f for f in inputs if f.type != "categorical"],
                                  cat_features=[f for f in inputs if f.type == "categorical"], features=inputs,
                                  classes=["0", "1"], classifier=True)
    return model, ref, traffic


def tensors(model: Any, frame: Any) -> tuple[np.ndarray, list[list[str]], dict[str, np.ndarray]]:
    """What the server hands its monitor: float64 [F_num, N] (NaN nulls), categorical columns, outputs."""
    x = np.stack([frame[f.name].to_numpy(dtype=np.float64) for f in model.num_features])
    cats = [[str(s) for s in frame[f.name].tolist()] for f in model.cat_features]
    n = len(frame)
    return x, cats, {"label": np.zeros(n, np.int64), "probabilities": np.full((n, 2), 0.5, np.float32)}


def monitor(model: Any) -> Any:
    from mlops_operator.serving.monitor import Monitor

    if "reservoir_size" in inspect.signature(Monitor).parameters:  # the code before issue 17
        return Monitor(model, reservoir_size=1000, window_seconds=300, seed=0)
    return Monitor(model, seed=0)


def capture(model: Any, traffic: Any, rows: int = 20_000, runs: int = 7) -> dict[str, Any]:
    x, cats, result = tensors(model, traffic.iloc[:rows])
    out: dict[str, Any] = {}
    for batch in (1, 32):
        reqs = [(x[:, i:i + batch], [c[i:i + batch] for c in cats], {k: v[i:i + batch] for k, v in result.items()})
                for i in range(0, rows, batch)]
        times = []
        for _ in range(runs):
            mon = monitor(model)
            t = time.perf_counter()
            for r in reqs:
                mon.observe(*r)
            mon.sync()
            times.append((time.perf_counter() - t) / rows * 1e6)
        out[f"batch{batch}"] = {"us_per_row_median": statistics.median(times), "runs": times}
    return out


def memory(model: Any, traffic: Any) -> dict[str, Any]:
    import orjson

    from mlops_operator.monitoring.windows import Window, accumulate
    from mlops_operator.serving.monitor import CURSORS

    mon = monitor(model)
    mon.observe(*tensors(model, traffic.iloc[:5000]))
    doc = {"startId": "s", "drift": mon.drift_doc("s", ""), "features": mon.features_doc()}
    hists = mon.numeric.hists
    numeric = [h for h, lab in zip(hists, mon.numeric.labels) if lab is None]
    per_feature = [h.counts.nbytes + h.atoms.nbytes + h.sums.nbytes for h in numeric]
    res = accumulate(Window(0.0), {}, {"pod-0": doc})
    packed = doc["drift"]["histograms"]
    return {
        "edges_per_numeric_feature": [h.k for h in numeric],
        "counter_bytes_per_numeric_feature_median": statistics.median(per_feature),
        "counter_bytes_per_numeric_feature_max": max(per_feature),
        "cursor_copies": CURSORS,
        "pod_bytes_per_numeric_feature_one_reader_max": max(per_feature) * 3,
        "pod_bytes_per_numeric_feature_with_cursor_copies_max": max(per_feature) * (1 + CURSORS),
        "stats_histogram_bytes_per_numeric_feature": len(orjson.dumps(packed)) / len(packed["features"]),
        "stats_document_bytes": len(orjson.dumps(doc)),
        "operator_state_bytes_per_pod": len(orjson.dumps(res.pods["pod-0"])),
        "window_json_bytes": len(orjson.dumps(res.window.to_json())),
    }


def merge_and_evaluate(model: Any, ref: Any, traffic: Any, pods: int, rows_per_pod: int,
                       with_evidently: bool) -> dict[str, Any]:
    import orjson

    from mlops_operator import drift
    from mlops_operator.monitoring.windows import Window, accumulate

    refs = drift.references_from_profile(model.manifest.reference.model_dump(by_alias=True, exclude_none=True,
                                                                                 mode="json")["columns"])
    g = np.random.default_rng(pods)
    texts = {}
    raw = []
    for p in range(pods):
        rows = traffic.iloc[g.integers(0, len(traffic), rows_per_pod)]
        raw.append(rows)
        mon = monitor(model)
        mon.observe(*tensors(model, rows))
        texts[f"pod-{p}"] = orjson.dumps({"startId": f"s{p}", "drift": mon.drift_doc(f"s{p}", ""),
                                          "features": mon.features_doc(), "feedback": {}})
    state = orjson.dumps({"pods": {}, "window": Window(0.0).to_json()})

    def tick() -> Any:  # what the controller does per tick after its reads (its json is the stdlib's)
        st = json.loads(state)
        docs = {k: json.loads(v) for k, v in texts.items()}
        res = accumulate(Window.from_json(st["window"]), st["pods"], docs)
        json.dumps({"pods": res.pods, "window": res.window.to_json()}, separators=(",", ":"))
        return res.window

    tick_s = _best(tick)
    window = tick()
    assert window.rows == pods * rows_per_pod
    evaluate_s = _best(lambda: drift.evaluate(refs, window.features, min_samples=1))
    ours = drift.evaluate(refs, window.features, min_samples=1)
    out: dict[str, Any] = {"pods": pods, "window_rows": window.rows, "tick_s": tick_s, "evaluate_s": evaluate_s,
                           "ours_total_s": tick_s + evaluate_s,
                           "drifted_features": ours.drifted_features}
    if with_evidently:
        import pandas as pd

        cur = pd.concat(raw, ignore_index=True)
        out["evidently_s"], ev = _evidently(model, ref, cur)
        out["ratio"] = out["evidently_s"] / out["ours_total_s"]
        ours_d = {f.name: f.drifted for f in ours.features}
        out["decisions_differ"] = sorted(k for k, v in ev.items() if ours_d.get(k) != v)
    return out


def _best(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _evidently(model: Any, ref: Any, cur: Any) -> tuple[float, dict[str, bool]]:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    warnings.simplefilter("ignore")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    num = [f.name for f in model.num_features if f.type == "numeric"]
    cat = [f.name for f in model.features if f.type != "numeric"]

    def frame(d: Any) -> Any:
        out = d[[f.name for f in model.features]].copy()
        for c in cat:
            out[c] = out[c].astype(object).where(out[c] != "", None)
        return out

    r, c = frame(ref), frame(cur)
    t = time.perf_counter()
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snap = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(c, data_definition=definition), Dataset.from_pandas(r, data_definition=definition))
    doc = snap.dict()
    took = time.perf_counter() - t
    drifted = {}
    for test in doc["tests"]:
        p = test["metric_config"]["params"]
        if p["type"].endswith("ValueDrift"):
            drifted[p["column"]] = str(test["status"]).endswith("FAIL")
    return took, drifted


def table(res: dict[str, Any]) -> str:
    lines = []
    if "capture" in res:
        c = res["capture"]
        lines += ["| capture, Monitor.observe + counting | µs per row (median of 7) | runs |", "|---|---|---|"]
        for b in ("batch1", "batch32"):
            lines.append(f"| {b.replace('batch', 'requests of ')} rows | {c[b]['us_per_row_median']:.3f} | "
                         + ", ".join(f"{t:.2f}" for t in c[b]["runs"]) + " |")
    if "memory" in res:
        m = res["memory"]
        lines += ["", "| memory | bytes |", "|---|---|",
                  "| counters per numeric feature per pod (median / max) | "
                  f"{m['counter_bytes_per_numeric_feature_median']:,.0f} / "
                  f"{m['counter_bytes_per_numeric_feature_max']:,} |",
                  "| the same with the 2 copies kept for one reading DriftMonitor (max) | "
                  f"{m['pod_bytes_per_numeric_feature_one_reader_max']:,} |",
                  f"| the same with the most copies kept for cursors, {m['cursor_copies']} (max) | "
                  f"{m['pod_bytes_per_numeric_feature_with_cursor_copies_max']:,} |",
                  f"| one numeric feature in the stats document (packed, mean) | "
                  f"{m['stats_histogram_bytes_per_numeric_feature']:,.0f} |",
                  f"| the stats document (18 features, 5,000 rows counted) | {m['stats_document_bytes']:,} |",
                  f"| the operator's state per pod | {m['operator_state_bytes_per_pod']:,} |",
                  f"| the window in the operator's state | {m['window_json_bytes']:,} |"]
    if "merge" in res:
        lines += ["", "| pods | window rows | merge per tick (ms) | evaluate per window (ms) | Evidently (s) | "
                      "Evidently / ours | decisions that differ |", "|---|---|---|---|---|---|---|"]
        for r in res["merge"]:
            ev = f"{r['evidently_s']:.2f}" if "evidently_s" in r else ""
            ratio = f"**{r['ratio']:.0f}x**" if "ratio" in r else ""
            lines.append(f"| {r['pods']} | {r['window_rows']:,} | {r['tick_s'] * 1e3:.1f} | "
                         f"{r['evaluate_s'] * 1e3:.1f} | {ev} | {ratio} | "
                         f"{', '.join(r.get('decisions_differ', [])) or 'none'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.drift_production", description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["all", "capture"], default="all")
    ap.add_argument("--pods", default="1,10,100")
    ap.add_argument("--rows-per-pod", type=int, default=1000)
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    model, ref, traffic = retail_model()
    res: dict[str, Any] = {"date": _dt.date.today().isoformat(), "loadavg_at_start": os.getloadavg(),
                           "command": "python -m benchmarks.drift_production " + " ".join(argv or sys.argv[1:])}
    res["capture"] = capture(model, traffic)
    if a.part == "all":
        res["memory"] = memory(model, traffic)
        res["merge"] = [merge_and_evaluate(model, ref, traffic, int(p), a.rows_per_pod, not a.no_evidently)
                        for p in a.pods.split(",")]
    res["loadavg_at_end"] = os.getloadavg()
    print(table(res))
    if not a.no_save and a.part == "all":
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
