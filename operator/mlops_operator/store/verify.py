"""Verify a stored artifact's sha256 inside the cluster (the operator never mounts the store).

    python -m mlops_operator.store.verify --store file:///store --uri URI --file model.onnx --digest SHA

Writes `{"ok": true}` or `{"ok": false, "error": "..."}` to the termination log; the
ModelVersion controller turns that into Ready or Degraded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .model_manifest import read_manifest
from .store import StoreError, open_store


def verify(store_uri: str, uri: str, filename: str, digest: str) -> dict:
    store = open_store(store_uri)
    try:
        store.local_path(uri, filename, digest)
        if filename == "model.onnx":
            man = read_manifest(store.local_path(uri, "model.json"))
            if man.onnx_sha256 != digest:
                return {"ok": False, "error": f"model.json names sha256 {man.onnx_sha256}, not {digest}"}
    except (StoreError, ValueError) as e:
        return {"ok": False, "error": str(e)[:3000]}
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
