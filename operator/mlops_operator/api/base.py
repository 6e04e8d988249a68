"""Base model and shared types for every custom resource's spec and status.

Field names are snake_case in Python and camelCase on the wire (Kubernetes convention);
`extra="forbid"` so a typo in code fails loudly in tests (the API server prunes unknown
fields from what users apply, so users see `kubectl apply --validate` warnings instead).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "mlops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Kubernetes names (DNS-1123 subdomain) and label-safe names.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              use_attribute_docstrings=True)

    def to_api(self) -> dict[str, Any]:
        """The wire form: camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry (a CEL rule the API server enforces at apply time)."""
    d = {"rule": rule, "message": message}
    if field_path:
        d["fieldPath"] = field_path
    if reason:
        d["reason"] = reason
    return d


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` for a model or field carrying CEL rules."""
    return {"x-kubernetes-validations": list(rules)}


class Condition(ApiModel):
    """A status condition in the Kubernetes convention (metav1.Condition)."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready, Validated, Succeeded, Drifted.")
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    reason: str = Field("", description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details about the last transition.")
    last_transition_time: str = Field(description="When the condition last changed status (RFC 3339).")
    observed_generation: int | None = Field(None, description="metadata.generation the condition was set for.")


class LocalObjectReference(ApiModel):
    name: str = Field(description="Name of the object in the same namespace.", pattern=NAME_PATTERN, max_length=253)


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class ResourceRequirements(ApiModel):
    """CPU and memory for the pods the operator creates (Kubernetes quantities, e.g. 500m, 1Gi)."""

    requests: dict[str, str] | None = Field(None, description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, str] | None = Field(None, description="Maximum resources, e.g. {cpu: '2', memory: 4Gi}.")


class PodOptions(ApiModel):
    """Scheduling and resources of a workload pod (a Job or the serving Deployment)."""

    resources: ResourceRequirements | None = Field(None, description="Resource requests and limits.")
    node_selector: dict[str, str] | None = Field(None, description="Node labels the pod must match.")
    tolerations: list[Toleration] | None = Field(None, description="Taints the pod tolerates.")
    service_account_name: str | None = Field(None, description="ServiceAccount the pod runs as.")
