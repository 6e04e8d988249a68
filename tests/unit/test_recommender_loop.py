"""The recommender loop's pure parts (cli/recommender_loop.py): newsletters from the generator,
the V2 top-k request, the feedback, the client-side hit, the summary table and the plot marks.
The loop itself runs in tests/e2e/test_recommender_loop.py."""

from __future__ import annotations

import pytest

from mlops_operator.cli import loop_common, recommender_loop as rl
from mlops_operator.cli.retail_loop import summary_table as retail_summary
from mlops_operator.data import retail_ranking
from mlops_operator.serving.ranking_feedback import RankingFeedback

#: what GET /v2/models/recommender-topk answers for the loop's model (context [1, 1], candidates [-1, 1])
INPUTS = [{"name": "age", "datatype": "FP32", "shape": [1, 1]},
          {"name": "fav_category", "datatype": "BYTES", "shape": [1, 1]},
          {"name": "category", "datatype": "BYTES", "shape": [-1, 1]},
          {"name": "price", "datatype": "FP32", "shape": [-1, 1]},
          {"name": "item_ids", "datatype": "BYTES", "shape": [-1]},
          {"name": "k", "datatype": "INT64", "shape": [1]}]


def _cols(rows: int = 3200, shift: float = 0.0) -> dict[str, list]:
    t = retail_ranking.generate(rows, seed=1, shift=shift)
    return {n: t.column(n).to_pylist() for n in t.column_names}


def test_newsletters_are_the_generators_visits_with_the_first_purchase():
    cols = {"visit_id": [7, 7, 7, 3, 3], "item_id": ["i1", "i2", "i3", "i1", "i9"], "purchased": [0, 1, 1, 0, 0]}
    a, b = rl.newsletters(cols)
    assert (a.visit, a.rows, a.item_ids, a.bought) == (7, [0, 1, 2], ["i1", "i2", "i3"], "i2")
    assert (b.visit, b.rows, b.bought) == (3, [3, 4], None)
    real = rl.newsletters(_cols())
    assert len(real) == retail_ranking.WEEKS * retail_ranking.customers_for(3200)
    assert all(len(n.item_ids) == retail_ranking.CANDIDATES == len(set(n.item_ids)) for n in real)
    bought = [n for n in real if n.bought]
    assert 0.3 < len(bought) / len(real) < 0.9  # many newsletters sell something, not all


def test_topk_request_sends_the_customer_once_and_every_candidate():
    cols = _cols()
    n = rl.newsletters(cols)[5]
    req = rl.topk_request(INPUTS, cols, n, k=5)
    by = {i["name"]: i for i in req["inputs"]}
    assert set(by) == {"age", "fav_category", "category", "price", "item_ids"}  # k goes in parameters
    assert req["parameters"] == {"k": 5} and req["id"] == f"nl-{n.visit}"
    assert by["age"]["shape"] == [1, 1] and by["age"]["data"] == [float(cols["age"][n.rows[0]])]
    assert by["fav_category"]["data"] == [cols["fav_category"][n.rows[0]]]
    assert by["category"]["shape"] == [20, 1] and by["category"]["data"] == [cols["category"][i] for i in n.rows]
    assert by["price"]["datatype"] == "FP32" and all(isinstance(v, float) for v in by["price"]["data"])
    assert by["item_ids"] == {"name": "item_ids", "datatype": "BYTES", "shape": [20], "data": n.item_ids}


def test_feedback_counts_as_the_server_counts_it():
    served = [(["i1", "i2", "i3", "i4", "i5"], "i3"), (["i1", "i2", "i3", "i4", "i5"], "i9"),
              (["i7", "i8", "i9", "i1", "i2"], None)]
    body = rl.feedback_body(served)
    assert body == {"served": [s for s, _ in served], "bought": ["i3", "i9", None]}
    fb = RankingFeedback(k=5, max_rows=100)
    import json

    assert fb.add(json.dumps(body).encode()) == {"rows": 3, "purchases": 2, "hits": 1}
    # the client's own count agrees: a hit, a miss (bought but not shown), a list left out
    assert [rl.hit(s, b) for s, b in served] == [1, 0, None]
    assert rl.hit(["a", "b", "c"], "c", k=2) == 0


def _result() -> loop_common.LoopResult:
    r = loop_common.LoopResult(requests=1200, retrain_runs=["recommender-retrain-1"])
    r.versions = {"v1": "recommender-v1", "v2": "recommender-v2"}
    r.accuracy = {"before": 0.58, "during": 0.49, "after": 0.57, "client_before": 0.57, "client_during": 0.5,
                  "client_after": 0.56}
    r.drift = {"before": 0.0, "during": 0.3, "after": 0.0}
    r.runs = {"v1": {"metrics": {"hit_rate@5": 0.658, "ndcg@5": 0.326}, "baseline": {"hit_rate@5": 0.54, "ndcg@5": 0.258},
                     "promotion": {"decision": "promoted"}},
              "v2": {"metrics": {"hit_rate@5": 0.792, "ndcg@5": 0.416}, "baseline": {"hit_rate@5": 0.768, "ndcg@5": 0.366},
                     "promotion": {"decision": "promoted", "champion": "recommender-v1", "championScore": 0.744}}}
    r.timeline = [(1.0, "export Job lands"), (60.0, "a new season: the export lands shifted newsletters"),
                  (80.0, "Drifted=True (DataDrift): ..."), (84.0, "DriftMonitor refreshed the Dataset and created "
                                                                   "TrainingRun recommender-retrain-1"),
                  (140.0, "InferenceService rolled out recommender-v2 (was recommender-v1)")]
    return r


def test_summary_table_shows_hit_rate_per_phase_and_each_version_beside_the_baseline():
    text = rl.summary_table(_result())
    lines = text.splitlines()
    assert lines[0].split() == ["before", "during", "after"]
    assert lines[2].split()[-3:] == ["0.580", "0.490", "0.570"] and "window hit rate@5" in lines[2]
    assert "client-side hit rate@5" in lines[3]
    v1 = next(x for x in lines if x.startswith("recommender-v1"))
    v2 = next(x for x in lines if x.startswith("recommender-v2"))
    assert v1.split() == ["recommender-v1", "0.658", "0.540", "0.326", "0.258", "-", "promoted"]
    assert v2.split() == ["recommender-v2", "0.792", "0.768", "0.416", "0.366", "recommender-v1", "0.744", "promoted"]
    assert lines[-1] == "requests: 1200, failed: 0; retraining runs: recommender-retrain-1"


def test_the_propensity_summary_keeps_its_shape():
    lines = retail_summary(_result()).splitlines()
    assert [x.split()[0] for x in lines[1:5]] == ["serving", "window", "client-side", "drift"]
    assert "window accuracy (feedback)" in lines[2] and len(lines) == 6


def test_plot_marks_the_season_the_drift_the_retraining_and_the_rollout(tmp_path):
    r = _result()
    assert [label for _, label in loop_common.marks(r)] == ["new season", "drift detected", "retraining",
                                                              "v2 rolled out"]
    r.samples = [loop_common.Sample(t, 0.0 if t < 80 else 0.3, "False", 0.57 if t < 60 else 0.5, "recommender-v1",
                                    "before") for t in range(0, 150, 5)]
    r.client_series = [(t + 2.5, 0.55) for t in range(0, 150, 5)]
    png = rl.plot(r, tmp_path / "p.png")
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("name", ["landing.yaml", "dataset.yaml", "trainingrun.yaml", "inferenceservice.yaml",
                                  "driftmonitor.yaml"])
def test_the_loops_manifests_are_valid(name):
    """Each manifest of examples/recommender/loop parses into the kind's model, and the
    retraining template ranks like the initial run at the loop's k."""
    import yaml

    from mlops_operator.api.crd import kind

    doc = yaml.safe_load((rl.LOOP / name).read_text())
    if doc["kind"] == "PersistentVolumeClaim":
        assert doc["metadata"]["name"] == rl.RecommenderLoop.landing
        return
    kind(doc["kind"]).spec.model_validate(doc["spec"])
    if doc["kind"] == "DriftMonitor":
        initial = yaml.safe_load((rl.LOOP / "trainingrun.yaml").read_text())["spec"]
        assert doc["spec"]["retrain"]["template"] == initial
        assert doc["spec"]["accuracy"]["metric"] == "hit_rate"
    if doc["kind"] == "TrainingRun":
        assert doc["spec"]["ranking"]["k"] == rl.K
