"""The per-namespace PVC that holds a namespace's artifact store."""

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


def store_volume(s: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, volumeMount) of the store for a workload pod."""
    return ({"name": "store", "persistentVolumeClaim": {"claimName": s.store_claim}},
            {"name": "store", "mountPath": s.store_mount})
