"""Write a trained model into the store as `model.onnx` + `model.json` (see store.model_manifest).

The reference distribution in model.json comes from the Dataset version's profile (the same
bins the drift monitor compares live traffic on) plus the model's own predictions on the test
split, so prediction drift has a baseline too.
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..store.model_manifest import Feature, ModelManifest, Output, Reference, ReferenceColumn
from ..store.store import ArtifactStore, sha256_file

#: positive-class score bins of binary classifiers (inner edges -> 10 bins)
SCORE_EDGES = [round(0.1 * i, 1) for i in range(1, 10)]


def trainer_version() -> str:
    """The libraries a model's bytes depend on: the same spec on the same dataset version gives
    the same ONNX digest under the same trainer version."""
    import onnx
    import scipy
    import sklearn
    import skl2onnx

    return (f"mlops-operator {__version__} (scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
            f"onnx {onnx.__version__}, numpy {np.__version__}, scipy {scipy.__version__})")


def feature_inputs(features: list[dict[str, Any]]) -> list[Feature]:
    return [Feature(name=c["name"], type=c["type"], datatype="BYTES" if c["type"] == "categorical" else "FP32",
                    nullable=bool(c.get("nullable", True))) for c in features]


def reference_of(profile: dict[str, Any], features: list[dict[str, Any]], prediction: ReferenceColumn | None,
                 target: str, dataset: str, digest: str) -> Reference:
    cols: dict[str, ReferenceColumn] = {}
    pcols = profile.get("columns") or {}
    for c in features:
        info = pcols.get(c["name"]) or {}
        if c["type"] == "numeric" and info.get("binEdges") is not None:
            cols[c["name"]] = ReferenceColumn(type="numeric", bin_edges=info["binEdges"], bin_counts=info["binCounts"],
                                              nulls=info.get("nulls", 0), std=info.get("std"),
                                              histogram=info.get("histogram"))
        elif info.get("categories") is not None:
            cols[c["name"]] = ReferenceColumn(type=c["type"], categories=info["categories"],
                                              other_count=info.get("otherCount", 0), nulls=info.get("nulls", 0))
    label = None
    if profile.get("label", {}).get("column") == target:
        label = ReferenceColumn(type="categorical", categories={str(k): int(v) for k, v in
                                                                profile["label"]["distribution"].items()})
    return Reference(rows=int(profile.get("rows", 0)), dataset=dataset, dataset_digest=digest, columns=cols,
                     prediction=prediction, label=label)


def prediction_reference(task: str, classes: list[str] | None, labels: np.ndarray,
                         proba: np.ndarray | None) -> ReferenceColumn:
    if task == "classification" and classes and len(classes) == 2 and proba is not None:
        counts = np.bincount(np.searchsorted(SCORE_EDGES, proba[:, 1], side="right"), minlength=len(SCORE_EDGES) + 1)
        return ReferenceColumn(type="numeric", bin_edges=SCORE_EDGES, bin_counts=[int(x) for x in counts])
    if task == "classification":
        vals, counts = np.unique(labels.astype(str), return_counts=True)
        return ReferenceColumn(type="categorical", categories={str(v): int(n) for v, n in zip(vals, counts)})
    edges = [float(x) for x in np.unique(np.quantile(labels.astype(float), np.linspace(0, 1, 11)[1:-1]))]
    counts = np.bincount(np.searchsorted(edges, labels.astype(float), side="right"), minlength=len(edges) + 1)
    return ReferenceColumn(type="numeric", bin_edges=edges, bin_counts=[int(x) for x in counts])


def outputs_of(task: str, label_dtype: str, n_classes: int) -> list[Output]:
    if task == "classification":
        return [Output(name="label", datatype=label_dtype, shape=[-1]),
                Output(name="probabilities", datatype="FP32", shape=[-1, n_classes])]
    return [Output(name="variable", datatype="FP32", shape=[-1, 1])]


def write(store: ArtifactStore, manifest: ModelManifest, onnx_bytes: bytes,
          extras: dict[str, bytes] | None = None) -> tuple[str, str, ModelManifest]:
    """Store the bundle; returns (digest, uri, manifest as written). ``extras``: more files of
    the bundle (a ranking model's topk.onnx), whose digests the manifest carries."""
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(onnx_bytes)
        files = {"model.json": Path(tmp) / "model.json"}
        for name, data in (extras or {}).items():
            if name in ("model.onnx", "model.json") or "/" in name:
                raise ValueError(f"extra bundle file name {name!r} is not allowed")
            (Path(tmp) / name).write_bytes(data)
            files[name] = Path(tmp) / name
        manifest = manifest.model_copy(update={"onnx_sha256": sha256_file(onnx_path),
                                               "trainer_version": manifest.trainer_version or trainer_version(),
                                               "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat()})
        (Path(tmp) / "model.json").write_text(json.dumps(manifest.dump(), indent=1))
        digest, uri = store.put_version("models", manifest.model, onnx_path, files)
    return digest, uri, manifest
