"""Benchmark: snapshot + validate + profile a 1M-row x 20-column dataset, side by side with the
same checks written in pandera and in Great Expectations.

    .venv/bin/python -m benchmarks.dataset [--rows 1000000] [--repeat 3] [--repeat-slow N]
                                           [--formats csv,parquet] [--tools ours,pandera,gx]

What each tool does, per run, in a fresh process (so peak RSS belongs to that run alone):

* ours: `mlops_operator.data.snapshot.run` on the file, exactly as the snapshot Job does it:
  stream the source, cast to the canonical types, validate, profile (sample quantiles, exact
  bin counts from a second pass, category counts, label distribution), write the canonical
  Parquet file and put it in a file:// store under its sha256.
* pandera / Great Expectations: what their users write for the same job: `pd.read_csv` (or
  `pd.read_parquet`) of the whole file, the same checks as a pandera `DataFrameSchema`
  (`schema.validate(df, lazy=True)`) or a GX expectation suite run through a
  `ValidationDefinition` on a pandas dataframe, then the same profile with pandas
  (`describe`, `quantile`, `pd.cut(...).value_counts()`, `value_counts`) and the same output
  (`df.to_parquet(compression="zstd")` + hashlib sha256 of the file).

The checks, the same in all three: column set (no missing, no extra), types, nullability,
ranges, category domains, unique ids, a minimum row count, a maximum null fraction for the
nullable columns and at least two label classes. To show that the tools do the same work,
the profiles of every tool must agree with ours on the clean input (rows, nulls, min/max/mean,
category and label counts), and inputs with known bad rows (wrong type, out of range, unknown
category, null in a non-nullable column, duplicate id: BAD_INPUTS) are validated once by
every tool, with the failed checks of each reported side by side.

pandera and great_expectations are not dependencies of the project: they live in their own
virtualenv (default ~/.cache/mlops/bench-venv, pinned by benchmarks/requirements-bench.txt),
which this script creates on first use, so they can never change the project's environment.
Input generation is not timed. Results go to benchmarks/results/dataset.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ensure_venv, sha256_file, status_kb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "dataset.json"
REQUIREMENTS = HERE / "requirements-bench.txt"
DEFAULT_VENV = Path(os.environ.get("MLOPS_BENCH_VENV", Path.home() / ".cache" / "mlops" / "bench-venv"))

#: 21 generated columns less this one: 1M rows x 20 columns, as the issue asks.
DROPPED_COLUMN = "returns_90d"
RULES = {"minRows": 1000, "maxNullFraction": 0.5, "labelMinClasses": 2}
TOOLS = ("ours", "pandera", "gx")
TOOL_NAMES = {"ours": "ours (snapshot Job)", "pandera": "pandera", "gx": "Great Expectations"}
CHILD_TIMEOUT = 1800

#: Inputs with known bad rows, each a copy of the clean CSV with these cells replaced:
#: (row index, negative from the end; column; value; the check it must fail). The duplicate id
#: is placed far from its original, in another batch of any streaming reader.
BAD_INPUTS = {
    "bad-rows": [
        (100, "age", "abc", ("type", "age")),
        (200, "discount_pct", "95", ("range", "discount_pct")),
        (300, "device", "smart_tv", ("domain", "device")),
        (400, "tenure_days", "", ("nulls", "tenure_days")),
        (-100, "session_id", "<id of row 10>", ("unique", "session_id")),
    ],
    # a null in a (non-nullable) categorical column that has a domain
    "null-category": [
        (400, "channel", "", ("nulls", "channel")),
    ],
}


# --------------------------------------------------------------------------------------------
# helpers shared by the parent and the children (standard library only at import time)

def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime





class Phases:
    """Wall time per phase of a child's run."""

    def __init__(self) -> None:
        self.t = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.t[name] = self.t.get(name, 0.0) + now - self._last
        self._last = now


# --------------------------------------------------------------------------------------------
# the pandas side: reading, profiling and writing as a pandera or GX user does it

def _read_pandas(path: Path, schema: list[dict]):
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    ts = [c["name"] for c in schema if c["type"] == "timestamp"]
    return pd.read_csv(path, parse_dates=ts)


def pandas_profile(df, schema: list[dict], label: str | None) -> dict[str, Any]:
    """The profile our snapshot computes, the way a pandas user computes it."""
    import numpy as np
    import pandas as pd

    num = [c["name"] for c in schema if c["type"] == "numeric"]
    cat = [c["name"] for c in schema if c["type"] in ("categorical", "boolean")]
    ts = [c["name"] for c in schema if c["type"] == "timestamp"]
    desc = df[num].describe()
    deciles = df[num].quantile(np.linspace(0, 1, 11)[1:-1])
    nulls = df.isna().sum()
    cols: dict[str, Any] = {}
    for c in num:
        edges = np.unique(deciles[c].dropna().to_numpy())
        counts = pd.cut(df[c], bins=[-np.inf, *edges, np.inf], right=False).value_counts(sort=False)
        cols[c] = {"nulls": int(nulls[c]), "min": float(desc.at["min", c]), "max": float(desc.at["max", c]),
                   "mean": float(desc.at["mean", c]), "binEdges": edges.tolist(),
                   "binCounts": counts.astype(int).tolist()}
    for c in cat:
        vc = df[c].value_counts()
        cols[c] = {"nulls": int(nulls[c]), "categories": {str(k): int(v) for k, v in vc.items()}}
    for c in ts:
        cols[c] = {"nulls": int(nulls[c]), "min": df[c].min().isoformat(), "max": df[c].max().isoformat()}
    doc: dict[str, Any] = {"rows": len(df), "columns": cols}
    if label:
        dist = df[label].value_counts()
        doc["label"] = {"column": label, "distribution": {str(k): int(v) for k, v in dist.items()},
                        "classes": int(dist.size)}
    return doc


def pandas_write(df, out: Path) -> str:
    df.to_parquet(out, compression="zstd", index=False)
    return sha256_file(out)


# --------------------------------------------------------------------------------------------
# the same checks as pandera and as Great Expectations, from the declared schema

def pandera_schema(schema: list[dict], rules: dict, label: str | None):
    import pandas as pd
    import pandera.pandas as pa

    max_null = float(rules.get("maxNullFraction", 1.0))
    min_rows = int(rules.get("minRows", 1))
    min_classes = int(rules.get("labelMinClasses", 2))
    dtypes = {"numeric": float, "categorical": str, "boolean": bool, "timestamp": pd.DatetimeTZDtype("ns", "UTC")}
    columns = {}
    for c in schema:
        checks = []
        lo, hi = c.get("minimum"), c.get("maximum")
        if lo is not None and hi is not None:
            checks.append(pa.Check.in_range(lo, hi))
        elif lo is not None:
            checks.append(pa.Check.ge(lo))
        elif hi is not None:
            checks.append(pa.Check.le(hi))
        if c.get("domain"):
            checks.append(pa.Check.isin(c["domain"]))
        if c.get("nullable", True) and max_null < 1.0:
            checks.append(pa.Check(lambda s: s.isna().mean() <= max_null, ignore_na=False, name="max_null_fraction"))
        if c["name"] == label:
            checks.append(pa.Check(lambda s: s.nunique() >= min_classes, name="label_min_classes"))
        columns[c["name"]] = pa.Column(dtypes[c["type"]], checks, nullable=c.get("nullable", True),
                                       unique=c.get("role") == "id")
    return pa.DataFrameSchema(columns, checks=[pa.Check(lambda df: len(df) >= min_rows, name="min_rows")],
                              strict=True, coerce=True)


def gx_suite(gx, schema: list[dict], rules: dict, label: str | None):
    E = gx.expectations
    max_null = float(rules.get("maxNullFraction", 1.0))
    suite = gx.ExpectationSuite(name="retail")
    suite.add_expectation(E.ExpectTableColumnsToMatchSet(column_set=[c["name"] for c in schema], exact_match=True))
    suite.add_expectation(E.ExpectTableRowCountToBeBetween(min_value=int(rules.get("minRows", 1))))
    for c in schema:
        name = c["name"]
        if c["type"] == "numeric":
            suite.add_expectation(E.ExpectColumnValuesToBeInTypeList(column=name, type_list=["int64", "float64"]))
        else:
            suite.add_expectation(E.ExpectColumnValuesToBeOfType(
                column=name, type_={"categorical": "str", "boolean": "bool", "timestamp": "Timestamp"}[c["type"]]))
        if not c.get("nullable", True):
            suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=name))
        elif max_null < 1.0:
            suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=name, mostly=1.0 - max_null))
        if c.get("minimum") is not None or c.get("maximum") is not None:
            suite.add_expectation(E.ExpectColumnValuesToBeBetween(column=name, min_value=c.get("minimum"),
                                                                  max_value=c.get("maximum")))
        if c.get("domain"):
            suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=name, value_set=c["domain"]))
        if c.get("role") == "id":
            suite.add_expectation(E.ExpectColumnValuesToBeUnique(column=name))
        if name == label:
            suite.add_expectation(E.ExpectColumnUniqueValueCountToBeBetween(
                column=name, min_value=int(rules.get("labelMinClasses", 2))))
    return suite


# failures of each tool, mapped onto one vocabulary: (check, column) -> {"status", "count"}
OURS_CHECKS = {"type": "type", "nulls": "nulls", "range": "range", "domain": "domain", "uniqueIds": "unique",
               "minRows": "minRows", "nullFraction": "nullFraction", "label": "labelClasses",
               "missingColumn": "columns", "unexpectedColumn": "columns"}
GX_CHECKS = {"expect_column_values_to_be_in_type_list": "type", "expect_column_values_to_be_of_type": "type",
             "expect_column_values_to_be_between": "range", "expect_column_values_to_be_in_set": "domain",
             "expect_column_values_to_be_unique": "unique", "expect_table_row_count_to_be_between": "minRows",
             "expect_column_unique_value_count_to_be_between": "labelClasses",
             "expect_table_columns_to_match_set": "columns"}


def _pandera_check(name: str) -> str:
    for prefix, check in (("coerce_dtype", "type"), ("dtype", "type"), ("not_nullable", "nulls"),
                          ("in_range", "range"), ("greater_than", "range"), ("less_than", "range"),
                          ("isin", "domain"), ("field_uniqueness", "unique"), ("min_rows", "minRows"),
                          ("max_null_fraction", "nullFraction"), ("label_min_classes", "labelClasses"),
                          ("column_in_", "columns")):
        if name.startswith(prefix):
            return check
    return name


def _key(check: str, column: str | None) -> str:
    return f"{check}:{column or '-'}"


def _norm_value(v: Any) -> str:
    """'0', '0.0', 0 -> '0.0'; 'True', 'true' -> 'true': category keys as each tool spells them."""
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return str(v).lower()


def profile_facts(doc: dict[str, Any]) -> dict[str, Any]:
    """What every tool's profile must agree on: rows, nulls, min/max/mean, category and label counts.

    (Quantile bin edges are left out: ours takes them from a bounded sample, pandas exactly.)
    """
    out: dict[str, Any] = {"rows": doc["rows"]}
    for name, info in doc["columns"].items():
        facts: dict[str, Any] = {"nulls": info.get("nulls")}
        for k in ("min", "max", "mean"):
            v = info.get(k)
            if isinstance(v, (int, float)):
                facts[k] = float(f"{v:.9g}")
            elif v is not None:
                facts[k] = str(v)
        if "categories" in info:
            facts["categories"] = {_norm_value(k): n for k, n in info["categories"].items()}
        out[name] = facts
    if doc.get("label"):
        out["label"] = {_norm_value(k): n for k, n in doc["label"]["distribution"].items()}
    return out


# --------------------------------------------------------------------------------------------
# children: one tool, one input, one fresh process; each prints one JSON line

def child_ours(inp: Path, spec_path: Path, validate_only: bool) -> dict[str, Any]:
    phases = {}
    t_start = time.perf_counter()
    import functools

    import pyarrow.parquet as pq

    from mlops_operator.data import columns, profile, snapshot, validate
    from mlops_operator.store import FileStore

    imported = time.perf_counter()
    rss_imported = status_kb("VmRSS")

    def timed(owner, attr: str, phase: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t

        setattr(owner, attr, wrapper)

    # phase timers around the snapshot's own functions (the operator code is not changed)
    timed(columns, "cast", "cast")
    for attr in ("structure", "add", "finish"):
        timed(validate.Validator, attr, "validate")
    timed(profile.Profiler, "add", "profile")
    timed(profile.Profiler, "finish", "profile (2nd pass: bin counts)")
    timed(FileStore, "put_version", "store (sha256 + copy)")

    class TimedWriter(pq.ParquetWriter):
        def write_batch(self, *a, **k):
            t = time.perf_counter()
            try:
                return super().write_batch(*a, **k)
            finally:
                phases["write parquet"] = phases.get("write parquet", 0.0) + time.perf_counter() - t

        def close(self):
            t = time.perf_counter()
            try:
                return super().close()
            finally:
                phases["write parquet"] = phases.get("write parquet", 0.0) + time.perf_counter() - t

    pq.ParquetWriter = TimedWriter
    spec_doc = json.loads(spec_path.read_text())
    spec_doc["spec"]["source"] = {"type": "file", "file": {"path": inp.name}}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as store, \
            tempfile.TemporaryDirectory(prefix="bench-snapshot-") as work:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        summary = snapshot.run(spec_doc, Path(store).as_uri(), inp.parent, Path(work))
        work_s = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
        stored = Path(summary["uri"].removeprefix("file://"))
        facts = profile_facts(json.loads((stored / "profile.json").read_text()))
    known = sum(phases.values())
    phases = {"read + parse (rest)": work_s - known, **phases}
    failures = {}
    for f in summary["failures"]:
        failures[_key(OURS_CHECKS.get(f["check"], f["check"]), f.get("column"))] = {
            "status": "fail", "count": f["count"], "examples": f.get("examples", [])[:3]}
    return {"tool": "ours", "rows": summary["rows"], "passed": summary["validated"], "failures": failures,
            "digest": summary["digest"], "profile_facts": facts, "import_s": imported - t_start, "work_s": work_s,
            "validate_s": phases.get("cast", 0.0) + phases.get("validate", 0.0),
            "phases": phases, "cpu_s": cpu, "rss_after_import_mb": rss_imported / 1024}


def _declared(spec_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    """Schema columns, validation rules and label column of the Dataset spec every tool checks."""
    spec = json.loads(spec_path.read_text())["spec"]
    columns = spec["schema"]["columns"]
    return columns, spec["validation"], next((c["name"] for c in columns if c.get("role") == "label"), None)


def child_pandera(inp: Path, spec_path: Path, validate_only: bool) -> dict[str, Any]:
    t_start = time.perf_counter()
    import pandas as pd
    import pandera.pandas as pa

    imported = time.perf_counter()
    rss_imported = status_kb("VmRSS")
    schema_decl, rules, label = _declared(spec_path)
    cpu0 = _cpu_s()
    ph = Phases()
    schema = pandera_schema(schema_decl, rules, label)
    ph.mark("build schema")
    df = _read_pandas(inp, schema_decl)
    ph.mark("read")
    failures: dict[str, Any] = {}
    try:
        df = schema.validate(df, lazy=True)
        passed = True
    except pa.errors.SchemaErrors as e:
        passed = False
        fc: pd.DataFrame = e.failure_cases
        for (check, column), grp in fc.groupby([fc["check"].astype(str), fc["column"].astype(str)], dropna=False):
            key = _key(_pandera_check(check), None if column in ("None", "nan") else column)
            errored = grp["index"].isna().all() and grp["failure_case"].astype(str).str.contains("Error\\(").any()
            entry = failures.setdefault(key, {"status": "fail", "count": 0, "examples": []})
            entry["count"] += len(grp)
            if errored:
                entry["status"] = "error"
            entry["examples"] = (entry["examples"] + grp["failure_case"].astype(str).head(3).tolist())[:3]
    ph.mark("validate")
    digest, profile = None, None
    if not validate_only:
        with tempfile.TemporaryDirectory(prefix="bench-pandera-") as work:
            profile = pandas_profile(df, schema_decl, label)
            (Path(work) / "profile.json").write_text(json.dumps(profile, default=str))
            ph.mark("profile")
            digest = pandas_write(df, Path(work) / "data.parquet")
            ph.mark("write parquet + sha256")
    work_s = sum(ph.t.values())
    return {"tool": "pandera", "rows": len(df), "passed": passed, "failures": failures, "digest": digest,
            "profile_facts": profile_facts(profile) if profile else None,
            "import_s": imported - t_start, "work_s": work_s, "validate_s": ph.t["validate"], "phases": ph.t,
            "cpu_s": _cpu_s() - cpu0, "rss_after_import_mb": rss_imported / 1024}


def child_gx(inp: Path, spec_path: Path, validate_only: bool) -> dict[str, Any]:
    t_start = time.perf_counter()
    import great_expectations as gx

    imported = time.perf_counter()
    rss_imported = status_kb("VmRSS")
    schema_decl, rules, label = _declared(spec_path)
    cpu0 = _cpu_s()
    ph = Phases()
    context = gx.get_context(mode="ephemeral")
    batch_def = (context.data_sources.add_pandas("bench").add_dataframe_asset("retail")
                 .add_batch_definition_whole_dataframe("whole"))
    suite = context.suites.add(gx_suite(gx, schema_decl, rules, label))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="retail", data=batch_def, suite=suite))
    ph.mark("set up context + suite")
    df = _read_pandas(inp, schema_decl)
    ph.mark("read")
    result = validation.run(batch_parameters={"dataframe": df})
    ph.mark("validate")
    failures: dict[str, Any] = {}
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        check = GX_CHECKS.get(cfg.type, cfg.type)
        if cfg.type == "expect_column_values_to_not_be_null":
            check = "nulls" if cfg.kwargs.get("mostly") in (None, 1.0) else "nullFraction"
        raised = bool(r.exception_info and any(
            (v.get("raised_exception") if isinstance(v, dict) else False)
            for v in ([r.exception_info] if "raised_exception" in r.exception_info else r.exception_info.values())))
        res = r.result or {}
        count = res.get("unexpected_count")
        examples = [str(x) for x in (res.get("partial_unexpected_list") or [])[:3]]
        if count is None:
            count, examples = 1, [str(res.get("observed_value"))]
        failures[_key(check, cfg.kwargs.get("column"))] = {"status": "error" if raised else "fail",
                                                           "count": count, "examples": examples}
    digest, profile = None, None
    if not validate_only:
        with tempfile.TemporaryDirectory(prefix="bench-gx-") as work:
            profile = pandas_profile(df, schema_decl, label)
            (Path(work) / "profile.json").write_text(json.dumps(profile, default=str))
            ph.mark("profile")
            digest = pandas_write(df, Path(work) / "data.parquet")
            ph.mark("write parquet + sha256")
    work_s = sum(ph.t.values())
    return {"tool": "gx", "rows": len(df), "passed": bool(result.success), "failures": failures, "digest": digest,
            "profile_facts": profile_facts(profile) if profile else None,
            "import_s": imported - t_start, "work_s": work_s, "validate_s": ph.t["validate"], "phases": ph.t,
            "cpu_s": _cpu_s() - cpu0, "rss_after_import_mb": rss_imported / 1024,
            "expectations": len(suite.expectations)}


CHILDREN = {"ours": child_ours, "pandera": child_pandera, "gx": child_gx}


def child_main(tool: str, inp: str, spec: str, validate_only: bool) -> None:
    out = CHILDREN[tool](Path(inp), Path(spec), validate_only)
    out["peak_rss_mb"] = status_kb("VmHWM") / 1024
    print("BENCH-RESULT " + json.dumps(out, default=str), flush=True)


# --------------------------------------------------------------------------------------------
# the parent: inputs, the bench virtualenv, the runs, the table

def make_inputs(rows: int, seed: int, where: Path, formats: list[str]) -> dict[str, Any]:
    """The clean input(s) and the CSV with the known bad rows (not timed)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from mlops_operator.data import retail

    table = retail.generate(rows, seed=seed).drop_columns([DROPPED_COLUMN])
    files = {}
    if "csv" in formats:
        files["csv"] = where / "retail.csv"
        pacsv.write_csv(table, files["csv"])
    if "parquet" in formats:
        files["parquet"] = where / "retail.parquet"
        pq.write_table(table, files["parquet"])
    clean_csv = files.get("csv") or where / "retail-clean.csv"
    if not clean_csv.exists():
        pacsv.write_csv(table, clean_csv)
    header = table.schema.names
    id_col = header.index("session_id")
    bad = {}
    for name, cells in BAD_INPUTS.items():
        bad[name] = where / f"retail-{name}.csv"
        fix = {(i if i >= 0 else rows + i): (header.index(col), val) for i, col, val, _ in cells}
        with open(clean_csv) as src, open(bad[name], "w") as dst:
            dst.write(src.readline())
            dup_id = None
            for i, line in enumerate(src):
                if i == 10:
                    dup_id = line.split(",")[id_col]
                if i in fix:
                    fields = line.rstrip("\n").split(",")
                    col, val = fix[i]
                    fields[col] = dup_id if val == "<id of row 10>" else val
                    line = ",".join(fields) + "\n"
                dst.write(line)
    if clean_csv != files.get("csv"):
        clean_csv.unlink()
    schema = [c for c in retail.RETAIL_SCHEMA if c["name"] != DROPPED_COLUMN]
    spec = {"name": "retail", "spec": {"source": {"type": "file", "file": {"path": "retail.csv"}},
                                       "schema": {"columns": schema}, "validation": RULES}}
    spec_path = where / "spec.json"
    spec_path.write_text(json.dumps(spec))
    return {"files": files, "bad": bad, "spec": spec_path, "columns": len(schema)}





def versions(py: Path, modules: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    r = subprocess.run([str(py), "-c", code, *modules], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def import_error(py: Path, module: str) -> str | None:
    r = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, text=True,
                       env=_child_env(), cwd=ROOT)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GX_ANALYTICS_ENABLED"] = "false"  # no usage statistics (and no network calls) from GX
    env["PYTHONPATH"] = str(ROOT)  # `benchmarks` importable from the bench venv
    return env


def run_child(py: Path, tool: str, inp: Path, spec: Path, validate_only: bool = False) -> dict[str, Any]:
    cmd = [str(py), "-m", "benchmarks.dataset", "--child", tool, "--input", str(inp), "--spec", str(spec)]
    if validate_only:
        cmd.append("--validate-only")
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), cwd=ROOT, timeout=CHILD_TIMEOUT)
    wall = time.perf_counter() - t
    line = next((x for x in r.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if r.returncode != 0 or line is None:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-15:]
        return {"tool": tool, "error": f"exit {r.returncode}: " + "\n".join(tail)}
    out = json.loads(line[len("BENCH-RESULT "):])
    out["process_wall_s"] = wall
    return out


def _median(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: list[dict], rows: int) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    phases: dict[str, list[float]] = {}
    for r in ok:
        for k, v in r["phases"].items():
            phases.setdefault(k, []).append(v)
    work = _median(ok, "work_s")
    return {"runs": len(ok), "work_s": work, "work_s_runs": [round(r["work_s"], 3) for r in ok],
            "rows_per_s": rows / work, "validate_s": _median(ok, "validate_s"),
            "process_wall_s": _median(ok, "process_wall_s"), "import_s": _median(ok, "import_s"),
            "cpu_s": _median(ok, "cpu_s"), "peak_rss_mb": _median(ok, "peak_rss_mb"),
            "peak_rss_mb_runs": [round(r["peak_rss_mb"], 1) for r in ok],
            "rss_after_import_mb": _median(ok, "rss_after_import_mb"),
            "phases_s": {k: statistics.median(v) for k, v in phases.items()},
            "passed": [r["passed"] for r in ok], "digests": sorted({str(r["digest"]) for r in ok})}


def fact_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two tools' profile facts differ (paths), empty when they agree."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += fact_differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a} != {b}"]


def agreement(raw: dict[str, list[dict]]) -> dict[str, Any]:
    """Each tool's first profile against ours, and each tool's verdict on the clean input."""
    ref = next((r["profile_facts"] for r in raw.get("ours", []) if r.get("profile_facts")), None)
    out = {}
    for tool, runs in raw.items():
        facts = next((r["profile_facts"] for r in runs if r.get("profile_facts")), None)
        if facts is None or ref is None:
            continue
        out[tool] = {"profile_differences": fact_differences(ref, facts)[:20],
                     "clean_input_passed": all(r["passed"] for r in runs if "error" not in r)}
    return out


def table(res: dict[str, Any]) -> str:
    v = res.get("versions", {})
    ours_v, bench_v = v.get("ours", {}), v.get("bench-venv", {})
    lines = [f"{res['machine']['cpus']} CPUs, Python {res['machine']['python']}; "
             f"ours: pyarrow {ours_v.get('pyarrow')}, numpy {ours_v.get('numpy')}; "
             f"bench venv: pandera {bench_v.get('pandera')}, great-expectations {bench_v.get('great-expectations')}, "
             f"pandas {bench_v.get('pandas')}, pyarrow {bench_v.get('pyarrow')}, numpy {bench_v.get('numpy')}; "
             f"repeats {res['repeat']}"]
    for fmt, per_tool in res["runs"].items():
        ours = per_tool.get("ours", {})
        lines.append(f"\ninput: {fmt}, {res['rows']:,} rows x {res['columns']} columns\n")
        lines.append("| tool | validate + profile + write, median (s) | runs (s) | rows/s | validation only (s) "
                     "| process wall incl. imports (s) | CPU (s) | peak RSS (MB) | time ratio vs ours "
                     "| peak RSS ratio vs ours |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for tool in TOOLS:
            s = per_tool.get(tool)
            if s is None:
                continue
            if "error" in s:
                lines.append(f"| {TOOL_NAMES[tool]} | not run: {s['error'].splitlines()[-1][:150]} "
                             "| | | | | | | | |")
                continue
            tr = f"{s['work_s'] / ours['work_s']:.2f}x" if ours.get("work_s") else ""
            mr = f"{s['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x" if ours.get("peak_rss_mb") else ""
            runs = ", ".join(f"{x:.2f}" for x in s["work_s_runs"])
            lines.append(f"| {TOOL_NAMES[tool]} | {s['work_s']:.2f} | {runs} "
                         f"| {s['rows_per_s']:,.0f} | {s['validate_s']:.2f} | {s['process_wall_s']:.2f} "
                         f"| {s['cpu_s']:.2f} | {s['peak_rss_mb']:.0f} | {tr} | {mr} |")
        agree = res.get("agreement", {}).get(fmt, {})
        if agree:
            lines.append("\nclean input: " + "; ".join(
                f"{TOOL_NAMES[t]} {'passed' if a['clean_input_passed'] else 'FAILED'}"
                + ("" if t == "ours" else (", profile agrees with ours" if not a["profile_differences"] else
                                           f", profile differs from ours: {a['profile_differences'][:3]}"))
                for t, a in agree.items()) + " (rows, nulls, min/max/mean, category and label counts)")
        lines.append("\nphases (median s):\n")
        for tool in TOOLS:
            s = per_tool.get(tool)
            if s and "phases_s" in s:
                lines.append(f"- {TOOL_NAMES[tool]}: " + ", ".join(f"{k} {v:.2f}" for k, v in s["phases_s"].items()))
    for name, v in (res.get("verdicts") or {}).items():
        cells_of = BAD_INPUTS[name]
        expected = {_key(*c[3]) for c in cells_of}
        lines.append(f"\nbad input `{name}` (" + ", ".join(
            f"{c} of row {i if i >= 0 else res['rows'] + i}: {val!r}" for i, c, val, _ in cells_of)
            + "): failed checks per tool, (count)\n")
        keys = sorted({k for t in v.values() if "failures" in t for k in t["failures"]} | expected)
        tools = [t for t in TOOLS if t in v]
        lines.append("| check:column | injected | " + " | ".join(TOOL_NAMES[t] for t in tools) + " |")
        lines.append("|---|---|" + "---|" * len(tools))
        for k in keys:
            cells = []
            for t in tools:
                if "error" in v[t]:
                    cells.append("crashed" if v[t].get("crashed") else "not run")
                    continue
                f = v[t]["failures"].get(k)
                cells.append("pass" if f is None else f"{f['status']} ({f['count']})")
            lines.append(f"| {k} | {'yes' if k in expected else 'no'} | " + " | ".join(cells) + " |")
        lines.append("| **dataset verdict** | invalid | " + " | ".join(
            (f"crashed: {v[t]['error'].splitlines()[-1][:120]}" if v[t].get("crashed") else "not run")
            if "error" in v[t] else ("valid" if v[t]["passed"] else "invalid") for t in tools) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dataset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repeat-slow", type=int, default=None,
                    help="repeats for pandera and GX (default: --repeat); say so when you report")
    ap.add_argument("--formats", default="csv,parquet", help="comma-separated input formats: csv, parquet")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench-venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--workdir", type=Path, default=None, help="where the inputs go (default: a temp dir)")
    ap.add_argument("--no-save", action="store_true", help="do not write results/dataset.json")
    # internal: one run of one tool in a fresh process
    ap.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--validate-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child_main(a.child, a.input, a.spec, a.validate_only)
        return 0

    tools = [t for t in TOOLS if t in a.tools.split(",")]
    formats = [f for f in a.formats.split(",") if f]
    repeat_slow = a.repeat_slow if a.repeat_slow is not None else a.repeat
    started = time.time()
    res: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "rows": a.rows, "repeat": {"ours": a.repeat, "pandera": repeat_slow, "gx": repeat_slow},
        "command": "python -m benchmarks.dataset " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rules": RULES, "dropped_column": DROPPED_COLUMN,
    }
    errors: dict[str, str] = {}
    pys: dict[str, Path] = {"ours": Path(sys.executable)}
    res["versions"] = {"ours": versions(pys["ours"], ["mlops-operator", "pyarrow", "numpy", "pandas"])}
    if {"pandera", "gx"} & set(tools):
        py, err = ensure_venv(a.bench_venv, REQUIREMENTS)
        for tool, module in (("pandera", "pandera.pandas"), ("gx", "great_expectations")):
            if tool not in tools:
                continue
            if err:
                errors[tool] = err
            elif e := import_error(py, module):
                errors[tool] = f"import {module} failed: {e}"
            else:
                pys[tool] = py
        if py:
            res["versions"]["bench-venv"] = versions(py, ["pandera", "great-expectations", "pandas", "numpy",
                                                          "pyarrow"])
            res["bench_venv"] = str(a.bench_venv)
    tmp = a.workdir or Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating {a.rows:,} rows ({', '.join(formats)} + CSVs with bad rows) in {tmp} ...", file=sys.stderr)
        inputs = make_inputs(a.rows, a.seed, tmp, formats)
        res["columns"] = inputs["columns"]
        res["input_bytes"] = {f: p.stat().st_size for f, p in inputs["files"].items()}
        res["runs"], res["raw"] = {}, {}
        for fmt, path in inputs["files"].items():
            raw: dict[str, list[dict]] = {t: [] for t in tools}
            for i in range(max(a.repeat, repeat_slow)):
                for tool in tools:  # interleaved, so drifts of the machine hit every tool alike
                    if tool in errors or i >= (a.repeat if tool == "ours" else repeat_slow):
                        continue
                    r = run_child(pys[tool], tool, path, inputs["spec"])
                    raw[tool].append(r)
                    msg = r.get("error") or f"{r['work_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
                    print(f"  {fmt} {tool} run {i + 1}: {msg}", file=sys.stderr)
            res["agreement"] = res.get("agreement", {})
            res["agreement"][fmt] = agreement(raw)
            for runs in raw.values():
                for r in runs:
                    r.pop("profile_facts", None)
            res["raw"][fmt] = raw
            res["runs"][fmt] = {t: ({"error": errors[t]} if t in errors else summarise(raw[t], a.rows)) for t in tools}
        verdicts: dict[str, dict] = {}
        for name, path in inputs["bad"].items():
            verdicts[name] = {}
            for tool in tools:
                if tool in errors:
                    verdicts[name][tool] = {"error": errors[tool]}
                    continue
                r = run_child(pys[tool], tool, path, inputs["spec"], validate_only=tool != "ours")
                print(f"  {name} {tool}: {r.get('error') or sorted(r['failures'])}", file=sys.stderr)
                verdicts[name][tool] = {**r, "crashed": True} if "error" in r else {
                    "passed": r["passed"], "failures": r["failures"], "work_s": r["work_s"],
                    "validate_s": r["validate_s"], "peak_rss_mb": r["peak_rss_mb"]}
        res["verdicts"] = verdicts
        res["bad_inputs"] = {name: [{"row": i if i >= 0 else a.rows + i, "column": c, "value": v,
                                     "check": _key(*e)} for i, c, v, e in cells]
                             for name, cells in BAD_INPUTS.items()}
    finally:
        if a.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    res["total_s"] = round(time.time() - started, 1)
    if not a.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
