"""Streaming profile of a canonical snapshot: what drift monitoring uses as its reference.

Numeric columns get exact min/max/mean/std and, from a bounded, seeded uniform sample
(constant memory), decile bin edges and the edges of the reference-anchored histogram
(drift/histogram.py: every distinct value when there are few, else quantiles refined where the
bins are wide and heavy, plus the exact min and max); a second, columnar pass over the
canonical Parquet file counts every value exactly on both (the histogram with its atoms and
offset sums: what the serving pods count live traffic on, so reference and window have the
same resolution). Categorical columns get value frequencies (top categories plus an `other`
count); the label gets its class distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..drift.histogram import Histogram, reference_edges

SAMPLE_SIZE = 50_000
BINS = 10
MAX_CATEGORIES = 1000


@dataclass
class _Numeric:
    rng: np.random.Generator
    n: int = 0
    total: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the running mean (Chan et al.'s merge)
    lo: float = np.inf
    hi: float = -np.inf
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        nb = values.size
        mb = float(values.mean())
        m2b = float(np.sum((values - mb) ** 2))
        if self.n:
            delta = mb - self.total / self.n
            self.m2 += m2b + delta * delta * self.n * nb / (self.n + nb)
        else:
            self.m2 = m2b
        self.n += nb
        self.total += float(values.sum())
        self.lo = min(self.lo, float(values.min()))
        self.hi = max(self.hi, float(values.max()))
        # uniform sample without replacement: keep the SAMPLE_SIZE smallest random keys
        keys = self.rng.random(values.size)
        s = np.concatenate([self.sample, values])
        k = np.concatenate([self.keys, keys])
        if s.size > SAMPLE_SIZE:
            idx = np.argpartition(k, SAMPLE_SIZE)[:SAMPLE_SIZE]
            s, k = s[idx], k[idx]
        self.sample, self.keys = s, k

    def edges(self) -> list[float]:
        if self.sample.size == 0:
            return []
        qs = np.quantile(self.sample, np.linspace(0, 1, BINS + 1)[1:-1])
        return [float(x) for x in np.unique(qs)]

    def histogram_edges(self, coarse: np.ndarray) -> np.ndarray:
        """The histogram's edges: from the sample, with the exact extremes and the decile edges."""
        return reference_edges(np.sort(self.sample), self.lo if self.n else None, self.hi if self.n else None,
                               rows=self.n, extra=coarse)


class Profiler:
    def __init__(self, schema: list[dict[str, Any]], label: str | None, seed: int = 0):
        self.schema = {c["name"]: c for c in schema}
        self.label = label
        self.rows = 0
        self.nulls = {c: 0 for c in self.schema}
        rng = np.random.default_rng(seed)
        self.numeric = {c: _Numeric(np.random.default_rng(rng.integers(2**63)))
                        for c, d in self.schema.items() if d["type"] == "numeric"}
        self.counts: dict[str, dict[str, int]] = {c: {} for c, d in self.schema.items()
                                                  if d["type"] in ("categorical", "boolean") or c == label}
        self.ts: dict[str, list[Any]] = {c: [None, None] for c, d in self.schema.items() if d["type"] == "timestamp"}

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.schema:
            col = batch.column(name)
            self.nulls[name] += col.null_count
            if name in self.numeric:
                self.numeric[name].add(col.drop_null().to_numpy(zero_copy_only=False).astype(np.float64))
            if name in self.counts:
                vc = pc.value_counts(pc.cast(col.drop_null(), pa.string()))
                acc = self.counts[name]
                for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                    acc[v] = acc.get(v, 0) + n
            if name in self.ts and len(col.drop_null()):
                mm = pc.min_max(col)
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                cur = self.ts[name]
                cur[0] = lo if cur[0] is None or lo < cur[0] else cur[0]
                cur[1] = hi if cur[1] is None or hi > cur[1] else cur[1]

    def finish(self, canonical: Path) -> dict[str, Any]:
        """The profile document; bin counts come from a second pass over the canonical file."""
        edges = {c: np.array(n.edges()) for c, n in self.numeric.items()}
        bins = {c: np.zeros(len(e) + 1, dtype=np.int64) for c, e in edges.items()}
        hists = {c: Histogram.empty(n.histogram_edges(edges[c])) for c, n in self.numeric.items()}
        if edges:
            pf = pq.ParquetFile(canonical)
            for batch in pf.iter_batches(columns=list(edges), batch_size=262144):
                for c, e in edges.items():
                    v = batch.column(c).drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
                    bins[c] += np.bincount(np.searchsorted(e, v, side="right"), minlength=len(e) + 1)
                    hists[c].add(v)
        cols: dict[str, Any] = {}
        for name, d in self.schema.items():
            info: dict[str, Any] = {"type": d["type"], "role": d.get("role", "feature"), "nulls": self.nulls[name]}
            if name in self.numeric:
                n = self.numeric[name]
                hist = hists[name].to_json(edges=True)
                hist.pop("nulls", None)  # the column's nulls are `nulls`
                info.update(min=n.lo if n.n else None, max=n.hi if n.n else None,
                            mean=n.total / n.n if n.n else None,
                            # population std (as np.std): what normed Wasserstein divides by
                            std=float(np.sqrt(max(n.m2 / n.n, 0.0))) if n.n else None,
                            binEdges=[float(x) for x in edges[name]], binCounts=[int(x) for x in bins[name]],
                            histogram=hist)
            if name in self.counts and d["type"] != "numeric":
                top = sorted(self.counts[name].items(), key=lambda kv: (-kv[1], kv[0]))
                info["categories"] = dict(top[:MAX_CATEGORIES])
                info["otherCount"] = sum(n for _, n in top[MAX_CATEGORIES:])
            if name in self.ts:
                lo, hi = self.ts[name]
                info.update(min=lo.isoformat() if lo else None, max=hi.isoformat() if hi else None)
            cols[name] = info
        doc: dict[str, Any] = {"rows": self.rows, "columns": cols}
        if self.label and self.label in self.counts:
            dist = sorted(self.counts[self.label].items(), key=lambda kv: (-kv[1], kv[0]))
            doc["label"] = {"column": self.label, "distribution": dict(dist[:MAX_CATEGORIES]),
                            "classes": len(dist)}
        return doc
