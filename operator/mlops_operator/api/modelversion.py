"""ModelVersion: an immutable, registered model artifact with lineage, and its aliases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import NAME_PATTERN, SHA256_PATTERN, ApiModel, Condition, cel, each, validations
from .trainingrun import Scalar


class Artifact(ApiModel):
    """The model file in the artifact store. Immutable."""

    uri: str = Field(description="Where model.onnx and model.json live (file:// or s3://).", min_length=1)
    digest: str = Field(pattern=SHA256_PATTERN, description="sha256 of model.onnx; checked before every use.")
    format: Literal["onnx"] = Field("onnx", description="Only ONNX is ever loaded (never pickle).")


class Lineage(ApiModel):
    """Where the version comes from: the run, data and settings that produced it. Immutable."""

    training_run: str | None = Field(None, description="TrainingRun that trained it.")
    dataset: str | None = Field(None, description="Dataset it was trained on.")
    dataset_digest: str | None = Field(None, description="sha256 of the Dataset version it was trained on.")
    estimator: str | None = Field(None, description="Estimator type (scikit-learn class name).")
    params: dict[str, Scalar] | None = Field(None, description="Hyperparameters of the final model, fixed and tuned.",
                                             json_schema_extra=each("Value of the named parameter."))
    trainer_version: str | None = Field(None, description="Version of the trainer that produced it.")


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
                                      json_schema_extra={**validations(cel("self == oldSelf", "metrics are immutable")),
                                                         **each("Value of the named metric, e.g. roc_auc.")})
    aliases: list[str] = Field(default_factory=list, max_length=20,
                               description="Aliases this version holds (e.g. production, champion); the operator "
                                           "keeps each alias on at most one version of a model.",
                               json_schema_extra=each("An alias: a name that clients and InferenceServices "
                                                      "follow."))


class AliasEvent(ApiModel):
    """An alias this version gained or lost."""

    alias: str = Field(description="The alias.")
    action: Literal["assigned", "removed"] = Field(description="assigned: the version gained the alias; removed: it "
                                                               "lost it.")
    time: str = Field(description="When (RFC 3339).")
    by: str = Field(description="Who or what moved it: a user, or TrainingRun/<name>.")
    reason: str = Field("", description="Why, when known (e.g. the promotion decision).")


class ModelVersionStatus(ApiModel):
    """Observed state of a ModelVersion, written by the operator: its stage, alias history and
    artifact verification."""

    observed_generation: int | None = Field(None, description="The metadata.generation of the spec this status "
                                                              "describes.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Degraded.")
    stage: Literal["candidate", "aliased", "archived"] | None = Field(
        None, description="aliased: holds an alias; archived: lost an alias, or a newer version holds one (archived "
                          "versions beyond the retention limit are deleted unless served); candidate: neither.")
    alias_history: list[AliasEvent] = Field(default_factory=list, description="Every alias this version gained or "
                                                                              "lost, oldest first.")
    served_by: list[str] = Field(default_factory=list, description="InferenceServices serving this version.",
                                 json_schema_extra=each("An InferenceService in the same namespace."))
    verified_at: str | None = Field(None, description="When the artifact's sha256 was last checked (RFC 3339).")
    held_aliases: list[str] = Field(default_factory=list, description="Aliases as of the last reconcile "
                                                                      "(what the history was recorded against).",
                                    json_schema_extra=each("An alias."))
    verify_job: str | None = Field(None, description="The digest-verification Job running now.")
    last_verify_trigger: str | None = Field(None, description="Fingerprint of the digest and the mlops.dev/verify "
                                                              "annotation last verified; change the annotation to "
                                                              "verify again.")
    message: str | None = Field(None, description="Why the last verification failed.")
