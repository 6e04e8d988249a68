"""The ranking graph: the exported scorer plus a TopK node, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mlops_operator.data import retail_ranking as rr
from mlops_operator.training import convert, estimators, pipeline, topk

SCHEMA = {c["name"]: c for c in rr.RANKING_SCHEMA}
FEATURES = [SCHEMA[n] for n in rr.CUSTOMER_FEATURES + rr.ITEM_FEATURES]


@pytest.fixture(scope="module")
def data():
    d = rr.generate(9600, seed=11).to_pandas()
    return d, pipeline.prepare_frame(d, FEATURES)


def _fit(name, data, **params):
    d, x = data
    model = pipeline.build(FEATURES, estimators.make(name, params, seed=0))
    model.fit(x, d[rr.LABEL])
    classifier = estimators.task_of(name) == "classification"
    return model, convert.export(model, FEATURES, classifier), classifier


@pytest.mark.parametrize("name,params", [("LogisticRegression", {"max_iter": 300}),
                                         ("RandomForestClassifier", {"n_estimators": 10, "max_depth": 6}),
                                         ("Ridge", {})])
def test_one_graph_returns_sklearns_top_k(data, name, params):
    d, x = data
    model, scorer, classifier = _fit(name, data, **params)
    graph = topk.build(scorer, FEATURES, rr.CUSTOMER_FEATURES, classifier)
    ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
    assert ops.count("TopK") == 1 and "Expand" in ops
    p = topk.check_parity(model, graph, x, d["customer_id"].to_numpy(), d["item_id"].to_numpy(), FEATURES,
                          rr.CUSTOMER_FEATURES, classifier, k=5, tolerance=1e-5, max_groups=20)
    assert p.groups == 20 and p.ok, p


def test_scores_and_items_by_hand(data):
    """One customer, the first 12 candidates: the graph's top 4 are the 4 highest of
    scikit-learn's predict_proba[:, 1] (context broadcast), with their ids and scores."""
    d, x = data
    model, scorer, _ = _fit("LogisticRegression", data, max_iter=300)
    graph = topk.build(scorer, FEATURES, rr.CUSTOMER_FEATURES, True)
    cand = x.iloc[:12].reset_index(drop=True)
    for c in rr.CUSTOMER_FEATURES:
        cand[c] = cand[c].iloc[0]
    ids = [f"item{i}" for i in range(12)]
    want = model.predict_proba(cand)[:, 1]
    items, scores, idx = convert.session(graph).run(list(topk.OUTPUTS),
                                                    topk.feeds(cand, cand, ids, 4, FEATURES, rr.CUSTOMER_FEATURES))
    best = np.argsort(-want)[:4]
    assert idx.tolist() == best.tolist() and items.tolist() == [ids[i] for i in best]
    assert np.allclose(scores, want[best], atol=1e-5) and np.all(np.diff(scores) <= 0)


def test_k_beyond_the_candidates_returns_them_all_and_ties_keep_candidate_order(data):
    d, x = data
    model, scorer, _ = _fit("LogisticRegression", data, max_iter=300)
    graph = topk.build(scorer, FEATURES, rr.CUSTOMER_FEATURES, True)
    one = x.iloc[[0, 0, 0]].reset_index(drop=True)  # three identical candidates: all tie
    items, scores, idx = convert.session(graph).run(list(topk.OUTPUTS),
                                                    topk.feeds(one, one, ["b", "a", "c"], 10, FEATURES,
                                                               rr.CUSTOMER_FEATURES))
    assert idx.tolist() == [0, 1, 2] and items.tolist() == ["b", "a", "c"] and len(set(scores.tolist())) == 1


def test_parity_catches_a_graph_that_ranks_differently(data):
    """A graph built on the wrong probability column (P(not bought)) ranks the candidates
    upside down: the check compares with scikit-learn's P(bought) ranking and says so."""
    d, x = data
    model, scorer, classifier = _fit("LogisticRegression", data, max_iter=300)
    wrong = topk.build(scorer, FEATURES, rr.CUSTOMER_FEATURES, classifier, positive_index=0)
    p = topk.check_parity(model, wrong, x, d["customer_id"].to_numpy(), d["item_id"].to_numpy(), FEATURES,
                          rr.CUSTOMER_FEATURES, classifier, k=5, tolerance=1e-5, max_groups=20)
    assert not p.ok and p.rank_mismatches > 0


def test_unknown_context_feature_is_refused(data):
    _, scorer, _ = _fit("LogisticRegression", data, max_iter=50)
    with pytest.raises(ValueError, match="not among"):
        topk.build(scorer, FEATURES, ["shoe_size"], True)


def test_what_the_graph_does_with_requests_the_server_must_check_first(data):
    """Recorded for the serving slice: k = 0 returns nothing, a negative k, ids that do not match
    the candidates, or two rows of a context feature fail inside onnxruntime, so the server
    must answer those with a 4xx before it runs the graph."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    d, x = data
    _, scorer, _ = _fit("LogisticRegression", data, max_iter=50)
    sess = convert.session(topk.build(scorer, FEATURES, rr.CUSTOMER_FEATURES, True))
    cand = x.iloc[:5].reset_index(drop=True)

    def feeds(ids: str = "abcde", k: int = 3) -> dict:
        return topk.feeds(cand, cand, list(ids), k, FEATURES, rr.CUSTOMER_FEATURES)
    assert [len(o) for o in sess.run(None, feeds(k=0))] == [0, 0, 0]
    with pytest.raises(Fail, match="k must not be negative"):
        sess.run(None, feeds(k=-1))
    with pytest.raises(Fail):
        sess.run(None, feeds(ids="abcd"))
    two = feeds()
    two["age"] = np.array([[30.0], [40.0]], dtype=np.float32)
    with pytest.raises(InvalidArgument):
        sess.run(None, two)
