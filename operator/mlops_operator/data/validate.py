"""Validation of a snapshot against its schema and rules, accumulated batch by batch.

Each failed check becomes one entry (check, column, count, examples, message) so the status
report says exactly what is wrong; the whole report decides `Validated`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Failure:
    check: str
    column: str | None
    count: int
    examples: list[str] = field(default_factory=list)
    message: str = ""

    def to_api(self, max_examples: int) -> dict[str, Any]:
        d: dict[str, Any] = {"check": self.check, "count": self.count, "message": self.message,
                             "examples": [str(e)[:40] for e in self.examples[:max_examples]]}
        if self.column:
            d["column"] = self.column
        return d


class Validator:
    def __init__(self, schema: list[dict[str, Any]], rules: dict[str, Any], label: str | None):
        self.schema = {c["name"]: c for c in schema}
        self.rules = rules
        self.label = label
        self.max_examples = int(rules.get("maxReportExamples", 5))
        self._acc: dict[tuple[str, str | None], Failure] = {}
        self.rows = 0
        self.nulls = {c: 0 for c in self.schema}
        self.id_chunks: list[pa.Array] = []
        self.id_col = next((c for c, d in self.schema.items() if d.get("role") == "id"), None)

    def fail(self, check: str, column: str | None, count: int, examples: list[str], message: str) -> None:
        if count <= 0:
            return
        f = self._acc.setdefault((check, column), Failure(check, column, 0, [], message))
        f.count += count
        f.examples.extend(e for e in examples if len(f.examples) < self.max_examples)

    def structure(self, source_columns: list[str], allow_extra: bool) -> list[str]:
        """Missing and unexpected columns; returns the declared columns present in the source."""
        missing = [c for c in self.schema if c not in source_columns]
        for c in missing:
            self.fail("missingColumn", c, 1, [], f"column {c!r} is declared but not in the source")
        if self.label and self.label not in source_columns:
            self.fail("label", self.label, 1, [], f"label column {self.label!r} is missing from the source")
        if not allow_extra:
            extra = [c for c in source_columns if c not in self.schema]
            if extra:
                self.fail("unexpectedColumn", None, len(extra), extra,
                          f"source columns not in the schema: {', '.join(extra[:10])} "
                          "(declare them or set schema.allowExtraColumns)")
        return [c for c in self.schema if c in source_columns]

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name, d in self.schema.items():
            col = batch.column(name)
            nulls = col.null_count
            self.nulls[name] += nulls
            if nulls and not d.get("nullable", True):
                self.fail("nulls", name, nulls, [], f"column {name!r} is not nullable but has missing values")
            if d["type"] == "numeric" and (d.get("minimum") is not None or d.get("maximum") is not None):
                lo, hi = d.get("minimum"), d.get("maximum")
                if lo is not None:
                    bad = pc.filter(col, pc.less(col, lo))
                    self.fail("range", name, len(bad), [repr(v) for v in bad.slice(0, 5).to_pylist()],
                              f"values of {name!r} below the minimum {lo}")
                if hi is not None:
                    bad = pc.filter(col, pc.greater(col, hi))
                    self.fail("range", name, len(bad), [repr(v) for v in bad.slice(0, 5).to_pylist()],
                              f"values of {name!r} above the maximum {hi}")
            if d.get("domain") and d["type"] in ("categorical", "boolean"):
                vals = pc.cast(col.drop_null(), pa.string())  # a missing value is the nulls check's business
                unknown = pc.filter(vals, pc.invert(pc.is_in(vals, pa.array(d["domain"]))))
                if len(unknown):
                    ex = pc.unique(unknown).slice(0, 5).to_pylist()
                    self.fail("domain", name, len(unknown), ex,
                              f"values of {name!r} outside its domain {d['domain'][:10]}")
        if self.id_col:
            self.id_chunks.append(batch.column(self.id_col).drop_null())

    def finish(self, profile: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
        r = self.rules
        if self.rows < int(r.get("minRows", 1)):
            self.fail("minRows", None, 1, [str(self.rows)],
                      f"{self.rows} rows, fewer than the minimum {r.get('minRows', 1)}")
        max_null = float(r.get("maxNullFraction", 1.0))
        for name, n in self.nulls.items():
            if self.rows and n / self.rows > max_null and self.schema[name].get("nullable", True):
                self.fail("nullFraction", name, n, [],
                          f"{n / self.rows:.1%} of {name!r} is missing, more than maxNullFraction {max_null:.1%}")
        if self.id_col and r.get("uniqueIds", True) and self.id_chunks:
            ids = pa.chunked_array(self.id_chunks)
            counts = pc.value_counts(ids)
            dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
            n = len(ids) - len(counts)
            if n:
                self.fail("uniqueIds", self.id_col, n, [str(v) for v in dup.field("values").slice(0, 5).to_pylist()],
                          f"{n} duplicate values in id column {self.id_col!r}")
        label = profile.get("label")
        need = int(r.get("labelMinClasses", 2))
        if self.label and label is not None and label["classes"] < need:
            self.fail("label", self.label, 1, list(label["distribution"])[:5],
                      f"label {self.label!r} has {label['classes']} distinct value(s); at least {need} are needed")
        failures = sorted(self._acc.values(), key=lambda f: (f.check, f.column or ""))
        return not failures, [f.to_api(self.max_examples) for f in failures]
