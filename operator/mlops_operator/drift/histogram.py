"""The numeric representation of the production drift path: reference-anchored histograms with
atoms and offset sums, and the KS and Wasserstein statistics computed on them with a bound.

Why this representation (benchmarks/drift_repr.py measured it against quantile sketches,
DDSketch, t-digest and a reservoir; see benchmarks/README.md): it is made of counters, so a
serving pod can count cumulatively, a window is the difference of two readings, and pods add
up; every part is exact arithmetic on what the pod saw; and it gives the two statistics a
*guaranteed* interval, not a probabilistic one.

Layout, for ``k`` edges ``e[0] < ... < e[k-1]`` taken from the reference (see
:func:`reference_edges`):

* bin 0 is ``(-inf, e[0])``, bin ``j`` (1..k-1) is ``[e[j-1], e[j])``, bin ``k`` is
  ``[e[k-1], inf)``: a value ``v`` is in bin ``searchsorted(e, v, side="right")``;
* ``counts[j]``: values in bin ``j``; ``atoms[i]``: values exactly equal to ``e[i]`` (they are
  in bin ``i + 1``); ``sums[j]``: the sum of the values' offsets from their bin's anchor,
  ``v - e[j-1]`` for ``j >= 1`` and ``e[0] - v`` for bin 0, so every offset is >= 0 and an
  inner bin's sum is at most ``count * width`` (no cancellation, whatever the location);
* ``nulls``: missing and non-finite values (Evidently drops them from every statistic).

The edges are the reference's distinct values when it has few of them (at most
:data:`EXACT_VALUES`, and always for a reference of at most 1000 rows, where Evidently's
default is the KS test), else its order statistics at ``B`` evenly spaced quantile levels plus
dyadic levels into both tails and its minimum and maximum. So:

* the reference's mass never lies below ``e[0]`` or above ``e[k-1]``, and the statistics are
  exact in the two unbounded bins;
* with all reference values as edges, the reference CDF is known everywhere and the KS
  statistic is exact (between two edges only the current CDF moves, so ``|F_r - F_c|`` peaks
  at an edge or just before one);
* a value equal to an edge is counted there (an atom), so integer ties and low-cardinality
  columns are counted per value, exactly.

Wasserstein: ``W1 = integral |F_r - F_c|``. Per bin the integral of ``F_r - F_c`` is exact
from counts and sums (a value at offset ``o`` in a bin of width ``w`` adds ``(w - o) / N`` to
the integral of its CDF over the bin); where the difference keeps its sign within a bin, which
is every bin but those where the two CDFs cross, ``integral |F_r - F_c|`` is exact too. Where it
may change sign, the masses and sums bound by how much: :func:`wasserstein` returns the
estimate and a guaranteed interval ``[lower, upper]`` around the true (raw-data) distance.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: edges of a continuous reference (half evenly spaced quantiles and dyadic tails, half where the
#: bins are widest x heaviest; see :func:`reference_edges`)
EDGES = 128
#: a reference with at most this many distinct values gets every one as an edge
EXACT_VALUES = 256
#: a reference of at most this many rows gets every distinct value as an edge (Evidently's small
#: reference: the KS test, exact only with the whole reference CDF)
SMALL_REFERENCE_ROWS = 1000
#: distinct off-edge values a server lists per feature whose reference is low-cardinality
#: (at most :data:`TABLE_REFERENCE_VALUES` values): what decides Evidently's n_values <= 5 rule
#: and the value buckets of chi-squared / Z-test / Jensen-Shannon exactly
TABLE_SIZE = 32
TABLE_REFERENCE_VALUES = 20
#: |offset| above this is counted as this in the sums (values beyond float32 are refused by the
#: server anyway; this keeps a profile's sums finite whatever the data)
MAX_OFFSET = 1e250
#: a float32 input (Triton binary tensors) is within this relative distance of the float64 edge
#: it was rounded from: counted as that edge's atom (float32 rounds to nearest: 2**-24)
SNAP = 2.0 ** -23


def edges_digest(edges: Any) -> str:
    """A short id of a set of edges (the stats document names the edges it counted on by it)."""
    return hashlib.sha256(np.ascontiguousarray(edges, dtype="<f8").tobytes()).hexdigest()[:16]


def reference_edges(sorted_sample: np.ndarray, lo: float | None = None, hi: float | None = None,
                    rows: int | None = None, size: int = EDGES, extra: Any = (), split: bool = True) -> np.ndarray:
    """Edges for a reference from its sorted finite sample (the whole column, or a uniform sample).

    ``lo``/``hi``: the column's exact minimum and maximum (when the sample is a sample), always
    edges; ``rows``: the column's non-null rows (decides the small-reference case); ``size``: the
    number of edges for a continuous column; ``extra``: edges to add (the profile's decile edges,
    so that coarse counts are sums of fine ones).

    A continuous column starts from half of ``size`` evenly spaced quantiles, dyadic quantiles
    into both tails and the extremes (order statistics, so that ties land on edges), then splits
    the bin with the largest width x mass at its median value until there are ``size`` edges:
    the Wasserstein bound of a bin grows with its width times its mass, which equal-mass bins
    leave large in a long tail.
    """
    s = np.asarray(sorted_sample, dtype=np.float64)
    n = s.size
    parts = [np.asarray(extra, dtype=np.float64).ravel()]
    parts += [np.asarray([x], dtype=np.float64) for x in (lo, hi) if x is not None and math.isfinite(x)]
    if n == 0:
        out = np.unique(np.concatenate(parts))
        return out[np.isfinite(out)]
    distinct = _unique_sorted(s)
    rows = n if rows is None else rows
    if distinct.size <= EXACT_VALUES or rows <= SMALL_REFERENCE_ROWS:
        e = distinct
    else:
        body = max(size // 2 if split else size, 2)
        levels = [j / body for j in range(1, body)]
        t = int(math.log2(body)) + 1
        while 2.0 ** -t >= 0.5 / n:
            levels += [2.0 ** -t, 1 - 2.0 ** -t]
            t += 1
        idx = np.clip(np.floor(np.asarray(levels) * n).astype(np.int64), 0, n - 1)
        e = np.unique(np.concatenate([s[idx], s[:1], s[-1:]]))
        if split:
            e = _split_widest(s, e, size)
    out = np.unique(np.concatenate([e, *parts]))
    return out[np.isfinite(out)]


def _split_widest(s: np.ndarray, edges: np.ndarray, size: int) -> np.ndarray:
    """Add order statistics of ``s`` as edges, each time at the median of the bin whose width
    times sample mass is the largest, until there are ``size`` edges (or no bin can be split)."""
    import heapq

    n = s.size
    pos = np.searchsorted(s, edges, side="left")  # first sample index of each bin [e_i, e_i+1)
    heap: list[tuple[float, int, int]] = []

    def push(i0: int, i1: int) -> None:  # sample indices [i0, i1) of one bin
        if i1 - i0 >= 2 and s[i1 - 1] > s[i0]:
            heap.append((-(s[i1 - 1] - s[i0]) * (i1 - i0) / n, i0, i1))

    for a, b in zip(pos[:-1].tolist(), pos[1:].tolist()):
        push(a, b)
    heapq.heapify(heap)
    out = set(edges.tolist())
    while len(out) < size and heap:
        _, i0, i1 = heapq.heappop(heap)
        m = (i0 + i1) // 2
        v = s[m]
        m = int(np.searchsorted(s, v, side="left"))  # the bin [v, ...) starts at v's first copy
        if m <= i0:
            m = int(np.searchsorted(s, v, side="right"))
            if m >= i1:
                continue
            v = s[m]
        out.add(float(v))
        for a, b in ((i0, m), (m, i1)):
            if b - a >= 2 and s[b - 1] > s[a]:
                heapq.heappush(heap, (-(s[b - 1] - s[a]) * (b - a) / n, a, b))
    return np.array(sorted(out))


def _unique_sorted(s: np.ndarray) -> np.ndarray:
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


@dataclass
class Histogram:
    """Counts, atoms and offset sums of one numeric feature on ``edges`` (module docstring).

    ``values``/``unlisted``: the off-edge values counted one by one (a low-cardinality
    reference only; :data:`TABLE_SIZE` at most) and how many off-edge values were not listed.
    ``listing``: whether ``values`` is kept at all. The arrays are counters: two readings of a
    server subtract, histograms of pods add.
    """

    edges: np.ndarray
    counts: np.ndarray
    atoms: np.ndarray
    sums: np.ndarray
    nulls: int = 0
    values: dict[float, int] = field(default_factory=dict)
    unlisted: int = 0
    listing: bool = False
    snapped: int = 0

    @classmethod
    def empty(cls, edges: Any, listing: bool = False) -> Histogram:
        e = np.asarray(edges, dtype=np.float64)
        k = e.size
        return cls(e, np.zeros(k + 1, np.int64), np.zeros(k, np.int64), np.zeros(k + 1, np.float64),
                   listing=listing)

    @classmethod
    def of(cls, edges: Any, values: Any, listing: bool = False) -> Histogram:
        h = cls.empty(edges, listing)
        h.add(np.asarray(values, dtype=np.float64).ravel())
        return h

    @property
    def count(self) -> int:
        """Non-null (finite) values."""
        return int(self.counts.sum())

    @property
    def k(self) -> int:
        return int(self.edges.size)

    @property
    def digest(self) -> str:
        return edges_digest(self.edges)

    def add(self, v: np.ndarray) -> None:
        """Count values (float64, any shape; NaN and +-inf are nulls)."""
        v = np.asarray(v, dtype=np.float64).ravel()
        if v.size == 0:
            return
        ok = np.isfinite(v)
        if not ok.all():
            self.nulls += int(v.size - np.count_nonzero(ok))
            v = v[ok]
            if v.size == 0:
                return
        j, off, atom, snapped = locate(self.edges, v)
        self.snapped += snapped
        k = self.k
        self.counts += np.bincount(j, minlength=k + 1)
        self.sums += np.bincount(j, weights=off, minlength=k + 1)
        if atom.any():
            self.atoms += np.bincount(j[atom] - 1, minlength=k)
        if self.listing:
            self._list(v[~atom])

    def _list(self, off_edge: np.ndarray) -> None:
        if off_edge.size == 0:
            return
        keys, n = np.unique(off_edge, return_counts=True)
        table = self.values
        for key, c in zip(keys.tolist(), n.tolist()):
            if key in table:
                table[key] += c
            elif len(table) < TABLE_SIZE:
                table[key] = c
            else:
                self.unlisted += c

    def copy(self) -> Histogram:
        return Histogram(self.edges, self.counts.copy(), self.atoms.copy(), self.sums.copy(), self.nulls,
                         dict(self.values), self.unlisted, self.listing, self.snapped)

    def same_edges(self, other: Histogram) -> bool:
        return self.edges.shape == other.edges.shape and bool(np.array_equal(self.edges, other.edges))

    def __add__(self, other: Histogram) -> Histogram:
        if not self.same_edges(other):
            raise ValueError("cannot add histograms on different edges (another model version?)")
        vals = dict(self.values)
        for key, c in other.values.items():
            vals[key] = vals.get(key, 0) + c
        return Histogram(self.edges, self.counts + other.counts, self.atoms + other.atoms, self.sums + other.sums,
                         self.nulls + other.nulls, vals, self.unlisted + other.unlisted,
                         self.listing or other.listing, self.snapped + other.snapped)

    def minus(self, before: Histogram) -> Histogram | None:
        """What was counted since ``before`` (an earlier reading of the same counters), or None
        when a counter went down (not an earlier reading: a reset)."""
        if not self.same_edges(before):
            return None
        c, a = self.counts - before.counts, self.atoms - before.atoms
        nulls, unlisted = self.nulls - before.nulls, self.unlisted - before.unlisted
        snapped = self.snapped - before.snapped
        vals = {}
        for key, n in self.values.items():
            d = n - before.values.get(key, 0)
            if d < 0:
                return None
            if d:
                vals[key] = d
        if (c < 0).any() or (a < 0).any() or min(nulls, unlisted, snapped) < 0 or set(before.values) - set(self.values):
            return None
        s = self.sums - before.sums
        s[c == 0] = 0.0  # no value arrived: rounding residue of the cumulative sum, not data
        return Histogram(self.edges, c, a, np.maximum(s, 0.0), nulls, vals, unlisted, self.listing, snapped)

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self, edges: bool = False) -> dict[str, Any]:
        """Compact JSON: atoms and value table as [index, count] pairs of the non-zero ones."""
        d: dict[str, Any] = {"edgesDigest": self.digest, "counts": self.counts.tolist(),
                             "atoms": [[int(i), int(self.atoms[i])] for i in np.flatnonzero(self.atoms)],
                             "sums": [float(x) for x in self.sums], "nulls": int(self.nulls)}
        if self.snapped:
            d["snapped"] = int(self.snapped)
        if edges:
            d["edges"] = self.edges.tolist()
        if self.listing:
            d["values"] = [[float(key), int(c)] for key, c in self.values.items()]
            d["unlisted"] = int(self.unlisted)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], edges: Any = None) -> Histogram:
        """From :meth:`to_json`; ``edges`` when the document names them by digest only."""
        e = np.asarray(d["edges"] if d.get("edges") is not None else edges, dtype=np.float64)
        if "edgesDigest" in d and edges_digest(e) != d["edgesDigest"]:
            raise ValueError("the counts were taken on other edges than the reference's")
        k = e.size
        counts = np.asarray(d["counts"], dtype=np.int64)
        sums = np.asarray(d["sums"], dtype=np.float64)
        if counts.shape != (k + 1,) or sums.shape != (k + 1,):
            raise ValueError(f"{k} edges need {k + 1} counts and sums")
        atoms = np.zeros(k, np.int64)
        for i, c in d.get("atoms") or []:
            atoms[int(i)] = int(c)
        listing = "values" in d
        vals = {float(key): int(c) for key, c in d.get("values") or []}
        return cls(e, counts, atoms, sums, int(d.get("nulls") or 0), vals, int(d.get("unlisted") or 0), listing,
                   int(d.get("snapped") or 0))


def locate(edges: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(bin, offset, is-atom, how many were snapped) of finite values on ``edges``; a value within
    float32 rounding of an edge (not equal to it) is snapped: counted as that edge's atom."""
    k = edges.size
    j = np.searchsorted(edges, v, side="right")
    if k == 0:
        return j, np.zeros(v.size), np.zeros(v.size, bool), 0
    # snap to the edge above: v a float32 rounding of e[j] (just below it)
    up = np.minimum(j, k - 1)
    eu = edges[up]
    snap = (j < k) & (eu - v <= SNAP * np.abs(eu))
    if snap.any():
        j = np.where(snap, j + 1, j)
    left = edges[np.maximum(j - 1, 0)]
    off = np.where(j == 0, edges[0] - v, v - left)
    atom = (j > 0) & (off <= SNAP * np.abs(left))
    snapped = int(np.count_nonzero(atom & (off > 0)))
    off = np.where(atom, 0.0, np.minimum(off, MAX_OFFSET))
    return j, off, atom, snapped


# ---------------------------------------------------------------------------------------------
# statistics on two histograms on the same edges

#: subintervals per ambiguous bin for the guaranteed bounds (more: tighter, slower)
GRID = 32


@dataclass(frozen=True)
class _Side:
    P: np.ndarray      # F at e[j-1] (right-continuous, atoms included) for bin j = 1..k; 0 for bin 0
    rho: np.ndarray    # interior mass of bin j (bin 0: all of it; bins >= 1: without the atom)
    sig: np.ndarray    # offset sum of bin j / N
    ni: np.ndarray     # interior values of bin j (a count)
    n: int


def _side(h: Histogram) -> _Side:
    n = h.count
    c = h.counts.astype(np.float64)
    a = np.concatenate([[0.0], h.atoms.astype(np.float64)])
    before = np.concatenate([[0.0], np.cumsum(c)[:-1]])
    ni = np.maximum(h.counts - np.concatenate([[0], h.atoms]), 0)
    return _Side((before + a) / n, ni / n, h.sums / n, ni, n)


@dataclass(frozen=True)
class Bounded:
    """A statistic computed on histograms: the estimate and a guaranteed [lower, upper] for the
    same statistic on the raw values the histograms counted."""

    estimate: float
    lower: float
    upper: float

    @property
    def exact(self) -> bool:
        return self.upper - self.lower <= 1e-12 * max(1.0, abs(self.upper))


def _mass_le(t: np.ndarray, rho: np.ndarray, mu: np.ndarray, ni: np.ndarray, w: np.ndarray,
             which: str) -> np.ndarray:
    """Interior mass at offsets <= t (``which`` "lo"/"hi": the least/most any arrangement of
    the bin's values with that mass and mean offset allows; "lo-": the left limit of "lo";
    "model": the estimate's model). Rows are bins, t is [bins, points]."""
    rho, mu, w = rho[:, None], mu[:, None], w[:, None]
    one = (ni == 1)[:, None]  # a single value: it is at the mean offset, known exactly
    step = (t > mu) if which == "hi-" else (t >= mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        if which in ("lo", "lo-"):
            f = np.where(t > mu, 1.0 - mu / t, 0.0)
        elif which in ("hi", "hi-"):
            f = np.where(t >= mu, 1.0, (w - mu) / (w - t))
        else:  # the widest uniform interval in [0, w] with mean mu
            lo = np.where(mu <= w / 2, 0.0, 2 * mu - w)
            span = np.where(mu <= w / 2, 2 * mu, 2 * (w - mu))
            f = np.where(span > 0, (t - lo) / span, (t >= mu).astype(np.float64))
    f = np.where(one, step, np.clip(f, 0.0, 1.0))
    return rho * f


def _refine(rs: _Side, cs: _Side, j: np.ndarray, w: np.ndarray, d0: np.ndarray):
    """For inner bins ``j`` (width w, D = F_r - F_c at their left edge d0): bounds of the integrals
    of D+ and D-, of sup D+ and sup D-, from the masses, mean offsets and single values; and the
    model's integral of |D| and max |D|."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mr = np.clip(np.where(rs.rho[j] > 0, rs.sig[j] / rs.rho[j], 0.0), 0.0, w)
        mc = np.clip(np.where(cs.rho[j] > 0, cs.sig[j] / cs.rho[j], 0.0), 0.0, w)
    base = np.linspace(0.0, 1.0, GRID + 1)[None, :] * w[:, None]
    knots = np.stack([np.where(rs.ni[j] == 1, mr, w), np.where(cs.ni[j] == 1, mc, w)], axis=1)
    t = np.sort(np.concatenate([base, knots], axis=1), axis=1)
    a, b = t[:, :-1], t[:, 1:]  # subintervals (a, b)
    r_, c_ = (rs.rho[j], mr, rs.ni[j], w), (cs.rho[j], mc, cs.ni[j], w)
    up = d0[:, None] + _mass_le(b, *r_, "hi-") - _mass_le(a, *c_, "lo")   # D < up on (a, b)
    down = d0[:, None] + _mass_le(a, *r_, "lo") - _mass_le(b, *c_, "hi-")  # D > down on (a, b)
    dt = b - a
    u_plus = (dt * np.maximum(up, 0.0)).sum(axis=1)
    u_minus = (dt * np.maximum(-down, 0.0)).sum(axis=1)
    sup_plus = np.maximum(up, 0.0).max(axis=1)
    sup_minus = np.maximum(-down, 0.0).max(axis=1)
    mid = (a + b) / 2
    dm = d0[:, None] + _mass_le(mid, *r_, "model") - _mass_le(mid, *c_, "model")
    pts = np.concatenate([a, mid], axis=1)
    dp = d0[:, None] + _mass_le(pts, *r_, "model") - _mass_le(pts, *c_, "model")
    return u_plus, u_minus, sup_plus, sup_minus, (dt * np.abs(dm)).sum(axis=1), np.abs(dp).max(axis=1)


def _slack(i_: np.ndarray, q_plus: np.ndarray, q_minus: np.ndarray) -> np.ndarray:
    """How much more than |integral of D| the integral of |D| can be, given bounds of the
    integrals of D+ and D- (they differ by the integral of D)."""
    return 2 * np.maximum(0.0, np.minimum(q_plus - np.maximum(i_, 0.0), q_minus - np.maximum(-i_, 0.0)))


def wasserstein(ref: Histogram, cur: Histogram) -> Bounded:
    """W1 between the raw values counted by two histograms on the same edges (not normed).

    Exact per bin where F_r - F_c keeps its sign; elsewhere the interval is what the counts,
    mean offsets and single values allow, and the estimate takes each side uniform over the
    widest interval of the bin with its mean offset (clipped into the interval).
    """
    rs, cs = _side(ref), _side(cur)
    if rs.n == 0 or cs.n == 0:
        return Bounded(float("nan"), float("nan"), float("nan"))
    e, k = ref.edges, ref.k
    lower = upper = est = 0.0
    # bin 0 (-inf, e0): the integral of F there is sig[0]; D+ <= F_r, D- <= F_c. Bin k [e_{k-1},
    # inf): the integral of 1 - F is sig[k]; D = G_c - G_r (G = 1 - F), D+ <= G_c, D- <= G_r
    for j, sign in ((0, 1.0), (k, -1.0)):
        i_ = sign * (rs.sig[j] - cs.sig[j])
        qp, qn = (rs.sig[j], cs.sig[j]) if sign > 0 else (cs.sig[j], rs.sig[j])
        lo = abs(i_)
        sl = float(_slack(np.array([i_]), np.array([qp]), np.array([qn]))[0])
        e_ = lo
        if sl > 0:  # both sides have mass beyond the edge: each uniform over [0, 2 mean offset]
            mr, mc = rs.sig[j] / rs.rho[j], cs.sig[j] / cs.rho[j]
            t = np.linspace(0.0, 2 * max(mr, mc), 4 * GRID + 1)
            mid = (t[:-1] + t[1:]) / 2
            g = rs.rho[j] * np.clip(1 - mid / (2 * mr), 0, 1) - cs.rho[j] * np.clip(1 - mid / (2 * mc), 0, 1)
            e_ = min(max(float(np.sum(np.abs(g) * np.diff(t))), lo), lo + sl)
        lower, upper, est = lower + lo, upper + lo + sl, est + e_
    if k >= 2:
        j = np.arange(1, k)
        w = e[1:] - e[:-1]
        d0 = rs.P[j] - cs.P[j]
        i_ = d0 * w + (rs.rho[j] - cs.rho[j]) * w - (rs.sig[j] - cs.sig[j])
        qp = np.minimum(w * np.maximum(d0 + rs.rho[j], 0.0), np.maximum(d0, 0.0) * w + rs.rho[j] * w - rs.sig[j])
        qn = np.minimum(w * np.maximum(cs.rho[j] - d0, 0.0), np.maximum(-d0, 0.0) * w + cs.rho[j] * w - cs.sig[j])
        sl = _slack(i_, qp, qn)
        lo = np.abs(i_)
        amb = np.flatnonzero(sl > 1e-15 * np.maximum(lo, w))
        est_b = lo.copy()
        if amb.size:
            u_plus, u_minus, _, _, model, _ = _refine(rs, cs, j[amb], w[amb], d0[amb])
            sl[amb] = np.minimum(sl[amb], _slack(i_[amb], u_plus, u_minus))
            est_b[amb] = np.clip(model, lo[amb], lo[amb] + sl[amb])
        lower += float(lo.sum())
        upper += float((lo + sl).sum())
        est += float(est_b.sum())
    moved = _snap_room(ref, rs.n) + _snap_room(cur, cs.n)  # snapped values moved by at most this
    return Bounded(est, max(lower - moved, 0.0), max(upper, lower) + moved)


def _snap_room(h: Histogram, n: int) -> float:
    """How far (in W1) snapping moved a histogram's values from the raw ones, at most."""
    return h.snapped * SNAP * float(np.abs(h.edges).max(initial=0.0)) / n if h.snapped else 0.0


def ks_statistic(ref: Histogram, cur: Histogram) -> Bounded:
    """The two-sample KS statistic sup |F_r - F_c| of the raw values, with its interval.

    Exact at every edge (atoms included) and just before it; inside a bin only the interior
    masses move the difference, within what their means allow.
    """
    rs, cs = _side(ref), _side(cur)
    if rs.n == 0 or cs.n == 0:
        return Bounded(float("nan"), float("nan"), float("nan"))
    k = ref.k
    j = np.arange(1, k + 1)
    at = np.abs(rs.P[j] - cs.P[j])                                   # D(e_{j-1})
    cum_r = np.concatenate([[0.0], np.cumsum(ref.counts)]) / rs.n
    cum_c = np.concatenate([[0.0], np.cumsum(cur.counts)]) / cs.n
    left = np.abs(cum_r[1:k + 1] - cum_c[1:k + 1])                   # D(e_{j-1}^-)
    lower = float(max(at.max(initial=0.0), left.max(initial=0.0)))
    upper = est = lower
    for jt in (0, k):  # outer bins: D moves from/to 0 monotonically unless both sides have mass there
        if min(rs.rho[jt], cs.rho[jt]) > 0:
            upper = max(upper, rs.rho[jt], cs.rho[jt])
            est = max(est, abs(rs.rho[jt] - cs.rho[jt]))
    if k >= 2:
        jj = np.arange(1, k)
        d0 = rs.P[jj] - cs.P[jj]
        cheap = np.maximum(d0 + rs.rho[jj], cs.rho[jj] - d0)
        amb = np.flatnonzero(cheap > lower)
        if amb.size:
            w = ref.edges[amb + 1] - ref.edges[amb]
            _, _, sp, sm, _, model = _refine(rs, cs, jj[amb], w, d0[amb])
            upper = max(upper, float(np.minimum(cheap[amb], np.maximum(sp, sm)).max()))
            est = max(est, float(model.max()))
    moved = ref.snapped / rs.n + cur.snapped / cs.n  # each snapped value moves a CDF by 1/N at most
    return Bounded(min(max(est, lower), upper), max(lower - moved, 0.0), min(upper + moved, 1.0))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """scipy.stats.ks_2samp's two-sided p-value for statistic ``d`` and sample sizes n, m (its
    method "auto": exact when both are at most 10,000, else Smirnov's asymptotic formula)."""
    from scipy.stats import distributions

    if n <= 0 or m <= 0 or d != d:
        return float("nan")
    if max(n, m) <= 10000:
        try:
            from scipy.stats import _stats_py

            exact = getattr(_stats_py, "_attempt_exact_2kssamp")
            ok, _, p = exact(n, m, math.gcd(n, m), d, "two-sided")
            if ok:
                return float(np.clip(p, 0.0, 1.0))
        except (AttributeError, ImportError, FloatingPointError, OverflowError):
            pass
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    return float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def value_counts(ref: Histogram, cur: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(values, reference counts, current counts, complete) over the distinct values of both
    sides: atoms on the edges plus the listed off-edge values. ``complete`` is False when some
    values were not counted one by one (interior mass not listed, or an overflowed list)."""
    vals: dict[float, list[int]] = {}
    for side, h in ((0, ref), (1, cur)):
        for i in np.flatnonzero(h.atoms):
            vals.setdefault(float(h.edges[i]), [0, 0])[side] += int(h.atoms[i])
        for key, c in h.values.items():
            vals.setdefault(float(key), [0, 0])[side] += int(c)
    complete = all(h.listing and h.unlisted == 0 and int(h.atoms.sum()) + sum(h.values.values()) == h.count
                   for h in (ref, cur))
    keys = np.array(sorted(vals), dtype=np.float64)
    rc = np.array([vals[x][0] for x in keys.tolist()], dtype=np.float64)
    cc = np.array([vals[x][1] for x in keys.tolist()], dtype=np.float64)
    return keys, rc, cc, complete


def distinct_values(ref: Histogram, cur: Histogram) -> tuple[int, bool]:
    """(distinct non-null values of both sides together, exact). When not exact, a lower bound."""
    keys, rc, cc, complete = value_counts(ref, cur)
    n = int(np.count_nonzero((rc > 0) | (cc > 0)))
    if complete:
        return n, True
    # interior mass not listed: each bin with some holds at least one more value
    extra = 0
    for h in (ref, cur):
        inner = h.counts - np.concatenate([[0], h.atoms])
        if h.listing:
            extra += 1 if h.unlisted > 0 else 0
        else:
            extra += int(np.count_nonzero(inner > 0))
    return n + max(extra, 1), False


__all__ = ["EDGES", "Bounded", "EXACT_VALUES", "Histogram", "TABLE_SIZE", "distinct_values", "edges_digest",
           "ks_pvalue", "ks_statistic", "locate", "reference_edges", "value_counts", "wasserstein"]
