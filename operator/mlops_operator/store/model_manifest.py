"""`model.json`: the contract between the trainer (writer), the model server and the operator.

It sits next to `model.onnx` in `models/<model>/<sha256>/` and says everything a reader needs
without importing scikit-learn: the input features (one ONNX input tensor per feature, shape
[N, 1], FP32 for numeric/boolean, BYTES for categorical), the outputs, the classes, the
test-set metrics, the lineage, and the reference distribution of each feature and of the
prediction (bin edges + counts from the training data) that the server counts live traffic
on and the drift monitor compares against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

FORMAT: Final = "mlops.dev/model/v1"


class _M(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Feature(_M):
    name: str
    type: Literal["numeric", "boolean", "categorical"]
    datatype: Literal["FP32", "BYTES"] = Field(description="V2 datatype of the ONNX input tensor.")
    nullable: bool = True


class Output(_M):
    name: str
    datatype: Literal["FP32", "FP64", "INT64", "BYTES"]
    shape: list[int] = Field(description="-1 for the batch dimension.")


class ReferenceHistogram(_M):
    """A numeric feature's reference-anchored histogram (drift/histogram.py): what the serving
    pods count live traffic on, and the drift statistics compare bin for bin."""

    edges: list[float]
    counts: list[int] = Field(description="Values per bin: (-inf, e0), [e0, e1), ..., [e_last, inf).")
    atoms: list[int] = Field(default_factory=list, description="Values equal to each edge.")
    sums: list[float] = Field(description="Per bin, the sum of the values' distances from the bin's finite edge.")
    edges_digest: str | None = None
    projected: bool = Field(False, description="Counted approximately from a histogram on other edges (a "
                                               "reference from another dataset, on the edges the pods count on).")


class ReferenceColumn(_M):
    """Training distribution of one feature (or the prediction): what live counts compare to.

    Numeric: `bin_edges` (k inner edges -> k+1 bins; a value v falls in bin
    searchsorted(edges, v, side="right")) and `bin_counts` (deciles: dashboards, Prometheus, and
    all a model trained before issue 17 has), `histogram` (what drift is judged on), `std`.
    Categorical/boolean/label: `categories` value -> count, `other_count` for the rest.
    """

    type: Literal["numeric", "boolean", "categorical"]
    bin_edges: list[float] | None = None
    bin_counts: list[int] | None = None
    categories: dict[str, int] | None = None
    other_count: int = 0
    nulls: int = 0
    std: float | None = Field(None, description="Population standard deviation (numeric): normalises Wasserstein.")
    histogram: ReferenceHistogram | None = None


class Reference(_M):
    rows: int
    dataset: str | None = None
    dataset_digest: str | None = None
    columns: dict[str, ReferenceColumn] = Field(default_factory=dict)
    prediction: ReferenceColumn | None = Field(None, description="Score of the positive class (binary), the "
                                                                   "predicted label (multiclass) or the predicted "
                                                                   "value (regression) on the test split.")
    label: ReferenceColumn | None = None


class RankingInfo(_M):
    """A recommender's ranking contract (TrainingRun task ranking). The scorer in model.onnx
    scores one (customer, item) pair per row like any classifier or regressor; `topk_file`
    is one graph that takes the context features once ([1, 1] each), the candidate features
    ([N, 1] each), `item_ids` ([N] strings) and `k` ([1] int64) and returns `topk_items`,
    `topk_scores` and `topk_indices`, best first (training/topk.py)."""

    group_column: str
    item_column: str
    k: int
    context_features: list[str] = Field(default_factory=list)
    candidate_features: list[str] = Field(default_factory=list)
    topk_file: str = "topk.onnx"
    topk_sha256: str
    cutoff: str | None = Field(None, description="First instant of the test period.")
    baseline: dict[str, float] = Field(default_factory=dict, description="Popularity baseline's test metrics.")


class ModelManifest(_M):
    format: Literal["mlops.dev/model/v1"] = FORMAT
    model: str
    task: Literal["classification", "regression"]
    estimator: str
    target: str
    inputs: list[Feature]
    outputs: list[Output]
    classes: list[str] | None = Field(None, description="Class labels in the order of the probabilities tensor.")
    onnx_sha256: str
    opset: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict, description="Confusion matrix, per-class metrics.")
    params: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    dataset_digest: str | None = None
    training_run: str | None = None
    trainer_version: str | None = None
    created_at: str | None = None
    reference: Reference | None = None
    ranking: RankingInfo | None = Field(None, description="Set for recommenders; `task` is then the pointwise "
                                                         "scorer's (classification or regression).")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def read_manifest(path: Path | str) -> ModelManifest:
    """Parse and validate a model.json; a ValueError names what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable model.json: {e}") from e
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: format {doc.get('format')!r} is not {FORMAT!r}")
    return ModelManifest.model_validate(doc)
