"""Base model and shared types for every custom resource's spec and status.

Field names are snake_case in Python and camelCase on the wire (Kubernetes convention);
`extra="forbid"` so a typo in code fails loudly in tests (the API server prunes unknown
fields from what users apply, so users see `kubectl apply --validate` warnings instead).

Documentation: `kubectl explain` shows a model's docstring and its fields' descriptions
(`Field(description=...)`; `each(...)` for the elements of a list or map), so they are written
for users, in the style of the Kubernetes API reference: what the field means, its units, its
effect. Notes for developers go in `#` comments, never in an API model's docstring.
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
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"

#: `json_schema_extra` key (see `each`) that schema.py turns into the description of a list's
#: items or a map's values; it never reaches the CRD itself.
ITEM_DESCRIPTION = "x-item-description"


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


def each(description: str) -> dict[str, Any]:
    """`json_schema_extra` describing every item of a list field or every value of a map field."""
    return {ITEM_DESCRIPTION: description}


class Condition(ApiModel):
    """A status condition in the Kubernetes convention (metav1.Condition)."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready, Validated, Succeeded, Drifted.")
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    reason: str = Field("", description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details about the last transition.")
    last_transition_time: str = Field(description="When the condition last changed status (RFC 3339).")
    observed_generation: int | None = Field(None, description="metadata.generation the condition was set for.")


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(description="Name of the object in the same namespace.", pattern=NAME_PATTERN, max_length=253)


class Toleration(ApiModel):
    """The pod tolerates any taint that matches the triple <key,value,effect> using the matching
    operator (as in a Kubernetes pod spec)."""

    key: str | None = Field(None, description="Taint key the toleration applies to; empty matches all keys (then "
                                                "operator must be Exists).")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists matches any value of the key, "
                                                                          "Equal only the given value; default: "
                                                                          "Equal.")
    value: str | None = Field(None, description="Taint value the toleration matches (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects.")
    toleration_seconds: int | None = Field(None, description="For effect NoExecute: seconds the pod stays bound "
                                                             "after the taint appears; default: forever.")


class ResourceRequirements(ApiModel):
    """CPU and memory for the pods the operator creates (Kubernetes quantities, e.g. 500m, 1Gi)."""

    requests: dict[str, str] | None = Field(None, description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}.",
                                            json_schema_extra=each("Quantity requested of this resource."))
    limits: dict[str, str] | None = Field(None, description="Maximum resources, e.g. {cpu: '2', memory: 4Gi}.",
                                          json_schema_extra=each("Most of this resource the pod may use."))


class PodOptions(ApiModel):
    """Scheduling and resources of a workload pod (a Job or the serving Deployment)."""

    resources: ResourceRequirements | None = Field(None, description="Resource requests and limits.")
    node_selector: dict[str, str] | None = Field(None, description="Node labels the pod must match.",
                                                 json_schema_extra=each("Value the node's label must have."))
    tolerations: list[Toleration] | None = Field(None, description="Taints the pod tolerates.")
    service_account_name: str | None = Field(None, description="ServiceAccount the pod runs as.")
