"""The Job that snapshots, validates and profiles a Dataset (runs mlops_operator.data.snapshot)."""

from __future__ import annotations

import json
from typing import Any

from ..api.dataset import DatasetSpec
from ..settings import Settings
from .names import child_name
from .common import CONTAINER_SECURITY, POD_SECURITY, labels, owner_reference, pod_options
from .store import StoreModeUnsupported, store_env, store_volumes

SOURCE_MOUNT = "/source"
GENERATION_ANNOTATION = "mlops.dev/generation"
DEFAULT_DEADLINE = DatasetSpec.model_fields["snapshot_deadline_seconds"].default


def job_name(dataset: dict[str, Any], trigger: str) -> str:
    return child_name(dataset, f"snap-{trigger}")


def snapshot_job(dataset: dict[str, Any], trigger: str, frozen_schema: list[dict[str, Any]] | None,
                 s: Settings) -> dict[str, Any]:
    meta, spec = dataset["metadata"], dataset["spec"]
    name = job_name(dataset, trigger)
    doc = {"name": meta["name"], "spec": spec, "frozenSchema": frozen_schema}
    lab = labels("dataset-snapshot", "snapshot", meta["name"], {"mlops.dev/dataset": meta["name"],
                                                                 "mlops.dev/trigger": trigger})
    vols, smounts = store_volumes(s)
    volumes = [*vols, {"name": "tmp", "emptyDir": {}}]
    mounts = [*smounts, {"name": "tmp", "mountPath": "/tmp"}]
    src = spec["source"]
    if src["type"] == "file":
        claim = (src.get("file") or {}).get("claimName")
        if claim and (claim != s.store_claim or s.store_is_s3):
            volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
            mounts.append({"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True})
            source_root = SOURCE_MOUNT
        elif s.store_is_s3:
            raise StoreModeUnsupported(
                "a file source without spec.source.file.claimName reads the artifact store's volume, which "
                "an s3:// store does not have: name the PVC that holds the file in claimName")
        else:
            source_root = s.store_mount
    elif src["type"] == "capture":
        # the captures live in the artifact store (captures/<service>/), read through --store
        source_root = s.store_mount
    else:
        source_root = SOURCE_MOUNT
    pod_extra, resources = pod_options(spec.get("job"))
    container = {
        "name": "snapshot",
        "image": s.runtime_image,
        "command": ["python", "-m", "mlops_operator.data.snapshot", "--spec-env", "MLOPS_SNAPSHOT_SPEC",
                    "--store", s.store_uri(meta["namespace"]), "--source-root", source_root]
                   # the operator's setting (MLOPS_HTTP_SOURCE_ALLOW_PRIVATE), never the Dataset's
                   + (["--allow-private-http"] if s.http_source_allow_private else []),
        "env": [{"name": "MLOPS_SNAPSHOT_SPEC", "value": json.dumps(doc, separators=(",", ":"))},
                {"name": "PYTHONUNBUFFERED", "value": "1"}, *store_env(s)],
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": lab,
                     # the spec the Job snapshots: its result is reported for this generation
                     "annotations": {GENERATION_ANNOTATION: str(meta.get("generation") or 0)},
                     "ownerReferences": [owner_reference(dataset)]},
        "spec": {
            "backoffLimit": 1,
            # a stalled source fails the snapshot instead of holding the Dataset forever
            "activeDeadlineSeconds": int(spec.get("snapshotDeadlineSeconds") or DEFAULT_DEADLINE),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": lab},
                "spec": {"restartPolicy": "Never", "securityContext": POD_SECURITY, "volumes": volumes,
                         "containers": [container], "automountServiceAccountToken": False, **pod_extra},
            },
        },
    }


def deadline_exceeded(job: dict[str, Any]) -> str | None:
    """The message for a snapshot Job that Kubernetes stopped at its activeDeadlineSeconds, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True" and c.get("reason") == "DeadlineExceeded":
            return (f"the snapshot Job exceeded snapshotDeadlineSeconds="
                    f"{(job.get('spec') or {}).get('activeDeadlineSeconds')} and was stopped: the source is "
                    "stalled or too slow (raise spec.snapshotDeadlineSeconds for a large source)")
    return None
