"""Materialise a pod's volumes as host directories, to be bind-mounted at their mountPaths.

emptyDir, configMap, secret, downwardAPI, projected (service-account token through
TokenRequest, configMap, secret, downwardAPI), hostPath and persistentVolumeClaim (through
the bound PersistentVolume's hostPath/local path). Content is written once at pod start;
projected tokens are refreshed by the worker before they expire.
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import podspec
from .apiclient import ApiClient, ApiError
from .podspec import PodSpecError

Obj = Mapping[str, Any]


@dataclass
class TokenSource:
    path: Path
    service_account: str
    audiences: list[str]
    expiration_seconds: int


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}


@dataclass
class VolumeSet:
    paths: dict[str, Path] = field(default_factory=dict)
    tokens: list[TokenSource] = field(default_factory=list)
    read_only: set[str] = field(default_factory=set)  # volumes that are read-only by nature


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def _items(data: Mapping[str, bytes], items: list[Obj] | None, default_mode: int, dest: Path,
           what: str, optional: bool) -> None:
    if items:
        for it in items:
            if it["key"] not in data:
                if optional:
                    continue
                raise PodSpecError("CreateContainerConfigError", f"{what}: no key {it['key']!r}")
            _write(dest / it["path"], data[it["key"]], it.get("mode", default_mode))
    else:
        for k, v in data.items():
            _write(dest / k, v, default_mode)


async def get_or_none(api: ApiClient, path: str) -> Obj | None:
    """The object at `path`, or None when it does not exist (404)."""
    try:
        return await api.get(path)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def _cm_bytes(cm: Obj) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def _secret_bytes(s: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}


def _downward(pod: Obj, items: list[Obj], dest: Path, default_mode: int, alloc: Mapping[str, str]) -> None:
    for it in items:
        if "fieldRef" in it:
            val = podspec.field_value(pod, it["fieldRef"]["fieldPath"])
        else:
            r = it["resourceFieldRef"]
            c = next(c for c in pod["spec"]["containers"] if c["name"] == r.get("containerName"))
            val = podspec.resource_value(c, r["resource"], r.get("divisor"), alloc)
        _write(dest / it["path"], val.encode(), it.get("mode", default_mode))


async def _object_source(api: ApiClient, ns: str, kind: str, obj_name: str, ref: Obj, mode: int,
                         dest: Path) -> None:
    """Write a ConfigMap's or Secret's keys (or the selected `items`) as files under `dest`."""
    plural = "configmaps" if kind == "configMap" else "secrets"
    obj = await get_or_none(api, f"/api/v1/namespaces/{ns}/{plural}/{obj_name}")
    dest.mkdir(parents=True, exist_ok=True)
    if obj is None:
        if not ref.get("optional"):
            raise PodSpecError("ContainerCreating", f'{kind.lower()} "{obj_name}" not found')
        return
    data = _cm_bytes(obj) if kind == "configMap" else _secret_bytes(obj)
    _items(data, ref.get("items"), mode, dest, f"{kind.lower()} {obj_name}", bool(ref.get("optional")))


async def request_token(api: ApiClient, pod: Obj, sa: str, audiences: list[str], seconds: int) -> str:
    ns, meta = pod["metadata"]["namespace"], pod["metadata"]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": audiences or None, "expirationSeconds": seconds,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}
    tr = await api.create(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body)
    return tr["status"]["token"]


async def write_token(api: ApiClient, pod: Obj, t: TokenSource) -> None:
    token = await request_token(api, pod, t.service_account, t.audiences, t.expiration_seconds)
    _write(t.path, token.encode(), 0o644)


async def materialize(api: ApiClient, pod: Obj, pod_dir: Path, alloc: Mapping[str, str]) -> VolumeSet:
    ns = pod["metadata"]["namespace"]
    vs = VolumeSet()
    root = pod_dir / "volumes"
    for v in pod["spec"].get("volumes") or []:
        name = v["name"]
        dest = root / name
        if "emptyDir" in v:
            dest.mkdir(parents=True, exist_ok=True)
            dest.chmod(0o777)
        elif "configMap" in v or "secret" in v:
            kind = "configMap" if "configMap" in v else "secret"
            ref = v[kind]
            await _object_source(api, ns, kind, ref["name"] if kind == "configMap" else ref["secretName"],
                                 ref, ref.get("defaultMode", 0o644), dest)
            vs.read_only.add(name)
        elif "downwardAPI" in v:
            dest.mkdir(parents=True, exist_ok=True)
            _downward(pod, v["downwardAPI"].get("items") or [], dest, v["downwardAPI"].get("defaultMode", 0o644), alloc)
            vs.read_only.add(name)
        elif "projected" in v:
            dest.mkdir(parents=True, exist_ok=True)
            mode = v["projected"].get("defaultMode", 0o644)
            for src in v["projected"].get("sources") or []:
                if "serviceAccountToken" in src:
                    t = src["serviceAccountToken"]
                    aud = [t["audience"]] if t.get("audience") else []
                    ts = TokenSource(dest / t["path"], pod["spec"].get("serviceAccountName", "default"), aud,
                                     int(t.get("expirationSeconds", 3607)))
                    await write_token(api, pod, ts)
                    vs.tokens.append(ts)
                elif "configMap" in src or "secret" in src:
                    kind = "configMap" if "configMap" in src else "secret"
                    await _object_source(api, ns, kind, src[kind]["name"], src[kind], mode, dest)
                elif "downwardAPI" in src:
                    _downward(pod, src["downwardAPI"].get("items") or [], dest, mode, alloc)
            vs.read_only.add(name)
        elif "hostPath" in v:
            hp = v["hostPath"]
            dest = Path(hp["path"])
            kind = hp.get("type", "")
            if kind == "DirectoryOrCreate":
                dest.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate" and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.touch()
            elif not dest.exists():
                raise PodSpecError("ContainerCreating", f"hostPath {dest} does not exist")
        elif "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            pvc = await get_or_none(api, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
            if pvc is None:
                raise PodSpecError("ContainerCreating", f'persistentvolumeclaim "{claim}" not found')
            pv_name = pvc.get("spec", {}).get("volumeName")
            if not pv_name or pvc.get("status", {}).get("phase") != "Bound":
                raise PodSpecError("ContainerCreating", f'persistentvolumeclaim "{claim}" is not bound yet')
            pv = await api.get(f"/api/v1/persistentvolumes/{pv_name}")
            src = (pv["spec"].get("hostPath") or pv["spec"].get("local") or {}).get("path")
            if not src:
                raise PodSpecError("ContainerCreating",
                                   f"persistentvolume {pv_name} is neither hostPath nor local; the local node "
                                   "mounts only host directories")
            dest = Path(src)
            dest.mkdir(parents=True, exist_ok=True)
            if v["persistentVolumeClaim"].get("readOnly"):
                vs.read_only.add(name)
        else:
            kinds = ", ".join(k for k in v if k != "name")
            raise PodSpecError("CreateContainerConfigError", f"volume {name!r}: type {kinds} is not supported "
                                                            "by the local node")
        vs.paths[name] = dest
    return vs


def mounts_for(container: Obj, vs: VolumeSet) -> list[Mount]:
    """Bind mounts for a container's volumeMounts (subPath resolved, parents first)."""
    out = []
    for vm in container.get("volumeMounts") or []:
        base = vs.paths.get(vm["name"])
        if base is None:
            raise PodSpecError("CreateContainerConfigError", f"volumeMount {vm['name']!r} names no volume")
        src = base
        if vm.get("subPath"):
            src = base / vm["subPath"]
            if not src.exists():
                src.mkdir(parents=True, exist_ok=True)
        ro = bool(vm.get("readOnly")) or vm["name"] in vs.read_only
        out.append(Mount(str(src), vm["mountPath"], ro))
    return sorted(out, key=lambda m: m.target.count("/"))


def remove_pod_dir(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir, ignore_errors=True)
