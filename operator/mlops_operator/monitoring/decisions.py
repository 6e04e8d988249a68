"""Window verdicts and the retraining rule of a DriftMonitor.

Pure: the controller reads the pods and writes status; what a window means (drifted? accuracy
breached? retrain?) is decided here, so it is unit-tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..api.driftmonitor import AccuracyPolicy
from ..drift.engine import DatasetDrift

LOWER_IS_BETTER = {"rmse", "mae"}


def window_accuracy(metric: str, feedback: Mapping[str, float]) -> float | None:
    """The window's accuracy (classification) or error (regression) from feedback sums."""
    n = feedback.get("count", 0.0)
    if not n:
        return None
    if metric == "accuracy":
        return feedback.get("correct", 0.0) / n
    if metric == "mae":
        return feedback.get("sumAbsError", 0.0) / n
    if metric == "rmse":
        return (feedback.get("sumSquaredError", 0.0) / n) ** 0.5
    raise ValueError(f"metric {metric!r} cannot be computed from windowed feedback; use accuracy, mae or rmse")


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
    count = feedback.get("count", 0)
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
