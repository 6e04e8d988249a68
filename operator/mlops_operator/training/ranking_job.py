"""The trainer's ranking task (a recommender): what `job.train` runs for `task: ranking`.

Pointwise: an allowlisted classifier (probability of a purchase) or regressor scores each
(customer, item) row, so the model exports to ONNX and passes the same parity check as any
other; a customer's candidates are ranked by that score. The split is by time (ranking.py);
the popularity baseline is scored on the same test rows; tuning uses forward-chaining folds
and the run's ranking metric. The bundle holds model.onnx (the pair scorer, what the server
already serves) and topk.onnx (one graph returning a customer's top k, topk.py), whose
parity with scikit-learn's ranking is checked before anything is stored.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from ..store.model_manifest import ModelManifest, RankingInfo
from . import artifact, convert, estimators, pipeline, search, topk
from . import job as _job
from . import ranking as rk
from . import ranking_metrics as rm

log = logging.getLogger("mlops.trainer")


#: a reason the user can act on: the run's Failed message
RankingError = _job.TrainingError


def _metric(name: str, what: str) -> tuple[str, int]:
    parsed = rm.parse_metric(name)
    if parsed is None:
        raise RankingError(f"{what} {name!r} is not a ranking metric: use ndcg@k, hit_rate@k, map@k or coverage@k")
    return parsed


def _columns(spec: dict[str, Any], df: pd.DataFrame, schema: list[dict[str, Any]],
             feats: list[dict[str, Any]]) -> tuple[str, str, str, list[dict[str, Any]], list[str]]:
    r = spec["ranking"]
    group, item = r["groupColumn"], r["itemColumn"]
    for role, col in (("groupColumn", group), ("itemColumn", item)):
        if col not in df.columns:
            raise RankingError(f"ranking.{role} {col!r} is not a column of the dataset")
    time_col = (spec.get("split") or {}).get("timeColumn") or next(
        (c["name"] for c in schema if c.get("role") == "timestamp"), None)
    if not time_col or time_col not in df.columns:
        raise RankingError("a ranking run splits by time: set split.timeColumn or give the dataset a column "
                           "with role timestamp")
    keys = {group, item, time_col}
    feats = [c for c in feats if c["name"] not in keys]  # ids and time are never model inputs
    if not feats:
        raise RankingError("no feature columns left once the group, item and time columns are taken out")
    names = [c["name"] for c in feats]
    item_feats = r.get("itemFeatures")
    if item_feats:
        unknown = sorted(set(item_feats) - set(names))
        if unknown:
            raise RankingError(f"ranking.itemFeatures not among the run's features: {', '.join(unknown)}")
    context = [n for n in names if item_feats and n not in item_feats]
    return group, item, time_col, feats, context


def champion_metric(champion: dict[str, Any] | None, store: Any, test_raw: pd.DataFrame, groups: np.ndarray,
                    items: np.ndarray, labels: np.ndarray, metric: str) -> dict[str, Any] | None:
    """The champion's ranking metric on the candidate's test rows, through its ONNX scorer."""
    family, k = _metric(metric, "promotion.metric")
    return _job.score_champion(champion, store, test_raw, lambda got, classes: getattr(
        rm.evaluate(groups, items, labels, rk.onnx_scores(got, classes), k), family))


def train(doc: dict[str, Any], store: Any, df: pd.DataFrame, feats: list[dict[str, Any]], target: str,
          profile: dict[str, Any], t_start: float) -> dict[str, Any]:
    """Train, evaluate against the baseline, export, check, store; the run's summary."""
    spec, ds = doc["spec"], doc["dataset"]
    if not spec.get("ranking"):
        raise RankingError("task ranking needs spec.ranking (groupColumn, itemColumn)")
    group, item, time_col, feats, context = _columns(spec, df, ds["schema"], feats)
    k = int(spec["ranking"].get("k", 10))
    est_name = spec["estimator"]["type"]
    classifier = estimators.task_of(est_name) == "classification"
    try:
        y = rk.check_label(df[target])
        sp = rk.time_split(df[time_col], float((spec.get("split") or {}).get("testFraction", 0.2)))
    except ValueError as e:
        raise RankingError(str(e)) from e
    if classifier and y.iloc[sp.train].nunique() < 2:
        raise RankingError(f"the training period (before {rk.cutoff_text(sp.cutoff)}) has only one class of "
                           f"{target!r}: nothing to learn a purchase from")
    metric = spec.get("metric") or f"ndcg@{k}"
    _metric(metric, "metric")
    promo = spec.get("promotion") or {}
    promo_metric = promo.get("metric") or metric
    _metric(promo_metric, "promotion.metric")
    fixed = dict(spec["estimator"].get("params") or {})
    seed = int((spec.get("split") or {}).get("seed", 0))
    _job._check_params(est_name, fixed, seed)
    tuning = spec.get("tuning") or {}
    for pname, space in (tuning.get("space") or {}).items():
        if pname in fixed:
            raise RankingError(f"parameter {pname!r} is both fixed in estimator.params and tuned")
        _job._check_params(est_name, {**fixed, pname: _job._sample_value(space)}, seed)

    def make(params: dict[str, Any]) -> Any:
        return pipeline.build(feats, estimators.make(est_name, {**fixed, **params}, seed))

    x = pipeline.prepare_frame(df, feats)
    times = df[time_col].to_numpy()
    train_rows = sp.train[np.argsort(times[sp.train], kind="stable")]  # time order: the folds chain forward
    x_train, y_train = x.iloc[train_rows], y.iloc[train_rows]
    result = search.run_search(make, x_train, y_train, tuning, rk.scorer(metric, df[group], df[item], classifier),
                               classifier, log.info, cv=rk.cv_folds(len(train_rows), int(tuning.get("cvFolds", 3))))
    if tuning.get("strategy", "none") != "none" and result.best is None:
        errs = "; ".join(sorted({t.error for t in result.trials if t.error}))[:800]
        raise RankingError(f"every tuning trial failed: {errs}")
    best = result.best.params if result.best else {}
    model = make(best)
    t_fit = time.time()
    model.fit(x_train, y_train)
    fit_seconds = time.time() - t_fit

    test = sp.test
    x_test, y_test = x.iloc[test], y.iloc[test].to_numpy()
    g_test, i_test = df[group].to_numpy()[test], df[item].to_numpy()[test]
    s_test = rk.scores(model, x_test, classifier)
    mets, counts = rk.report(g_test, i_test, y_test, s_test, k)
    if counts["groupsEvaluated"] == 0:
        raise RankingError(f"no {group} bought anything in the test period (from {rk.cutoff_text(sp.cutoff)}): "
                           "nothing to rank against; use more data or a smaller split.testFraction")
    if classifier and len(np.unique(y_test)) == 2:
        from sklearn.metrics import roc_auc_score

        mets["roc_auc"] = float(roc_auc_score(y_test, s_test))  # pointwise, for reference
    # the baseline learns item popularity from the training period only
    b_test = rk.baseline_scores(df[item].to_numpy()[sp.train], y.to_numpy()[sp.train], i_test)
    base, _ = rk.report(g_test, i_test, y_test, b_test, k)

    tol = float(spec.get("parityTolerance", 1e-5))
    onnx_bytes = convert.export(model, feats, classifier)
    parity = convert.check_parity(model, onnx_bytes, x_test, feats, classifier, tol)
    if not parity.ok:
        raise RankingError(f"ONNX parity check failed on {parity.rows} test rows: {parity.label_mismatches} label "
                           f"mismatches, max |difference| {parity.max_abs_diff:.3g} > tolerance {tol:g}; "
                           "the model is not registered")
    topk_bytes = topk.build(onnx_bytes, feats, context, classifier)
    tparity = topk.check_parity(model, topk_bytes, x_test, g_test, i_test, feats, context, classifier, k, tol)
    if not tparity.ok:
        raise RankingError(f"top-k graph parity check failed on {tparity.groups} groups: {tparity.rank_mismatches} "
                           f"ranks differ, max |score difference| {tparity.max_abs_diff:.3g}; not registered")

    got = _job.onnx_predict(onnx_bytes, feats, x_test)
    onnx_s = rk.onnx_scores(got, ["0", "1"] if classifier else None)
    fam, pk = _metric(promo_metric, "promotion.metric")
    candidate = getattr(rm.evaluate(g_test, i_test, y_test, onnx_s, pk), fam)
    champ = champion_metric(doc.get("champion"), store, df.iloc[test], g_test, i_test, y_test, promo_metric)
    gate = None
    if promo.get("requireBaseline"):
        gm = promo["requireBaseline"]["metric"]
        gfam, gk = _metric(gm, "promotion.requireBaseline.metric")
        gate = {"metric": gm, "margin": float(promo["requireBaseline"].get("margin", 0.0)),
                "candidate": getattr(rm.evaluate(g_test, i_test, y_test, onnx_s, gk), gfam),
                "baseline": getattr(rm.evaluate(g_test, i_test, y_test, b_test, gk), gfam)}

    pointwise = "classification" if classifier else "regression"
    classes = ["0", "1"] if classifier else None
    proba = model.predict_proba(x_test) if classifier else None
    info = RankingInfo(group_column=group, item_column=item, k=k, context_features=context,
                       candidate_features=[c["name"] for c in feats if c["name"] not in context],
                       topk_sha256=_sha256(topk_bytes), cutoff=rk.cutoff_text(sp.cutoff), baseline=base)
    manifest = ModelManifest(
        model=doc["modelName"], task=pointwise, estimator=est_name, target=target,
        inputs=artifact.feature_inputs(feats), outputs=artifact.outputs_of(pointwise, "INT64", 2),
        classes=classes, onnx_sha256="0" * 64, opset={"": 17, "ai.onnx.ml": 3}, metrics=mets,
        params={**fixed, **best}, dataset=ds["name"], dataset_digest=ds["digest"], training_run=doc.get("name"),
        reference=artifact.reference_of(profile, feats, artifact.prediction_reference(
            pointwise, classes, model.predict(x_test), proba), target, ds["name"], ds["digest"]),
        ranking=info)
    digest, uri, manifest = artifact.write(store, manifest, onnx_bytes, {info.topk_file: topk_bytes})
    reproducible, why_not = estimators.reproducibility(est_name, {**fixed, **best})
    return {
        "digest": digest, "uri": uri, "task": "ranking", "metric": metric, "metrics": mets, "baseline": base,
        "ranking": {"k": k, "cutoff": rk.cutoff_text(sp.cutoff), **counts},
        "bestParams": best, "params": {**fixed, **best}, "trials": [t.wire() for t in result.trials],
        "stoppedEarly": result.stopped_early, "promotionMetric": promo_metric, "candidateScore": candidate,
        "champion": champ, **({"baselineGate": gate} if gate else {}), "evaluation": {},
        "parity": {"rows": parity.rows, "maxAbsDiff": max(parity.max_abs_diff, tparity.max_abs_diff),
                   "labelMismatches": parity.label_mismatches, "topkGroups": tparity.groups,
                   "topkRankMismatches": tparity.rank_mismatches},
        "split": {"how": sp.how, "train": len(sp.train), "validation": 0, "test": len(sp.test)},
        "datasetDigest": ds["digest"], "estimator": est_name, "trainerVersion": manifest.trainer_version,
        "fitSeconds": round(fit_seconds, 3), "seconds": round(time.time() - t_start, 3),
        "reproducible": reproducible, **({"reproducibilityNote": why_not} if why_not else {}),
    }


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
