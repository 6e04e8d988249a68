"""A window's model quality from the servers' feedback counters (monitoring/decisions.py,
monitoring/windows.py): every metric a DriftMonitor accepts is computed, checked against
scikit-learn on the same labels, and merged across pods and restarts like the other counters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from mlops_operator.api.driftmonitor import AccuracyPolicy
from mlops_operator.monitoring import decisions as dec
from mlops_operator.monitoring.windows import Window, accumulate, feedback_counters
from mlops_operator.serving.feedback import Feedback
from mlops_operator.serving.monitor import SCORE_EDGES
from mlops_operator.serving.ranking_feedback import RankingFeedback


def _served(classes: list[str], t: np.ndarray, p: np.ndarray, s: np.ndarray | None = None) -> dict:
    """The feedback section of a server that was sent these rows (the real Feedback class)."""
    fb = Feedback(True, classes, 100_000)
    import orjson

    body = {"predictions": [classes[i] for i in p], "labels": [classes[i] for i in t]}
    if s is not None:
        body["scores"] = s.tolist()
    fb.add(orjson.dumps(body))
    return fb.stats()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_f1_matches_scikit_learn(k):
    g = np.random.default_rng(k)
    t = g.integers(0, k, 500)
    p = np.where(g.random(500) < 0.7, t, g.integers(0, k, 500))
    classes = [str(i) for i in range(k)]
    counters = feedback_counters(_served(classes, t, p))
    want = f1_score(t, p) if k == 2 else f1_score(t, p, average="macro")
    assert dec.window_accuracy("f1", counters) == pytest.approx(want, abs=1e-12)
    # the matrix read back is scikit-learn's
    assert np.array_equal(dec._matrix(counters, "confusion"), confusion_matrix(t, p, labels=range(k)))


def test_roc_auc_is_scikit_learns_on_the_binned_scores():
    """Exactly the AUC of the scores cut at the server's SCORE_EDGES (ties in a bin count half);
    close to the exact AUC when the scores spread over the bins."""
    g = np.random.default_rng(0)
    t = g.integers(0, 2, 2000)
    s = np.clip(0.5 + (t - 0.5) * 0.4 + g.normal(0, 0.2, 2000), 0, 1)
    counters = feedback_counters(_served(["0", "1"], t, (s > 0.5).astype(int), s))
    binned = np.searchsorted(np.array(SCORE_EDGES), s, side="right")
    got = dec.window_accuracy("roc_auc", counters)
    assert got == pytest.approx(roc_auc_score(t, binned), abs=1e-12)
    assert abs(got - roc_auc_score(t, s)) < 0.02
    assert dec.window_accuracy("roc_auc", feedback_counters(_served(["0", "1"], t, t))) is None  # no scores sent


def test_hit_rate_and_ndcg_from_ranking_feedback():
    import orjson

    rf = RankingFeedback(k=3, max_rows=100)
    # bought: 2nd of its list (hit, 1/log2(3)); 4th (beyond k=3: miss); not in the list (miss);
    # first (hit, 1); no purchase (left out)
    rf.add(orjson.dumps({"served": [["a", "b", "c", "d"], ["a", "b", "c", "d"], ["x", "y"], ["q"], ["r"]],
                         "bought": ["b", "d", "zz", "q", None]}))
    c = feedback_counters({"count": 0, **rf.stats()})
    assert c["rankCount"] == 4 and c["hits"] == 2
    assert dec.window_accuracy("hit_rate", c) == pytest.approx(2 / 4)
    assert dec.window_accuracy("ndcg", c) == pytest.approx((1 / math.log2(3) + 1) / 4)
    assert dec.labelled_count("hit_rate", c) == 4 and dec.labelled_count("accuracy", c) == 0
    # min_samples counts lists with a purchase
    pol = AccuracyPolicy(metric="hit_rate", threshold=0.6, min_samples=4)
    assert dec.accuracy_breached(pol, 0.5, dec.labelled_count("hit_rate", c)) is True
    assert dec.accuracy_breached(pol.model_copy(update={"min_samples": 5}), 0.5, 4) is None


@pytest.mark.parametrize("body, message", [
    ({"served": [["a"]], "bought": ["a", "b"]}, "same length|but bought has"),
    ({"served": [[]], "bought": ["a"]}, "non-empty list"),
    ({"served": [["a", 3]], "bought": ["a"]}, "non-empty list"),
    ({"served": [["a"]], "bought": [7]}, "a string\\) or null"),
    ({"served": [], "bought": []}, "no rows"),
    ({"served": "a", "bought": ["a"]}, "needs \"served\""),
])
def test_bad_ranking_feedback_is_refused_and_counts_nothing(body, message):
    import orjson

    from mlops_operator.serving.protocol import ServingError

    rf = RankingFeedback(k=3, max_rows=100)
    with pytest.raises(ServingError, match=message) as e:
        rf.add(orjson.dumps(body))
    assert 400 <= e.value.status < 500
    assert rf.stats()["rankCount"] == 0 and rf.stats()["rankRequests"] == 0


def test_confusion_and_ranking_counters_merge_across_pods_and_a_restart():
    """The window adds each pod's difference since its last reading; a restarted pod (new
    startId) counts from zero, as the sums always did."""
    def doc(start: str, conf: list[list[int]], hits: int, rank: int) -> dict:
        return {"startId": start, "feedback": {"count": sum(map(sum, conf)), "correct": conf[0][0] + conf[1][1],
                                                "classes": ["0", "1"], "confusion": conf,
                                                "rankCount": rank, "hits": hits, "ndcgSum": float(hits)}}

    w = Window(0.0)
    r1 = accumulate(w, {}, {"a": doc("s1", [[5, 1], [2, 4]], 3, 5), "b": doc("s2", [[1, 0], [0, 1]], 1, 1)})
    r2 = accumulate(r1.window, r1.pods, {"a": doc("s1", [[7, 1], [2, 6]], 4, 7),   # +2, +2; +1 hit, +2 lists
                                         "b": doc("s3", [[0, 1], [0, 0]], 0, 2)})  # restarted
    fb = r2.window.feedback
    assert dec._matrix(fb, "confusion").tolist() == [[7 + 1 + 0, 1 + 0 + 1], [2, 6 + 1]]
    assert fb["hits"] == 4 + 1 and fb["rankCount"] == 7 + 1 + 2
    assert fb["count"] == 16 + 2 + 1
    again = Window.from_json(r2.window.to_json())  # through the state ConfigMap
    assert again.feedback == fb
