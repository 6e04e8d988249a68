"""A dynamic provisioner for the local cluster: PVCs of StorageClass `standard` get a hostPath
PersistentVolume under the cluster's state directory, like kind's local-path provisioner.

With it, manifests that ask for storage with a plain PVC (the operator's artifact store, a
user's data volume) work unchanged on the local cluster, on kind (whose default class is also
named `standard`) and on a real cluster. Released volumes (reclaim policy Delete) are removed.

    python -m mlops_operator.localcluster.provisioner <cluster>
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from .config import API_PORT, ClusterConfig, daemon_config
from .node.apiclient import ApiClient, ApiError

log = logging.getLogger("mlops.localcluster.provisioner")

PROVISIONER = "mlops.dev/local-path"
STORAGE_CLASS = "standard"
HEALTHZ_PORT = 10260

BOOTSTRAP: list[tuple[str, str, dict[str, Any]]] = [
    ("/apis/storage.k8s.io/v1/storageclasses", STORAGE_CLASS, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
    }),
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles", "mlops:local-path-provisioner", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "mlops:local-path-provisioner"},
        "rules": [
            {"apiGroups": [""], "resources": ["persistentvolumes"],
             "verbs": ["get", "list", "watch", "create", "delete"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    }),
    ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "mlops:local-path-provisioner", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "mlops:local-path-provisioner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "mlops:local-path-provisioner"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mlops:local-path-provisioner"}],
    }),
]


async def bootstrap(admin: ApiClient) -> None:
    """Create the StorageClass and the provisioner's RBAC (idempotent; run with admin rights)."""
    for path, _name, body in BOOTSTRAP:
        try:
            await admin.create(path, body)
        except ApiError as e:
            if e.status != 409:
                raise


def pv_for(pvc: dict[str, Any], root: Path) -> dict[str, Any]:
    meta, spec = pvc["metadata"], pvc["spec"]
    name = f"pvc-{meta['uid']}"
    size = (spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                     "labels": {"app.kubernetes.io/managed-by": "mlops-local-path"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"]},
        },
    }


class Provisioner:
    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg
        self.root = cfg.path("volumes")
        pki = cfg.path("pki")
        self.api = ApiClient(f"https://127.0.0.1:{API_PORT}", pki / "ca.crt",
                             pki / "local-path-provisioner.crt", pki / "local-path-provisioner.key")
        self.stopping = asyncio.Event()

    async def sync_once(self) -> None:
        pvcs = (await self.api.get("/api/v1/persistentvolumeclaims"))["items"]
        for pvc in pvcs:
            spec = pvc["spec"]
            if spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName"):
                continue
            if pvc.get("status", {}).get("phase") not in (None, "Pending"):
                continue
            body = pv_for(pvc, self.root)
            vol = Path(body["spec"]["hostPath"]["path"])
            vol.mkdir(parents=True, exist_ok=True)
            # world-writable like kind's local-path volumes: hostPath volumes get no fsGroup
            # ownership change, and workload pods run as non-root users
            vol.chmod(0o777)
            try:
                await self.api.create("/api/v1/persistentvolumes", body)
                log.info("provisioned %s for %s/%s", body["metadata"]["name"], pvc["metadata"]["namespace"],
                         pvc["metadata"]["name"])
            except ApiError as e:
                if e.status != 409:
                    raise
        pvs = (await self.api.get("/api/v1/persistentvolumes"))["items"]
        for pv in pvs:
            ann = pv["metadata"].get("annotations") or {}
            if ann.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
                continue
            if pv.get("status", {}).get("phase") == "Released" and \
                    pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                path = Path(pv["spec"]["hostPath"]["path"])
                if path.is_relative_to(self.root):
                    shutil.rmtree(path, ignore_errors=True)
                try:
                    await self.api.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
                    log.info("deleted released %s", pv["metadata"]["name"])
                except ApiError as e:
                    if e.status != 404:
                        raise

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        pki = self.cfg.path("pki")
        async with ApiClient(f"https://127.0.0.1:{API_PORT}", pki / "ca.crt", pki / "admin.crt",
                             pki / "admin.key") as admin:
            await bootstrap(admin)
        app = web.Application()

        async def healthz(_: web.Request) -> web.Response:  # (aiohttp: bare-function handlers are deprecated)
            return web.Response(text="ok")

        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", HEALTHZ_PORT).start()
        async with self.api:
            while not self.stopping.is_set():
                try:
                    await self.sync_once()
                except Exception as e:
                    log.warning("sync failed: %s", e)
                try:
                    await asyncio.wait_for(self.stopping.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    cfg = daemon_config(sys.argv[1:] if argv is None else argv)
    asyncio.run(Provisioner(cfg).run())


if __name__ == "__main__":
    main()
