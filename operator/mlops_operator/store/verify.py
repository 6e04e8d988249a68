"""Verify a stored artifact's sha256 inside the cluster (the operator never mounts the store).

    python -m mlops_operator.store.verify --store file:///store --uri URI --file model.onnx --digest SHA

Writes `{"ok": true}` or `{"ok": false, "error": "...", "reason": "..."}` to the termination log;
the ModelVersion controller turns that into Ready or Degraded. `reason` is the StoreError's
(DigestMismatch, StoreUnreachable, StoreAccessDenied, StoreBucketMissing, ArtifactMissing, ...),
or ArtifactInvalid for a model.json that does not match.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model_manifest import read_manifest
from .store import StoreError, open_store


def verify(store_uri: str, uri: str, filename: str, digest: str) -> dict:
    try:
        store = open_store(store_uri)
        store.local_path(uri, filename, digest)
        if filename == "model.onnx":
            man = read_manifest(store.local_path(uri, "model.json"))
            if man.onnx_sha256 != digest:
                return {"ok": False, "error": f"model.json names sha256 {man.onnx_sha256}, not {digest}",
                        "reason": "ArtifactInvalid"}
    except StoreError as e:
        return {"ok": False, "error": str(e)[:3000], "reason": e.reason}
    except ValueError as e:
        return {"ok": False, "error": str(e)[:3000], "reason": "ArtifactInvalid"}
    return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlops_operator.store.verify")
    ap.add_argument("--store", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--file", default="model.onnx")
    ap.add_argument("--digest", required=True)
    ap.add_argument("--termination-log", default="/dev/termination-log", type=Path)
    a = ap.parse_args(argv)
    out = verify(a.store, a.uri, a.file, a.digest)
    a.termination_log.write_text(json.dumps(out))
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
