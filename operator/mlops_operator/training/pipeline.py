"""Preprocessing built from the dataset schema, part of the model and of its ONNX graph, so the
server takes raw feature values: numeric -> median imputation + scaling; boolean -> 0/1 with
most-frequent imputation; categorical -> most-frequent imputation + one-hot (unknown
categories ignored, as at serving time new categories appear)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def feature_columns(schema: list[dict[str, Any]], target: str, include: list[str] | None = None,
                    exclude: list[str] | None = None) -> list[dict[str, Any]]:
    cols = [c for c in schema if c.get("role", "feature") == "feature" and c["name"] != target
            and c["type"] in ("numeric", "categorical", "boolean")]
    if include:
        missing = sorted(set(include) - {c["name"] for c in schema})
        if missing:
            raise ValueError(f"features not in the dataset schema: {', '.join(missing)}")
        cols = [c for c in schema if c["name"] in include]
    if exclude:
        cols = [c for c in cols if c["name"] not in exclude]
    if not cols:
        raise ValueError("no feature columns left to train on")
    return cols


def prepare_frame(df: pd.DataFrame, features: list[dict[str, Any]]) -> pd.DataFrame:
    """Inputs as the model (and its ONNX graph) sees them: float64 numbers, str categories."""
    out = {}
    for c in features:
        s = df[c["name"]]
        if c["type"] == "categorical":
            out[c["name"]] = s.astype(object).where(s.notna(), None).map(lambda v: "" if v is None else str(v))
        else:
            # float32 is what the ONNX graph computes in; fitting on the same values keeps
            # tree thresholds between representable float32 numbers
            out[c["name"]] = s.astype("float64").astype(np.float32)
    return pd.DataFrame(out)


def build(features: list[dict[str, Any]], estimator: Any) -> Pipeline:
    numeric = [c["name"] for c in features if c["type"] in ("numeric", "boolean")]
    categorical = [c["name"] for c in features if c["type"] == "categorical"]
    transformers = []
    kind = type(estimator).__name__
    trees = any(w in kind for w in ("Tree", "Forest", "Boosting"))
    if numeric:
        # trees need no scaling, and a float64 scaler in front of float32 thresholds is what
        # makes ONNX and scikit-learn disagree next to a split
        steps = [("impute", SimpleImputer(strategy="median"))] + ([] if trees else [("scale", StandardScaler())])
        transformers.append(("num", Pipeline(steps), numeric))
    if categorical:
        transformers.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    return Pipeline([("pre", ColumnTransformer(transformers, sparse_threshold=0.0)), ("model", estimator)])
