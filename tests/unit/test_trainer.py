"""The trainer end to end without a cluster: snapshot -> train (tuning) -> ONNX bundle in the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mlops_operator.data import snapshot
from mlops_operator.store.model_manifest import read_manifest
from mlops_operator.store.store import FileStore
from mlops_operator.registry import promotion
from mlops_operator.training import job, search

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(tmp: Path, store_uri: str, rows: int = 3000, shift: float = 0.0, seed: int = 7) -> dict:
    ds = yaml.safe_load((ROOT / "examples/retail/dataset.yaml").read_text())
    ds["spec"]["source"]["generator"].update(rows=rows, behaviourShift=shift, seed=seed)
    work = tmp / f"snap-{shift}-{seed}"
    work.mkdir()
    out = snapshot.run({"name": "retail", "spec": ds["spec"]}, store_uri, tmp, work)
    return {"name": "retail", "digest": out["digest"], "uri": out["uri"], "schema": ds["spec"]["schema"]["columns"],
            "label": "purchased"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer")
    store_uri = (tmp / "store").as_uri()
    return tmp, store_uri, _snapshot(tmp, store_uri)


def _doc(ds, **spec):
    base = {"modelName": "propensity", "dataset": {"name": "retail"},
            "estimator": {"type": "LogisticRegression", "params": {"max_iter": 500}}}
    base.update(spec)
    return {"name": "run-1", "modelName": "propensity", "spec": base, "dataset": ds, "champion": None}


def test_random_search_records_every_trial_and_writes_a_verified_bundle(env):
    tmp, store_uri, ds = env
    doc = _doc(ds, estimator={"type": "RandomForestClassifier", "params": {"n_estimators": 15}},
               tuning={"strategy": "random", "maxTrials": 8, "cvFolds": 2, "parallelism": 2, "seed": 3,
                       "space": {"max_depth": {"int": {"low": 2, "high": 10}},
                                 "min_samples_leaf": {"choice": [1, 5, 20]}}})
    out = job.train(doc, store_uri)
    assert len(out["trials"]) == 8 and all(t["state"] == "complete" for t in out["trials"])
    assert len({json.dumps(t["params"], sort_keys=True) for t in out["trials"]}) == 8
    best = max(out["trials"], key=lambda t: t["score"])
    assert out["bestParams"] == best["params"]
    assert set(out["metrics"]) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert 0.5 < out["metrics"]["roc_auc"] <= 1.0
    assert out["candidateScore"] == pytest.approx(out["metrics"]["roc_auc"], abs=1e-4)  # ONNX == sklearn
    assert out["split"]["how"].startswith("time")  # the dataset has a timestamp column
    store = FileStore(tmp / "store")
    onnx = store.local_path(out["uri"], "model.onnx", out["digest"])
    man = read_manifest(store.local_path(out["uri"], "model.json"))
    assert man.onnx_sha256 == out["digest"] and man.classes == ["0", "1"]
    assert {f.name for f in man.inputs} >= {"age", "device", "is_member"}
    assert man.reference.columns["age"].bin_edges and man.reference.columns["device"].categories
    import pyarrow.parquet as pq
    tenure = pq.read_table(store.local_path(ds["uri"], "data.parquet", ds["digest"]), columns=["tenure_days"])
    assert man.reference.columns["tenure_days"].std == pytest.approx(float(np.std(tenure.column(0).to_numpy())))
    assert sum(man.reference.prediction.bin_counts) == out["split"]["test"]
    assert man.evaluation["confusionMatrix"]["labels"] == ["0", "1"]
    assert onnx.stat().st_size > 1000
    text = job.compact(out)
    assert len(text) <= job.TERMINATION_LIMIT and json.loads(text)["digest"] == out["digest"]


def test_grid_search_and_early_stop(env):
    _, store_uri, ds = env
    doc = _doc(ds, tuning={"strategy": "grid", "cvFolds": 2, "earlyStopRounds": 2, "maxTrials": 20,
                           "space": {"C": {"choice": [1e-4, 1e-4 * 1.0001, 1e-4 * 1.0002, 1e-4 * 1.0003, 1.0]}}})
    out = job.train(doc, store_uri)
    states = [t["state"] for t in out["trials"]]
    assert out["stoppedEarly"] and "pruned" in states and len(states) == 5


def test_regression_metrics(env):
    _, store_uri, ds = env
    doc = _doc(ds, target="cart_value", estimator={"type": "Ridge"}, excludeFeatures=["purchased"])
    out = job.train(doc, store_uri)
    assert out["task"] == "regression" and out["metric"] == "rmse" and set(out["metrics"]) == {"rmse", "mae", "r2"}


@pytest.mark.parametrize("spec, message", [
    ({"target": "is_member", "features": ["age"], "task": "classification",
      "estimator": {"type": "Ridge"}}, "regression estimator"),
    ({"estimator": {"type": "LogisticRegression", "params": {"C": -1.0}}}, "'C' parameter"),
    ({"estimator": {"type": "LogisticRegression", "params": {"nope": 1}}}, "has no parameter"),
    ({"features": ["not_a_column"]}, "not in the dataset schema"),
])
def test_bad_specs_fail_with_a_reason(env, spec, message):
    _, store_uri, ds = env
    with pytest.raises((job.TrainingError, job.estimators.EstimatorError), match=message):
        job.train(_doc(ds, **spec), store_uri)


def test_one_class_label_fails_clearly(tmp_path):
    store_uri = (tmp_path / "store").as_uri()
    ds = _snapshot(tmp_path, store_uri, rows=2000)
    # the same rows with every label set to 0
    store = FileStore(tmp_path / "store")
    t = pq.read_table(store.local_path(ds["uri"], "data.parquet", ds["digest"]))
    t = t.set_column(t.schema.get_field_index("purchased"), "purchased", pa.array(np.zeros(len(t))))
    p = tmp_path / "one.parquet"
    pq.write_table(t, p)
    digest, uri = store.put_version("datasets", "one", p)
    ds1 = dict(ds, name="one", digest=digest, uri=uri)
    with pytest.raises(job.TrainingError, match="only one class"):
        job.train(_doc(ds1), store_uri)


def test_a_corrupted_dataset_is_refused(tmp_path):
    store_uri = (tmp_path / "store").as_uri()
    ds = _snapshot(tmp_path, store_uri, rows=1000)
    bad = dict(ds, digest="0" * 64)
    with pytest.raises(Exception, match="does not match"):
        job.train(_doc(bad), store_uri)


def test_champion_is_scored_on_the_candidates_test_split(env, tmp_path):
    _, store_uri, ds = env
    weak = job.train(_doc(ds, features=["age"]), store_uri)
    doc = _doc(ds)
    doc["champion"] = {"name": "propensity-v1", "uri": weak["uri"], "digest": weak["digest"]}
    strong = job.train(doc, store_uri)
    assert strong["champion"]["score"] < strong["candidateScore"]
    assert promotion.better("roc_auc", strong["candidateScore"], strong["champion"]["score"], 0.01)
    doc["champion"]["digest"] = "f" * 64
    broken = job.train(doc, store_uri)
    assert "score" not in broken["champion"] and "does not match" in broken["champion"]["reason"]


def test_search_candidates():
    space = {"a": {"choice": [1, 2]}, "b": {"loguniform": {"low": 1e-3, "high": 1.0}}, "c": {"int": {"low": 1, "high": 3}}}
    c = search.random_candidates(space, 30, seed=1)
    assert len(c) == 30 and all(1e-3 <= p["b"] <= 1.0 and p["c"] in (1, 2, 3) for p in c)
    assert search.random_candidates(space, 30, seed=1) == c
    assert len(search.random_candidates({"a": {"choice": [1, 2]}}, 10, 0)) == 2  # space exhausted
    assert search.grid({"a": {"choice": [1, 2]}, "b": {"choice": ["x", "y", "z"]}}, 4) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}, {"a": 2, "b": "x"}]


def test_compact_keeps_the_message_small():
    trials = [{"number": i, "params": {"alpha": i * 0.123456789, "beta": "x" * 20}, "score": i / 1000.0,
               "std": 0.01, "seconds": 1.0, "state": "complete"} for i in range(300)]
    s = {"digest": "a" * 64, "uri": "file:///store/x/", "metrics": {"roc_auc": 0.9}, "trials": trials}
    out = json.loads(job.compact(s))
    assert out["trialsTruncated"] and out["trialCount"] == 300 and out["trials"]
    assert max(t["score"] for t in out["trials"]) == pytest.approx(0.299)
