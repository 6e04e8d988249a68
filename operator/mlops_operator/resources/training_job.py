"""The ConfigMap holding a TrainingRun's resolved spec and the Job that runs the trainer."""

from __future__ import annotations

import json
from typing import Any

from ..api.trainingrun import TrainingRunSpec
from ..settings import Settings
from .names import child_name
from .common import CONTAINER_SECURITY, POD_SECURITY, labels, owner_reference, pod_options
from .store import store_env, store_volumes

SPEC_MOUNT = "/etc/mlops/run"


def job_name(run: dict[str, Any]) -> str:
    return child_name(run, "train")


def spec_configmap(run: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    meta = run["metadata"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": child_name(run, "train-spec"), "namespace": meta["namespace"],
                     "labels": labels("training", "training-spec", meta["name"],
                                      {"mlops.dev/training-run": meta["name"]}),
                     "ownerReferences": [owner_reference(run)]},
        "data": {"spec.json": json.dumps(doc, separators=(",", ":"), sort_keys=True)},
    }


def training_job(run: dict[str, Any], s: Settings) -> dict[str, Any]:
    meta, spec = run["metadata"], run["spec"]
    name = job_name(run)
    lab = labels("training", "trainer", meta["name"], {"mlops.dev/training-run": meta["name"],
                                                        "mlops.dev/model": spec["modelName"]})
    typed = TrainingRunSpec.model_validate(spec)  # the API's defaults, from one place
    vols, mounts = store_volumes(s)
    pod_extra, resources = pod_options(spec.get("job"))
    container = {
        "name": "trainer",
        "image": s.runtime_image,
        "command": ["python", "-m", "mlops_operator.training", "--spec", f"{SPEC_MOUNT}/spec.json",
                    "--store", s.store_uri(meta["namespace"])],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                # joblib/loky and BLAS write temp files; the root filesystem is read-only
                {"name": "JOBLIB_TEMP_FOLDER", "value": "/tmp"},
                {"name": "OMP_NUM_THREADS", "value": str(typed.tuning.parallelism)}, *store_env(s)],
        "volumeMounts": [*mounts, {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources:
        container["resources"] = resources
    job_spec: dict[str, Any] = {
        "backoffLimit": typed.backoff_limit,
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {"labels": lab},
            "spec": {"restartPolicy": "Never", "securityContext": POD_SECURITY,
                     "volumes": [*vols, {"name": "spec", "configMap": {"name": name + "-spec"}},
                                 {"name": "tmp", "emptyDir": {}}],
                     "containers": [container], "automountServiceAccountToken": False, **pod_extra},
        },
    }
    if spec.get("activeDeadlineSeconds"):
        job_spec["activeDeadlineSeconds"] = int(spec["activeDeadlineSeconds"])
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": lab,
                         "ownerReferences": [owner_reference(run)]},
            "spec": job_spec}
