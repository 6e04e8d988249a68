"""Window verdicts and the retraining rule of a DriftMonitor.

Pure: the controller reads the pods and writes status; what a window means (drifted? accuracy
breached? retrain?) is decided here, so it is unit-tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..api.driftmonitor import AccuracyPolicy
from ..drift.engine import DatasetDrift

LOWER_IS_BETTER = {"rmse", "mae"}


RANKING_METRICS = {"hit_rate", "ndcg"}


def labelled_count(metric: str, feedback: Mapping[str, float]) -> float:
    """The labelled rows a metric rests on: lists followed by a purchase for a recommender's
    metrics, labelled predictions otherwise."""
    return feedback.get("rankCount", 0.0) if metric in RANKING_METRICS else feedback.get("count", 0.0)


def _matrix(feedback: Mapping[str, float], prefix: str) -> np.ndarray | None:
    """The ``prefix:i:j`` counters (windows.feedback_counters) as a matrix, or None."""
    cells: dict[tuple[int, int], float] = {}
    for key, v in feedback.items():
        if key.startswith(prefix + ":"):
            _, row, col = key.split(":")
            cells[(int(row), int(col))] = v
    if not cells:
        return None
    m = np.zeros((max(i for i, _ in cells) + 1, max(j for _, j in cells) + 1))
    for (r, c), v in cells.items():
        m[r, c] = v
    return m


def _f1(conf: np.ndarray) -> float:
    """scikit-learn's f1_score from a confusion matrix [true][predicted]: binary (two classes:
    the second class is positive, as pos_label=1), else the macro average over classes that
    occur (true or predicted), a class with no true positive scoring 0."""
    tp = np.diag(conf)
    pred, true = conf.sum(axis=0), conf.sum(axis=1)
    denom = pred + true
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=float), where=denom > 0)
    if conf.shape[0] == 2:
        return float(f1[1])
    present = denom > 0
    return float(f1[present].mean()) if present.any() else 0.0


def _binned_auc(scores: np.ndarray) -> float | None:
    """ROC AUC from the positive-class score histograms of the two true classes (row 0:
    negatives, row 1: positives; bins of the server's SCORE_EDGES): P(positive scores above a
    negative) + half P(same bin). With 10 bins it is the AUC of the binned scores, which a
    model's exact AUC can exceed by the share of pairs tied in a bin."""
    if scores.shape[0] != 2:
        return None
    neg, pos = scores[0], scores[1]
    if neg.sum() == 0 or pos.sum() == 0:
        return None
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])  # negatives in lower bins
    return float(((pos * below).sum() + 0.5 * (pos * neg).sum()) / (pos.sum() * neg.sum()))


def window_accuracy(metric: str, feedback: Mapping[str, float]) -> float | None:
    """The window's accuracy (classification), error (regression) or ranking quality
    (recommender) from the window's feedback counters (windows.feedback_counters)."""
    n = labelled_count(metric, feedback)
    if not n:
        return None
    if metric == "accuracy":
        return feedback.get("correct", 0.0) / n
    if metric == "mae":
        return feedback.get("sumAbsError", 0.0) / n
    if metric == "rmse":
        return (feedback.get("sumSquaredError", 0.0) / n) ** 0.5
    if metric == "hit_rate":
        return feedback.get("hits", 0.0) / n
    if metric == "ndcg":
        return feedback.get("ndcgSum", 0.0) / n
    if metric == "f1":
        conf = _matrix(feedback, "confusion")
        return None if conf is None else _f1(conf)
    if metric == "roc_auc":
        scores = _matrix(feedback, "scores")
        return None if scores is None else _binned_auc(scores)
    raise ValueError(f"metric {metric!r} cannot be computed from windowed feedback")


def accuracy_breached(policy: AccuracyPolicy | None, value: float | None, count: float) -> bool | None:
    """True/False, or None when there is no policy or too few labelled rows for a decision."""
    if policy is None or value is None or count < policy.min_samples:
        return None
    return value > policy.threshold if policy.metric in LOWER_IS_BETTER else value < policy.threshold


@dataclass
class WindowVerdict:
    """What one full window says: the Drifted condition (status, reason, message) and whether
    thresholds are breached, which is what may start a retraining."""

    reasons: list[str]
    condition: tuple[str, str, str]  # (status True|False|Unknown, reason, message)
    accuracy: float | None
    metric: str

    @property
    def breached(self) -> bool:
        return bool(self.reasons)


def judge_window(drift: DatasetDrift, policy: AccuracyPolicy | None, feedback: Mapping[str, float]) -> WindowVerdict:
    """The window's verdict from the drift result and the labelled feedback."""
    metric = policy.metric if policy is not None else "accuracy"
    count = labelled_count(metric, feedback)
    acc = window_accuracy(metric, feedback) if count else None
    breach_acc = accuracy_breached(policy, acc, count)
    data_drift = drift.drifted and not drift.insufficient
    reasons = []
    if data_drift:
        reasons.append(f"data drift: {drift.message}")
    if breach_acc and policy is not None and acc is not None:
        reasons.append(f"{metric} {acc:.3f} breaches {policy.threshold} on {int(count)} labels")
    if reasons:
        reason = "DataDriftAndAccuracy" if len(reasons) == 2 else ("DataDrift" if data_drift else "AccuracyDegraded")
        return WindowVerdict(reasons, ("True", reason, "; ".join(reasons)), acc, metric)
    if drift.insufficient:
        return WindowVerdict([], ("Unknown", "InsufficientSamples", drift.message), acc, metric)
    msg = drift.message + (f"; {metric} {acc:.3f}" if acc is not None else "")
    return WindowVerdict([], ("False", "NoDrift", msg), acc, metric)


@dataclass
class RetrainGate:
    allowed: bool
    reason: str


def retrain_gate(enabled: bool, breached: bool, in_flight: str | None, last_retrain_epoch: float | None,
                 cooldown_s: float, now_epoch: float) -> RetrainGate:
    if not enabled:
        return RetrainGate(False, "retraining is not enabled")
    if not breached:
        return RetrainGate(False, "no breach")
    if in_flight:
        return RetrainGate(False, f"retraining {in_flight} is still in flight")
    if last_retrain_epoch is not None and now_epoch - last_retrain_epoch < cooldown_s:
        left = cooldown_s - (now_epoch - last_retrain_epoch)
        return RetrainGate(False, f"in cooldown for another {left:.0f}s")
    return RetrainGate(True, "thresholds breached outside the cooldown")
