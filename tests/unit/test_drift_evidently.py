"""Our drift decisions against Evidently's, one for one, on fixed shifted and unshifted datasets.

Evidently 0.7.23 is a dev dependency (pyproject `dev` extra, pinned in constraints.txt), so
`make test` installs it and this test always runs it; it is never skipped. It runs the real
`Report([DataDriftPreset()])` on pandas frames with an explicit DataDefinition and compares,
per column: the method Evidently chose, its score and its drift decision, with ours from

* `drift.compare` (whole raw datasets): every column, every method, the same decision and the
  same score to 1e-6 relative;
* `drift.evaluate` (the DriftMonitor's path) on what the profile and the serving pods count:
  the same method and decision for every column, and Evidently's score inside the interval
  our score is guaranteed to be in (exact for categories and few-valued numeric columns, KS
  exact for a reference of at most 1000 rows). tests/unit/test_drift_production.py runs the
  whole production path (profiler, model server counters, cursors, window) against Evidently
  on generated data.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from mlops_operator import drift

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry off (set before import)

NUMERIC = ["num_normal", "num_lognormal", "num_uniform_nan", "num_int_many", "num_discrete3", "num_binary",
           "num_const"]
CATEGORICAL = ["cat_4", "cat_binary", "cat_many", "cat_new", "cat_nulls", "flag_bool"]

# (name, reference rows, current rows, shifted): small (<= 1000 -> tests) and large references
DATASETS = [
    ("small-same", 300, 300, False),
    ("small-shift", 300, 400, True),
    ("boundary-1000-same", 1000, 600, False),
    ("boundary-1000-shift", 1000, 600, True),
    ("just-large-1001-shift", 1001, 1001, True),
    ("large-same", 5000, 5000, False),
    ("large-shift", 5000, 3000, True),
    ("large-small-cur-shift", 3000, 20000, True),
]

#: Evidently reports a default method by its display name and a requested one by its name.
EVIDENTLY_METHODS = {m.evidently_name: name for name, m in drift.METHODS.items()} | {
    name: name for name in drift.METHODS} | {"z": "ztest"}


def make_columns(seed: int, n: int, shifted: bool) -> dict[str, np.ndarray]:
    """Mixed columns; `shifted` moves most of them by clearly detectable amounts and a few by
    borderline ones, so that both decisions occur at every size."""
    rng = np.random.default_rng(seed)
    s = 1.0 if shifted else 0.0
    cols: dict[str, np.ndarray] = {}
    cols["num_normal"] = rng.normal(0.4 * s, 1.0, n)
    cols["num_lognormal"] = rng.lognormal(0.0, 0.6, n) * (1 + 0.08 * s)
    u = rng.uniform(0, 10, n) + 0.15 * s
    u[rng.random(n) < 0.05] = np.nan
    cols["num_uniform_nan"] = u
    cols["num_int_many"] = rng.integers(0, 50, n).astype(np.float64) + (2 if shifted else 0)
    cols["num_discrete3"] = rng.choice([0.0, 1.0, 2.0], n, p=[0.5, 0.3, 0.2] if not shifted else [0.4, 0.35, 0.25])
    cols["num_binary"] = (rng.random(n) < (0.3 + 0.03 * s)).astype(np.float64)
    cols["num_const"] = np.full(n, 3.0 if not shifted else 4.0)
    cols["cat_4"] = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), n,
                               p=[0.4, 0.3, 0.2, 0.1] if not shifted else [0.3, 0.3, 0.25, 0.15])
    cols["cat_binary"] = rng.choice(np.array(["no", "yes"], dtype=object), n, p=[0.8 - 0.02 * s, 0.2 + 0.02 * s])
    zipf = 1.0 / np.arange(1, 31) ** (1.0 + 0.3 * s)
    cols["cat_many"] = rng.choice(np.array([f"k{i:02d}" for i in range(30)], dtype=object), n, p=zipf / zipf.sum())
    new = np.array(["x", "y", "z", "w"], dtype=object)
    cols["cat_new"] = rng.choice(new, n, p=[0.5, 0.3, 0.2, 0.0] if not shifted else [0.49, 0.3, 0.2, 0.01])
    c = rng.choice(np.array(["p", "q", "r"], dtype=object), n, p=[0.6, 0.3, 0.1])
    c[rng.random(n) < 0.1] = None
    cols["cat_nulls"] = c
    cols["flag_bool"] = rng.random(n) < (0.5 + 0.05 * s)
    return cols


def dataset(name: str, n_ref: int, n_cur: int, shifted: bool):
    seed = sum(map(ord, name))
    return make_columns(seed, n_ref, False), make_columns(seed + 1, n_cur, shifted)


@pytest.fixture(scope="module")
def evidently_results():
    """Evidently's per-column (method, score, drifted) for every dataset, run once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        out = {}
        for name, n_ref, n_cur, shifted in DATASETS:
            ref, cur = dataset(name, n_ref, n_cur, shifted)
            definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
            snap = Report([DataDriftPreset()], include_tests=True).run(
                Dataset.from_pandas(pd.DataFrame(cur), data_definition=definition),
                Dataset.from_pandas(pd.DataFrame(ref), data_definition=definition))
            out[name] = parse_evidently(snap.dict())
    return out


#: Per-column methods and thresholds, given to both tools (Evidently spells ztest "z").
OVERRIDES = {
    "num_normal": ("psi", None), "num_lognormal": ("jensenshannon", 0.05), "num_uniform_nan": ("ks", 0.01),
    "num_int_many": ("wasserstein", 0.05), "num_discrete3": ("psi", None), "cat_4": ("psi", 0.05),
    "cat_many": ("chisquare", None), "cat_binary": ("ztest", 0.2), "cat_new": ("jensenshannon", 0.02),
}
OVERRIDE_CASES = ["small-shift", "boundary-1000-same", "large-shift"]


@pytest.fixture(scope="module")
def evidently_override_results():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        out = {}
        for case in DATASETS:
            if case[0] not in OVERRIDE_CASES:
                continue
            ref, cur = dataset(*case)
            definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
            preset = DataDriftPreset(
                per_column_method={c: ("z" if m == "ztest" else m) for c, (m, _) in OVERRIDES.items()},
                per_column_threshold={c: t for c, (_, t) in OVERRIDES.items() if t is not None})
            snap = Report([preset], include_tests=True).run(
                Dataset.from_pandas(pd.DataFrame(cur), data_definition=definition),
                Dataset.from_pandas(pd.DataFrame(ref), data_definition=definition))
            out[case[0]] = parse_evidently(snap.dict())
    return out


def parse_evidently(doc: dict) -> dict:
    """{column: (our method name, score, drifted)} and the dataset share from a snapshot dict."""
    cols: dict[str, list] = {}
    share = None
    for m in doc["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            cols[cfg["column"]] = [EVIDENTLY_METHODS[cfg["method"]], float(m["value"]), None]
        elif cfg["type"].endswith("DriftedColumnsCount"):
            share = m["value"]["share"]
    for t in doc["tests"]:
        params = t["metric_config"]["params"]
        if params["type"].endswith("ValueDrift"):
            cols[params["column"]][2] = str(t["status"]).endswith("FAIL")
    return {"columns": {k: tuple(v) for k, v in cols.items()}, "share": share}


def ours_fast(name, n_ref, n_cur, shifted):
    ref, cur = dataset(name, n_ref, n_cur, shifted)
    kinds = {c: "numeric" for c in NUMERIC} | {c: "categorical" for c in CATEGORICAL}
    return drift.compare(ref, cur, kinds=kinds)


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


@pytest.mark.parametrize("case", DATASETS, ids=[d[0] for d in DATASETS])
def test_fast_path_matches_evidently(case, evidently_results):
    ev = evidently_results[case[0]]
    ours = ours_fast(*case)
    disagreements = []
    for f in ours.features:
        e_method, e_score, e_drift = ev["columns"][f.name]
        if (f.method, f.drifted) != (e_method, e_drift) or not _close(f.score, e_score):
            disagreements.append(f"{f.name}: ours {f.method} {f.score:.6g} drift={f.drifted}, "
                                 f"evidently {e_method} {e_score:.6g} drift={e_drift}")
    assert not disagreements, "\n".join(disagreements)
    assert sorted(f.name for f in ours.features) == sorted(ev["columns"])
    assert math.isclose(ours.share, ev["share"])
    assert ours.drifted == (ev["share"] >= 0.5)


@pytest.mark.parametrize("name", OVERRIDE_CASES)
def test_fast_path_matches_evidently_with_per_column_methods_and_thresholds(name, evidently_override_results):
    ev = evidently_override_results[name]
    ref, cur = dataset(*next(d for d in DATASETS if d[0] == name))
    kinds = {c: "numeric" for c in NUMERIC} | {c: "categorical" for c in CATEGORICAL}
    ours = drift.compare(ref, cur, kinds=kinds,
                         overrides={c: drift.Override(m, t) for c, (m, t) in OVERRIDES.items()})
    disagreements = []
    for f in ours.features:
        e_method, e_score, e_drift = ev["columns"][f.name]
        if f.name in OVERRIDES:
            assert f.method == OVERRIDES[f.name][0]
        if (f.method, f.drifted) != (e_method, e_drift) or not _close(f.score, e_score):
            disagreements.append(f"{f.name}: ours {f.method} {f.score:.6g} drift={f.drifted}, "
                                 f"evidently {e_method} {e_score:.6g} drift={e_drift}")
    assert not disagreements, "\n".join(disagreements)


def test_datasets_exercise_every_default_and_both_decisions(evidently_results):
    """The fixture is not trivially agreeable: all five default methods occur, each decided both ways."""
    seen: dict[str, set[bool]] = {}
    for res in evidently_results.values():
        for method, _score, drifted in res["columns"].values():
            seen.setdefault(method, set()).add(drifted)
    assert set(seen) == {"ks", "chisquare", "ztest", "wasserstein", "jensenshannon"}
    assert all(v == {True, False} for v in seen.values()), seen


@pytest.mark.parametrize("case", DATASETS, ids=[d[0] for d in DATASETS])
def test_engine_on_histograms_matches_evidently(case, evidently_results):
    ev = evidently_results[case[0]]
    ref_cols, cur_cols = dataset(*case)
    reference = {c: drift.ReferenceData.from_sample(ref_cols[c], "numeric" if c in NUMERIC else "categorical")
                 for c in NUMERIC + CATEGORICAL}
    current = {c: drift.CurrentData.from_sample(cur_cols[c], reference[c]) for c in reference}
    res = drift.evaluate(reference, current, min_samples=1)
    disagreements = []
    for f in res.features:
        e_method, e_score, e_drift = ev["columns"][f.name]
        line = (f"{f.name}: ours {f.method}/{f.basis} {f.score:.6g} [{f.lower:.6g}, {f.upper:.6g}] drift={f.drifted}, "
                f"evidently {e_method} {e_score:.6g} drift={e_drift}")
        inside = min(f.lower, f.upper) - 1e-9 * max(1, abs(e_score)) <= e_score <= max(f.lower, f.upper) + 1e-9 * max(
            1, abs(e_score))
        if f.method != e_method or f.drifted != e_drift or not inside:
            disagreements.append(line)
        if f.kind != "numeric" or f.method in ("chisquare", "ztest"):
            assert _close(f.score, e_score), line  # counts: exact
    assert not disagreements, "\n".join(disagreements)
    assert math.isclose(res.share, ev["share"]) and res.drifted == (ev["share"] >= 0.5)
