"""ModelVersion: an immutable, registered model artifact with lineage, and its aliases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import NAME_PATTERN, SHA256_PATTERN, ApiModel, Condition, cel, validations
from .trainingrun import Scalar


class Artifact(ApiModel):
    uri: str = Field(description="Where model.onnx and model.json live (file:// or s3://).", min_length=1)
    digest: str = Field(pattern=SHA256_PATTERN, description="sha256 of model.onnx; checked before every use.")
    format: Literal["onnx"] = Field("onnx", description="Only ONNX is ever loaded (never pickle).")


class Lineage(ApiModel):
    training_run: str | None = None
    dataset: str | None = None
    dataset_digest: str | None = None
    estimator: str | None = None
    params: dict[str, Scalar] | None = None
    trainer_version: str | None = None


class ModelVersionSpec(ApiModel):
    """A registered version. Everything but `aliases` is immutable."""

    model: str = Field(pattern=NAME_PATTERN, max_length=50, description="Model name (label mlops.dev/model).",
                       json_schema_extra=validations(cel("self == oldSelf", "model is immutable")))
    version: int = Field(ge=1, description="Version number, monotonic per model.",
                         json_schema_extra=validations(cel("self == oldSelf", "version is immutable")))
    artifact: Artifact = Field(json_schema_extra=validations(cel("self == oldSelf", "artifact is immutable")))
    lineage: Lineage = Field(default_factory=Lineage,
                             json_schema_extra=validations(cel("self == oldSelf", "lineage is immutable")))
    metrics: dict[str, float] = Field(default_factory=dict, description="Test-set metrics.",
                                      json_schema_extra=validations(cel("self == oldSelf", "metrics are immutable")))
    aliases: list[str] = Field(default_factory=list, max_length=20,
                               description="Aliases this version holds (e.g. production, champion); the operator "
                                           "keeps each alias on at most one version of a model.")


class AliasEvent(ApiModel):
    alias: str
    action: Literal["assigned", "removed"]
    time: str
    by: str = Field(description="Who or what moved it: a user, or TrainingRun/<name>.")
    reason: str = ""


class ModelVersionStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Degraded.")
    stage: Literal["candidate", "aliased", "archived"] | None = None
    alias_history: list[AliasEvent] = Field(default_factory=list)
    served_by: list[str] = Field(default_factory=list, description="InferenceServices serving this version.")
    verified_at: str | None = None
    held_aliases: list[str] = Field(default_factory=list, description="Aliases as of the last reconcile "
                                                                      "(what the history was recorded against).")
    verify_job: str | None = Field(None, description="The digest-verification Job running now.")
    last_verify_trigger: str | None = None
    message: str | None = None
