"""Recommender metrics on hand-made examples whose values are worked out in each docstring,
plus a cross-check of NDCG against scikit-learn's ndcg_score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from mlops_operator.training import ranking_metrics as rm

# Three customers (groups):
#   A: items a b c d, scores .9 .8 .7 .6, bought b and d  -> ranked a(0) b(1) c(0) d(1)
#   B: items a e,     scores .1 .2,       bought a        -> ranked e(0) a(1)
#   C: items x y,     scores .3 .3,       bought nothing  -> excluded from NDCG/HR/MAP; tie -> x before y
GROUPS = np.array(["A"] * 4 + ["B"] * 2 + ["C"] * 2)
ITEMS = np.array(["a", "b", "c", "d", "a", "e", "y", "x"])
LABELS = np.array([0, 1, 0, 1, 1, 0, 0, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.3, 0.3])


def test_ndcg_at_3_by_hand():
    """A: DCG@3 = 0/log2(2) + 1/log2(3) + 0/log2(4) = 0.630930; ideal (1, 1, 0):
    IDCG@3 = 1 + 1/log2(3) = 1.630930; NDCG = 0.386853.
    B: DCG@3 = 1/log2(3) = 0.630930; IDCG = 1; NDCG = 0.630930.
    C has no positive: excluded. Mean = (0.386853 + 0.630930) / 2 = 0.508891."""
    r = rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=3)
    a = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    b = 1 / math.log2(3)
    assert r.ndcg == pytest.approx((a + b) / 2) == pytest.approx(0.508891, abs=1e-6)
    assert (r.groups, r.groups_evaluated, r.groups_without_positive) == (3, 2, 1)


def test_hit_rate_at_k_by_hand():
    """k=1: A's top is a (not bought), B's top is e (not bought) -> 0/2 = 0.
    k=2: A's top 2 (a, b) holds b, B's top 2 (e, a) holds a -> 2/2 = 1.
    Adding D (f .9, g .5, h .1; bought h): its top 2 (f, g) misses -> 2/3 at k=2."""
    assert rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=1).hit_rate == 0.0
    assert rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=2).hit_rate == 1.0
    g = np.r_[GROUPS, ["D"] * 3]
    i = np.r_[ITEMS, ["f", "g", "h"]]
    y = np.r_[LABELS, [0, 0, 1]]
    s = np.r_[SCORES, [0.9, 0.5, 0.1]]
    assert rm.evaluate(g, i, y, s, k=2).hit_rate == pytest.approx(2 / 3)


def test_map_at_3_by_hand():
    """A: relevance in rank order 0 1 0 | 1; within the top 3 only position 2 is relevant,
    precision@2 = 1/2; A has 2 positives, min(3, 2) = 2 -> AP = 0.5 / 2 = 0.25.
    B: 0 1; precision@2 = 1/2; 1 positive -> AP = 0.5. MAP@3 = (0.25 + 0.5) / 2 = 0.375.
    At k=4, A also gets precision@4 = 2/4 at position 4: AP = (0.5 + 0.5) / 2 = 0.5; MAP = 0.5."""
    assert rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=3).map == pytest.approx(0.375)
    assert rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=4).map == pytest.approx(0.5)


def test_coverage_at_1_by_hand_and_ties_by_item_id():
    """Top 1: A -> a, B -> e, C -> x (x and y tie at .3; x < y by item id, whatever the row
    order: y comes first in the rows). Candidate items over all groups, C included:
    {a, b, c, d, e, x, y} = 7 -> coverage@1 = 3/7. At k=2: {a, b, e, x, y} -> 5/7."""
    assert rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=1).coverage == pytest.approx(3 / 7)
    assert rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=2).coverage == pytest.approx(5 / 7)
    ranked = dict(zip(["A", "B", "C"], rm.rank_groups(GROUPS, ITEMS, LABELS, SCORES)))
    assert ranked["C"][0].tolist() == ["x", "y"]
    assert ranked["A"][0].tolist() == ["a", "b", "c", "d"] and ranked["A"][1].tolist() == [0, 1, 0, 1]


def test_row_order_does_not_matter():
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(GROUPS))
    for k in (1, 2, 3):
        want = rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k)
        assert rm.evaluate(GROUPS[perm], ITEMS[perm], LABELS[perm], SCORES[perm], k) == want


def test_duplicate_items_in_a_group_collapse_to_one_candidate():
    """Item a listed twice: (.2, bought) and (.9, not bought) -> one candidate a, score .9,
    relevant; b .5 not bought. Ranking a, b: NDCG@1 = 1, hit@1 = 1, 2 distinct items."""
    r = rm.evaluate(np.array(["g"] * 3), np.array(["a", "a", "b"]), np.array([1, 0, 0]),
                    np.array([0.2, 0.9, 0.5]), k=1)
    assert (r.ndcg, r.hit_rate, r.map, r.items) == (1.0, 1.0, 1.0, 2)


def test_no_positive_anywhere_leaves_ranking_metrics_undefined():
    r = rm.evaluate(np.array(["g", "g"]), np.array(["a", "b"]), np.array([0, 0]), np.array([0.1, 0.2]), k=1)
    assert r.ndcg is None and r.hit_rate is None and r.map is None and r.coverage == 0.5
    assert r.metrics() == {"coverage@1": 0.5}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="k must be"):
        rm.evaluate(GROUPS, ITEMS, LABELS, SCORES, k=0)
    with pytest.raises(ValueError, match="NaN"):
        rm.evaluate(GROUPS, ITEMS, LABELS, np.r_[SCORES[:-1], np.nan], k=1)
    with pytest.raises(ValueError, match="same length"):
        rm.evaluate(GROUPS, ITEMS, LABELS[:-1], SCORES, k=1)


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ndcg_matches_sklearn(k):
    """scikit-learn's ndcg_score (linear gain, log2 discount) per group, averaged over the groups
    with a positive; distinct scores, so tie handling plays no part."""
    rng = np.random.default_rng(k)
    groups, items, labels, scores = [], [], [], []
    want = []
    for g in range(40):
        n = int(rng.integers(2, 15))
        y = (rng.random(n) < 0.25).astype(int)
        s = rng.permutation(n) + rng.random(n) * 0.1  # distinct
        groups += [f"c{g}"] * n
        items += [f"i{j}" for j in range(n)]
        labels += y.tolist()
        scores += s.tolist()
        if y.any():
            want.append(ndcg_score(y[None, :], s[None, :], k=k))
    r = rm.evaluate(np.array(groups), np.array(items), np.array(labels), np.array(scores), k)
    assert r.groups_evaluated == len(want) > 0
    assert r.ndcg == pytest.approx(float(np.mean(want)), abs=1e-12)


def test_popularity_counts_training_purchases_only():
    """Training rows: a bought twice, b once, c shown but never bought -> a 2, b 1, c 0, z (unseen) 0."""
    got = rm.popularity_scores(np.array(["a", "b", "a", "c", "a"]), np.array([1, 1, 1, 0, 0]),
                               np.array(["c", "a", "z", "b"]))
    assert got.tolist() == [0.0, 2.0, 0.0, 1.0]


def test_metric_names_round_trip():
    assert rm.metric_names(10) == ["ndcg@10", "hit_rate@10", "map@10", "coverage@10"]
    assert rm.parse_metric("map@5") == ("map", 5)
    assert rm.parse_metric("roc_auc") is None and rm.parse_metric("ndcg@0") is None and rm.parse_metric("x@3") is None
