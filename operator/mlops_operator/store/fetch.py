"""Copy one stored version into a local file store, verified at both ends:

    python -m mlops_operator.store.fetch --store s3://bucket/prefix?endpoint=... \\
        --kind models --name churn --digest <sha256> --extra model.json --dest /models

What a serving pod's init container runs in s3 mode (like KServe's storage initializer): it reads
the version from the shared store (checking the sha256 as every read does), then writes it into
`--dest` (an emptyDir) through `FileStore.put_version`, which hashes the copy again and renames a
staged directory into place. The model server then opens `file://<dest>` exactly as it opens the
PVC today, so the server needs no S3 client and the PVC path stays as it is.

Writes `{"ok": true, "uri": "file:///models/models/<name>/<sha256>/"}` or
`{"ok": false, "error": "...", "reason": "StoreUnreachable"}` to the termination log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from .store import FileStore, IntegrityError, StoreError, open_store


def fetch(store_uri: str, kind: str, name: str, digest: str, extras: list[str], dest: Path) -> dict[str, Any]:
    """Copy version (kind, name, digest) with its `extras` from `store_uri` into FileStore(dest)."""
    cache = dest / ".fetch-cache"  # the downloads land on the same volume, then leave
    try:
        src = open_store(store_uri, cache_dir=cache)
        if kind not in FileStore.PRIMARY:
            raise StoreError(f"unknown artifact kind {kind!r}")
        local = FileStore(dest)
        uri = src.uri(kind, name, digest)
        primary = src.local_path(uri, FileStore.PRIMARY[kind], digest)
        extra_paths = {f: src.local_path(uri, f) for f in extras}
        got, out_uri = local.put_version(kind, name, primary, extra_paths)
        if got != digest:  # the bytes changed between the verified read and the copy
            raise IntegrityError(f"the copy of {uri} has sha256 {got}, not {digest}")
    except StoreError as e:
        return {"ok": False, "error": str(e)[:3000], "reason": e.reason}
    except OSError as e:
        return {"ok": False, "error": f"writing into {dest}: {e}"[:3000], "reason": "StoreError"}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"ok": True, "uri": out_uri}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlops_operator.store.fetch", description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="root URI of the shared store (s3://... or file://...)")
    ap.add_argument("--kind", default="models", choices=sorted(FileStore.PRIMARY))
    ap.add_argument("--name", required=True)
    ap.add_argument("--digest", required=True, help="sha256 of the primary file (model.onnx, data.parquet)")
    ap.add_argument("--extra", action="append", default=[], help="another file of the version (repeat)")
    ap.add_argument("--dest", required=True, type=Path, help="root of the local file store to fill")
    ap.add_argument("--termination-log", default="/dev/termination-log", type=Path)
    a = ap.parse_args(argv)
    out = fetch(a.store, a.kind, a.name, a.digest, a.extra, a.dest)
    try:
        a.termination_log.write_text(json.dumps(out))
    except OSError:
        pass  # outside a pod
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
