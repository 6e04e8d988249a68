"""Held-out evaluation: the metrics people compare runs by, computed on the test split.

Names are stable keys of TrainingRun and ModelVersion status: accuracy, precision, recall,
f1, roc_auc, log_loss (binary; macro averages for multiclass, with f1_macro as well),
rmse, mae, r2 for regression. `LOWER_IS_BETTER` tells promotion which way is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as m

from ..registry.promotion import LOWER_IS_BETTER as LOWER_IS_BETTER  # one definition for trainer and operator

#: metric name -> scikit-learn scorer used to rank tuning trials (higher is better)
SCORERS = {
    "accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "f1", "f1_macro": "f1_macro",
    "roc_auc": "roc_auc", "roc_auc_ovr": "roc_auc_ovr", "log_loss": "neg_log_loss",
    "rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error", "r2": "r2",
}


def default_metric(task: str, n_classes: int) -> str:
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes == 2 else "f1_macro"


def scorer_for(metric: str, n_classes: int) -> str:
    if metric not in SCORERS:
        raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(sorted(SCORERS))}")
    if n_classes > 2 and metric in ("precision", "recall", "f1"):
        return metric + "_macro"
    if n_classes > 2 and metric == "roc_auc":
        return "roc_auc_ovr"
    return SCORERS[metric]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None,
                           classes: list[Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, details) where details hold the confusion matrix and per-class metrics."""
    binary = len(classes) == 2
    avg = "binary" if binary else "macro"
    pos = classes[1] if binary else None
    kw = {"pos_label": pos} if binary else {}
    out = {
        "accuracy": float(m.accuracy_score(y_true, y_pred)),
        "precision": float(m.precision_score(y_true, y_pred, average=avg, zero_division=0, **kw)),
        "recall": float(m.recall_score(y_true, y_pred, average=avg, zero_division=0, **kw)),
        "f1": float(m.f1_score(y_true, y_pred, average=avg, zero_division=0, **kw)),
        "f1_macro": float(m.f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
    if proba is not None and len(np.unique(y_true)) > 1:
        p = np.clip(proba, 1e-15, 1 - 1e-15)
        out["log_loss"] = float(m.log_loss(y_true, p, labels=classes))
        if binary:
            out["roc_auc"] = float(m.roc_auc_score(y_true == pos, proba[:, 1]))
        elif len(np.unique(y_true)) == len(classes):
            out["roc_auc"] = float(m.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    cm = m.confusion_matrix(y_true, y_pred, labels=classes)
    p, r, f, s = m.precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    details = {
        "confusionMatrix": {"labels": [str(c) for c in classes], "matrix": cm.tolist()},
        "perClass": {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, c in enumerate(classes)},
    }
    return out, details


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"rmse": float(np.sqrt(m.mean_squared_error(y_true, y_pred))),
            "mae": float(m.mean_absolute_error(y_true, y_pred)),
            "r2": float(m.r2_score(y_true, y_pred))}
