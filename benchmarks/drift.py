"""Benchmark: data drift of 20 columns (15 numeric, 5 categorical) at 10k, 100k and 1M rows,
our engine (`mlops_operator.drift.compare`) side by side with Evidently's data drift report.

    .venv/bin/python -m benchmarks.drift [--sizes 10000,100000,1000000] [--tools ...] [--no-save]

What each tool does, per size, in a fresh process (so the peak memory is that run's alone):

* evidently: `Report([DataDriftPreset()], include_tests=True).run(Dataset.from_pandas(cur),
  Dataset.from_pandas(ref))` on pandas frames with an explicit DataDefinition (the 15 numeric
  and the 5 categorical columns, categories as Python strings), then `snapshot.dict()` to read
  the per-column method, score and decision. Timed: from the two DataFrames to that dict.
* ours: `drift.prepare_reference(ref)` (sorts the numeric reference columns, counts the
  categorical ones) + `drift.compare(prepared, cur)`. Timed: from the numpy arrays to the
  decisions, the reference preparation included; it is also shown on its own, since a
  monitor that compares many windows with one reference pays it once. Variants:
  - `ours` - categorical columns as dictionary codes (`drift.Categorical`: int32 codes + the
    category list, what Arrow dictionary arrays and pandas Categoricals hold), one thread;
  - `ours-strings` - categorical columns as numpy object arrays of Python strings (the very
    values Evidently gets), counted with pyarrow, one thread;
  - `ours-2threads` - as `ours`, columns spread over 2 threads (`workers=2`).

Building the arrays and the DataFrames (the same seeded values for every tool) is not timed.
Peak memory is the growth of the child's peak RSS (VmHWM, reset after the data is built) over
its RSS before the timed work, so it counts the work, not the inputs. The decisions of every
variant are compared column by column with Evidently's (method, drift yes/no, score).
Evidently is a dev dependency of the project (pyproject `dev` extra), so it runs in the
project's own environment, on the same numpy/pandas/scipy. Results: benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import status_kb
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "drift.json"
TOOLS = ("ours", "ours-strings", "ours-2threads", "evidently")
TOOL_NAMES = {"ours": "ours (codes, 1 thread)", "ours-strings": "ours (strings, 1 thread)",
              "ours-2threads": "ours (codes, 2 threads)", "evidently": "Evidently 0.7 DataDriftPreset"}
SIZES = (10_000, 100_000, 1_000_000)
CHILD_TIMEOUT = 3600

NUMERIC = [f"num_{i:02d}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
#: columns whose current distribution is shifted: 6 numeric + 2 categorical = 8 of 20
SHIFTED = {"num_00", "num_03", "num_05", "num_08", "num_11", "num_14", "cat_1", "cat_3"}


# --------------------------------------------------------------------------------------------
# the data: the same seeded values for every tool

def _numeric(g, i: int, n: int, shift: bool):
    import numpy as np

    k = i % 5
    if k == 0:
        x = g.normal(50.0, 10.0, n) + (4.0 if shift else 0.0)  # 0.4 sd
    elif k == 1:
        x = g.lognormal(3.0, 0.8, n) * (1.5 if shift else 1.0)
    elif k == 2:
        x = g.exponential(2.0, n) + (0.5 if shift else 0.0)
    elif k == 3:
        x = np.round(g.uniform(18, 90, n)) + (6 if shift else 0)  # ages: many ties
    else:
        x = np.where(g.random(n) < (0.5 if shift else 0.3), g.normal(-2, 1, n), g.normal(3, 1.5, n))
    return x.astype(np.float64)


def _categorical(g, i: int, n: int, shift: bool):
    import numpy as np

    k = (3, 7, 12, 25, 60)[i]
    w = 1.0 / np.arange(1, k + 1) ** (0.8 + 0.1 * i)
    if shift:
        w = w[::-1] * 0.6 + w * 0.4  # mass moves to the rare categories
    codes = g.choice(k, n, p=w / w.sum()).astype(np.int32)
    return codes, [f"{'abcde'[i]}{j:02d}" for j in range(k)]


def make_data(n: int, seed: int = 0) -> tuple[dict, dict]:
    """(reference, current): {column: float array | (int32 codes, categories)}."""
    import numpy as np

    out = []
    for part, shift_all in (("ref", False), ("cur", True)):
        g = np.random.default_rng([seed, n, part == "cur"])
        cols: dict[str, Any] = {}
        for i, c in enumerate(NUMERIC):
            cols[c] = _numeric(g, i, n, shift_all and c in SHIFTED)
        for i, c in enumerate(CATEGORICAL):
            cols[c] = _categorical(g, i, n, shift_all and c in SHIFTED)
        out.append(cols)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# children

def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_ours(n: int, variant: str) -> dict[str, Any]:
    import numpy as np

    from mlops_operator import drift

    ref, cur = make_data(n)

    def columns(d):
        out = {}
        for c, v in d.items():
            if isinstance(v, tuple):
                codes, cats = v
                out[c] = (np.array(cats, dtype=object)[codes] if variant == "ours-strings"
                          else drift.Categorical(codes, cats))
            else:
                out[c] = v
        return out

    r, c = columns(ref), columns(cur)
    kinds = {k: "numeric" for k in NUMERIC} | {k: "categorical" for k in CATEGORICAL}
    workers = 2 if variant == "ours-2threads" else 1
    # imports (scipy.stats, pyarrow.compute) before the clock starts, as Evidently's import is
    warm = {"w": np.arange(10.0), "s": np.array(["a", "b"] * 5, dtype=object),
            "k": drift.Categorical(np.zeros(10, np.int32), ["a"])}
    drift.compare(drift.prepare_reference(warm), warm)
    rss0 = status_kb("VmRSS")
    peak_ok = _reset_peak()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    prepared = drift.prepare_reference(r, kinds, workers=workers)
    t1 = time.perf_counter()
    res = drift.compare(prepared, c, workers=workers)
    t2 = time.perf_counter()
    cpu = _cpu_s() - cpu0
    return {"work_s": t2 - t0, "prepare_s": t1 - t0, "compare_s": t2 - t1, "cpu_s": cpu,
            "peak_mb": (status_kb("VmHWM") - rss0) / 1024 if peak_ok else None, "rss_before_mb": rss0 / 1024,
            "features": {f.name: [f.method, f.score, f.drifted] for f in res.features},
            "share": res.share, "drifted": res.drifted}


def child_evidently(n: int) -> dict[str, Any]:
    import warnings

    import numpy as np
    import pandas as pd

    os.environ.setdefault("DO_NOT_TRACK", "1")
    warnings.simplefilter("ignore")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from mlops_operator import drift

    ref, cur = make_data(n)

    def frame(d):
        return pd.DataFrame({c: (np.array(v[1], dtype=object)[v[0]] if isinstance(v, tuple) else v)
                             for c, v in d.items()})

    rdf, cdf = frame(ref), frame(cur)
    del ref, cur
    names = {m.evidently_name: k for k, m in drift.METHODS.items()}
    rss0 = status_kb("VmRSS")
    peak_ok = _reset_peak()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snap = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(cdf, data_definition=definition), Dataset.from_pandas(rdf, data_definition=definition))
    doc = snap.dict()
    t1 = time.perf_counter()
    cpu = _cpu_s() - cpu0
    feats: dict[str, list] = {}
    share = None
    for m in doc["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            feats[cfg["column"]] = [names.get(cfg["method"], cfg["method"]), float(m["value"]), None]
        elif cfg["type"].endswith("DriftedColumnsCount"):
            share = m["value"]["share"]
    for t in doc["tests"]:
        p = t["metric_config"]["params"]
        if p["type"].endswith("ValueDrift"):
            feats[p["column"]][2] = str(t["status"]).endswith("FAIL")
    return {"work_s": t1 - t0, "cpu_s": cpu, "rss_before_mb": rss0 / 1024,
            "peak_mb": (status_kb("VmHWM") - rss0) / 1024 if peak_ok else None,
            "features": feats, "share": share, "drifted": share is not None and share >= 0.5}


def run_child(tool: str, n: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.drift", "--child", tool, "--rows", str(n)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), DO_NOT_TRACK="1")
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=CHILD_TIMEOUT)
    wall = time.perf_counter() - t
    line = next((x for x in r.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if r.returncode != 0 or line is None:
        tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-10:]
        return {"error": f"exit {r.returncode}: " + "\n".join(tail)}
    out = json.loads(line[len("BENCH-RESULT "):])
    out["process_wall_s"] = wall
    return out


# --------------------------------------------------------------------------------------------
# comparison and report

def disagreements(ours: dict[str, list], ev: dict[str, list], rel: float = 1e-6) -> list[str]:
    out = []
    for col, (em, es, ed) in ev.items():
        if col not in ours:
            out.append(f"{col}: missing in ours")
            continue
        om, os_, od = ours[col]
        if (om, od) != (em, ed) or abs(os_ - es) > rel * max(abs(es), 1e-12):
            out.append(f"{col}: ours {om} {os_:.6g} drift={od}, Evidently {em} {es:.6g} drift={ed}")
    return out


def table(res: dict[str, Any]) -> str:
    v = res["versions"]
    lines = [f"{res['machine']['cpus']} CPUs, Python {res['machine']['python']}, numpy {v.get('numpy')}, "
             f"scipy {v.get('scipy')}, pandas {v.get('pandas')}, pyarrow {v.get('pyarrow')}, "
             f"evidently {v.get('evidently')}; one run per tool and size, each in a fresh process\n",
             "| rows (ref = cur) | tool | time (s) | of which reference prep (s) | CPU (s) | peak memory (MB) "
             "| Evidently / ours, time | Evidently / ours, CPU | drifted columns | same decisions as Evidently |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for size, per_tool in res["runs"].items():
        ev = per_tool.get("evidently", {})
        for tool in TOOLS:
            s = per_tool.get(tool)
            if s is None:
                continue
            if "error" in s:
                lines.append(f"| {int(size):,} | {TOOL_NAMES[tool]} | not run: {s['error'].splitlines()[-1][:120]} "
                             "| | | | | | | |")
                continue
            ratio = f"**{ev['work_s'] / s['work_s']:.0f}x**" if ev.get("work_s") and tool != "evidently" else ""
            cpu_ratio = f"{ev['cpu_s'] / s['cpu_s']:.0f}x" if ev.get("cpu_s") and tool != "evidently" else ""
            prep = f"{s['prepare_s']:.3f}" if "prepare_s" in s else ""
            peak = f"{s['peak_mb']:.0f}" if s.get("peak_mb") is not None else "?"
            n_drift = sum(1 for f in s["features"].values() if f[2])
            same = ""
            if tool != "evidently" and ev.get("features"):
                d = s.get("disagreements", [])
                same = "yes, 20/20" if not d else f"no: {len(d)} differ"
            lines.append(f"| {int(size):,} | {TOOL_NAMES[tool]} | {s['work_s']:.3f} | {prep} | {s['cpu_s']:.3f} "
                         f"| {peak} | {ratio} | {cpu_ratio} | {n_drift}/{len(s['features'])} | {same} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-save", action="store_true", help="do not write results/drift.json")
    ap.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        out = child_evidently(a.rows) if a.child == "evidently" else child_ours(a.rows, a.child)
        print("BENCH-RESULT " + json.dumps(out))
        return 0

    import importlib.metadata as md

    def version(p: str) -> str | None:
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    tools = [t for t in TOOLS if t in a.tools.split(",")]
    res: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "loadavg_at_start": os.getloadavg()},
        "command": "python -m benchmarks.drift " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": {p: version(p) for p in ("numpy", "scipy", "pandas", "pyarrow", "evidently")},
        "columns": {"numeric": NUMERIC, "categorical": CATEGORICAL, "shifted": sorted(SHIFTED)},
        "runs": {},
    }
    for size in [int(s) for s in a.sizes.split(",") if s]:
        per_tool: dict[str, Any] = {}
        for tool in tools:
            print(f"{size:>9,} rows: {tool} ...", file=sys.stderr, flush=True)
            per_tool[tool] = run_child(tool, size)
        ev = per_tool.get("evidently", {})
        for tool, s in per_tool.items():
            if tool != "evidently" and "error" not in s and ev.get("features"):
                s["disagreements"] = disagreements(s["features"], ev["features"])
        res["runs"][str(size)] = per_tool
    res["machine"]["loadavg_at_end"] = os.getloadavg()
    text = table(res)
    print(text)
    for size, per_tool in res["runs"].items():
        for tool, s in per_tool.items():
            for d in s.get("disagreements", []):
                print(f"  {size} {tool}: {d}")
    if not a.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
