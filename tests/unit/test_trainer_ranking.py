"""The ranking task end to end without a cluster: snapshot -> time split -> fit -> ranking
metrics beside the popularity baseline -> ONNX scorer + top-k graph in the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from mlops_operator.data import snapshot
from mlops_operator.registry import promotion
from mlops_operator.store.model_manifest import read_manifest
from mlops_operator.store.store import FileStore
from mlops_operator.training import convert, job, ranking, topk

ROOT = Path(__file__).resolve().parents[2]
RUN = yaml.safe_load((ROOT / "examples/recommender/trainingrun.yaml").read_text())


def _snapshot(tmp: Path, store_uri: str, rows: int, shift: float, seed: int) -> dict:
    ds = yaml.safe_load((ROOT / "examples/recommender/dataset.yaml").read_text())
    ds["spec"]["source"]["generator"].update(rows=rows, behaviourShift=shift, seed=seed)
    work = tmp / f"snap-{shift}-{seed}"
    work.mkdir()
    out = snapshot.run({"name": "newsletters", "spec": ds["spec"]}, store_uri, tmp, work)
    return {"name": "newsletters", "digest": out["digest"], "uri": out["uri"],
            "schema": ds["spec"]["schema"]["columns"], "label": "purchased"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ranking")
    store_uri = (tmp / "store").as_uri()
    return tmp, store_uri, _snapshot(tmp, store_uri, 24000, 0.0, 7)


def _doc(ds, champion=None, **spec):
    base = json.loads(json.dumps(RUN["spec"]))
    base["estimator"] = {"type": "LogisticRegression", "params": {"max_iter": 300}}
    base.update(spec)
    return {"name": "rank-1", "modelName": "recommender", "spec": base, "dataset": ds, "champion": champion}


def test_ranking_run_reports_metrics_beside_the_baseline_and_stores_a_topk_graph(env):
    tmp, store_uri, ds = env
    out = job.train(_doc(ds), store_uri)
    assert out["task"] == "ranking" and out["metric"] == "ndcg@10"
    names = {"ndcg@10", "hit_rate@10", "map@10", "coverage@10"}
    assert names <= set(out["metrics"]) and names == set(out["baseline"])
    assert all(0.0 <= v <= 1.0 for v in out["metrics"].values())
    # the generator's tastes are learnable: the model beats "the most bought items"
    assert out["metrics"]["ndcg@10"] > out["baseline"]["ndcg@10"]
    assert out["metrics"]["coverage@10"] > out["baseline"]["coverage@10"]
    assert out["candidateScore"] == pytest.approx(out["metrics"]["ndcg@10"], abs=1e-4)  # ONNX == sklearn
    r = out["ranking"]
    assert r["k"] == 10 and r["groupsEvaluated"] + r["groupsWithoutPositive"] == r["groups"] > 10
    assert out["split"]["how"].startswith("time (event_time)")
    assert out["parity"]["topkGroups"] > 0 and out["parity"]["topkRankMismatches"] == 0

    store = FileStore(tmp / "store")
    man = read_manifest(store.local_path(out["uri"], "model.json"))
    assert man.task == "classification" and man.ranking is not None  # the scorer serves as today
    assert man.ranking.context_features == ["age", "customer_segment", "region", "fav_category", "avg_order_value"]
    assert {f.name for f in man.inputs}.isdisjoint({"customer_id", "item_id", "event_time", "row_id"})
    graph = store.local_path(out["uri"], man.ranking.topk_file, man.ranking.topk_sha256).read_bytes()
    # the stored graph ranks a test customer's candidates as the scorer's pair scores do
    data = pq.read_table(store.local_path(ds["uri"], "data.parquet", ds["digest"])).to_pandas()
    from mlops_operator.training import pipeline

    feats = [{"name": f.name, "type": f.type} for f in man.inputs]
    import pandas as pd

    cust = data[data.event_time >= pd.Timestamp(man.ranking.cutoff)]
    cust = cust[cust.customer_id == cust.customer_id.iloc[0]].drop_duplicates("item_id")
    frame = pipeline.prepare_frame(cust, feats).reset_index(drop=True)
    items, scores, _ = convert.session(graph).run(
        list(topk.OUTPUTS), topk.feeds(frame, frame, cust.item_id.tolist(), 10, feats, man.ranking.context_features))
    pair = job.onnx_predict(store.local_path(out["uri"], "model.onnx", out["digest"]).read_bytes(), feats, frame)
    want = np.argsort(-pair["probabilities"][:, 1], kind="stable")[:10]
    assert items.tolist() == cust.item_id.to_numpy()[want].tolist()
    text = job.compact(out)
    assert len(text) <= job.TERMINATION_LIMIT and json.loads(text)["baseline"] == pytest.approx(out["baseline"], rel=1e-5)


def test_split_never_trains_on_the_future(env):
    """Every training row is strictly before every test row, whole timestamps on one side, and
    the baseline's popularity comes from the training rows only."""
    tmp, _, ds = env
    store = FileStore(tmp / "store")
    data = pq.read_table(store.local_path(ds["uri"], "data.parquet", ds["digest"])).to_pandas()
    sp = ranking.time_split(data["event_time"], 0.25)
    t = data["event_time"].to_numpy()
    assert t[sp.train].max() < t[sp.test].min() == sp.cutoff
    assert 0.2 < len(sp.test) / len(data) < 0.3
    assert len(np.intersect1d(sp.train, sp.test)) == 0 and len(sp.train) + len(sp.test) == len(data)
    # the same test rows scored by popularity differ when (wrongly) counted on the test period
    fair = ranking.baseline_scores(data.item_id.to_numpy()[sp.train], data.purchased.to_numpy()[sp.train],
                                   data.item_id.to_numpy()[sp.test])
    leaky = ranking.baseline_scores(data.item_id.to_numpy()[sp.test], data.purchased.to_numpy()[sp.test],
                                    data.item_id.to_numpy()[sp.test])
    assert not np.array_equal(fair, leaky)


def test_time_split_keeps_a_timestamp_on_one_side():
    import pandas as pd

    times = pd.Series([1, 1, 2, 2, 2, 2, 3, 3], name="t")
    sp = ranking.time_split(times, 0.5)
    assert sp.cutoff == 2 and sp.train.tolist() == [0, 1] and sp.test.tolist() == [2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="single value"):
        ranking.time_split(pd.Series([5, 5], name="t"), 0.5)


def test_tuning_uses_forward_folds_and_the_ranking_metric(env):
    _, store_uri, ds = env
    out = job.train(_doc(ds, metric="hit_rate@10",
                         tuning={"strategy": "grid", "cvFolds": 3, "space": {"C": {"choice": [0.01, 1.0]}}}), store_uri)
    assert len(out["trials"]) == 2 and all(0.0 <= t["score"] <= 1.0 for t in out["trials"])
    assert out["metric"] == "hit_rate@10" and out["bestParams"]["C"] in (0.01, 1.0)


def test_a_stale_champion_is_scored_on_the_new_test_period_and_the_baseline_gate_decides(env):
    """A model trained before the season moved ranks the shifted season's candidates worse than
    one retrained on it; the baseline gate is reported for the controller's decision."""
    tmp, store_uri, old_ds = env
    old = job.train(_doc(old_ds, promotion={"policy": "ifBetter", "metric": "ndcg@10"}), store_uri)
    new_ds = _snapshot(tmp, store_uri, 24000, 1.0, 8)
    champion = {"name": "recommender-v1", "uri": old["uri"], "digest": old["digest"]}
    new = job.train(_doc(new_ds, champion=champion, promotion={
        "policy": "ifBetter", "metric": "ndcg@10", "requireBaseline": {"metric": "hit_rate@10", "margin": 0.0}}),
        store_uri)
    assert new["champion"]["name"] == "recommender-v1" and new["champion"]["score"] < new["candidateScore"]
    gate = new["baselineGate"]
    assert gate["metric"] == "hit_rate@10" and gate["baseline"] == pytest.approx(new["baseline"]["hit_rate@10"])
    decision = promotion.decide("ifBetter", "production", "ndcg@10", 0.0, new["candidateScore"], new["champion"],
                                baseline=gate)
    assert decision["decision"] == ("promoted" if gate["candidate"] > gate["baseline"] else "kept")


@pytest.mark.parametrize("change,match", [
    ({"ranking": {"groupColumn": "nobody", "itemColumn": "item_id"}}, "groupColumn 'nobody'"),
    ({"metric": "roc_auc"}, "not a ranking metric"),
    ({"ranking": {"groupColumn": "customer_id", "itemColumn": "item_id", "itemFeatures": ["shoe_size"]}},
     "itemFeatures not among"),
])
def test_bad_ranking_specs_fail_with_a_reason(env, change, match):
    _, store_uri, ds = env
    with pytest.raises(job.TrainingError, match=match):
        job.train(_doc(ds, **change), store_uri)


def test_same_spec_same_data_same_bytes(env):
    """The ranking bundle is as reproducible as any other: same model digest, same top-k graph."""
    tmp, store_uri, ds = env
    spec = {"estimator": {"type": "RandomForestClassifier", "params": {"n_estimators": 8, "max_depth": 5}}}
    a, b = job.train(_doc(ds, **spec), store_uri), job.train(_doc(ds, **spec), store_uri)
    assert a["digest"] == b["digest"] and a["metrics"] == b["metrics"] and a["reproducible"] is True
    store = FileStore(tmp / "store")
    assert read_manifest(store.local_path(a["uri"], "model.json")).ranking.topk_sha256 == \
        read_manifest(store.local_path(b["uri"], "model.json")).ranking.topk_sha256


def test_a_ranking_label_must_be_zero_or_one():
    import pandas as pd

    assert ranking.check_label(pd.Series([0, 1, 1.0, True])).tolist() == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="must be 0/1"):
        ranking.check_label(pd.Series([0, 1, 2]))
