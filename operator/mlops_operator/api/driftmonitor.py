"""DriftMonitor: watch a served model's inputs and accuracy, and retrain when they degrade."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import DURATION_PATTERN, NAME_PATTERN, SHA256_PATTERN, ApiModel, Condition, cel, validations
from .trainingrun import TrainingRunSpec

DriftMethod = Literal["auto", "ks", "wasserstein", "psi", "jensenshannon", "chisquare", "ztest"]


class FeatureOverride(ApiModel):
    method: DriftMethod = Field("auto", description="Statistical test or distance for this feature.")
    threshold: float | None = Field(None, ge=0.0, description="Drift threshold (p-value for tests, "
                                                              "distance for distances).")


class Reference(ApiModel):
    dataset: str | None = Field(None, pattern=NAME_PATTERN, description="Reference Dataset; default: the one the "
                                                                       "served model was trained on.")
    digest: str | None = Field(None, pattern=SHA256_PATTERN, description="Reference version; default: the served "
                                                                         "model's training version.")


class Window(ApiModel):
    duration: str = Field("10m", pattern=DURATION_PATTERN, description="Length of an evaluation window.")
    min_samples: int = Field(200, ge=1, description="Fewer rows than this: 'insufficient samples', no decision.")


class AccuracyPolicy(ApiModel):
    metric: Literal["accuracy", "f1", "roc_auc", "rmse", "mae"] = Field("accuracy")
    threshold: float = Field(description="Degraded below this (above for rmse/mae).")
    min_samples: int = Field(100, ge=1, description="Labelled rows needed for a decision.")


class Retrain(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("!self.enabled || has(self.template)", "retrain.template is required when retrain is enabled"),
    )}

    enabled: bool = Field(False, description="Create a TrainingRun when drift or accuracy breach thresholds.")
    cooldown: str = Field("1h", pattern=DURATION_PATTERN, description="Least time between two retrainings.")
    refresh_dataset: bool = Field(True, description="Snapshot the Dataset first (new data has arrived).")
    template: TrainingRunSpec | None = Field(None, description="Spec of the TrainingRun to create.")


class DriftMonitorSpec(ApiModel):
    inference_service: str = Field(pattern=NAME_PATTERN, description="InferenceService to watch.")
    reference: Reference = Field(default_factory=Reference)
    interval: str = Field("1m", pattern=DURATION_PATTERN, description="How often to evaluate.")
    window: Window = Field(default_factory=Window)
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="Dataset drift when at least this share of "
                                                               "features drift (Evidently's default 0.5).")
    features: dict[str, FeatureOverride] | None = Field(None, description="Per-feature method/threshold overrides.")
    accuracy: AccuracyPolicy | None = Field(None, description="Thresholds on labelled feedback.")
    retrain: Retrain = Field(default_factory=Retrain)


class FeatureDrift(ApiModel):
    name: str
    method: str
    score: float
    threshold: float
    drifted: bool


class DriftMonitorStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Drifted, Degraded.")
    last_evaluation_time: str | None = None
    samples: int | None = None
    features: list[FeatureDrift] = Field(default_factory=list)
    drift_share: float | None = None
    dataset_drift: bool | None = None
    accuracy: float | None = None
    accuracy_trend: list[float] = Field(default_factory=list, description="Last windows' accuracy, newest last.")
    last_retrain_time: str | None = None
    last_training_run: str | None = None
    message: str | None = None
    last_scrape_time: str | None = None
    serving_model_version: str | None = Field(None, description="Version whose traffic and reference are compared.")
    window_start: str | None = None
    window_rows: int | None = Field(None, description="Rows in the window being filled.")
    labelled_samples: int | None = Field(None, description="Feedback labels in the last evaluated window.")
    retrain_count: int | None = None
    retrain: dict | None = Field(None, description="The retraining in progress or the last one: phase, reason, run.",
                                 json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
