"""The ranking task's evaluation protocol: a time split that never leaks the future, the
popularity baseline from the training period, ranking metrics per group, and a tuning scorer
and cross-validation that respect time.

A recommender is trained on what happened before a cutoff and judged on what happened after
it, as it will be in production. Everything the evaluation learns from data (the model, the
baseline's item popularity, the tuning folds) sees only rows before the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import ranking_metrics as rm


@dataclass(frozen=True)
class TimeSplit:
    train: np.ndarray
    test: np.ndarray
    cutoff: Any  # the first instant of the test period (a value of the time column)
    how: str


def time_split(times: pd.Series, test_fraction: float) -> TimeSplit:
    """Rows strictly before the cutoff train, rows at or after it test.

    The cutoff is the time at which about ``test_fraction`` of the rows remain, moved to a
    timestamp boundary: rows sharing a timestamp are never split between train and test (a
    newsletter sent at one instant is either all past or all future)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    t = times.to_numpy()
    if pd.isna(t).any():
        raise ValueError(f"time column {times.name!r} has missing values: a time split needs every row's time")
    distinct = np.unique(t)
    if len(distinct) < 2:
        raise ValueError(f"time column {times.name!r} has a single value: nothing to split by time")
    order = np.sort(t, kind="stable")
    cutoff = order[min(len(t) - 1, int(np.floor(len(t) * (1.0 - test_fraction))))]
    if cutoff == distinct[0]:  # everything would be test: start the test period at the next instant
        cutoff = distinct[1]
    train = np.flatnonzero(t < cutoff)
    test = np.flatnonzero(t >= cutoff)
    return TimeSplit(train, test, cutoff, f"time ({times.name}): train before {_iso(cutoff)}, "
                                          f"test from it ({len(test)} rows)")


def _iso(v: Any) -> str:
    try:
        return pd.Timestamp(v).isoformat()
    except (TypeError, ValueError):
        return str(v)


def cutoff_text(v: Any) -> str:
    return _iso(v)


def check_label(y: pd.Series) -> pd.Series:
    """The label as int 0/1 (bought or not); anything else is not a ranking label."""
    vals = set(pd.unique(y.dropna()).tolist())
    if not vals <= {0, 1}:  # True == 1 and 0.0 == 0 in a set
        shown = ", ".join(sorted(map(str, vals))[:5])
        raise ValueError(f"a ranking label must be 0/1 (bought or not), got values {shown}")
    return y.astype("int64")


def scores(model: Any, frame: pd.DataFrame, classifier: bool) -> np.ndarray:
    """The pointwise score: a classifier's probability of class 1, a regressor's prediction."""
    if classifier:
        final = model.steps[-1][1]
        pos = list(final.classes_).index(1)
        return np.asarray(model.predict_proba(frame))[:, pos]
    return np.asarray(model.predict(frame), dtype=float).reshape(-1)


def onnx_scores(outputs: dict[str, np.ndarray], classes: list[str] | None) -> np.ndarray:
    """The same score from an ONNX scorer's outputs (a champion's, or the candidate's)."""
    if "probabilities" in outputs:
        pos = (classes or ["0", "1"]).index("1")
        return np.asarray(outputs["probabilities"])[:, pos].astype(float)
    return np.asarray(next(iter(outputs.values())), dtype=float).reshape(-1)


def baseline_scores(train_items: np.ndarray, train_labels: np.ndarray, test_items: np.ndarray) -> np.ndarray:
    """The popularity baseline: how often each test candidate was bought in the training period."""
    return rm.popularity_scores(train_items, train_labels, test_items)


def cv_folds(n_train: int, folds: int) -> Any:
    """Forward-chaining folds over the (time-ordered) training rows: each fold trains on the
    past and validates on the block after it, so tuning never peeks at the future either."""
    from sklearn.model_selection import TimeSeriesSplit

    return TimeSeriesSplit(n_splits=max(2, min(folds, n_train // 2 - 1)))


def scorer(metric: str, groups: pd.Series, items: pd.Series, classifier: bool) -> Callable[..., float]:
    """A scikit-learn scorer computing ranking ``metric`` (e.g. "ndcg@10") on a CV fold.

    ``groups`` and ``items`` are indexed like the training frame; the fold's rows are found by
    the index labels scikit-learn keeps when it slices a DataFrame."""
    parsed = rm.parse_metric(metric)
    if parsed is None:
        raise ValueError(f"unknown ranking metric {metric!r}: one of ndcg@k, hit_rate@k, map@k, coverage@k")
    family, k = parsed

    def score(estimator: Any, x: pd.DataFrame, y: pd.Series) -> float:
        s = scores(estimator, x, classifier)
        value = getattr(rm.evaluate(groups.loc[x.index].to_numpy(), items.loc[x.index].to_numpy(),
                                    np.asarray(y), s, k), family)
        return float("nan") if value is None else float(value)

    return score


def report(groups: np.ndarray, items: np.ndarray, labels: np.ndarray, s: np.ndarray, k: int
           ) -> tuple[dict[str, float], dict[str, int]]:
    r = rm.evaluate(groups, items, labels, s, k)
    return r.metrics(), r.counts()
