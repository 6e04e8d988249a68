"""InferenceService: serve a model version over the Open Inference Protocol (V2), safely rolled out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import NAME_PATTERN, ApiModel, Condition, PodOptions, cel, each, validations


class ServerOptions(ApiModel):
    """Settings of the inference server in each serving pod."""

    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads per replica.")
    max_batch_size: int = Field(1024, ge=1, le=100000, description="Most rows in one request.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body (bigger: HTTP 413).")


class MonitoringOptions(ApiModel):
    """Deprecated and ignored: each serving pod keeps, per feature, the histogram its DriftMonitors
    judge drift on (bounded by the model, no option), and no longer samples raw rows."""

    reservoir_size: int = Field(1000, ge=0, le=100000, description="Ignored (the pods no longer sample raw rows); "
                                                                   "accepted so that existing manifests apply.")
    window_seconds: int = Field(300, ge=10, description="Ignored; accepted so that existing manifests apply.")


class CanaryOptions(ApiModel):
    """A second Deployment of the new version behind the same Service, its share of traffic
    stepped up while its error rate and latency stay within bounds, else rolled back."""

    steps: list[int] = Field(default_factory=lambda: [25, 50], min_length=1, max_length=10,
                             description="Traffic shares in percent (approximated by the replica share).",
                             json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 99},
                                                **each("Canary share of traffic at this step, in percent.")})
    pause_seconds: int = Field(30, ge=1, le=86400, description="Observation time per step.")
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0, description="Most share of failed (non-2xx) canary requests "
                                                                   "above the stable version's rate.")
    max_latency_p99_ms: float | None = Field(None, gt=0, description="Highest p99 latency of the canary, in "
                                                                          "milliseconds; default: no limit.")
    min_requests: int = Field(20, ge=0, description="Requests the canary must answer per step before a verdict.")
    ready_timeout_seconds: int = Field(120, ge=10, description="Rolled back when not ready within this time.")


class RolloutOptions(ApiModel):
    """How a new model version replaces the one being served."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.strategy != 'canary' || has(self.canary)", "rollout.canary is required for strategy canary"),
    )}

    strategy: Literal["rolling", "canary"] = Field("rolling", description="rolling: replace pods one by one, each "
                                                                          "new one ready first; canary: see canary.")
    max_surge: int = Field(1, ge=0, description="Extra pods during a rollout.")
    max_unavailable: int = Field(0, ge=0, description="Pods that may be unavailable during a rollout.")
    canary: CanaryOptions | None = None


class Autoscaling(ApiModel):
    """Passed to a HorizontalPodAutoscaler (autoscaling/v2) of the predictor Deployment."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas"),
    )}

    min_replicas: int = Field(1, ge=1, description="Fewest serving pods.")
    max_replicas: int = Field(ge=1, le=1000, description="Most serving pods.")
    metrics: list[dict] | None = Field(None, description="autoscaling/v2 MetricSpec list; default: 70% CPU.",
                                       json_schema_extra={"items": {"type": "object",
                                                                    "x-kubernetes-preserve-unknown-fields": True},
                                                          **each("An autoscaling/v2 MetricSpec, e.g. {type: Resource, "
                                                                 "resource: {name: cpu, target: {type: Utilization, "
                                                                 "averageUtilization: 70}}}.")})
    behavior: dict | None = Field(None, description="autoscaling/v2 HorizontalPodAutoscalerBehavior.",
                                  json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class CaptureOptions(ApiModel):
    """Payload capture: a share of requests, with the labels sent back for them, written to the
    artifact store, where a Dataset with `source.type: capture` reads them (serving/capture.py)."""

    sample_rate: float = Field(0.1, gt=0.0, le=1.0, description="Share of requests captured.")
    exclude_columns: list[str] = Field(default_factory=list, max_length=500,
                                       description="Input columns never written (privacy).",
                                       json_schema_extra=each("An input column name."))
    max_buffer_rows: int = Field(20_000, ge=100, le=10_000_000,
                                 description="Rows waiting to be written at most per pod; past it rows are dropped "
                                             "and counted (serving never waits on the store).")
    flush_seconds: int = Field(30, ge=1, le=3600, description="Write what waits at least this often.")


class InferenceServiceSpec(ApiModel):
    """Which model to serve and how."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("has(self.alias) != has(self.version)", "set exactly one of alias or version"),
    )}

    model: str = Field(pattern=NAME_PATTERN, max_length=50, description="Model name (label mlops.dev/model).")
    alias: str | None = Field(None, pattern=NAME_PATTERN, max_length=63,
                              description="Serve the version holding this alias (e.g. production); follows it.")
    version: int | None = Field(None, ge=1, description="Serve this version number (pinned).")
    replicas: int = Field(1, ge=0, le=100, description="Serving pods (ignored when autoscaling is set).")
    autoscaling: Autoscaling | None = Field(None, description="Scale with a HorizontalPodAutoscaler.")
    server: ServerOptions = Field(default_factory=ServerOptions)
    monitoring: MonitoringOptions = Field(default_factory=MonitoringOptions)
    rollout: RolloutOptions = Field(default_factory=RolloutOptions)
    pod: PodOptions | None = Field(None, description="Resources and scheduling of the serving pods.")
    capture: CaptureOptions | None = Field(None, description="Payload capture, off unless set.")


class InferenceServiceStatus(ApiModel):
    """Observed state of an InferenceService, written by the operator: the version served, its
    endpoint, replicas and rollouts."""

    observed_generation: int | None = Field(None, description="The metadata.generation of the spec this status "
                                                              "describes.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded.")
    url: str | None = Field(None, description="In-cluster URL of the V2 endpoint.")
    model_version: str | None = Field(None, description="ModelVersion being served.")
    previous_model_version: str | None = Field(None, description="ModelVersion served before the last rollout.")
    ready_replicas: int = Field(0, description="Serving pods that are ready.")
    replicas: int = Field(0, description="Serving pods wanted (spec.replicas).")
    last_rollout_time: str | None = Field(None, description="When the last rollout to a new version finished "
                                                            "(RFC 3339).")
    failed_model_version: str | None = Field(None, description="A version that failed to roll out (not retried "
                                                               "until the alias or pin changes).")
    failure_message: str | None = Field(None, description="Why failedModelVersion failed to roll out.")
    canary: dict | None = Field(None, description="The canary in progress: version, step, replicas, last verdict.",
                                json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    last_canary: dict | None = Field(None, description="How the last canary ended (promoted or rolledBack, why).",
                                     json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
