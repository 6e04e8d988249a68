"""A ranking TrainingRun on the real control plane with the operator running (issue 20):
metrics beside the popularity baseline in status, a ModelVersion whose bundle holds the top-k
graph, the baseline gate on promotion, and the CEL rules that reject bad ranking specs.

Written with the first slice of issue 20; not run there (the machine had no room for a
cluster). Run with the other integration tests: make test (or pytest -m cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cluster, OperatorProcess
from tests.integration.test_training import events, get, production, wait_mv_ready, wait_phase

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def newsletters(rows: int = 24000, name: str = "newsletters", shift: float = 0.0, seed: int = 7) -> str:
    import yaml

    ds = yaml.safe_load((REPO / "examples/recommender/dataset.yaml").read_text())
    ds["metadata"]["name"] = name
    ds["spec"]["source"]["generator"].update(rows=rows, behaviourShift=shift, seed=seed)
    ds["spec"].pop("refreshInterval", None)
    return yaml.safe_dump(ds)


def ranking_run(name: str, dataset: str, extra: str = "") -> str:
    return f"""
apiVersion: mlops.dev/v1alpha1
kind: TrainingRun
metadata: {{name: {name}}}
spec:
  modelName: recommender
  dataset: {{name: {dataset}}}
  task: ranking
  ranking:
    groupColumn: customer_id
    itemColumn: item_id
    k: 10
    itemFeatures: [category, price, item_rating, category_affinity, price_ratio]
  split: {{testFraction: 0.25}}
  estimator: {{type: LogisticRegression, params: {{max_iter: 300}}}}
{extra}
"""


def test_a_ranking_run_records_the_baseline_and_registers_a_topk_bundle(local_cluster: Cluster,
                                                                        operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(newsletters(), ns)
    c.apply(ranking_run("rank-1", "newsletters", """
  promotion:
    policy: ifBetter
    metric: ndcg@10
    requireBaseline: {metric: ndcg@10, margin: 0.0}
"""), ns)
    st = wait_phase(c, ns, "rank-1", timeout=300)
    assert st["phase"] == "Succeeded", st
    assert st["task"] == "ranking" and st["metric"] == "ndcg@10"
    names = {"ndcg@10", "hit_rate@10", "map@10", "coverage@10"}
    assert names <= set(st["metrics"]) and names == set(st["baseline"])  # kept by the CRD schema
    assert st["metrics"]["ndcg@10"] > st["baseline"]["ndcg@10"]
    r = st["ranking"]
    assert r["k"] == 10 and r["cutoff"] and r["groupsEvaluated"] > 0
    assert st["split"]["how"].startswith("time")
    assert st["promotion"]["decision"] == "promoted" and "popularity baseline" in st["promotion"]["reason"]
    mv = wait_mv_ready(c, ns, "recommender-v1")
    assert mv["spec"]["metrics"]["ndcg@10"] == pytest.approx(st["metrics"]["ndcg@10"])
    assert production(c, ns, "recommender") == ["recommender-v1"]


def test_a_recommender_that_does_not_beat_the_baseline_is_kept(local_cluster: Cluster, operator: OperatorProcess,
                                                               namespace: str):
    """Margin 1.0 on a metric bounded by 1: no model can pass, whatever policy always says."""
    c, ns = local_cluster, namespace
    c.apply(newsletters(name="nl"), ns)
    c.apply(ranking_run("rank-gated", "nl", """
  promotion:
    policy: always
    requireBaseline: {metric: hit_rate@10, margin: 1.0}
"""), ns)
    st = wait_phase(c, ns, "rank-gated", timeout=300)
    assert st["phase"] == "Succeeded", st
    assert st["promotion"]["decision"] == "kept" and "popularity baseline" in st["promotion"]["reason"]
    assert any(e["reason"] == "PromotionRefused" for e in events(c, ns, "rank-gated"))
    assert production(c, ns, "recommender") == []
    assert get(c, "trainingrun", ns, "rank-gated")["status"]["baseline"]


@pytest.mark.parametrize("body, message", [
    ("  task: ranking\n  estimator: {type: LogisticRegression}", "spec.ranking is required for task ranking"),
    ("  ranking: {groupColumn: c, itemColumn: i}\n  estimator: {type: LogisticRegression}",
     "spec.ranking is required for task ranking"),
    ("  estimator: {type: LogisticRegression}\n  promotion: {policy: always, requireBaseline: {metric: ndcg@10}}",
     "promotion.requireBaseline needs task ranking"),
    ("  task: ranking\n  ranking: {groupColumn: c, itemColumn: i}\n  estimator: {type: LogisticRegression}\n"
     "  promotion: {policy: always, requireBaseline: {metric: roc_auc}}", "should match"),
])
def test_bad_ranking_runs_are_rejected_at_apply(local_cluster: Cluster, operator: OperatorProcess, namespace: str,
                                                body: str, message: str):
    doc = f"""
apiVersion: mlops.dev/v1alpha1
kind: TrainingRun
metadata: {{name: bad-rank}}
spec:
  modelName: recommender
  dataset: {{name: nl}}
{body}
"""
    p = local_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=doc, check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr
