"""`kubectl mlops export`: bring a ModelVersion's ONNX bundle out of the cluster (pure parts).

Two ways, chosen by the artifact's URI, neither through a pod log (a real kubelet rotates a
container's log at about 10 MiB, so a large model could not leave that way):

- `file://` (the per-namespace PVC, which only pods can mount): the plugin starts a short-lived,
  locked-down pod that mounts the claim read-only and runs `python -m mlops_operator.store.bundle_server`,
  which verifies model.onnx against the digest and serves the files over HTTP; the plugin reads them
  through the API server's pod proxy (any size, streamed) and hashes them again as they arrive.
- `s3://`: the plugin reads the objects straight from the bucket with the user's own credentials
  (the environment's AWS_* variables, else the namespace's store Secret read through the API
  server), verifying the sha256 as every store read does.

This module builds the pod, maps an s3:// artifact onto a store config, and checks and installs the
received files; the calls are in `export_io.py` and `kubeapi.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import __version__
from ..store.bundle_server import DEFAULT_PORT, SHA_HEADER, TOKEN_ENV, token_sha256
from ..store.s3config import S3Config, S3ConfigError, parse_s3_uri
from ..store.store import sha256_file

DEFAULT_IMAGE = "ghcr.io/mlops-dev/mlops-runtime:0.1.0"
DEFAULT_CLAIM = "mlops-store"
#: the per-namespace Secret workload pods take their S3 credentials from (Settings.store_secret)
DEFAULT_STORE_SECRET = "mlops-store-s3"
STORE_MOUNT = "/store"
FILES = ("model.onnx", "model.json")
PORT = DEFAULT_PORT


class ExportError(RuntimeError):
    """The export failed; the message says why."""


def default_image() -> str:
    return os.environ.get("MLOPS_RUNTIME_IMAGE") or DEFAULT_IMAGE


def pod_name(mv_name: str, digest: str, salt: str | None = None) -> str:
    """`mlops-export-<hash>`: unique per call (two exports of one version may run at once)."""
    salt = salt if salt is not None else secrets.token_hex(8)
    return "mlops-export-" + hashlib.sha256(f"{mv_name}/{digest}/{salt}".encode()).hexdigest()[:10]


def artifact(mv: dict[str, Any]) -> tuple[str, str]:
    """(uri, digest) of a ModelVersion's artifact; ExportError when it cannot be exported."""
    name = (mv.get("metadata") or {}).get("name")
    art = (mv.get("spec") or {}).get("artifact") or {}
    uri, digest = art.get("uri"), art.get("digest")
    if not uri or not digest:
        raise ExportError(f"{name} has no spec.artifact.uri/digest: nothing to export")
    u = urllib.parse.urlsplit(uri)
    if u.scheme == "s3":
        return uri, digest
    if u.scheme != "file":
        raise ExportError(f"{name}: artifact {uri} is neither in a file:// nor an s3:// store; cannot export it")
    path = urllib.parse.unquote(u.path)
    if not (path == STORE_MOUNT or path.startswith(STORE_MOUNT + "/")):
        raise ExportError(f"{name}: artifact {uri} is not under {STORE_MOUNT}, where the store volume is mounted")
    return uri, digest


def s3_version(root: S3Config, uri: str, digest: str) -> tuple[S3Config, str]:
    """The store config whose `models/<name>/<digest>/` is the artifact at `uri`, and the model name.

    The artifact URI names bucket and key but not the endpoint (that is the store's, given by the
    user): `root` (the operator's store URI, `--store`/$MLOPS_STORE) supplies endpoint, region and
    addressing, the artifact its bucket and prefix, whatever per-namespace prefix the operator used."""
    u = urllib.parse.urlsplit(uri)
    if u.scheme != "s3":
        raise ExportError(f"{uri} is not an s3:// URI")
    if u.netloc != root.bucket:
        raise ExportError(f"the artifact {uri} is in bucket {u.netloc!r}, but the store given "
                          f"({root.location()}) is bucket {root.bucket!r}: pass the store that holds it")
    parts = [p for p in u.path.split("/") if p]
    if len(parts) < 3 or parts[-3] != "models":
        raise ExportError(f"{uri} is not a model version (s3://<bucket>/<prefix>/models/<name>/<sha256>/)")
    if parts[-1] != digest:
        raise ExportError(f"{uri} does not end in its digest {digest}: refusing it")
    try:  # every element as a store URI's: no "..", nothing that leaves the local cache directory
        parse_s3_uri(f"s3://{root.bucket}/{'/'.join(parts)}")
    except S3ConfigError as e:
        raise ExportError(f"the artifact URI of this version is not a store path: {e}") from None
    config = S3Config(bucket=root.bucket, prefix="/".join(parts[:-3]), endpoint=root.endpoint,
                      region=root.region, path_style=root.path_style)
    return config, parts[-2]


def export_pod(name: str, namespace: str, mv_name: str, uri: str, digest: str, token: str,
               claim: str = DEFAULT_CLAIM, image: str | None = None, deadline_seconds: int = 600) -> dict[str, Any]:
    """The pod that verifies model.onnx and model.json of the version at `uri` and serves them on
    PORT to whoever knows `token` (the plugin, through the pod proxy)."""
    labels = {
        "app.kubernetes.io/name": "mlops-export",
        "app.kubernetes.io/component": "export",
        "app.kubernetes.io/instance": mv_name,
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/managed-by": "kubectl-mlops",
        "app.kubernetes.io/version": __version__,
    }
    args = ["python", "-m", "mlops_operator.store.bundle_server", "--uri", uri]
    for f in FILES:
        args += ["--file", f]
    args += ["--digest", digest, "--store-root", STORE_MOUNT, "--port", str(PORT)]
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
                "name": "serve",
                "image": image or default_image(),
                "command": args,
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT},
                                   "periodSeconds": 1, "failureThreshold": 3},
                "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                        {"name": "PYTHONWARNINGS", "value": "ignore"},
                        {"name": TOKEN_ENV, "value": token_sha256(token)}],
                "volumeMounts": [{"name": "store", "mountPath": STORE_MOUNT, "readOnly": True},
                                 {"name": "tmp", "mountPath": "/tmp"}],
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
    }


def new_token() -> str:
    return secrets.token_urlsafe(24)


def pod_phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def termination_message(pod: dict[str, Any]) -> str:
    """What the pod's container said when it ended (the server's reason for refusing), if anything."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        msg = ((cs.get("state") or {}).get("terminated") or {}).get("message")
        if msg:
            return str(msg).strip()
    return ""


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


def receive(chunks: Iterable[bytes], dest: Path, name: str, sent_sha256: str | None, sent_size: int | None,
            digest: str | None = None) -> Path:
    """Write a streamed file to `dest`, hashing it on the way; ExportError (and no file) when the
    bytes are not what the sender announced (`sent_*`) or, for model.onnx, not `digest`."""
    h, size = hashlib.sha256(), 0
    try:
        with open(dest, "wb") as out:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if sent_size is not None and size != sent_size:
            raise ExportError(f"{name}: received {size} bytes, the export pod announced {sent_size} "
                              "(the transfer broke off)")
        if not sent_sha256:
            raise ExportError(f"{name}: the export pod sent no {SHA_HEADER}; is it an older runtime image?")
        if got != sent_sha256:
            raise ExportError(f"{name}: received bytes with sha256 {got}, the export pod sent {sent_sha256}")
        if digest is not None and got != digest:
            raise ExportError(f"{name} has sha256 {got}, but spec.artifact.digest is {digest}: refusing it")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def check_manifest(data: bytes, digest: str) -> None:
    """model.json describes the model.onnx with `digest` (ExportError otherwise)."""
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise ExportError(f"model.json is not JSON: {e}") from None
    said = manifest.get("onnxSha256") if isinstance(manifest, dict) else None
    if said and said != digest:
        raise ExportError(f"model.json describes model.onnx {said}, not this version's {digest}: refusing it")


def staging_dir(out_dir: Path | str) -> Path:
    """A fresh hidden directory inside `out_dir` (created): files land there, then are renamed in,
    so a failed export leaves no model.onnx behind and a good one costs no copy."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = out / f".mlops-export-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    return stage


def install(staged: dict[str, Path], out_dir: Path | str, digest: str) -> list[Path]:
    """Check model.json against `digest`, rename the staged files into `out_dir` and verify
    model.onnx once more where it now lies (a model.onnx that does not match is deleted)."""
    missing = [f for f in FILES if f not in staged]
    if missing:
        raise ExportError(f"the export lacks {', '.join(missing)}")
    check_manifest(staged["model.json"].read_bytes(), digest)
    out = Path(out_dir)
    written = []
    for name in FILES:
        final = out / name
        os.replace(staged[name], final)
        written.append(final)
    onnx = out / "model.onnx"
    got = sha256_file(onnx)
    if got != digest:
        onnx.unlink(missing_ok=True)
        raise ExportError(f"{onnx}: sha256 {got} on disk does not match {digest}; deleted it")
    return written


def remove_staging(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
