"""The drift statistics themselves: pure, vectorised numpy over counts and sorted samples.

Two families, both defined exactly as Evidently 0.7 defines them so a score here can be put
next to an Evidently score:

* tests, whose score is a p-value (drift when it is small): Kolmogorov-Smirnov, chi-squared
  (observed current counts against the reference proportions), two-proportion Z-test;
* distances (drift when large): Wasserstein distance normed by the reference standard
  deviation, population stability index (PSI), Jensen-Shannon distance (natural log).

Every function takes either *counts on common buckets* (reference bins or category keys,
aligned: ``ref[i]`` and ``cur[i]`` count the same bucket) or *sorted finite samples*. Nothing
here knows about features, thresholds or defaults; that is :mod:`.methods` and
:mod:`.engine`.

Binned approximations (used when the server only gives counts on the reference bin edges):

* KS: the largest CDF gap *at the inner edges*. It is a lower bound of the exact statistic (the
  gap inside a bin is unseen), so the p-value is larger than the raw one: fewer alarms, never
  a false alarm the raw test would not also raise at the same D.
* Wasserstein: the CDFs are taken as piecewise linear between the edges (values uniform
  within a bin) and the two unbounded outer bins are given the width of their neighbouring
  bin; the same assumption gives the reference standard deviation for the norm.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy.stats import distributions

__all__ = [
    "binned_std", "chisquare_pvalue", "fill_zeros", "jensenshannon", "ks_binned", "ks_sorted",
    "ks_asymptotic_pvalue", "psi", "sturges_edges", "sorted_histogram", "wasserstein_binned",
    "wasserstein_sorted", "ztest_pvalue",
]


# ---------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov

def ks_asymptotic_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided KS p-value from the asymptotic distribution, as scipy's ks_2samp(method='asymp')."""
    if n <= 0 or m <= 0:
        return float("nan")
    en = float(n) * float(m) / (float(n) + float(m))
    return float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_sorted(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Two-sample KS (statistic, p-value) on raw samples: exactly scipy.stats.ks_2samp.

    scipy picks the exact distribution when both samples have at most 10,000 values and the
    asymptotic one otherwise; the statistic comes from searchsorted on the sorted samples.
    Evidently calls ks_2samp with its defaults, so this is delegated rather than re-derived.
    """
    from scipy.stats import ks_2samp

    r = ks_2samp(ref, cur)
    return float(r.statistic), float(r.pvalue)


def ks_binned(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """KS on counts over common ordered bins: (max CDF gap at the bin boundaries, asymptotic p).

    A lower bound of the raw statistic (the CDFs are compared at the k inner edges only), so
    the p-value errs towards "no drift".
    """
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0:
        return float("nan"), float("nan")
    gap = np.abs(np.cumsum(r)[:-1] / n - np.cumsum(c)[:-1] / m)
    d = float(gap.max()) if gap.size else 0.0
    return d, ks_asymptotic_pvalue(d, int(n), int(m))


# ---------------------------------------------------------------------------------------------
# Wasserstein

_CHUNK = 1 << 16  # 512 KiB of float64: a temporary that stays in the L2 cache

def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """First Wasserstein distance between two sorted samples (scipy's wasserstein_distance).

    W1 = integral over t in (0, 1] of |Q_u(t) - Q_v(t)|, with the empirical quantile functions
    piecewise constant. Equal sizes: the mean absolute difference of the sorted samples. Unequal
    sizes n, m: on the merged grid {i*m} U {j*n} (integers, no sort needed: the rank of j*n
    among the i*m is floor(j*n/m)), each interval pairs one order statistic of each sample.
    O(n + m) after sorting; no searchsorted of one sample into the other.
    """
    n, m = u.size, v.size
    if n == 0 or m == 0:
        return float("nan")
    if n == m:  # mean |u_i - v_i|, in cache-sized chunks (no full-length temporaries)
        total = 0.0
        for i in range(0, n, _CHUNK):
            d = np.subtract(u[i:i + _CHUNK], v[i:i + _CHUNK])
            total += float(np.abs(d, out=d).sum())
        return total / n
    # grid points scaled by n*m: a_i = i*m (i = 1..n), b_j = j*n (j = 1..m)
    j = np.arange(1, m + 1, dtype=np.int64)
    b = j * n
    pos_b = (j - 1) + (b // m)  # a_i <= b_j  <=>  i <= j*n/m; ties (equal points) give width 0
    g = np.empty(n + m, dtype=np.int64)
    mask = np.zeros(n + m, dtype=bool)
    mask[pos_b] = True
    g[pos_b] = b
    g[~mask] = np.arange(1, n + 1, dtype=np.int64) * m
    width = np.diff(g, prepend=0)
    iu = (g + (m - 1)) // m - 1  # ceil(g/m) - 1: the order statistic of u on (g_prev, g]
    iv = (g + (n - 1)) // n - 1
    return float(np.dot(width, np.abs(u[iu] - v[iv])) / (float(n) * float(m)))


def _extended_edges(edges: np.ndarray) -> np.ndarray:
    """k inner edges -> k+2 boundaries, the outer bins as wide as their neighbours."""
    e = np.asarray(edges, dtype=np.float64)
    if e.size == 0:
        return np.array([-0.5, 0.5])
    if e.size == 1:
        w = max(abs(float(e[0])), 1.0)
        return np.array([e[0] - w, e[0], e[0] + w])
    return np.concatenate([[e[0] - (e[1] - e[0])], e, [e[-1] + (e[-1] - e[-2])]])


def binned_std(edges: np.ndarray, counts: np.ndarray) -> float:
    """Standard deviation of a histogram on (k inner edges, k+1 counts), values uniform per bin."""
    b = _extended_edges(edges)
    c = np.asarray(counts, dtype=np.float64)
    if b.size != c.size + 1:
        b = np.linspace(0.0, 1.0, c.size + 1)
    n = c.sum()
    if n <= 0:
        return float("nan")
    p = c / n
    mid = (b[:-1] + b[1:]) / 2
    w = np.diff(b)
    mean = float(np.dot(p, mid))
    var = float(np.dot(p, (mid - mean) ** 2 + w ** 2 / 12.0))
    return math.sqrt(max(var, 0.0))


def wasserstein_binned(edges: np.ndarray, ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """W1 between two histograms on the same edges, CDFs linear within bins (see module doc).

    On each bin the CDF difference is linear, so |difference| integrates exactly, including
    bins where it changes sign.
    """
    b = _extended_edges(edges)
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0 or b.size != r.size + 1:
        return float("nan")
    d = np.concatenate([[0.0], np.cumsum(r) / n - np.cumsum(c) / m])  # difference at b[0..k+1]
    d0, d1, w = d[:-1], d[1:], np.diff(b)
    same = d0 * d1 >= 0
    area = np.where(same, np.abs(d0 + d1) / 2 * w, 0.0)
    cross = ~same
    if cross.any():
        s = d0[cross] ** 2 + d1[cross] ** 2
        area[cross] = s / (2 * (np.abs(d0[cross]) + np.abs(d1[cross]))) * w[cross]
    return float(area.sum())


# ---------------------------------------------------------------------------------------------
# counts-based: PSI, Jensen-Shannon, chi-squared, Z-test

def fill_zeros(p: np.ndarray) -> np.ndarray:
    """Evidently's zero fill before PSI: empty buckets get min(nonzero)/1e6 or 1e-4."""
    p = np.array(p, dtype=np.float64)
    zero = p == 0
    if zero.any() and (~zero).any():
        lo = float(p[~zero].min())
        p[zero] = lo / 10**6 if lo <= 0.0001 else 0.0001
    return p


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index on common buckets: sum (r - c) ln(r / c), Evidently's form.

    Proportions are count / total (not renormalised after the zero fill, as Evidently).
    """
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0:
        return float("nan")
    rp, cp = fill_zeros(r / n), fill_zeros(c / m)
    return float(np.sum((rp - cp) * np.log(rp / cp)))


def jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, in [0, sqrt(ln 2)]) as scipy.spatial.distance."""
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0:
        return float("nan")
    p, q = r / n, c / m
    mid = (p + q) / 2.0
    js = float(np.sum(special.rel_entr(p, mid)) + np.sum(special.rel_entr(q, mid)))
    return math.sqrt(max(js, 0.0) / 2.0)


def chisquare_pvalue(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Evidently's chi-squared test: (statistic, p) of the current counts against the reference.

    Expected = reference count x (current total / reference total) on the union of buckets;
    a bucket the reference never saw has expected 0, so any current count there makes the
    statistic infinite and p = 0 (scipy.stats.chisquare does the same). Degrees of freedom:
    buckets - 1. Buckets empty in both must be left out by the caller (Evidently iterates the
    union of seen values); one bucket only: p = 1.
    """
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    keep = (r > 0) | (c > 0)
    r, c = r[keep], c[keep]
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0:
        return float("nan"), float("nan")
    if r.size < 2:
        return 0.0, 1.0
    exp = r * (m / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(exp > 0, (c - exp) ** 2 / np.where(exp > 0, exp, 1.0), np.where(c > 0, np.inf, 0.0))
    stat = float(terms.sum())
    return stat, float(distributions.chi2.sf(stat, r.size - 1))


def ztest_pvalue(ref_first: float, ref_total: float, cur_first: float, cur_total: float) -> tuple[float, float]:
    """Two-proportion Z-test, two-sided, pooled variance: (z, p) as Evidently's z_stat_test.

    ``*_first`` counts the first category (in sorted order; Evidently codes it 0 and every
    other category 1). Identical one-valued samples give p = 1; a pooled proportion of 0 or 1
    otherwise cannot happen with non-empty samples.
    """
    n1, n2 = float(ref_total), float(cur_total)
    if n1 <= 0 or n2 <= 0:
        return float("nan"), float("nan")
    p1 = (n1 - ref_first) / n1
    p2 = (n2 - cur_first) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0:
        return 0.0, 1.0
    z = (p1 - p2) / math.sqrt(var)
    return z, float(2 * (1 - special.ndtr(abs(z))))


# ---------------------------------------------------------------------------------------------
# bucketing raw samples (used by the whole-dataset path and to bin raw samples on edges)

def sturges_edges(lo: float, hi: float, size: int) -> np.ndarray:
    """np.histogram_bin_edges(x, bins="sturges") from x's min, max and size only."""
    first, last = float(lo), float(hi)
    ptp = last - first
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = ptp / (math.log2(size) + 1.0)
    bins = int(math.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True)


def sorted_histogram(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram(values, edges)[0] for a sorted sample: bins [e_i, e_i+1), the last closed."""
    pos = np.searchsorted(sorted_values, edges, side="left")
    pos[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(pos)
