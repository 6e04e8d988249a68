"""The retail demo's objects as the operator leaves them (spec + status), for the web view's tests.

Used by the unit tests (rendered straight from these dicts) and by the browser test, which creates
the objects on a real API server and writes their status through the status subresource, so the
pages show realistic content without waiting for training. Free-text fields carry XSS attempts:
they must render as text.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
D1, D2, D3 = "a" * 64, "b" * 64, "c" * 64
M1, M2 = "1" * 64, "2" * 64
#: the loop's start: 45 minutes ago, so times line up with the creation times a real API server sets
BASE = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=45)).replace(microsecond=0)


def _ts(minute: int) -> str:
    return (BASE + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


T0 = _ts(0)


def _cond(ctype: str, status: str, reason: str = "Ok", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": T0}


def _trials(params: list[dict[str, Any]], scores: list[float]) -> list[dict[str, Any]]:
    return [{"number": i, "params": p, "score": s, "std": 0.01, "seconds": 1.5 + i, "state": "complete"}
            for i, (p, s) in enumerate(zip(params, scores))]


def objects() -> list[dict[str, Any]]:
    """Every object, each with `status` (None: left without status, renders as pending)."""
    av = "mlops.dev/v1alpha1"
    dataset = {
        "apiVersion": av, "kind": "Dataset", "metadata": {"name": "retail"},
        "spec": {"source": {"type": "generator", "generator": {"kind": "retail", "rows": 2000, "seed": 7}},
                 "labelColumn": "purchased"},
        "status": {
            "phase": "Ready", "conditions": [_cond("Ready", "True")], "lastSnapshotTime": _ts(30),
            "lastSnapshotTrigger": "mlops.dev/refresh",
            "latest": {"id": D3[:12], "digest": D3, "rows": 2000, "columns": 22, "createdAt": _ts(30),
                       "validated": False, "failedChecks": 2},
            "latestValid": {"id": D2[:12], "digest": D2, "rows": 2000, "columns": 22, "createdAt": _ts(20),
                            "validated": True},
            "versions": [
                {"id": D3[:12], "digest": D3, "rows": 2000, "columns": 22, "createdAt": _ts(30), "validated": False,
                 "failedChecks": 2, "uri": f"file:///store/datasets/retail/{D3}/"},
                {"id": D2[:12], "digest": D2, "rows": 2000, "columns": 22, "createdAt": _ts(20), "validated": True,
                 "uri": f"file:///store/datasets/retail/{D2}/"},
                {"id": D1[:12], "digest": D1, "rows": 2000, "columns": 22, "createdAt": _ts(0), "validated": True,
                 "uri": f"file:///store/datasets/retail/{D1}/"}],
            "validation": {"digest": D3, "passed": False, "failures": [
                {"check": "range", "column": "age", "count": 3, "examples": ["-4", XSS],
                 "message": "3 values of age outside [18, 90]"},
                {"check": "nulls", "column": "cart_value", "count": 900, "examples": [],
                 "message": "45% missing, more than maxNullFraction 0.4"}]},
            "profile": {"rows": 2000, "columns": 22, "labelDistribution": {"0": 1400, "1": 600},
                        "nullCounts": {"age": 120}},
        },
    }

    def run(name: str, est: str, params: dict[str, Any], trial_params: list[dict[str, Any]], scores: list[float],
            auc: float, digest: str, mv: str, minute: int, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
        best = trial_params[scores.index(max(scores))]
        return {
            "apiVersion": av, "kind": "TrainingRun",
            "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"modelName": "propensity", "dataset": {"name": "retail"}, "metric": "roc_auc",
                     "estimator": {"type": est, "params": params}},
            "status": {"phase": "Succeeded", "conditions": [_cond("Succeeded", "True"), _cond("Ready", "True")],
                       "startTime": _ts(minute), "completionTime": _ts(minute + 2), "datasetDigest": digest,
                       "task": "classification", "metric": "roc_auc", "score": auc,
                       "trials": _trials(trial_params, scores), "bestParams": best,
                       "metrics": {"roc_auc": auc, "accuracy": round(auc - 0.08, 4), "f1": round(auc - 0.2, 4)},
                       "modelVersion": mv,
                       "promotion": {"decision": "promoted", "alias": "production", "candidateScore": auc,
                                     "reason": "first version" if mv.endswith("v1") else "beats the champion " + XSS}},
        }

    run1 = run("propensity-initial", "LogisticRegression", {"max_iter": 200},
               [{"C": 0.1}, {"C": 1.0}, {"C": 10.0}], [0.79, 0.81, 0.8], 0.82, D1, "propensity-v1", 2)
    run2 = run("propensity-retrain-1", "HistGradientBoostingClassifier", {"max_iter": 60},
               [{"learning_rate": 0.05, "max_leaf_nodes": 16}, {"learning_rate": 0.1, "max_leaf_nodes": 31},
                {"learning_rate": 0.2, "max_leaf_nodes": 8}, {"learning_rate": 0.3, "max_leaf_nodes": 48}],
               [0.84, 0.87, 0.85, 0.83], 0.88, D2, "propensity-v2", 21,
               labels={"mlops.dev/drift-monitor": "propensity"},
               annotations={"mlops.dev/retrain-reason": "drift share 0.45 >= 0.3 " + XSS})
    pending_run = {"apiVersion": av, "kind": "TrainingRun", "metadata": {"name": "propensity-pending"},
                   "spec": {"modelName": "propensity", "dataset": {"name": "retail"},
                            "estimator": {"type": "LogisticRegression"}}, "status": None}

    def mv(n: int, digest: str, run_name: str, ds_digest: str, auc: float, aliases: list[str],
           history: list[dict[str, Any]], stage: str) -> dict[str, Any]:
        return {
            "apiVersion": av, "kind": "ModelVersion",
            "metadata": {"name": f"propensity-v{n}", "labels": {"mlops.dev/model": "propensity"}},
            "spec": {"model": "propensity", "version": n,
                     "artifact": {"uri": f"file:///store/models/propensity/{digest}/", "digest": digest},
                     "lineage": {"trainingRun": run_name, "dataset": "retail", "datasetDigest": ds_digest,
                                 "estimator": "LogisticRegression" if n == 1 else "HistGradientBoostingClassifier"},
                     "metrics": {"roc_auc": auc, "accuracy": round(auc - 0.08, 4)}, "aliases": aliases},
            "status": {"stage": stage, "conditions": [_cond("Ready", "True")], "aliasHistory": history,
                       "servedBy": ["propensity"] if aliases else []},
        }

    mv1 = mv(1, M1, "propensity-initial", D1, 0.82, [], [
        {"alias": "production", "action": "assigned", "time": _ts(5), "by": "TrainingRun/propensity-initial",
         "reason": "first version"},
        {"alias": "production", "action": "removed", "time": _ts(24), "by": "TrainingRun/propensity-retrain-1",
         "reason": "propensity-v2 beats it " + XSS}], "archived")
    mv2 = mv(2, M2, "propensity-retrain-1", D2, 0.88, ["production"], [
        {"alias": "production", "action": "assigned", "time": _ts(24), "by": "TrainingRun/propensity-retrain-1",
         "reason": "roc_auc 0.88 > 0.80 on the newest holdout"}], "aliased")
    isvc = {"apiVersion": av, "kind": "InferenceService", "metadata": {"name": "propensity"},
            "spec": {"model": "propensity", "alias": "production", "replicas": 2},
            "status": {"conditions": [_cond("Ready", "True")], "url": "http://propensity.svc:8080/v2",
                       "modelVersion": "propensity-v2", "previousModelVersion": "propensity-v1",
                       "readyReplicas": 2, "replicas": 2, "lastRolloutTime": _ts(26)}}
    dm = {"apiVersion": av, "kind": "DriftMonitor", "metadata": {"name": "propensity"},
          "spec": {"inferenceService": "propensity", "interval": "3s", "window": {"duration": "15s", "minSamples": 500},
                   "driftShare": 0.3, "accuracy": {"metric": "accuracy", "threshold": 0.76, "minSamples": 300}},
          "status": {"conditions": [_cond("Ready", "True"), _cond("Drifted", "False", "NoDrift", "drift share 0.1")],
                     "lastEvaluationTime": _ts(40), "samples": 800,
                     "features": [{"name": "cart_value", "method": "wasserstein", "score": 0.04, "threshold": 0.1,
                                   "drifted": False},
                                  {"name": "discount_pct", "method": "wasserstein", "score": 0.21, "threshold": 0.1,
                                   "drifted": True}],
                     "driftShare": 0.1, "datasetDrift": False, "accuracy": 0.83,
                     "accuracyTrend": [0.84, 0.83, 0.71, 0.69, 0.7, 0.82, 0.83],
                     "history": [{"time": _ts(10 + 5 * i), "samples": 800, "driftShare": share,
                                  "datasetDrift": share >= 0.3, "accuracy": acc,
                                  "modelVersion": "propensity-v1" if i < 4 else "propensity-v2"}
                                 for i, (share, acc) in enumerate(zip([0.0, 0.1, 0.6, 0.7, 0.6, 0.1, 0.1],
                                                                      [0.84, 0.83, 0.71, 0.69, 0.7, 0.82, 0.83]))],
                     "lastRetrainTime": _ts(21), "lastTrainingRun": "propensity-retrain-1", "retrainCount": 1,
                     "retrain": {"number": 1, "phase": "Succeeded", "trainingRun": "propensity-retrain-1"},
                     "labelledSamples": 400, "message": "window of 800 rows: no drift " + XSS}}
    lonely = {"apiVersion": av, "kind": "InferenceService", "metadata": {"name": "shadow"},
              "spec": {"model": "propensity", "version": 1}, "status": None}
    created = {"retail": 0, "propensity-initial": 1, "propensity-retrain-1": 20, "propensity-pending": 42,
               "propensity-v1": 4, "propensity-v2": 23, "propensity": 3, "shadow": 41}
    out = [copy.deepcopy(o) for o in (dataset, run1, run2, pending_run, mv1, mv2, isvc, dm, lonely)]
    for o in out:  # what the API server sets (and overwrites when the browser test creates them)
        o["metadata"]["creationTimestamp"] = _ts(created[o["metadata"]["name"]])
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    """The objects of one kind as a list call returns them (no status key when there is none)."""
    out = []
    for o in objects():
        if o["kind"] == kind:
            if o.get("status") is None:
                o.pop("status", None)
            out.append(o)
    return out
