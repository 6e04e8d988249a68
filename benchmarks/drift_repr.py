"""Benchmark: which constant-memory representation of a numeric feature lets the production drift
path (serving pods -> DriftMonitor) reproduce Evidently's Wasserstein and KS decisions.

    .venv/bin/python -m benchmarks.drift_repr [--seeds 2] [--no-save]

Every candidate summarises the reference (5,000 rows, or 800 for the KS case) and a window of
live traffic (300 to 50,000 rows) in bounded memory; the normed Wasserstein distance and the KS
statistic computed from the two summaries are compared with the exact ones on the raw values
(what Evidently 0.7's DataDriftPreset computes: ``scipy.stats.wasserstein_distance / np.std(ref)``
and ``ks_2samp``), over shifted and unshifted distributions that the issue's independent check
found hard: location and scale shifts of normal, lognormal and heavy-tailed columns, integer ties,
near-constant columns, mixtures.

Candidates:

* ``bins10``: counts on the reference's 10 decile bins, the production path before issue 17;
* ``hist-B``: the reference-anchored histogram of ``mlops_operator.drift.histogram`` (B evenly
  spaced quantile levels + dyadic tails + min/max, atoms, offset sums), B in 16..256;
* ``kll-200``: Apache DataSketches' KLL (``datasketches`` 5.2, k=200) of each side;
* ``ddsketch-1%`` / ``ddsketch-0.1%``: DDSketch's logarithmic mapping (relative accuracy 1% /
  0.1%, bucket counts without collapsing; the mapping of the ``ddsketch`` package, vectorised);
* ``tdigest-100``: ``fastdigest`` 0.12's t-digest with at most 100 centroids;
* ``reservoir-1000``: a uniform sample of 1,000 window rows against the exact reference.

The sketches (KLL, t-digest) cannot be subtracted: a server could not count cumulatively and be
read at any time, the property the window logic (restarts, several replicas) rests on; they
would need aligned time windows instead. The histogram and DDSketch can (they are counters).
Sketch packages are optional: a candidate whose package does not import is skipped.

Writes ``results/drift_repr.json``; benchmarks/README.md has the table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance

from mlops_operator.drift import histogram as H
from mlops_operator.drift import stats as S

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "drift_repr.json"
WINDOWS = (300, 1000, 5000, 20000, 50000)


# ----------------------------------------------------------------------------- distributions

def families() -> dict[str, Callable[[np.random.Generator, int, float], np.ndarray]]:
    """name -> sample(g, n, shift); shift 0 is the reference distribution."""
    return {
        "normal-loc": lambda g, n, s: g.normal(0.15 * s, 1.0, n),
        "normal-scale": lambda g, n, s: g.normal(0.0, 1.0 + 0.1 * s, n),
        "lognormal-scale": lambda g, n, s: g.lognormal(0.0, 1.0, n) * (1 + 0.1 * s),
        "student2-loc": lambda g, n, s: g.standard_t(2, n) + 0.1 * s,
        "pareto-tail": lambda g, n, s: g.pareto(2.0 - 0.15 * s, n),
        "integers": lambda g, n, s: g.integers(0, 50, n).astype(np.float64) + s,
        "near-constant": lambda g, n, s: 10.0 + 0.1 * s + g.normal(0, 0.05, n),
        "mixture": lambda g, n, s: np.where(g.random(n) < 0.3 + 0.05 * s, g.normal(-2, 1, n), g.normal(3, 1.5, n)),
    }


SHIFTS = (0.0, 0.5, 1.0, 2.0, 3.0)


# ----------------------------------------------------------------------------- candidates

class Candidate:
    name = ""
    subtractable = True

    def summarise(self, values: np.ndarray, reference: Any | None) -> Any:
        raise NotImplementedError

    def wasserstein(self, r: Any, c: Any) -> float:
        raise NotImplementedError

    def ks(self, r: Any, c: Any) -> float:
        raise NotImplementedError

    def size(self, summary: Any) -> int:
        """Numbers (8-byte) held per feature."""
        raise NotImplementedError

    def bound(self, r: Any, c: Any) -> float | None:
        return None


class Bins10(Candidate):
    name = "bins10"

    def summarise(self, v, reference):
        if reference is None:
            e = np.unique(np.quantile(v, np.linspace(0, 1, 11)[1:-1]))
            return e, np.bincount(np.searchsorted(e, v, side="right"), minlength=e.size + 1)
        e = reference[0]
        return e, np.bincount(np.searchsorted(e, v, side="right"), minlength=e.size + 1)

    def wasserstein(self, r, c):
        return S.wasserstein_binned(r[0], r[1], c[1])

    def ks(self, r, c):
        return S.ks_binned(r[1], c[1])[0]

    def size(self, s):
        return s[0].size * 2 + 1


class Hist(Candidate):
    def __init__(self, size: int, split: bool = True):
        self.size_, self.split = size, split
        self.name = f"hist-{size}" + ("" if split else "-quantiles")

    def summarise(self, v, reference):
        if reference is None:
            return H.Histogram.of(H.reference_edges(np.sort(v), size=self.size_, split=self.split), v)
        return H.Histogram.of(reference.edges, v)

    def wasserstein(self, r, c):
        return H.wasserstein(r, c).estimate

    def bound(self, r, c):
        w = H.wasserstein(r, c)
        return w.upper - w.lower

    def ks(self, r, c):
        return H.ks_statistic(r, c).estimate

    def size(self, s):
        return s.k * 4 + 2  # edges, counts, atoms, sums


class KLL(Candidate):
    name = "kll-200"
    subtractable = False

    def summarise(self, v, reference):
        from datasketches import kll_doubles_sketch

        k = kll_doubles_sketch(200)
        k.update(np.ascontiguousarray(v, dtype=np.float64))
        return k

    def _grid(self, r, c):
        u = (np.arange(4096) + 0.5) / 4096
        return np.array(r.get_quantiles(u)), np.array(c.get_quantiles(u))

    def wasserstein(self, r, c):
        qr, qc = self._grid(r, c)
        return float(np.mean(np.abs(qr - qc)))

    def ks(self, r, c):
        qr, qc = self._grid(r, c)
        x = np.unique(np.concatenate([qr, qc]))
        return float(np.max(np.abs(np.array(r.get_cdf(x))[:-1] - np.array(c.get_cdf(x))[:-1])))

    def size(self, s):
        return len(s.serialize()) // 8


class DDSketch(Candidate):
    subtractable = True

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.name = f"ddsketch-{alpha * 100:g}%"
        self.gamma = (1 + alpha) / (1 - alpha)

    def summarise(self, v, reference):
        lg = math.log(self.gamma)
        pos, neg = v[v > 0], -v[v < 0]
        kp = np.ceil(np.log(pos) / lg).astype(np.int64)
        kn = np.ceil(np.log(neg) / lg).astype(np.int64)
        up, cp = np.unique(kp, return_counts=True)
        un, cn = np.unique(kn, return_counts=True)
        zero = int(np.count_nonzero(v == 0))
        val = np.concatenate([-2 * self.gamma ** un / (self.gamma + 1), [0.0] if zero else [],
                              2 * self.gamma ** up / (self.gamma + 1)])
        cnt = np.concatenate([cn, [zero] if zero else [], cp]).astype(np.float64)
        o = np.argsort(val)
        return val[o], cnt[o]

    def _cdfs(self, r, c):
        x = np.union1d(r[0], c[0])
        fr = np.zeros(x.size)
        fc = np.zeros(x.size)
        fr[np.searchsorted(x, r[0])] = r[1]
        fc[np.searchsorted(x, c[0])] = c[1]
        return x, np.cumsum(fr) / fr.sum(), np.cumsum(fc) / fc.sum()

    def wasserstein(self, r, c):
        x, fr, fc = self._cdfs(r, c)
        return float(np.sum(np.abs(fr - fc)[:-1] * np.diff(x)))

    def ks(self, r, c):
        x, fr, fc = self._cdfs(r, c)
        return float(np.max(np.abs(fr - fc)))

    def size(self, s):
        return s[0].size * 2


class TDigest(Candidate):
    name = "tdigest-100"
    subtractable = False

    def summarise(self, v, reference):
        import fastdigest

        return fastdigest.TDigest.from_values(v, max_centroids=100)

    def wasserstein(self, r, c):
        u = (np.arange(4096) + 0.5) / 4096
        return float(np.mean(np.abs(np.asarray(r.quantile_vec(u)) - np.asarray(c.quantile_vec(u)))))

    def ks(self, r, c):
        u = (np.arange(1024) + 0.5) / 1024
        x = np.unique(np.concatenate([np.asarray(r.quantile_vec(u)), np.asarray(c.quantile_vec(u))]))
        return float(np.max(np.abs(np.asarray(r.cdf_vec(x)) - np.asarray(c.cdf_vec(x)))))

    def size(self, s):
        return s.n_centroids * 2


class Reservoir(Candidate):
    name = "reservoir-1000"
    subtractable = False

    def summarise(self, v, reference):
        if reference is None:
            return np.sort(v)
        g = np.random.default_rng(int(v.size))
        return np.sort(v if v.size <= 1000 else g.choice(v, 1000, replace=False))

    def wasserstein(self, r, c):
        return S.wasserstein_sorted(r, c)

    def ks(self, r, c):
        return float(ks_2samp(r, c).statistic)

    def size(self, s):
        return 1000


def candidates() -> list[Candidate]:
    out: list[Candidate] = [Bins10(), Hist(64, False), Hist(128, False), Hist(32), Hist(64), Hist(128), Hist(256),
                            DDSketch(0.01), DDSketch(0.001), Reservoir()]
    for c in (KLL(), TDigest()):
        try:
            c.summarise(np.arange(10.0), None)
            out.append(c)
        except ImportError:
            print(f"{c.name}: not installed, skipped", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- the run

def run(seeds: int) -> dict[str, Any]:
    cands = candidates()
    rows: dict[str, dict[str, list]] = {c.name: {"w_err": [], "ks_err": [], "w_dec": [], "ks_dec": [], "size": [],
                                                 "bound": [], "ref_s": [], "cur_s": [], "stat_s": []}
                                        for c in cands}
    fams = families()
    for fam, sample in fams.items():
        for ref_n, test in ((5000, "wasserstein"), (800, "ks")):
            for seed in range(seeds):
                g = np.random.default_rng([seed, ref_n, sum(map(ord, fam))])
                ref = sample(g, ref_n, 0.0)
                std = max(float(np.std(ref)), 0.001)
                refs = {}
                for c in cands:
                    t = time.perf_counter()
                    refs[c.name] = c.summarise(ref, None)
                    rows[c.name]["ref_s"].append(time.perf_counter() - t)
                for shift in SHIFTS:
                    for m in WINDOWS:
                        cur = sample(g, m, shift)
                        w_exact = wasserstein_distance(ref, cur) / std
                        ks = ks_2samp(ref, cur)
                        for c in cands:
                            t = time.perf_counter()
                            cs = c.summarise(cur, refs[c.name])
                            t1 = time.perf_counter()
                            if test == "wasserstein":
                                w = c.wasserstein(refs[c.name], cs) / std
                                rows[c.name]["w_err"].append(abs(w - w_exact))
                                rows[c.name]["w_dec"].append((w >= 0.1) == (w_exact >= 0.1))
                                b = c.bound(refs[c.name], cs)
                                if b is not None:
                                    rows[c.name]["bound"].append(b / std)
                            else:
                                d = c.ks(refs[c.name], cs)
                                rows[c.name]["ks_err"].append(abs(d - ks.statistic))
                                p = H.ks_pvalue(d, ref.size, cur.size)
                                rows[c.name]["ks_dec"].append((p <= 0.05) == (ks.pvalue <= 0.05))
                            rows[c.name]["stat_s"].append(time.perf_counter() - t1)
                            rows[c.name]["cur_s"].append(t1 - t)
                            rows[c.name]["size"].append(c.size(cs) + c.size(refs[c.name]))
    out = {}
    for c in cands:
        r = rows[c.name]
        q = lambda a, p: float(np.quantile(a, p)) if len(a) else None  # noqa: E731
        out[c.name] = {
            "subtractable": c.subtractable,
            "wasserstein_abs_error_median": q(r["w_err"], 0.5), "wasserstein_abs_error_p99": q(r["w_err"], 0.99),
            "wasserstein_abs_error_max": q(r["w_err"], 1.0),
            "wasserstein_decisions_agree": float(np.mean(r["w_dec"])), "wasserstein_cases": len(r["w_dec"]),
            "wasserstein_bound_median": q(r["bound"], 0.5), "wasserstein_bound_p99": q(r["bound"], 0.99),
            "ks_abs_error_median": q(r["ks_err"], 0.5), "ks_abs_error_max": q(r["ks_err"], 1.0),
            "ks_decisions_agree": float(np.mean(r["ks_dec"])), "ks_cases": len(r["ks_dec"]),
            "numbers_per_feature_median": q(r["size"], 0.5) / 2, "numbers_per_feature_max": q(r["size"], 1.0) / 2,
            "summarise_window_us_median": q(r["cur_s"], 0.5) * 1e6,
            "statistic_us_median": q(r["stat_s"], 0.5) * 1e6,
        }
    return out


def table(res: dict[str, Any]) -> str:
    lines = ["| representation | counters (subtract) | normed W: median / p99 / max abs error | W decisions agree "
             "| W guaranteed interval width, median / p99 | KS D: median / max abs error | KS decisions agree "
             "| numbers per feature (median / max) | summarise a window (µs, median) | statistic (µs) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        b = (f"{r['wasserstein_bound_median']:.4f} / {r['wasserstein_bound_p99']:.3f}"
             if r["wasserstein_bound_median"] is not None else "none")
        lines.append(
            f"| {name} | {'yes' if r['subtractable'] else 'no'} | {r['wasserstein_abs_error_median']:.2g} / "
            f"{r['wasserstein_abs_error_p99']:.2g} / {r['wasserstein_abs_error_max']:.2g} | "
            f"{r['wasserstein_decisions_agree']:.1%} of {r['wasserstein_cases']} | {b} | "
            f"{r['ks_abs_error_median']:.2g} / {r['ks_abs_error_max']:.2g} | {r['ks_decisions_agree']:.1%} of "
            f"{r['ks_cases']} | {r['numbers_per_feature_median']:.0f} / {r['numbers_per_feature_max']:.0f} | "
            f"{r['summarise_window_us_median']:.0f} | {r['statistic_us_median']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.drift_repr", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    res = run(a.seeds)
    print(table(res))
    doc = {"date": _dt.date.today().isoformat(), "seeds": a.seeds, "windows": WINDOWS, "shifts": SHIFTS,
           "families": list(families()), "seconds": time.perf_counter() - t, "loadavg": os.getloadavg(),
           "results": res}
    if not a.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
