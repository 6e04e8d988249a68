"""Operator settings from the environment (set in the operator Deployment's manifest).

A module of its own at the package top: the resource builders and the controllers both read
it, and builders must not import from the controller layer above them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from .store.s3config import parse_s3_uri


@dataclass(frozen=True)
class Settings:
    #: image of the snapshot, training and verification Jobs (images/runtime.Dockerfile)
    runtime_image: str
    #: per-namespace PVC holding that namespace's artifact store (created when missing)
    store_claim: str
    store_size: str
    store_access_mode: str
    store_storage_class: str | None
    #: archived ModelVersions kept per model (older ones are deleted; served ones never)
    model_retention: int = 10
    #: where the store PVC is mounted inside workload pods
    store_mount: str = "/store"
    #: image of the InferenceService model servers (images/server.Dockerfile: the server alone)
    server_image: str = "ghcr.io/mlops-dev/mlops-server:0.1.0"
    #: let Dataset http sources reach loopback, link-local (cloud metadata), private and other
    #: non-public addresses (in-cluster services, a private network). Off by default: a namespace
    #: user who may create Datasets could otherwise read the API server, pods or the metadata
    #: endpoint through the snapshot Job. An administrator's decision, never a Dataset's.
    http_source_allow_private: bool = False
    #: the artifact store: "" for the per-namespace PVC (file://<store_mount>, one node), or an
    #: s3:// URI (store/s3config.py: s3://bucket/prefix?endpoint=...&region=...&pathStyle=...),
    #: shared by every namespace, each under its own prefix <prefix>/<namespace>/ (store_uri).
    #: Holds no credential: the URI reaches Job arguments and pod specs as it is.
    store: str = ""
    #: s3 mode: the Secret, in each workload namespace, whose keys AWS_ACCESS_KEY_ID and
    #: AWS_SECRET_ACCESS_KEY (optional AWS_SESSION_TOKEN) workload pods get as environment variables
    #: (secretKeyRef: the values never pass through the operator, its logs or any status)
    store_secret: str = "mlops-store-s3"

    def __post_init__(self) -> None:
        if self.store:
            parse_s3_uri(self.store)  # fail at operator start, with the reason, not in every Job

    @classmethod
    def from_env(cls) -> "Settings":
        e = os.environ.get
        return cls(
            runtime_image=e("MLOPS_RUNTIME_IMAGE", "ghcr.io/mlops-dev/mlops-runtime:0.1.0"),
            store_claim=e("MLOPS_STORE_CLAIM", "mlops-store"),
            store_size=e("MLOPS_STORE_SIZE", "10Gi"),
            store_access_mode=e("MLOPS_STORE_ACCESS_MODE", "ReadWriteOnce"),
            store_storage_class=e("MLOPS_STORE_STORAGE_CLASS") or None,
            model_retention=int(e("MLOPS_MODEL_RETENTION", "10")),
            server_image=e("MLOPS_SERVER_IMAGE", "ghcr.io/mlops-dev/mlops-server:0.1.0"),
            http_source_allow_private=e("MLOPS_HTTP_SOURCE_ALLOW_PRIVATE", "").strip().lower() in ("1", "true", "yes"),
            store=e("MLOPS_STORE", "").strip(),
            store_secret=e("MLOPS_STORE_SECRET", "mlops-store-s3").strip(),
        )

    @property
    def store_is_s3(self) -> bool:
        return self.store.startswith("s3://")

    def store_uri(self, namespace: str) -> str:
        """The root URI workloads of `namespace` open the store with (`--store`): the namespace's
        PVC mounted at store_mount, or the shared s3:// store under <prefix>/<namespace>/ (so one
        namespace's names never meet another's, and a bucket policy can fence each prefix)."""
        if not self.store_is_s3:
            return f"file://{self.store_mount}"
        c = parse_s3_uri(self.store)
        return replace(c, prefix="/".join(p for p in (c.prefix, namespace) if p)).root_uri
