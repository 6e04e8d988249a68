"""ONNX export with skl2onnx and the parity check that gates registration.

One input tensor per feature (named after the column, shape [N, 1]): float for numbers and
booleans, string for categories, so the server can accept V2 requests with one tensor per
feature. Classifiers export `label` and a `probabilities` tensor (no ZipMap).

The bytes are a function of the fitted model only (`canonical`), so the same spec on the same
dataset version gives the same digest in any process (tests/unit/test_training_reproducible.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from onnx import ModelProto
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline


class ParityError(RuntimeError):
    """ONNX Runtime disagrees with scikit-learn beyond the tolerance: never register."""


@dataclass
class Parity:
    rows: int
    label_mismatches: int
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.label_mismatches == 0 and self.max_abs_diff <= self.tolerance


def initial_types(features: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(c["name"], StringTensorType([None, 1]) if c["type"] == "categorical" else FloatTensorType([None, 1]))
            for c in features]


def canonical(onx: ModelProto) -> ModelProto:
    """The model with its operator sets in one order (by domain), in place.

    skl2onnx fills `opset_import` by iterating a Python set of (domain, version) pairs, whose
    order follows the string hash of "ai.onnx.ml", which PYTHONHASHSEED randomises per
    process. So every allowlisted estimator's model had two serialisations, hence two digests
    ("" first or "ai.onnx.ml" first): the rarer one in 4 of 40 hash seeds for most of them,
    in 11 of 40 for GradientBoostingClassifier, KNeighbors* and SVC/SVR (skl2onnx 1.20, one
    conversion of the same fitted model per seed). ONNX gives the order no meaning.
    """
    for proto in (onx, *onx.functions):
        ops = sorted((o.domain, o.version) for o in proto.opset_import)
        del proto.opset_import[:]
        for domain, version in ops:
            proto.opset_import.add(domain=domain, version=version)
    return onx


def export(model: Pipeline, features: list[dict[str, Any]], classifier: bool) -> bytes:
    final = model.steps[-1][1]
    options = {id(final): {"zipmap": False}} if classifier and hasattr(final, "predict_proba") else None
    onx = to_onnx(model, initial_types=initial_types(features), options=options,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    return canonical(onx).SerializeToString()


def session(onnx_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


def feeds(frame: pd.DataFrame, features: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out = {}
    for c in features:
        v = frame[c["name"]].to_numpy()
        out[c["name"]] = (v.astype(object) if c["type"] == "categorical" else v.astype(np.float32)).reshape(-1, 1)
    return out


def check_parity(model: Pipeline, onnx_bytes: bytes, frame: pd.DataFrame, features: list[dict[str, Any]],
                 classifier: bool, tolerance: float) -> Parity:
    sess = session(onnx_bytes)
    outputs = sess.run(None, feeds(frame, features))
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, outputs))
    if classifier:
        want_label = model.predict(frame)
        label = got.get("label", outputs[0]).reshape(-1)
        differ = label.astype(str) != want_label.astype(str)
        diff = 0.0
        final = model.steps[-1][1]
        if hasattr(final, "predict_proba") and "probabilities" in got:
            want_p = model.predict_proba(frame)
            diff = float(np.max(np.abs(got["probabilities"] - want_p)))
            # a tie between classes (e.g. 10 of 20 trees each way) may be broken either way:
            # only a label whose probability is really lower counts as a mismatch
            classes = [str(c) for c in final.classes_]
            idx = {c: i for i, c in enumerate(classes)}
            rows = np.arange(len(frame))
            p_want = want_p[rows, [idx[str(v)] for v in want_label]]
            p_got = want_p[rows, [idx.get(str(v), 0) for v in label]]
            differ &= (p_want - p_got) > tolerance
        return Parity(len(frame), int(np.sum(differ)), diff, tolerance)
    want = model.predict(frame).reshape(-1)
    pred = outputs[0].reshape(-1).astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(want))))  # relative to the target's magnitude
    return Parity(len(frame), 0, float(np.max(np.abs(pred - want))) / scale, tolerance)
