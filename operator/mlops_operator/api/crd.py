"""CustomResourceDefinitions generated from the pydantic models (`make crds`).

The models are the single source of truth; `crds/*.yaml` is generated from them and checked
in, and a unit test fails when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import dataset, driftmonitor, inferenceservice, modelversion, trainingrun
from .base import GROUP, VERSION, cel
from .schema import openapi_schema

CATEGORY = "mlops"

#: The descriptions Kubernetes' own types give these two fields (`kubectl explain pod.apiVersion`).
API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this from "
    "the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    #: what `kubectl explain <kind>` shows; spec and status are described by their models' docstrings
    description: str
    columns: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    #: CEL rules on the whole spec of this kind only (not where its model is embedded)
    spec_rules: tuple[dict[str, str], ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _ready(extra: tuple[dict[str, Any], ...] = ()) -> tuple[dict[str, Any], ...]:
    return (
        *extra,
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Reason", "type": "string", "priority": 1,
         "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )


KINDS: tuple[Kind, ...] = (
    Kind("Dataset", "datasets", ("mlds",), dataset.DatasetSpec, dataset.DatasetStatus,
         "A versioned, validated snapshot of training data from a source.",
         _ready(({"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                 {"name": "Rows", "type": "integer", "jsonPath": ".status.latestValid.rows"},
                 {"name": "Version", "type": "string", "jsonPath": ".status.latestValid.id"},
                 {"name": "Validated", "type": "string",
                  "jsonPath": '.status.conditions[?(@.type=="Validated")].status'},
                 {"name": "Source", "type": "string", "priority": 1, "jsonPath": ".spec.source.type"}))),
    Kind("TrainingRun", "trainingruns", ("tr",), trainingrun.TrainingRunSpec, trainingrun.TrainingRunStatus,
         "One training Job: tuning, evaluation and ONNX export, with tracked parameters and metrics.",
         _ready(({"name": "Model", "type": "string", "jsonPath": ".spec.modelName"},
                 {"name": "Estimator", "type": "string", "jsonPath": ".spec.estimator.type"},
                 {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                 {"name": "Metric", "type": "string", "jsonPath": ".status.metric"},
                 {"name": "Score", "type": "number", "jsonPath": ".status.score"},
                 {"name": "Version", "type": "string", "jsonPath": ".status.modelVersion"},
                 {"name": "Trials", "type": "integer", "priority": 1, "jsonPath": ".status.trialCount"})),
         spec_rules=(cel("self == oldSelf", "a TrainingRun's spec is immutable; create a new TrainingRun"),)),
    Kind("ModelVersion", "modelversions", ("mv",), modelversion.ModelVersionSpec, modelversion.ModelVersionStatus,
         "An immutable registered model version (ONNX artifact, digest, lineage) and its aliases.",
         _ready(({"name": "Model", "type": "string", "jsonPath": ".spec.model"},
                 {"name": "Version", "type": "integer", "jsonPath": ".spec.version"},
                 {"name": "Aliases", "type": "string", "jsonPath": ".spec.aliases"},
                 {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
                 {"name": "Run", "type": "string", "priority": 1, "jsonPath": ".spec.lineage.trainingRun"}))),
    Kind("InferenceService", "inferenceservices", ("mlis",), inferenceservice.InferenceServiceSpec,
         inferenceservice.InferenceServiceStatus,
         "Serves a model version over the Open Inference Protocol (V2) with ONNX Runtime.",
         _ready(({"name": "Model", "type": "string", "jsonPath": ".spec.model"},
                 {"name": "Serving", "type": "string", "jsonPath": ".status.modelVersion"},
                 {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
                 {"name": "URL", "type": "string", "priority": 1, "jsonPath": ".status.url"}))),
    Kind("DriftMonitor", "driftmonitors", ("dm",), driftmonitor.DriftMonitorSpec, driftmonitor.DriftMonitorStatus,
         "Watches a served model's input drift and accuracy, and retrains when they degrade.",
         _ready(({"name": "Service", "type": "string", "jsonPath": ".spec.inferenceService"},
                 {"name": "Drifted", "type": "string",
                  "jsonPath": '.status.conditions[?(@.type=="Drifted")].status'},
                 {"name": "Share", "type": "number", "jsonPath": ".status.driftShare"},
                 {"name": "Accuracy", "type": "number", "jsonPath": ".status.accuracy"},
                 {"name": "Last", "type": "date", "priority": 1, "jsonPath": ".status.lastEvaluationTime"}))),
)


#: The object's name is a label value on everything made for it (`mlops.dev/dataset=<name>`) and
#: part of its children's names: at most 63 characters, a DNS label (no dots).
NAME_RULE = cel("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                "metadata.name must be a DNS label: at most 63 lowercase letters, digits and '-', starting and "
                "ending with a letter or digit (it is used as a label value and in the names of its Jobs and "
                "Deployments)", reason="FieldValueInvalid")


def kind(name: str) -> Kind:
    return next(k for k in KINDS if k.kind == name or k.plural == name)


def crd(k: Kind) -> dict[str, Any]:
    spec_schema = openapi_schema(k.spec, document_defaults=True)
    if k.spec_rules:
        spec_schema["x-kubernetes-validations"] = [*spec_schema.get("x-kubernetes-validations", []), *k.spec_rules]
    status_schema = openapi_schema(k.status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": k.crd_name, "labels": {"app.kubernetes.io/part-of": "mlops-operator"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": k.kind, "listKind": f"{k.kind}List", "plural": k.plural, "singular": k.singular,
                      "shortNames": list(k.short_names), "categories": [CATEGORY]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(k.columns),
                "schema": {"openAPIV3Schema": {
                    "type": "object", "description": k.description,
                    "required": ["spec"],
                    "x-kubernetes-validations": [NAME_RULE],
                    "properties": {
                        "apiVersion": {"type": "string", "description": API_VERSION_DESCRIPTION},
                        "kind": {"type": "string", "description": KIND_DESCRIPTION},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                }},
            }],
        },
    }


HEADER = "# Generated by `make crds` from operator/mlops_operator/api; do not edit.\n"


def render_all() -> dict[str, str]:
    """File name -> YAML text of every CRD, and the kustomization that lists them."""
    out = {f"{k.crd_name}.yaml": HEADER + yaml.safe_dump(crd(k), sort_keys=False, width=120) for k in KINDS}
    out["kustomization.yaml"] = HEADER + yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": sorted(out)},
        sort_keys=False)
    return out


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in render_all().items():
        p = directory / name
        p.write_text(text)
        out.append(p)
    return out


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "crds")
    for p in write(target):
        print(p)
