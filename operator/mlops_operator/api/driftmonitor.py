"""DriftMonitor: watch a served model's inputs and accuracy, and retrain when they degrade."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import DURATION_PATTERN, NAME_PATTERN, SHA256_PATTERN, ApiModel, Condition, cel, each, validations
from .trainingrun import TrainingRunSpec

DriftMethod = Literal["auto", "ks", "wasserstein", "psi", "jensenshannon", "chisquare", "ztest"]


class FeatureOverride(ApiModel):
    """How drift is measured for one feature, instead of the automatic choice."""

    method: DriftMethod = Field("auto", description="Statistical test or distance for this feature.")
    threshold: float | None = Field(None, ge=0.0, description="Drift threshold: the feature drifts when a test's "
                                                              "p-value is below it, or a distance is above it; "
                                                              "default: the method's usual threshold.")


class Reference(ApiModel):
    """The data the served model's inputs are compared with; default: the Dataset version the
    served model was trained on."""

    dataset: str | None = Field(None, pattern=NAME_PATTERN, description="Reference Dataset; default: the one the "
                                                                       "served model was trained on.")
    digest: str | None = Field(None, pattern=SHA256_PATTERN, description="Reference version; default: the served "
                                                                         "model's training version.")


class Window(ApiModel):
    """The evaluation window: traffic is judged in windows of this length, once they hold
    enough rows."""

    duration: str = Field("10m", pattern=DURATION_PATTERN,
                          description="Length of an evaluation window (a duration such as 10m or 1h30m).")
    min_samples: int = Field(200, ge=1, description="Fewest rows a window needs for a decision; a window with fewer "
                                                     "keeps growing (insufficient samples).")


class AccuracyPolicy(ApiModel):
    """Model quality on labelled feedback (ground truth sent to the serving endpoint), judged per
    window."""

    metric: Literal["accuracy", "f1", "roc_auc", "rmse", "mae", "hit_rate", "ndcg"] = Field(
        "accuracy", description="accuracy, f1, roc_auc (classification; roc_auc from the binned scores sent "
                                "with feedback), rmse, mae (regression), or hit_rate, ndcg at the model's k "
                                "(a recommender, from its ranking feedback).")
    threshold: float = Field(description="Degraded below this (above for rmse/mae).")
    min_samples: int = Field(100, ge=1, description="Labelled rows needed for a decision.")


class Retrain(ApiModel):
    """Automatic retraining when the model drifts or its accuracy degrades."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("!self.enabled || has(self.template)", "retrain.template is required when retrain is enabled"),
    )}

    enabled: bool = Field(False, description="Create a TrainingRun when drift or accuracy breach thresholds.")
    cooldown: str = Field("1h", pattern=DURATION_PATTERN,
                          description="Least time between two retrainings (a duration such as 30m or 1h).")
    refresh_dataset: bool = Field(True, description="Snapshot the Dataset first (new data has arrived).")
    template: TrainingRunSpec | None = Field(None, description="Spec of the TrainingRun to create; its "
                                                               "dataset.digest is set to the newest valid version.")


class DriftMonitorSpec(ApiModel):
    """Desired monitoring of an InferenceService: what its inputs are compared with, how often,
    the drift and accuracy thresholds, and whether to retrain."""

    inference_service: str = Field(pattern=NAME_PATTERN, description="InferenceService to watch.")
    reference: Reference = Field(default_factory=Reference)
    interval: str = Field("1m", pattern=DURATION_PATTERN,
                          description="How often to collect the serving pods' statistics and check the window (a "
                                      "duration such as 30s or 1m).")
    window: Window = Field(default_factory=Window)
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="Dataset drift when at least this share of "
                                                               "features drift (Evidently's default 0.5).")
    features: dict[str, FeatureOverride] | None = Field(None, description="Per-feature method/threshold overrides, "
                                                                          "by feature name.")
    accuracy: AccuracyPolicy | None = Field(None, description="Thresholds on labelled feedback.")
    retrain: Retrain = Field(default_factory=Retrain)


class FeatureDrift(ApiModel):
    """The drift of one feature in the last evaluated window."""

    name: str = Field(description="Feature name.")
    method: str = Field(description="Statistical test or distance used.")
    score: float = Field(description="The test's p-value, or the distance.")
    threshold: float = Field(description="Threshold the score was compared with.")
    drifted: bool = Field(description="Whether the feature drifted.")
    score_lower: float | None = Field(None, description="Lower end of the interval guaranteed to hold the score "
                                                        "Evidently computes on the raw values (absent: not bounded).")
    score_upper: float | None = Field(None, description="Upper end of that interval.")


class WindowRecord(ApiModel):
    """One evaluated window, as kept in status.history: what a plot of drift and accuracy over
    time needs, next to the retrainings, promotions and rollouts of the same time axis."""

    time: str = Field(description="When the window was evaluated (RFC 3339).")
    samples: int = Field(description="Rows in the window.")
    drift_share: float = Field(description="Share of features that drifted (0 to 1).")
    dataset_drift: bool = Field(description="Whether the window drifted as a whole.")
    accuracy: float | None = Field(None, description="The spec.accuracy metric on the window's labelled feedback "
                                                     "(absent: no labels).")
    model_version: str | None = Field(None, description="Version whose traffic the window holds.")


class DriftMonitorStatus(ApiModel):
    """Observed state of a DriftMonitor, written by the operator: the last evaluation, the window
    being filled, and retraining."""

    observed_generation: int | None = Field(None, description="The metadata.generation of the spec this status "
                                                              "describes.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Drifted, Degraded.")
    last_evaluation_time: str | None = Field(None, description="When the last window was evaluated (RFC 3339).")
    samples: int | None = Field(None, description="Rows in the last evaluated window.")
    features: list[FeatureDrift] = Field(default_factory=list, description="Per-feature drift in the last evaluated "
                                                                           "window.")
    drift_share: float | None = Field(None, description="Share of features that drifted in the last evaluated "
                                                        "window (0 to 1).")
    dataset_drift: bool | None = Field(None, description="Whether the last evaluated window drifted as a whole "
                                                         "(driftShare at least spec.driftShare).")
    accuracy: float | None = Field(None, description="The spec.accuracy metric on the last window's labelled "
                                                     "feedback.")
    accuracy_trend: list[float] = Field(default_factory=list, description="Last windows' accuracy, newest last.",
                                        json_schema_extra=each("The accuracy metric of one window."))
    history: list[WindowRecord] = Field(default_factory=list, description="The last evaluated windows, oldest "
                                                                          "first (at most 48).")
    last_retrain_time: str | None = Field(None, description="When the last retraining started (RFC 3339).")
    last_training_run: str | None = Field(None, description="TrainingRun created by the last retraining.")
    message: str | None = Field(None, description="Summary of the last evaluation, or why there was none.")
    last_scrape_time: str | None = Field(None, description="When the serving pods' statistics were last collected "
                                                           "(RFC 3339).")
    serving_model_version: str | None = Field(None, description="Version whose traffic and reference are compared.")
    window_start: str | None = Field(None, description="When the window being filled started (RFC 3339).")
    window_rows: int | None = Field(None, description="Rows in the window being filled.")
    labelled_samples: int | None = Field(None, description="Feedback labels in the last evaluated window.")
    retrain_count: int | None = Field(None, description="Retrainings started so far.")
    retrain: dict | None = Field(None, description="The retraining in progress or the last one: phase, reason, run.",
                                 json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
