"""`kubectl mlops export`: bring a ModelVersion's ONNX bundle out of the cluster (pure parts).

The artifact store is a PVC that only pods can mount. The plugin creates a short-lived, locked-down
pod that mounts it read-only and runs `python -m mlops_operator.store.dump` (which verifies the
digest and prints the files in a framed text format), reads the pod's log, decodes and re-verifies
the bytes, and writes the files. This module builds the pod and checks and writes the result; the
API calls are in `kubeapi.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from .. import __version__
from ..store.dump import DumpError, decode

DEFAULT_IMAGE = "ghcr.io/mlops-dev/mlops-runtime:0.1.0"
DEFAULT_CLAIM = "mlops-store"
STORE_MOUNT = "/store"
FILES = ("model.onnx", "model.json")


class ExportError(RuntimeError):
    """The export failed; the message says why."""


def default_image() -> str:
    return os.environ.get("MLOPS_RUNTIME_IMAGE") or DEFAULT_IMAGE


def pod_name(mv_name: str, digest: str, salt: str | None = None) -> str:
    """`mlops-export-<hash>`: unique per call (two exports of one version may run at once)."""
    salt = salt if salt is not None else secrets.token_hex(8)
    return "mlops-export-" + hashlib.sha256(f"{mv_name}/{digest}/{salt}".encode()).hexdigest()[:10]


def artifact(mv: dict[str, Any]) -> tuple[str, str]:
    """(uri, digest) of a ModelVersion's artifact; ExportError when it cannot be exported this way."""
    name = (mv.get("metadata") or {}).get("name")
    art = (mv.get("spec") or {}).get("artifact") or {}
    uri, digest = art.get("uri"), art.get("digest")
    if not uri or not digest:
        raise ExportError(f"{name} has no spec.artifact.uri/digest: nothing to export")
    u = urllib.parse.urlsplit(uri)
    if u.scheme != "file":
        raise ExportError(f"{name}: artifact {uri} is not in a file:// store; only file:// stores can be exported")
    path = urllib.parse.unquote(u.path)
    if not (path == STORE_MOUNT or path.startswith(STORE_MOUNT + "/")):
        raise ExportError(f"{name}: artifact {uri} is not under {STORE_MOUNT}, where the store volume is mounted")
    return uri, digest


def export_pod(name: str, namespace: str, mv_name: str, uri: str, digest: str, claim: str = DEFAULT_CLAIM,
               image: str | None = None, deadline_seconds: int = 600) -> dict[str, Any]:
    """The pod that dumps model.onnx and model.json of the version at `uri` to its log."""
    labels = {
        "app.kubernetes.io/name": "mlops-export",
        "app.kubernetes.io/component": "export",
        "app.kubernetes.io/instance": mv_name,
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/managed-by": "kubectl-mlops",
        "app.kubernetes.io/version": __version__,
    }
    args = ["python", "-m", "mlops_operator.store.dump", "--uri", uri]
    for f in FILES:
        args += ["--file", f]
    args += ["--digest", digest, "--store-root", STORE_MOUNT]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {"mlops.dev/model-version": mv_name}},
        "spec": {
            "restartPolicy": "Never",
            # the pod is deleted by the plugin; the deadline ends it if the plugin dies first
            "activeDeadlineSeconds": deadline_seconds,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
            "containers": [{
                "name": "dump",
                "image": image or default_image(),
                "command": args,
                "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                        {"name": "PYTHONWARNINGS", "value": "ignore"}],
                "volumeMounts": [{"name": "store", "mountPath": STORE_MOUNT, "readOnly": True},
                                 {"name": "tmp", "mountPath": "/tmp"}],
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
    }


def pod_phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def describe_pod(pod: dict[str, Any], events: list[dict[str, Any]] | None = None) -> str:
    """One paragraph on why a pod is where it is: phase, container states, conditions, events."""
    st = pod.get("status") or {}
    parts = [f"phase {st.get('phase') or 'Pending'}"]
    if st.get("reason") or st.get("message"):
        parts.append(": ".join(x for x in (st.get("reason"), st.get("message")) if x))
    for cs in st.get("containerStatuses") or []:
        for state, d in (cs.get("state") or {}).items():
            if not d:
                continue
            detail = ", ".join(f"{k}={d[k]}" for k in ("reason", "exitCode", "message") if d.get(k) not in (None, ""))
            parts.append(f"container {cs.get('name')} {state}" + (f" ({detail})" if detail else ""))
    for c in st.get("conditions") or []:
        if c.get("status") != "True" and (c.get("reason") or c.get("message")):
            parts.append(f"{c.get('type')}=False: " + ": ".join(x for x in (c.get("reason"), c.get("message")) if x))
    for e in (events or [])[-5:]:
        parts.append(f"event {e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}".strip())
    return "; ".join(parts)


def log_tail(log: str, lines: int = 15) -> str:
    """The last lines of a log that are not dump frames (the error a failed dump printed)."""
    keep = [ln for ln in log.splitlines() if not ln.startswith((":", "==> ", "<== ", "#mlops-dump"))]
    return "\n".join(keep[-lines:])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_bundle(files: dict[str, bytes], digest: str) -> None:
    """The decoded files are the bundle of the version with `digest` (ExportError otherwise)."""
    missing = [f for f in FILES if f not in files]
    if missing:
        raise ExportError(f"the export pod's output lacks {', '.join(missing)}")
    got = sha256(files["model.onnx"])
    if got != digest:
        raise ExportError(f"model.onnx has sha256 {got}, but spec.artifact.digest is {digest}: refusing it")
    try:
        manifest = json.loads(files["model.json"])
    except ValueError as e:
        raise ExportError(f"model.json is not JSON: {e}") from None
    said = manifest.get("onnxSha256") if isinstance(manifest, dict) else None
    if said and said != digest:
        raise ExportError(f"model.json describes model.onnx {said}, not this version's {digest}: refusing it")


#: Above this much log, a node may have rotated the container log (kubelet containerLogMaxSize, 10Mi by
#: default), and the log API returns only the newest file.
ROTATION_HINT_BYTES = 4 << 20


def decode_log(log: str | bytes) -> dict[str, bytes]:
    try:
        return decode(log)
    except DumpError as e:
        hint = ""
        if ((len(log) > ROTATION_HINT_BYTES and "truncated" in str(e))
                or ("no dump found" in str(e) and len(log) > 4096)):
            hint = (" (a large model's dump may exceed what the node keeps of a pod's log: kubelet "
                    "containerLogMaxSize, 10Mi by default)")
        raise ExportError(f"could not read the export pod's output: {e}{hint}") from None


def write_bundle(files: dict[str, bytes], out_dir: Path | str, digest: str) -> list[Path]:
    """Write the files into `out_dir` (created if missing) and verify model.onnx on disk.

    Each file goes to a temporary name and is renamed into place; a model.onnx whose bytes on disk do
    not hash to `digest` is deleted and the export fails.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        final = out / name
        tmp = out / f".{name}.tmp-{os.getpid()}"
        try:
            tmp.write_bytes(files[name])
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    onnx = out / "model.onnx"
    h = hashlib.sha256()
    with open(onnx, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != digest:
        onnx.unlink(missing_ok=True)
        raise ExportError(f"{onnx}: sha256 {h.hexdigest()} on disk does not match {digest}; deleted it")
    return written
