"""The production drift path against Evidently 0.7.23's DataDriftPreset on the raw data (issue 17).

The path under test is the one the serving pods and the DriftMonitor run, end to end and
in-process: the reference dataset is profiled by the real profiler (data/profile.py, from a
Parquet file) and turned into model.json's reference (training/artifact.reference_of); the
current rows are counted by real model-server monitors (serving/monitor.py), one per pod, in
several batches; the "operator" reads each pod's stats document through its cursor, over JSON,
keeps its state as JSON (monitoring/windows.accumulate), and judges the window with
drift.evaluate on the references it builds from the reference's JSON, as the controller does.
Evidently gets the raw reference and the raw current rows.

What is asserted, per column:

* the same method as Evidently (its choice depends on the reference size and the number of
  distinct values in reference and current together: exact here);
* when our score is bounded (``lower``/``upper``: KS, Wasserstein, and every exact counts
  test), Evidently's score lies in that interval: the stated error bound holds;
* the same decision, unless the threshold lies inside our interval (both statistics then lie
  within the bound of the threshold, the only case where they may differ);

and per dataset the same share and decision, unless an ambiguous column decided it. The
agreement rate over every column of every case is checked against the issue's goal (99%) by
the last test. Fixed hard cases (the issue's misses) always run; the hypothesis sweep runs
``DRIFT_EVIDENTLY_EXAMPLES`` examples (8 by default, for ``make test-unit``; e.g. 300 for a
measurement: ``DRIFT_EVIDENTLY_EXAMPLES=300 pytest tests/unit/test_drift_production.py``).
"""

from __future__ import annotations

import math
import os
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from mlops_operator import drift
from mlops_operator.data.profile import Profiler
from mlops_operator.monitoring.windows import Window, accumulate, stats_path
from mlops_operator.serving.monitor import Monitor
from mlops_operator.store.model_manifest import Feature, ModelManifest, Output
from mlops_operator.training.artifact import reference_of

from .test_drift_evidently import parse_evidently

os.environ.setdefault("DO_NOT_TRACK", "1")
EXAMPLES = int(os.environ.get("DRIFT_EVIDENTLY_EXAMPLES", "8"))
GOAL = 0.99


# ---------------------------------------------------------------------------------------------
# columns

@dataclass
class Col:
    kind: str  # numeric | categorical | boolean
    ref: np.ndarray
    cur: np.ndarray


def _nulls(g: np.random.Generator, a: np.ndarray, share: float) -> np.ndarray:
    if share <= 0:
        return a
    a = a.astype(object) if a.dtype.kind in "OUSb" else a.astype(np.float64).copy()
    a[g.random(a.size) < share] = None if a.dtype == object else np.nan
    return a


def numeric(g: np.random.Generator, family: str, n_ref: int, n_cur: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """A reference and a shifted current sample of one family; shift 0 is no drift."""
    def draw(n: int, s: float) -> np.ndarray:
        if family == "normal":
            return g.normal(0.25 * s, 1.0 + 0.15 * s, n)
        if family == "lognormal":  # the issue's miss: a 1.3x scale change at s = 1
            return g.lognormal(0.0, 1.0, n) * (1 + 0.3 * s)
        if family == "student":
            return g.standard_t(2, n) * 3.0 + 0.3 * s
        if family == "pareto":
            return (g.pareto(2.5 - 0.6 * s, n) + 1.0) * 100.0
        if family == "integers":
            return np.floor(g.uniform(0, 40, n) + 2.0 * s)
        if family == "ages":
            return np.round(g.normal(45 + 2 * s, 12, n)).clip(18, 90)
        if family == "near_constant":  # the issue's miss: 10.0 -> 10.3 at s = 1
            return 10.0 + 0.3 * s + g.normal(0, 0.0545, n)
        if family == "mostly_constant":
            x = np.full(n, 10.0)
            k = g.random(n) < 0.02 + 0.05 * s
            x[k] = 10.0 + g.exponential(0.5, int(k.sum()))
            return x
        if family == "discrete":  # at most 5 values: chi-squared / Z-test / Jensen-Shannon on values
            p = np.array([0.5, 0.3, 0.2]) + 0.1 * s * np.array([-1.0, 0.5, 0.5])
            return g.choice([0.0, 1.0, 2.0], n, p=p / p.sum())
        if family == "binary":
            return (g.random(n) < 0.3 + 0.05 * s).astype(np.float64)
        if family == "new_value":  # a few distinct values, a new one appears in current
            x = g.choice([1.0, 2.0, 5.0], n, p=[0.6, 0.3, 0.1])
            if s > 0:
                x[g.random(n) < 0.01 * s] = 7.5
            return x
        if family == "mixture":
            return np.where(g.random(n) < 0.3 + 0.08 * s, g.normal(-2, 1, n), g.normal(3, 1.5, n))
        raise ValueError(family)

    return draw(n_ref, 0.0), draw(n_cur, shift)


FAMILIES = ["normal", "lognormal", "student", "pareto", "integers", "ages", "near_constant", "mostly_constant",
            "discrete", "binary", "new_value", "mixture"]


def categorical(g: np.random.Generator, k: int, n_ref: int, n_cur: int, shift: float,
                new: float) -> tuple[np.ndarray, np.ndarray]:
    keys = np.array([f"k{i:02d}" for i in range(k)], dtype=object)
    w = g.dirichlet(np.ones(k) * 2)
    w2 = (1 - min(shift, 1.0) * 0.3) * w + min(shift, 1.0) * 0.3 * w[::-1]
    ref = g.choice(keys, n_ref, p=w)
    cur = g.choice(keys, n_cur, p=w2 / w2.sum())
    if new > 0:
        cur[g.random(n_cur) < new] = "brand-new"
    return ref, cur


def boolean(g: np.random.Generator, n_ref: int, n_cur: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    return (g.random(n_ref) < 0.4).astype(object), (g.random(n_cur) < 0.4 + 0.04 * shift).astype(object)


# ---------------------------------------------------------------------------------------------
# the production path and Evidently

def production(cols: dict[str, Col], tmp: Path, pods: int, ticks: int, seed: int) -> drift.DatasetDrift:
    g = np.random.default_rng(seed)
    # 1. the Dataset's profile, from its canonical Parquet file, and model.json's reference
    table = pa.table({name: pa.array(c.ref.tolist() if c.kind != "numeric" else c.ref, from_pandas=True,
                                     type=pa.float64() if c.kind == "numeric" else
                                     pa.bool_() if c.kind == "boolean" else pa.string())
                      for name, c in cols.items()})
    path = tmp / "data.parquet"
    pq.write_table(table, path)
    schema = [{"name": n, "type": c.kind, "role": "feature"} for n, c in cols.items()]
    prof = Profiler(schema, None)
    for batch in table.to_batches(max_chunksize=1000):
        prof.add(batch)
    profile = orjson.loads(orjson.dumps(prof.finish(path)))
    reference = reference_of(profile, [{"name": n, "type": c.kind} for n, c in cols.items()], None, "y", "d",
                             "0" * 64)
    inputs = [Feature(name=n, type=c.kind, datatype="BYTES" if c.kind == "categorical" else "FP32")
              for n, c in cols.items()]
    manifest = ModelManifest(model="m", task="classification", estimator="e", target="y", inputs=inputs,
                             outputs=[Output(name="label", datatype="INT64", shape=[-1]),
                                      Output(name="probabilities", datatype="FP32", shape=[-1, 2])],
                             classes=["0", "1"], onnx_sha256="0" * 64, reference=reference)
    model = types.SimpleNamespace(manifest=manifest, num_features=[f for f in inputs if f.type != "categorical"],
                                  cat_features=[f for f in inputs if f.type == "categorical"], features=inputs,
                                  classes=["0", "1"], classifier=True)
    # 2. the serving pods count the current rows, in batches, as the server's tensors give them
    n = len(next(iter(cols.values())).cur)
    pod_of = g.integers(0, pods, n)
    tick_of = np.sort(g.integers(0, ticks, n))
    monitors = {f"pod-{p}": Monitor(model, seed=0) for p in range(pods)}

    def tensors(rows: np.ndarray):
        x = np.stack([np.array([np.nan if v is None else float(v) for v in cols[f.name].cur[rows]])
                      if cols[f.name].kind == "boolean" else cols[f.name].cur[rows].astype(np.float64)
                      for f in model.num_features]) if model.num_features else np.zeros((0, rows.size))
        cats = [["" if v is None else str(v) for v in cols[f.name].cur[rows]] for f in model.cat_features]
        k = rows.size
        return x, cats, {"label": np.zeros(k, np.int64), "probabilities": np.full((k, 2), 0.5, np.float32)}

    # 3. the operator reads every pod each tick (JSON over the wire, its state JSON in a ConfigMap)
    state: dict[str, Any] = {"pods": {}, "window": Window(0.0).to_json()}
    for t in range(ticks):
        for p, mon in enumerate(monitors.values()):
            rows = np.flatnonzero((pod_of == p) & (tick_of == t))
            for chunk in np.array_split(rows, max(1, rows.size // 700)):
                if chunk.size:
                    mon.observe(*tensors(chunk))
        docs = {}
        for name, mon in monitors.items():
            cursor = stats_path("m", state["pods"].get(name)).split("cursor=")[1]
            docs[name] = orjson.loads(orjson.dumps({"startId": name, "drift": mon.drift_doc(name, cursor)}))
        res = accumulate(Window.from_json(state["window"]), state["pods"], docs)
        assert not res.notes, res.notes
        state = orjson.loads(orjson.dumps({"pods": res.pods, "window": res.window.to_json()}))
    window = Window.from_json(state["window"])
    assert window.rows == n
    # 4. the judgement, on the reference as the controller gets it (JSON from /reference)
    refs = drift.references_from_profile(reference.model_dump(by_alias=True, exclude_none=True,
                                                              mode="json")["columns"])
    return drift.evaluate(refs, window.features, min_samples=1)


def evidently(cols: dict[str, Col]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        num = [n for n, c in cols.items() if c.kind == "numeric"]
        cat = [n for n, c in cols.items() if c.kind != "numeric"]
        definition = DataDefinition(numerical_columns=num, categorical_columns=cat)

        def frame(side: str) -> pd.DataFrame:
            return pd.DataFrame({n: (getattr(c, side).astype(np.float64) if c.kind == "numeric" else getattr(c, side))
                                 for n, c in cols.items()})

        snap = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(frame("cur"), data_definition=definition),
            Dataset.from_pandas(frame("ref"), data_definition=definition))
        return parse_evidently(snap.dict())


@dataclass
class Tally:
    columns: int = 0
    agree: int = 0
    ambiguous: int = 0  # disagreements with the threshold inside the guaranteed interval
    datasets: int = 0
    datasets_agree: int = 0
    lines: list[str] = field(default_factory=list)


TALLY = Tally()


def check(cols: dict[str, Col], tmp: Path, pods: int = 2, ticks: int = 3, seed: int = 0) -> None:
    ours = production(cols, tmp, pods, ticks, seed)
    ev = evidently(cols)
    problems = []
    ambiguous_disagreements = 0
    for f in ours.features:
        e_method, e_score, e_drift = ev["columns"][f.name]
        TALLY.columns += 1
        line = (f"{f.name}: ours {f.method}/{f.basis} {f.score:.6g} [{f.lower:.6g}, {f.upper:.6g}] drift={f.drifted}; "
                f"Evidently {e_method} {e_score:.6g} drift={e_drift}")
        assert f.status == "ok", line + " " + f.message
        if f.method != e_method:
            problems.append("method " + line)
            continue
        if f.lower == f.lower:  # bounded: Evidently's score is inside the interval
            tol = 1e-9 * max(1.0, abs(e_score))
            if not (min(f.lower, f.upper) - tol <= e_score <= max(f.lower, f.upper) + tol):
                problems.append("outside the bound " + line)
        if f.drifted == e_drift:
            TALLY.agree += 1
        elif f.ambiguous:
            TALLY.ambiguous += 1
            ambiguous_disagreements += 1
            TALLY.lines.append("ambiguous " + line)
        else:
            problems.append("decision " + line)
    TALLY.datasets += 1
    e_share = ev["share"]
    same = math.isclose(ours.share, e_share, abs_tol=1e-12) and ours.drifted == (e_share >= 0.5)
    TALLY.datasets_agree += same
    if not same and not ambiguous_disagreements:
        problems.append(f"dataset: ours share {ours.share} drifted={ours.drifted}, Evidently share {e_share}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# the issue's misses and other hard cases, always run

def _hard(n_ref: int, n_cur: int, seed: int, shifts: dict[str, float]) -> dict[str, Col]:
    g = np.random.default_rng(seed)
    cols = {}
    for fam, s in shifts.items():
        r, c = numeric(g, fam, n_ref, n_cur, s)
        cols[f"{fam}_{s:g}"] = Col("numeric", r, c)
    return cols


@pytest.mark.parametrize("n_cur", [300, 5000, 50000])
def test_the_issues_misses(tmp_path, n_cur):
    """A 1.3x scale change of a lognormal column, a near-constant column moving 10.0 -> 10.3,
    integer ties and mild normal shifts, with exactly half of the columns drifting: the dataset
    decision sits on the drift share."""
    g = np.random.default_rng(n_cur)
    cols = _hard(5000, n_cur, n_cur, {"lognormal": 1.0, "near_constant": 1.0, "integers": 0.3, "normal": 0.35,
                                      "ages": 0.0, "mixture": 0.0})
    r, c = categorical(g, 6, 5000, n_cur, 0.0, 0.0)
    cols["cat_same"] = Col("categorical", r, c)
    r, c = categorical(g, 4, 5000, n_cur, 1.0, 0.02)
    cols["cat_new"] = Col("categorical", r, c)
    check(cols, tmp_path, pods=3, ticks=2, seed=n_cur)


@pytest.mark.parametrize("n_ref", [300, 1000, 1001])
def test_small_and_boundary_references(tmp_path, n_ref):
    """KS, chi-squared and the Z-test (reference of at most 1000 rows), nulls, near-constant and
    few-valued numeric columns, a value never seen in training, booleans."""
    g = np.random.default_rng(n_ref)
    cols = _hard(n_ref, 700, n_ref, {"normal": 0.6, "student": 0.0, "discrete": 1.0, "binary": 1.0,
                                     "new_value": 1.0, "mostly_constant": 1.0, "near_constant": 0.05})
    cols["normal_0.6"].cur = _nulls(g, cols["normal_0.6"].cur, 0.3)
    cols["student_0"].ref = _nulls(g, cols["student_0"].ref, 0.1)
    r, c = boolean(g, n_ref, 700, 2.0)
    cols["flag"] = Col("boolean", _nulls(g, r, 0.05), c)
    r, c = categorical(g, 3, n_ref, 700, 0.5, 0.0)
    cols["cat"] = Col("categorical", r, _nulls(g, c, 0.1))
    check(cols, tmp_path, pods=2, ticks=3, seed=n_ref)


# ---------------------------------------------------------------------------------------------
# the sweep

@hs.composite
def datasets(draw) -> tuple[dict[str, Col], int, int, int]:
    seed = draw(hs.integers(0, 2 ** 31))
    g = np.random.default_rng(seed)
    n_ref = draw(hs.sampled_from([300, 800, 1000, 1001, 2000, 5000]))
    n_cur = draw(hs.sampled_from([300, 500, 1000, 3000, 10000, 50000]))
    cols: dict[str, Col] = {}
    for i in range(draw(hs.integers(3, 8))):
        fam = draw(hs.sampled_from(FAMILIES))
        # no drift, clear drift, and anywhere in between (decisions near the threshold)
        shift = draw(hs.one_of(hs.sampled_from([0.0, 0.0, 1.0, 2.0]), hs.floats(0.0, 1.5, allow_nan=False)))
        r, c = numeric(g, fam, n_ref, n_cur, shift)
        nr, nc = draw(hs.sampled_from([0.0, 0.0, 0.05, 0.3])), draw(hs.sampled_from([0.0, 0.05]))
        cols[f"n{i}_{fam}"] = Col("numeric", _nulls(g, r, nr), _nulls(g, c, nc))
    for i in range(draw(hs.integers(0, 3))):
        k = draw(hs.sampled_from([2, 3, 6, 15]))
        r, c = categorical(g, k, n_ref, n_cur, draw(hs.one_of(hs.sampled_from([0.0, 1.0]), hs.floats(0.0, 1.0))),
                           draw(hs.sampled_from([0.0, 0.0, 0.002, 0.05])))
        cols[f"c{i}"] = Col("categorical", r, _nulls(g, c, draw(hs.sampled_from([0.0, 0.1]))))
    if draw(hs.booleans()):
        r, c = boolean(g, n_ref, n_cur, draw(hs.sampled_from([0.0, 1.0, 3.0])))
        cols["flag"] = Col("boolean", r, c)
    return cols, draw(hs.integers(1, 3)), draw(hs.integers(1, 4)), seed


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(case=datasets())
def test_production_path_agrees_with_evidently(tmp_path, case):
    cols, pods, ticks, seed = case
    check(cols, tmp_path, pods, ticks, seed)


def test_agreement_rate_meets_the_goal():
    """Over every column judged above: at least 99% the same decision as Evidently, every other
    one inside the guaranteed interval (checked per case); every dataset decision the same unless
    an ambiguous column decided it."""
    if TALLY.columns == 0:
        pytest.skip("run with the tests above")
    rate = TALLY.agree / TALLY.columns
    print(f"\ncolumns {TALLY.columns}: {TALLY.agree} agree ({rate:.2%}), {TALLY.ambiguous} within the bound; "
          f"datasets {TALLY.datasets}: {TALLY.datasets_agree} agree")
    for line in TALLY.lines:
        print("  " + line)
    assert rate >= GOAL
