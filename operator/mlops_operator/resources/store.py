"""The artifact store as workload pods see it: the per-namespace PVC (file mode), or the
credentials of an s3:// store from a Secret (s3 mode)."""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .common import labels


def store_claim(namespace: str, s: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": [s.store_access_mode], "resources": {"requests": {"storage": s.store_size}}}
    if s.store_storage_class:
        spec["storageClassName"] = s.store_storage_class
    # not owned by any Dataset: deleting one must never delete every artifact of the namespace
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": s.store_claim, "namespace": namespace,
                         "labels": labels("mlops-store", "artifact-store", s.store_claim)},
            "spec": spec}


def store_volumes(s: Settings, read_only: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) of the store for a workload pod: the namespace's PVC in file mode;
    none in s3 mode, where pods speak to the bucket with store_env's credentials."""
    if s.store_is_s3:
        return [], []
    mount = {"name": "store", "mountPath": s.store_mount, "readOnly": read_only}
    return [{"name": "store", "persistentVolumeClaim": {"claimName": s.store_claim}}], [mount]


#: what a workload pod of an s3:// store reads (store/s3config.py Credentials.from_env)
S3_CREDENTIAL_KEYS = (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_SESSION_TOKEN", True))
#: where an s3:// store keeps its verified downloads in a pod (under the pod's /tmp emptyDir:
#: the root filesystem is read-only)
S3_CACHE = "/tmp/mlops-store-cache"


def store_env(s: Settings) -> list[dict[str, Any]]:
    """Environment of a workload pod for the store: in s3 mode the credentials, by reference to
    the namespace's Secret (the kubelet resolves them; the operator never reads the values, so
    they cannot reach its logs, Events or any status), and the download cache. Nothing in file mode."""
    if not s.store_is_s3:
        return []
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": s.store_secret, "key": key, "optional": optional}}}
            for key, optional in S3_CREDENTIAL_KEYS] + [{"name": "MLOPS_STORE_CACHE", "value": S3_CACHE}]


def needs_claim(s: Settings) -> bool:
    """Whether workloads need the per-namespace PVC (file mode only: s3 mode uses no PVC)."""
    return not s.store_is_s3


class StoreModeUnsupported(ValueError):
    """What the spec asks needs the PVC store (a file source in the store's volume, payload
    capture), and the operator runs with an s3:// store."""
