"""`kubectl mlops export`, the half that talks to the cluster and the store (export.py holds the pure half).

`export_bundle` reads the ModelVersion, then takes one of two ways by its artifact URI:

- `file://` (PVC store): `_through_pod` starts the locked-down bundle-server pod, waits until it
  is Ready (or says why it failed: its termination message holds the digest refusal), streams each
  file through the API server's pod proxy into a staging directory inside the output directory,
  hashing as it goes, tells the pod it is done and always deletes it.
- `s3://`: `_from_s3` opens the store with the user's own credentials and downloads the two objects
  (sha256 verified on the fly by the store) into the same staging directory.

Both end in `export.install`, which checks model.json against the digest and renames the files into
place, so a failed export leaves nothing behind that looks like a model.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3

from .export import (
    DEFAULT_CLAIM,
    DEFAULT_STORE_SECRET,
    FILES,
    PORT,
    SHA_HEADER,
    ExportError,
    artifact,
    describe_pod,
    export_pod,
    install,
    new_token,
    pod_name,
    pod_phase,
    pod_ready,
    receive,
    remove_staging,
    s3_version,
    staging_dir,
    termination_message,
)
from ..store.bundle_server import TOKEN_HEADER
from .kubeapi import CliError, Forbidden, Kube, NotFound

CHUNK = 1 << 20
Say = Callable[[str], None]


def export_bundle(kube: Kube, version: str, out_dir: str | Path, claim: str | None = None,
                  image: str | None = None, timeout: float = 180.0, store: str | None = None,
                  store_secret: str | None = None, log: Say | None = None) -> dict[str, Any]:
    """Export ModelVersion `version` (its name)'s model.onnx and model.json into `out_dir`, verified.

    Returns {modelVersion, digest, uri, via, files, (pod | credentials)}; raises CliError on failure."""
    say = log or (lambda msg: None)
    name = version
    mv = kube.get("modelversions", name)
    try:
        uri, digest = artifact(mv)
    except ExportError as e:
        raise CliError(str(e)) from None
    stage = staging_dir(out_dir)
    try:
        if uri.startswith("s3://"):
            staged, extra = _from_s3(kube, uri, digest, stage, store, store_secret, say)
        else:
            staged, extra = _through_pod(kube, name, uri, digest, stage, claim, image, timeout, say)
        written = install(staged, out_dir, digest)
    except ExportError as e:
        raise CliError(str(e)) from None
    finally:
        remove_staging(stage)
    return {"modelVersion": name, "digest": digest, "uri": uri, **extra,
            "files": {p.name: {"path": str(p), "bytes": p.stat().st_size} for p in written}}


# ------------------------------------------------------------------------------------ PVC store

def _through_pod(kube: Kube, mv_name: str, uri: str, digest: str, stage: Path, claim: str | None,
                 image: str | None, timeout: float, say: Say) -> tuple[dict[str, Path], dict[str, Any]]:
    token = new_token()
    pod = export_pod(pod_name(mv_name, digest), kube.namespace, mv_name, uri, digest, token,
                     claim=claim or DEFAULT_CLAIM, image=image, deadline_seconds=int(timeout) + 600)
    pname = pod["metadata"]["name"]
    say(f"reading {uri} through pod {pname} (claim {claim or DEFAULT_CLAIM}, via the API server's pod proxy) ...")
    t0 = time.monotonic()
    kube.create_pod(pod)
    try:
        ready = kube.wait_pod_ready(pname, timeout)
        t1 = time.monotonic()
        if not pod_ready(ready):
            reason = termination_message(ready) or describe_pod(ready, kube.pod_events(pname))
            raise CliError(f"export pod {pname} ended ({pod_phase(ready)}) before serving: {reason}")
        staged = {}
        for i, f in enumerate(FILES):
            resp = kube.pod_proxy_stream(pname, PORT, f, headers={TOKEN_HEADER: token}, timeout=timeout)
            try:
                size = resp.headers.get("Content-Length")
                staged[f] = receive(resp.stream(CHUNK), stage / f, f, resp.headers.get(SHA_HEADER),
                                    int(size) if size and size.isdigit() else None,
                                    digest if i == 0 else None)
            except urllib3.exceptions.HTTPError as e:  # cut off mid-body, or a read timed out
                raise CliError(f"{f}: the transfer from pod {pname} broke off ({type(e).__name__}: {e}); "
                               "nothing was written, try again") from None
            finally:
                resp.release_conn()
        t2 = time.monotonic()
        try:  # let the server end cleanly; the pod is deleted below either way
            kube.pod_proxy_stream(pname, PORT, "done", headers={TOKEN_HEADER: token}, timeout=10).release_conn()
        except CliError:
            pass
    finally:
        try:
            kube.delete_pod(pname)
        except CliError as e:
            print(f"warning: could not delete pod {pname}: {e}", file=sys.stderr)
    return staged, {"via": "pod", "pod": pname,
                    "seconds": {"podReady": round(t1 - t0, 3), "transfer": round(t2 - t1, 3)}}


# ------------------------------------------------------------------------------------ s3 store

def _from_s3(kube: Kube, uri: str, digest: str, stage: Path, store: str | None, store_secret: str | None,
             say: Say) -> tuple[dict[str, Path], dict[str, Any]]:
    from ..store.s3 import RetryPolicy, S3Store
    from ..store.s3config import parse_s3_uri
    from ..store.store import StoreError

    root_uri = store or os.environ.get("MLOPS_STORE", "").strip()
    if not root_uri:
        raise CliError(f"the artifact {uri} is in an s3:// store: say where it is with --store "
                       "s3://<bucket>[/<prefix>]?endpoint=<url> (the operator's MLOPS_STORE, with an endpoint you "
                       "can reach) or set $MLOPS_STORE")
    try:
        config, model = s3_version(parse_s3_uri(root_uri), uri, digest)
        creds, source = s3_credentials(kube, store_secret)
        say(f"reading {uri} from {config.endpoint or 'AWS S3'} with {source} ...")
        s3 = S3Store(config, creds, cache_dir=stage / ".cache", retry=RetryPolicy(retries=2))
        version = s3.uri("models", model, digest)
        t0 = time.monotonic()
        got = {f: s3.local_path(version, f, digest if i == 0 else None) for i, f in enumerate(FILES)}
        staged = {}
        for f, path in got.items():
            os.replace(path, stage / f)
            staged[f] = stage / f
    except StoreError as e:
        raise CliError(f"{e.reason}: {e}") from None
    return staged, {"via": "s3", "credentials": source, "seconds": {"transfer": round(time.monotonic() - t0, 3)}}


def s3_credentials(kube: Kube, secret: str | None) -> tuple[Any, str]:
    """(Credentials or None, where they came from): AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the
    environment first, else the namespace's store Secret (`secret`, default mlops-store-s3, the one
    the workload pods use) read through the API server with the user's own RBAC."""
    from ..store.s3config import Credentials, S3ConfigError

    env = Credentials.from_env()
    if env is not None:
        return env, "credentials from the environment (AWS_ACCESS_KEY_ID)"
    name = secret or DEFAULT_STORE_SECRET
    try:
        data = kube.read_secret(name)
    except NotFound:
        if secret:
            raise CliError(f'Secret "{name}" not found in namespace {kube.namespace}') from None
        return None, f'no credentials (no AWS_* variables, no Secret "{name}" in {kube.namespace}): anonymous'
    except Forbidden as e:
        raise CliError(f"{e}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in your environment instead, "
                       "or ask for get on that Secret") from None
    try:
        creds = Credentials.from_env(data)
    except S3ConfigError as e:
        raise CliError(f'Secret "{name}" in {kube.namespace}: {e}') from None
    if creds is None:
        raise CliError(f'Secret "{name}" in {kube.namespace} has no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY')
    return creds, f'credentials from Secret "{name}"'
