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


def store_volume(s: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, volumeMount) of the store for a workload pod."""
    return ({"name": "store", "persistentVolumeClaim": {"claimName": s.store_claim}},
            {"name": "store", "mountPath": s.store_mount})


#: what a workload pod of an s3:// store reads (store/s3config.py Credentials.from_env)
S3_CREDENTIAL_KEYS = (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_SESSION_TOKEN", True))


def store_env(s: Settings) -> list[dict[str, Any]]:
    """Environment of a workload pod for the store: in s3 mode the credentials, by reference to
    the namespace's Secret (the kubelet resolves them; the operator never reads the values, so
    they cannot reach its logs, Events or any status). Nothing in file mode."""
    if not s.store_is_s3:
        return []
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": s.store_secret, "key": key, "optional": optional}}}
            for key, optional in S3_CREDENTIAL_KEYS]
