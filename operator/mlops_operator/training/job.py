"""The trainer that runs inside a TrainingRun's Job: load the verified dataset version, split,
tune, fit, evaluate, export to ONNX, check parity, compare with the champion, store the
bundle, and report a small JSON summary as the termination message.

    python -m mlops_operator.training --spec /etc/mlops/run/spec.json --store file:///store

Any failure the user can fix (one label class, unknown feature, bad param value, parity) ends
as `{"error": "..."}` in the termination message with exit code 2, which the operator turns
into a `Failed` condition; a crash falls back to the log tail (FallbackToLogsOnError).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..store.model_manifest import ModelManifest, read_manifest
from ..store.store import StoreError, open_store
from . import artifact, convert, estimators, evaluate, pipeline, search
from .split import split_rows

log = logging.getLogger("mlops.trainer")
TERMINATION_LIMIT = 4000
MAX_CLASSES = 100


class TrainingError(RuntimeError):
    """A reason the user can act on; becomes the run's Failed message."""


def _infer_task(task: str, y: pd.Series, ltype: str) -> str:
    if task != "auto":
        return task
    if ltype in ("categorical", "boolean") or y.dtype == object:
        return "classification"
    vals = y.dropna().unique()
    integral = np.all(np.mod(vals.astype(float), 1) == 0)
    return "classification" if integral and len(vals) <= 20 else "regression"


def _labels(y: pd.Series, task: str) -> pd.Series:
    """Classification labels as int64 when integral (ONNX label INT64), else str."""
    if task == "regression":
        return y.astype(float)
    if y.dtype != object and np.all(np.mod(y.dropna().to_numpy(dtype=float), 1) == 0):
        return y.astype("int64")
    return y.astype(str)


def _check_params(name: str, params: dict[str, Any], seed: int) -> None:
    est = estimators.make(name, params, seed)
    try:
        est._validate_params()  # scikit-learn's own constraints (e.g. C > 0), before any fit
    except (ValueError, TypeError) as e:
        raise TrainingError(f"estimator {name}: {e}") from e


def onnx_predict(onnx_bytes: bytes, manifest_inputs: list[dict[str, Any]], frame: pd.DataFrame):
    sess = convert.session(onnx_bytes)
    outs = sess.run(None, convert.feeds(frame, manifest_inputs))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, outs))


def _onnx_metrics(task: str, got: dict[str, np.ndarray], y_true: pd.Series, classes: list[str] | None) -> dict:
    if task == "regression":
        pred = next(iter(got.values())).reshape(-1).astype(float)
        return evaluate.regression_metrics(y_true.to_numpy(dtype=float), pred)
    label = got["label"].reshape(-1).astype(str)
    proba = got.get("probabilities")
    return evaluate.classification_metrics(y_true.astype(str).to_numpy(), label, proba, list(classes or []))[0]


def champion_score(champion: dict[str, Any] | None, store, test_raw: pd.DataFrame, y_test: pd.Series, task: str,
                   metric: str) -> dict[str, Any] | None:
    """The champion's metric on the candidate's test split, through ONNX Runtime (never pickle)."""
    return score_champion(champion, store, test_raw,
                          lambda got, classes: _onnx_metrics(task, got, y_test, classes).get(metric))


def score_champion(champion: dict[str, Any] | None, store, test_raw: pd.DataFrame,
                   score: Callable[[dict[str, np.ndarray], list[str] | None], float | None]) -> dict[str, Any] | None:
    """The champion's `score` (of its ONNX outputs on `test_raw`, and its classes), or why there
    is none: a broken or incompatible champion never blocks a good candidate, and the reason is
    reported. Shared by the classification/regression and the ranking trainers."""
    if not champion:
        return None
    out: dict[str, Any] = {"name": champion["name"]}
    try:
        onnx_path = store.local_path(champion["uri"], "model.onnx", champion["digest"])
        man = read_manifest(store.local_path(champion["uri"], "model.json"))
        missing = [f.name for f in man.inputs if f.name not in test_raw.columns]
        if missing:
            out["reason"] = f"champion needs features missing from the new data: {', '.join(missing)}"
            return out
        feats = [{"name": f.name, "type": f.type} for f in man.inputs]
        got = onnx_predict(onnx_path.read_bytes(), feats, pipeline.prepare_frame(test_raw, feats))
        out["score"] = score(got, man.classes)
    except Exception as e:
        out["reason"] = f"could not evaluate the champion: {type(e).__name__}: {e}"[:400]
    return out


def train(doc: dict[str, Any], store_uri: str) -> dict[str, Any]:
    t_start = time.time()
    spec, ds = doc["spec"], doc["dataset"]
    store = open_store(store_uri)
    data_path = store.local_path(ds["uri"], "data.parquet", ds["digest"])
    try:
        profile = json.loads(store.local_path(ds["uri"], "profile.json").read_text())
    except Exception:
        profile = {}
    schema = ds["schema"]
    target = spec.get("target") or ds.get("label")
    if not target:
        raise TrainingError("no target: set spec.target or the Dataset's labelColumn")
    by_name = {c["name"]: c for c in schema}
    if target not in by_name:
        raise TrainingError(f"target {target!r} is not a column of dataset {ds['name']}")
    try:
        feats = pipeline.feature_columns(schema, target, spec.get("features"), spec.get("excludeFeatures"))
    except ValueError as e:
        raise TrainingError(str(e)) from e
    split_spec = spec.get("split") or {}
    time_col = split_spec.get("timeColumn") or next((c["name"] for c in schema if c.get("role") == "timestamp"), None)
    # every column: the champion may use features this run leaves out
    df = pq.read_table(data_path).to_pandas()
    df = df[df[target].notna()].reset_index(drop=True)
    if len(df) < 10:
        raise TrainingError(f"only {len(df)} labelled rows in dataset {ds['name']}@{ds['digest'][:12]}")
    if spec.get("task") == "ranking":
        from . import ranking_job  # imports this module: loaded on demand

        return ranking_job.train(doc, store, df, feats, target, profile, t_start)
    task = _infer_task(spec.get("task", "auto"), df[target], by_name[target]["type"])
    est_name = spec["estimator"]["type"]
    if estimators.task_of(est_name) != task:
        raise TrainingError(f"{est_name} is a {estimators.task_of(est_name)} estimator but the task is {task}")
    y = _labels(df[target], task)
    classes: list[Any] | None = None
    if task == "classification":
        classes = sorted(y.unique().tolist())
        if len(classes) < 2:
            raise TrainingError(f"label column {target!r} has only one class ({classes[0]!r}) in "
                                f"{len(df)} rows: a classifier needs at least two")
        if len(classes) > MAX_CLASSES:
            raise TrainingError(f"label column {target!r} has {len(classes)} classes (most allowed {MAX_CLASSES}); "
                                "set task: regression if it is a number")
    fixed = dict(spec["estimator"].get("params") or {})
    seed = int(split_spec.get("seed", 0))
    _check_params(est_name, fixed, seed)
    x = pipeline.prepare_frame(df, feats)
    sp = split_rows(df, y, float(split_spec.get("testFraction", 0.2)), float(split_spec.get("validationFraction", 0.0)),
                    seed, time_col, bool(split_spec.get("stratify", True)) and task == "classification")
    if task == "classification" and len(np.unique(y.iloc[sp.train])) < 2:
        raise TrainingError(f"the training split has only one class of {target!r}")
    metric = spec.get("metric") or evaluate.default_metric(task, len(classes or []))
    scoring = evaluate.scorer_for(metric, len(classes or []))

    def make(params: dict[str, Any]):
        return pipeline.build(feats, estimators.make(est_name, {**fixed, **params}, seed))

    tuning = spec.get("tuning") or {}
    for pname in (tuning.get("space") or {}):
        if pname in fixed:
            raise TrainingError(f"parameter {pname!r} is both fixed in estimator.params and tuned")
        _check_params(est_name, {**fixed, pname: _sample_value((tuning["space"])[pname])}, seed)
    x_train, y_train = x.iloc[sp.train], y.iloc[sp.train]
    result = search.run_search(make, x_train, y_train, tuning, scoring, task == "classification", log.info)
    if tuning.get("strategy", "none") != "none" and result.best is None:
        errs = "; ".join(sorted({t.error for t in result.trials if t.error}))[:800]
        raise TrainingError(f"every tuning trial failed: {errs}")
    best = result.best.params if result.best else {}
    model = make(best)
    t_fit = time.time()
    model.fit(x_train, y_train)
    fit_seconds = time.time() - t_fit
    x_test, y_test = x.iloc[sp.test], y.iloc[sp.test]
    pred = model.predict(x_test)
    proba = model.predict_proba(x_test) if task == "classification" and hasattr(model, "predict_proba") else None
    if task == "classification":
        mets, details = evaluate.classification_metrics(y_test.to_numpy(), pred, proba, classes or [])
    else:
        mets, details = evaluate.regression_metrics(y_test.to_numpy(), pred), {}
    onnx_bytes = convert.export(model, feats, task == "classification")
    parity = convert.check_parity(model, onnx_bytes, x_test, feats, task == "classification",
                                  float(spec.get("parityTolerance", 1e-5)))
    if not parity.ok:
        raise TrainingError(f"ONNX parity check failed on {parity.rows} test rows: {parity.label_mismatches} label "
                            f"mismatches, max |difference| {parity.max_abs_diff:.3g} > tolerance "
                            f"{parity.tolerance:g}; the model is not registered")
    str_classes = [str(c) for c in classes] if classes else None
    got = onnx_predict(onnx_bytes, feats, x_test)
    promo_metric = (spec.get("promotion") or {}).get("metric") or metric
    candidate = _onnx_metrics(task, got, y_test, str_classes).get(promo_metric)
    test_raw = df.iloc[sp.test]
    champ = champion_score(doc.get("champion"), store, test_raw, y_test, task, promo_metric)
    label_dtype = "INT64" if task == "classification" and y.dtype != object else "BYTES"
    manifest = ModelManifest(
        model=doc["modelName"], task=task, estimator=est_name, target=target,
        inputs=artifact.feature_inputs(feats), outputs=artifact.outputs_of(task, label_dtype, len(classes or [])),
        classes=str_classes, onnx_sha256="0" * 64, opset={"": 17, "ai.onnx.ml": 3}, metrics=mets,
        evaluation=details, params={**fixed, **best}, dataset=ds["name"], dataset_digest=ds["digest"],
        training_run=doc.get("name"),
        reference=artifact.reference_of(profile, feats, artifact.prediction_reference(task, str_classes, pred, proba),
                                        target, ds["name"], ds["digest"]))
    digest, uri, manifest = artifact.write(store, manifest, onnx_bytes)
    reproducible, why_not = estimators.reproducibility(est_name, {**fixed, **best})
    return {
        "digest": digest, "uri": uri, "task": task, "metric": metric, "metrics": mets,
        "bestParams": best, "params": {**fixed, **best}, "trials": [t.wire() for t in result.trials],
        "stoppedEarly": result.stopped_early, "promotionMetric": promo_metric, "candidateScore": candidate,
        "champion": champ,
        "evaluation": details if len(classes or []) <= 10 else {},
        "parity": {"rows": parity.rows, "maxAbsDiff": parity.max_abs_diff, "labelMismatches": parity.label_mismatches},
        "split": {"how": sp.how, "train": len(sp.train), "validation": len(sp.validation), "test": len(sp.test)},
        "datasetDigest": ds["digest"], "estimator": est_name, "trainerVersion": manifest.trainer_version,
        "fitSeconds": round(fit_seconds, 3), "seconds": round(time.time() - t_start, 3),
        # the promise: this spec on this dataset version gives this digest again (same trainerVersion);
        # the times above are the only things of the moment, and they are not in the model's bytes
        "reproducible": reproducible, **({"reproducibilityNote": why_not} if why_not else {}),
    }


def _sample_value(space: dict[str, Any]) -> Any:
    """A representative value of a declared space, to check the name and type before tuning."""
    if "choice" in space:
        return space["choice"][0]
    for k in ("uniform", "loguniform"):
        if k in space:
            return float(space[k]["low"])
    return int(np.ceil(space["int"]["low"]))


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


def compact(summary: dict[str, Any], limit: int = TERMINATION_LIMIT) -> str:
    """The summary as a termination message of at most `limit` bytes: trials are cut down to
    the best ones first (the full list is in the Job's log), then details go."""
    s = _round(dict(summary))
    text = json.dumps(s, separators=(",", ":"))
    if len(text) <= limit:
        return text
    s["evaluation"] = {"confusionMatrix": s.get("evaluation", {}).get("confusionMatrix")} if len(
        json.dumps(s.get("evaluation", {}).get("confusionMatrix"))) < 600 else {}
    trials = s.get("trials") or []
    s["trialCount"] = len(trials)
    ranked = sorted((t for t in trials if t.get("score") is not None), key=lambda t: -t["score"])
    keep = len(ranked)
    while keep >= 0:
        s["trials"] = sorted(ranked[:keep], key=lambda t: t["number"])
        s["trialsTruncated"] = keep < len(trials)
        text = json.dumps(s, separators=(",", ":"))
        if len(text) <= limit:
            return text
        keep = keep // 2 if keep > 8 else keep - 1
    s.pop("evaluation", None)
    return json.dumps(s, separators=(",", ":"))[:limit]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlops_operator.training")
    ap.add_argument("--spec", type=Path, required=True, help="the run's spec document (mounted from a ConfigMap)")
    ap.add_argument("--store", required=True, help="artifact store root URI, e.g. file:///store")
    ap.add_argument("--termination-log", default="/dev/termination-log", type=Path)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    doc = json.loads(a.spec.read_text())
    try:
        summary = train(doc, a.store)
    except StoreError as e:  # the store's reason (StoreUnreachable, ...) names the store in the run's condition
        log.error("the artifact store failed: %s", e)
        a.termination_log.write_text(json.dumps({"error": f"artifact store: {e}"[:3500], "reason": e.reason}))
        return 2
    except (TrainingError, estimators.EstimatorError, convert.ParityError) as e:
        log.error("training failed: %s", e)
        a.termination_log.write_text(json.dumps({"error": str(e)[:3500]}))
        return 2
    except Exception as e:  # unexpected: keep the traceback in the log, a readable reason in the message
        traceback.print_exc()
        a.termination_log.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"[:3500]}))
        return 3
    a.termination_log.write_text(compact(summary))
    print(json.dumps(_round(summary), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
