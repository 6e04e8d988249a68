"""InferenceService: serve a model version over the Open Inference Protocol (V2), safely rolled out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import NAME_PATTERN, ApiModel, Condition, PodOptions, cel, validations


class ServerOptions(ApiModel):
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads per replica.")
    max_batch_size: int = Field(1024, ge=1, le=100000, description="Most rows in one request.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body (bigger: HTTP 413).")


class MonitoringOptions(ApiModel):
    reservoir_size: int = Field(1000, ge=0, le=100000, description="Raw rows kept per window for drift tests.")
    window_seconds: int = Field(300, ge=10, description="Length of a statistics window.")


class RolloutOptions(ApiModel):
    max_surge: int = Field(1, ge=0, description="Extra pods during a rollout.")
    max_unavailable: int = Field(0, ge=0, description="Pods that may be unavailable during a rollout.")


class InferenceServiceSpec(ApiModel):
    """Which model to serve and how."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(
        cel("has(self.alias) != has(self.version)", "set exactly one of alias or version"),
    )}

    model: str = Field(pattern=NAME_PATTERN, max_length=50, description="Model name (label mlops.dev/model).")
    alias: str | None = Field(None, pattern=NAME_PATTERN, max_length=63,
                              description="Serve the version holding this alias (e.g. production); follows it.")
    version: int | None = Field(None, ge=1, description="Serve this version number (pinned).")
    replicas: int = Field(1, ge=0, le=100, description="Serving pods.")
    server: ServerOptions = Field(default_factory=ServerOptions)
    monitoring: MonitoringOptions = Field(default_factory=MonitoringOptions)
    rollout: RolloutOptions = Field(default_factory=RolloutOptions)
    pod: PodOptions | None = Field(None, description="Resources and scheduling of the serving pods.")


class InferenceServiceStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded.")
    url: str | None = Field(None, description="In-cluster URL of the V2 endpoint.")
    model_version: str | None = Field(None, description="ModelVersion being served.")
    previous_model_version: str | None = None
    ready_replicas: int = 0
    replicas: int = 0
    last_rollout_time: str | None = None
    failed_model_version: str | None = Field(None, description="A version that failed to roll out (not retried "
                                                               "until the alias or pin changes).")
    failure_message: str | None = None
