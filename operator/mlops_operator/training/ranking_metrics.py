"""Recommender metrics over groups of scored candidates: NDCG@k, hit rate@k, MAP@k, coverage@k.

Pure functions of (group, item, label, score) arrays, so the trainer, the champion comparison,
the popularity baseline and (later) the drift monitor compute exactly the same numbers. The
definitions are the README's "Recommender metrics" section; in short:

* A *group* is one value of the group column (a customer): its candidates are its rows.
  An item listed twice in a group is one candidate: relevant if any of its rows is
  positive, scored by its highest score (so a group never recommends the same item twice).
* A group's *ranking* sorts its candidates by score, highest first; equal scores are broken
  by item id, ascending (string order), so the result never depends on the row order.
* Relevance is binary (label > 0). NDCG, hit rate and MAP are averaged over the groups with
  at least one positive: a group with none has no ideal ranking (IDCG = 0) and is excluded
  (counted in ``groups_without_positive``), never scored 0 or 1.
* Coverage@k is the share of distinct candidate items (over all groups, with or without a
  positive) that appear in at least one group's top k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: metric families; the status key of each is f"{name}@{k}", e.g. "ndcg@10"
NAMES = ("ndcg", "hit_rate", "map", "coverage")


@dataclass(frozen=True)
class RankingReport:
    """Metrics at one k, and how many groups they rest on (a metric on 3 groups says little)."""

    k: int
    ndcg: float | None
    hit_rate: float | None
    map: float | None
    coverage: float | None
    groups: int
    groups_evaluated: int
    groups_without_positive: int
    items: int

    def metrics(self) -> dict[str, float]:
        """The status form: "ndcg@10" -> value, without metrics that have no groups to rest on."""
        out = {f"ndcg@{self.k}": self.ndcg, f"hit_rate@{self.k}": self.hit_rate, f"map@{self.k}": self.map,
               f"coverage@{self.k}": self.coverage}
        return {n: float(v) for n, v in out.items() if v is not None}

    def counts(self) -> dict[str, int]:
        return {"groups": self.groups, "groupsEvaluated": self.groups_evaluated,
                "groupsWithoutPositive": self.groups_without_positive, "items": self.items}


def metric_names(k: int) -> list[str]:
    return [f"{n}@{k}" for n in NAMES]


def parse_metric(name: str) -> tuple[str, int] | None:
    """("ndcg", 10) for "ndcg@10"; None when the name is not a ranking metric."""
    base, at, k = name.partition("@")
    if not at or base not in NAMES or not k.isdigit() or int(k) < 1:
        return None
    return base, int(k)


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))


def dcg_at_k(relevance_in_rank_order: np.ndarray, k: int) -> float:
    """sum over the first k positions i = 1..k of rel_i / log2(i + 1) (linear gain)."""
    rel = np.asarray(relevance_in_rank_order, dtype=float)[:k]
    return float(np.sum(rel * _discounts(len(rel))))


def ndcg_at_k(relevance_in_rank_order: np.ndarray, k: int) -> float | None:
    """DCG@k over the ideal DCG@k (relevances sorted descending); None when nothing is relevant."""
    rel = np.asarray(relevance_in_rank_order, dtype=float)
    ideal = dcg_at_k(np.sort(rel)[::-1], k)
    return None if ideal == 0.0 else dcg_at_k(rel, k) / ideal


def average_precision_at_k(relevant_in_rank_order: np.ndarray, k: int) -> float | None:
    """(1 / min(k, positives)) * sum over i <= k of precision@i * rel_i; None without positives.

    Dividing by min(k, positives) rather than by all positives keeps a perfect top k at 1.0
    when a customer bought more than k items (the ml_metrics / RecBole convention)."""
    rel = np.asarray(relevant_in_rank_order, dtype=bool)
    positives = int(rel.sum())
    if positives == 0:
        return None
    top = rel[:k]
    hits = np.cumsum(top)
    precision_at_i = hits / np.arange(1, len(top) + 1)
    return float(np.sum(precision_at_i * top) / min(k, positives))


def rank_groups(groups: np.ndarray, items: np.ndarray, labels: np.ndarray,
                scores: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group (in sorted group order): (items in rank order, relevance 0/1 in rank order).

    Duplicate (group, item) rows collapse to one candidate: max label, max score."""
    g = np.asarray(groups).astype(str)
    it = np.asarray(items).astype(str)
    y = (np.asarray(labels, dtype=float) > 0).astype(np.int8)
    s = np.asarray(scores, dtype=float)
    if not (len(g) == len(it) == len(y) == len(s)):
        raise ValueError("groups, items, labels and scores must have the same length")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: a ranking needs a score for every candidate")
    out: list[tuple[np.ndarray, np.ndarray]] = []
    if len(g) == 0:
        return out
    # one sort: group ascending, then score descending, then item ascending (the tie-break)
    order = np.lexsort((it, -s, g))
    g, it, y, s = g[order], it[order], y[order], s[order]
    bounds = np.flatnonzero(g[1:] != g[:-1]) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(g)]):
        gi, gy = it[lo:hi], y[lo:hi]
        # first occurrence of an item is its highest-scored row (rows are score-descending)
        uniq, first = np.unique(gi, return_index=True)
        if len(uniq) < len(gi):
            any_pos = np.zeros(len(uniq), dtype=np.int8)
            np.maximum.at(any_pos, np.searchsorted(uniq, gi), gy)
            keep = np.sort(first)
            gi = gi[keep]
            gy = any_pos[np.searchsorted(uniq, gi)]
        out.append((gi, gy))
    return out


def evaluate(groups: np.ndarray, items: np.ndarray, labels: np.ndarray, scores: np.ndarray,
             k: int) -> RankingReport:
    """All four metrics at ``k`` for one scoring of the candidates."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked = rank_groups(groups, items, labels, scores)
    ndcgs: list[float] = []
    hits: list[float] = []
    aps: list[float] = []
    shown: set[str] = set()
    catalogue: set[str] = set()
    for gi, gy in ranked:
        catalogue.update(gi.tolist())
        shown.update(gi[:k].tolist())
        n = ndcg_at_k(gy, k)
        if n is None:
            continue
        ndcgs.append(n)
        hits.append(float(gy[:k].any()))
        ap = average_precision_at_k(gy, k)
        aps.append(ap if ap is not None else 0.0)

    def mean(v: list[float]) -> float | None:
        return float(np.mean(v)) if v else None

    return RankingReport(k=k, ndcg=mean(ndcgs), hit_rate=mean(hits), map=mean(aps),
                         coverage=len(shown) / len(catalogue) if catalogue else None, groups=len(ranked),
                         groups_evaluated=len(ndcgs), groups_without_positive=len(ranked) - len(ndcgs),
                         items=len(catalogue))


def popularity_scores(train_items: np.ndarray, train_labels: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The popularity baseline's score of each of ``items``: how many times it was bought
    (positive rows) in the *training* rows given, 0 for an item never bought there.

    Only the training period counts: popularity measured on the test period would tell the
    baseline what the customers are about to buy (a leak that flatters the baseline)."""
    bought = np.asarray(train_items).astype(str)[np.asarray(train_labels, dtype=float) > 0]
    names, counts = np.unique(bought, return_counts=True)
    table = dict(zip(names.tolist(), counts.tolist()))
    return np.array([table.get(i, 0) for i in np.asarray(items).astype(str).tolist()], dtype=float)
