"""The snapshot Job: read a source, write its canonical Parquet copy into the store under its
sha256, profile it, validate it, and report a small JSON summary as the termination message.

    python -m mlops_operator.data.snapshot --spec /etc/mlops/snapshot.json --store file:///store \
        --source-root /source --termination-log /dev/termination-log

The spec file holds the Dataset's name, spec (wire form) and the schema in force (frozen
from an earlier snapshot, if any). Everything streams: memory stays bounded by the batch size,
the profile sample and the set of ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..store import open_store
from ..store.store import StoreError
from . import columns, sources
from .profile import Profiler
from .validate import Validator

#: Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_LIMIT = 4000


def label_column(spec: dict[str, Any], schema: list[dict[str, Any]]) -> str | None:
    if spec.get("labelColumn"):
        return spec["labelColumn"]
    return next((c["name"] for c in schema if c.get("role") == "label"), None)


def infer_schema(batch: pa.RecordBatch, label: str | None) -> list[dict[str, Any]]:
    cols = []
    for name in batch.schema.names:
        ctype = columns.infer_type(batch.column(name))
        role = "label" if name == label else ("timestamp" if ctype == "timestamp" else "feature")
        cols.append({"name": name, "type": ctype, "role": role, "nullable": True})
    return cols


def _writer_options() -> dict[str, Any]:
    # fixed options: the same content always yields the same bytes, hence the same digest
    return {"compression": "zstd", "compression_level": 3, "version": "2.6", "use_dictionary": True,
            "write_statistics": True, "data_page_version": "1.0"}


def run(spec_doc: dict[str, Any], store_uri: str, source_root: Path, workdir: Path, *,
        allow_private_http: bool = False) -> dict[str, Any]:
    spec = spec_doc["spec"]
    name = spec_doc["name"]
    declared = (spec.get("schema") or {}).get("columns") or spec_doc.get("frozenSchema")
    allow_extra = bool((spec.get("schema") or {}).get("allowExtraColumns", False))
    rules = spec.get("validation") or {}
    started = time.time()
    batches = iter(sources.open_source(spec["source"], source_root, workdir, allow_private_http=allow_private_http,
                                       store_uri=store_uri))
    first = next(batches, None)
    if first is None:
        raise sources.SourceError("the source holds no rows")
    schema_inferred = not declared
    schema = declared or infer_schema(first, spec.get("labelColumn"))
    label = label_column(spec, schema)
    validator = Validator(schema, rules, label)
    present = validator.structure(first.schema.names, allow_extra or schema_inferred)
    canonical_schema = pa.schema([(c["name"], columns.CANONICAL[c["type"]]) for c in schema])
    profiler = Profiler(schema, label)
    out = workdir / "data.parquet"
    type_bad: dict[str, tuple[int, list[str]]] = {}
    with pq.ParquetWriter(out, canonical_schema, **_writer_options()) as writer:
        groups = _FixedRowGroups(writer, canonical_schema)
        for batch in _chain(first, batches):
            arrays = []
            for c in schema:
                if c["name"] in present:
                    res = columns.cast(batch.column(c["name"]), c["type"])
                    if res.bad:
                        n, ex = type_bad.get(c["name"], (0, []))
                        type_bad[c["name"]] = (n + res.bad, (ex + res.examples)[:10])
                    arrays.append(res.array)
                else:
                    arrays.append(pa.nulls(batch.num_rows, type=columns.CANONICAL[c["type"]]))
            canon = pa.RecordBatch.from_arrays(arrays, schema=canonical_schema)
            groups.add(canon)
            profiler.add(canon)
            validator.add(canon)
        groups.close()
    for col, (n, ex) in type_bad.items():
        ctype = next(c["type"] for c in schema if c["name"] == col)
        validator.fail("type", col, n, ex, f"{n} value(s) of {col!r} are not {ctype}")
    profile = profiler.finish(out)
    valid, failures = validator.finish(profile)
    report = {"passed": valid, "failures": failures}
    (workdir / "profile.json").write_text(json.dumps(profile, default=str))
    (workdir / "validation.json").write_text(json.dumps(report))
    store = open_store(store_uri)
    digest, uri = store.put_version("datasets", name, out, {"profile.json": workdir / "profile.json",
                                                              "validation.json": workdir / "validation.json"})
    summary: dict[str, Any] = {
        "digest": digest, "uri": uri, "rows": profile["rows"], "columns": len(schema), "validated": valid,
        "failures": failures, "seconds": round(time.time() - started, 3),
        "labelDistribution": (profile.get("label") or {}).get("distribution"),
        "nullCounts": {c: n for c, n in validator.nulls.items() if n},
    }
    if schema_inferred:
        summary["schema"] = schema
    return summary


ROW_GROUP = 65536


class _FixedRowGroups:
    """Write row groups of exactly ROW_GROUP rows whatever the source's batching, so the bytes
    (and the digest) depend on the content only: a CSV and a Parquet copy of the same rows
    give the same version."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self.writer, self.schema, self.rows = writer, schema, 0
        self.pending: list[pa.RecordBatch] = []

    def add(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        if self.rows >= ROW_GROUP:
            table = pa.Table.from_batches(self.pending, schema=self.schema)
            full = (self.rows // ROW_GROUP) * ROW_GROUP
            for off in range(0, full, ROW_GROUP):
                self.writer.write_table(table.slice(off, ROW_GROUP), row_group_size=ROW_GROUP)
            rest = table.slice(full)
            self.pending, self.rows = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_batches(self.pending, schema=self.schema), row_group_size=ROW_GROUP)


def _chain(first: pa.RecordBatch, rest):
    yield first
    yield from rest


def compact(summary: dict[str, Any], limit: int = TERMINATION_LIMIT) -> str:
    """JSON of the summary within Kubernetes' termination-message limit (examples dropped first)."""
    text = json.dumps(summary, separators=(",", ":"), default=str)
    if len(text) <= limit:
        return text
    s = dict(summary)
    s["failures"] = [{k: v for k, v in f.items() if k != "examples"} for f in s.get("failures", [])]
    if s.get("labelDistribution") and len(s["labelDistribution"]) > 20:
        s["labelDistribution"] = dict(list(s["labelDistribution"].items())[:20])
    text = json.dumps(s, separators=(",", ":"), default=str)
    while len(text) > limit and s.get("failures"):
        s["failures"] = s["failures"][:-1]
        s["truncated"] = True
        text = json.dumps(s, separators=(",", ":"), default=str)
    if len(text) > limit and "schema" in s:
        s["schema"] = None
        s["schemaTruncated"] = True  # the profile in the store still has every column
        text = json.dumps(s, separators=(",", ":"), default=str)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlops_operator.data.snapshot")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--spec", type=Path, help="file holding the snapshot spec")
    src.add_argument("--spec-env", help="environment variable holding the snapshot spec")
    ap.add_argument("--store", required=True)
    ap.add_argument("--source-root", default="/source", type=Path)
    ap.add_argument("--termination-log", default="/dev/termination-log", type=Path)
    ap.add_argument("--allow-private-http", action="store_true",
                    help="let http sources reach loopback, private and link-local addresses "
                         "(the operator's MLOPS_HTTP_SOURCE_ALLOW_PRIVATE setting)")
    a = ap.parse_args(argv)
    spec_doc = json.loads(os.environ[a.spec_env] if a.spec_env else a.spec.read_text())
    with tempfile.TemporaryDirectory(prefix="snapshot-") as tmp:
        try:
            summary = run(spec_doc, a.store, a.source_root, Path(tmp), allow_private_http=a.allow_private_http)
        except Exception as e:  # any failure becomes a readable result, never a bare traceback
            msg = {"error": f"{type(e).__name__}: {e}"[:3000]}
            if isinstance(e, StoreError):  # the store's own words and reason (never a credential)
                msg = {"error": str(e)[:3000], "reason": e.reason}
            traceback.print_exc()
            a.termination_log.write_text(json.dumps(msg))
            return 2
    text = compact(summary)
    a.termination_log.write_text(text)
    print(json.dumps({k: v for k, v in summary.items() if k != "schema"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
