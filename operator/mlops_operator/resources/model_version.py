"""The ModelVersion a successful TrainingRun registers, and the Job that verifies its digest."""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .names import child_name
from .common import CONTAINER_SECURITY, POD_SECURITY, labels, owner_reference
from .store import store_env, store_volumes


def version_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def model_version(run: dict[str, Any], summary: dict[str, Any], version: int) -> dict[str, Any]:
    """Owned by nobody: deleting the run (or cleaning up runs) must never delete a registered model."""
    meta, spec = run["metadata"], run["spec"]
    model = spec["modelName"]
    lineage = {"trainingRun": meta["name"], "dataset": spec["dataset"]["name"],
               "datasetDigest": summary.get("datasetDigest"), "estimator": summary.get("estimator"),
               "params": summary.get("params") or {}, "trainerVersion": summary.get("trainerVersion")}
    return {
        "apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
        "metadata": {"name": version_name(model, version), "namespace": meta["namespace"],
                     "labels": labels("model-version", "model-version", model,
                                      {"mlops.dev/model": model, "mlops.dev/training-run": meta["name"],
                                       # a run re-applied under the same name is another run
                                       "mlops.dev/training-run-uid": meta["uid"]})},
        "spec": {"model": model, "version": version,
                 "artifact": {"uri": summary["uri"], "digest": summary["digest"], "format": "onnx"},
                 "lineage": {k: v for k, v in lineage.items() if v is not None},
                 "metrics": {k: float(v) for k, v in (summary.get("metrics") or {}).items()},
                 "aliases": []},
    }


def verify_job(mv: dict[str, Any], trigger: str, s: Settings) -> dict[str, Any]:
    meta, spec = mv["metadata"], mv["spec"]
    name = child_name(mv, f"verify-{trigger}")
    lab = labels("model-verify", "verifier", meta["name"], {"mlops.dev/model-version": meta["name"]})
    vols, mounts = store_volumes(s, read_only=True)
    container = {
        "name": "verify", "image": s.runtime_image,
        "command": ["python", "-m", "mlops_operator.store.verify", "--store", s.store_uri(meta["namespace"]),
                    "--uri", spec["artifact"]["uri"], "--file", "model.onnx", "--digest", spec["artifact"]["digest"]],
        "env": store_env(s),
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}], "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": lab,
                         "ownerReferences": [owner_reference(mv)]},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 600,
                     "template": {"metadata": {"labels": lab},
                                  "spec": {"restartPolicy": "Never", "securityContext": POD_SECURITY,
                                           "volumes": [*vols, {"name": "tmp", "emptyDir": {}}],
                                           "containers": [container],
                                           "automountServiceAccountToken": False}}}}
