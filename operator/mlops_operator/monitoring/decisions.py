"""Window verdicts and the retraining rule of a DriftMonitor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

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


def accuracy_breached(policy: Mapping[str, Any] | None, value: float | None, count: float) -> bool | None:
    """True/False, or None when there is no policy or too few labelled rows for a decision."""
    if not policy or value is None or count < int(policy.get("minSamples", 100)):
        return None
    thr = float(policy["threshold"])
    return value > thr if policy.get("metric", "accuracy") in LOWER_IS_BETTER else value < thr


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
