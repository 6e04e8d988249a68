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
default is the KS test), else :data:`EDGES` of its order statistics: half at evenly spaced
quantile levels and dyadic levels into both tails, half splitting the bins with the largest
width x mass, plus its minimum and maximum. So:

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

The stated bound (README, "Drift on histograms"; tests/unit/test_drift_histogram.py checks it):
``upper - lower`` is at most the sum over the inner bins where the CDFs may cross of
``width x (reference + current mass off the edges)``, plus twice the smaller tail sum where
both sides have mass beyond an outer edge (never, against a profile's reference, whose extremes
are edges); for KS, at most the largest mass off the edges of one side in one bin (0 when every
reference value is an edge). Snapped float32 values (:func:`locate`) widen both by what they
moved.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
#: a float32 rounding of an edge is within this relative distance of it (float32 rounds to
#: nearest: 2**-24); what a snapped value (see :func:`locate`) may have moved
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
    """Counts, atoms and offset sums of one numeric feature on some edges (module docstring).

    ``values``/``unlisted``: the off-edge values counted one by one (kept, ``listing``, for a
    feature whose reference has at most :data:`TABLE_REFERENCE_VALUES` distinct values; at most
    :data:`TABLE_SIZE` of them) and how many off-edge values were not listed. ``snapped``: values
    counted as an edge's atom because they were its float32 rounding (see :func:`locate`).

    The arrays are counters: two readings of a server subtract (:meth:`minus`), histograms of
    pods add. A histogram read from a stats document or a window knows its edges by ``digest``
    only (``edges`` None): adding and subtracting need no more; the statistics take the edges of
    the reference (:meth:`on`), which must have that digest.
    """

    counts: np.ndarray
    atoms: np.ndarray
    sums: np.ndarray
    nulls: int = 0
    values: dict[float, int] = field(default_factory=dict)
    unlisted: int = 0
    listing: bool = False
    snapped: int = 0
    edges: np.ndarray | None = None
    digest: str = ""
    projected: bool = False  # counted approximately from a histogram on other edges (see project)
    _loc: _Locator | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, edges: Any, listing: bool = False) -> Histogram:
        e = np.asarray(edges, dtype=np.float64)
        k = e.size
        return cls(np.zeros(k + 1, np.int64), np.zeros(k, np.int64), np.zeros(k + 1, np.float64),
                   listing=listing, edges=e, digest=edges_digest(e))

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
        """Number of edges."""
        return int(self.atoms.size)

    def on(self, edges: np.ndarray) -> Histogram:
        """This histogram with its edges, checked against the digest it was counted under."""
        e = np.asarray(edges, dtype=np.float64)
        if e.size != self.k or (self.digest and edges_digest(e) != self.digest):
            raise ValueError("counted on other bin edges than the reference's (another model version, or a "
                             "reference from another dataset)")
        return replace(self, edges=e, digest=self.digest or edges_digest(e))

    def _edges(self) -> np.ndarray:
        if self.edges is None:
            raise ValueError("a histogram known by its edges' digest only: take the reference's edges (on())")
        return self.edges

    def add(self, v: np.ndarray) -> None:
        """Count values (float64, any shape; NaN and +-inf are nulls)."""
        v = np.asarray(v, dtype=np.float64).ravel()
        if v.size == 0:
            return
        ok = np.isfinite(v)
        if not ok.all():
            self.nulls += int(v.size - np.count_nonzero(ok))
            v = v[ok]
        self.count_finite(v)

    def count_finite(self, v: np.ndarray, snap: bool = True, clip: bool = True) -> None:
        """Count finite float64 values (the caller has taken the nulls out). ``snap=False``: none
        of them is a float32 rounding (the model server checks a whole batch at once);
        ``clip=False``: none is beyond float32's range either, so offsets need no clipping."""
        if v.size == 0:
            return
        if self._loc is None:
            self._loc = _Locator(self._edges())
        j, off, atom, snapped = self._loc(v, snap, clip)
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
        return replace(self, counts=self.counts.copy(), atoms=self.atoms.copy(), sums=self.sums.copy(),
                       values=dict(self.values))

    def same_edges(self, other: Histogram) -> bool:
        if self.k != other.k:
            return False
        if self.digest and other.digest:
            return self.digest == other.digest
        return self.edges is not None and other.edges is not None and bool(np.array_equal(self.edges, other.edges))

    def __add__(self, other: Histogram) -> Histogram:
        out = self.copy()
        out += other
        return out

    def __iadd__(self, other: Histogram) -> Histogram:
        """Add another histogram's counts into this one (the same edges), in place."""
        if not self.same_edges(other):
            raise ValueError("cannot add counts on different bin edges (another model version?)")
        self.counts += other.counts
        self.atoms += other.atoms
        self.sums += other.sums
        self.nulls += other.nulls
        for key, c in other.values.items():
            self.values[key] = self.values.get(key, 0) + c
        self.unlisted += other.unlisted
        self.listing = self.listing or other.listing
        self.snapped += other.snapped
        if self.edges is None and other.edges is not None:
            self.edges, self._loc = other.edges, None
        self.digest = self.digest or other.digest
        return self

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
        s[c - np.concatenate([[0], a]) == 0] = 0.0  # only atoms (offset 0) came: rounding residue, not data
        return replace(self, counts=c, atoms=a, sums=np.maximum(s, 0.0), nulls=nulls, values=vals,
                       unlisted=unlisted, snapped=snapped)

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self, edges: bool = False) -> dict[str, Any]:
        """JSON: counts, atoms and sums as lists (the edges' digest names the edges; ``edges``
        adds the edges themselves: the reference's document); listed values as [value, count]."""
        d: dict[str, Any] = {"edgesDigest": self.digest, "counts": self.counts.tolist(),
                             "atoms": self.atoms.tolist(), "sums": self.sums.tolist(), "nulls": int(self.nulls)}
        if self.snapped:
            d["snapped"] = int(self.snapped)
        if edges:
            d["edges"] = self._edges().tolist()
        if self.listing:
            d["values"] = [[float(key), int(c)] for key, c in self.values.items()]
            d["unlisted"] = int(self.unlisted)
        if self.projected:
            d["projected"] = True
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Histogram:
        """From :meth:`to_json` (with or without the edges). Raises ValueError on a malformed one."""
        counts = np.asarray(d["counts"], dtype=np.int64)
        k = counts.size - 1
        sums = np.asarray(d["sums"], dtype=np.float64)
        if k < 0 or counts.ndim != 1 or sums.shape != counts.shape:
            raise ValueError("a histogram needs as many sums as counts")
        raw = d.get("atoms") or []
        if raw and isinstance(raw[0], list):  # [edge index, count] pairs of the non-zero ones
            atoms = np.zeros(k, np.int64)
            for i, c in raw:
                if not 0 <= int(i) < k:
                    raise ValueError(f"atom of edge {i} of {k}")
                atoms[int(i)] = int(c)
        else:
            atoms = np.asarray(raw, dtype=np.int64) if raw else np.zeros(k, np.int64)
            if atoms.shape != (k,):
                raise ValueError(f"{k} edges need {k} atom counts, got {atoms.size}")
        edges = None if d.get("edges") is None else np.asarray(d["edges"], dtype=np.float64)
        digest = str(d.get("edgesDigest") or "")
        if edges is not None:
            if edges.shape != (k,):
                raise ValueError(f"{edges.size} edges need {edges.size + 1} counts, got {k + 1}")
            if edges.size > 1 and np.any(np.diff(edges) <= 0):
                raise ValueError("bin edges must increase strictly")
            if digest and edges_digest(edges) != digest:
                raise ValueError("edges and edgesDigest disagree")
            digest = edges_digest(edges)
        vals = {float(key): int(c) for key, c in d.get("values") or []}
        return cls(counts, atoms, sums, int(d.get("nulls") or 0), vals, int(d.get("unlisted") or 0), "values" in d,
                   int(d.get("snapped") or 0), edges, digest, bool(d.get("projected")))


class _Locator:
    """Bins, offsets and atoms of values on fixed edges, with what it needs precomputed (the
    model server counts every request's numbers with it: a dozen numpy calls per feature)."""

    __slots__ = ("edges", "left", "snap_left", "snap_right", "any_snap")

    def __init__(self, edges: np.ndarray):
        e = np.asarray(edges, dtype=np.float64)
        self.edges = e
        self.left = np.concatenate([e[:1], e])  # the anchor of bin j: e[j-1], and e[0] for bin 0
        e32 = e.astype(np.float32).astype(np.float64)
        other = np.where(e32 != e, e32, np.nan)  # an edge's float32 rounding, when it is not the edge
        nan = np.array([np.nan])
        self.snap_left = np.concatenate([nan, other])   # at bin j: the rounding of e[j-1]
        self.snap_right = np.concatenate([other, nan])  # at bin j: the rounding of e[j]
        self.any_snap = bool(np.isfinite(other).any())

    def __call__(self, v: np.ndarray, snap: bool = True,
                 clip: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        if self.edges.size == 0:
            return np.zeros(v.size, np.intp), np.zeros(v.size), np.zeros(v.size, bool), 0
        j = np.searchsorted(self.edges, v, side="right")
        off = np.abs(v - self.left[j])  # bin 0: e[0] - v; bin j: v - e[j-1]
        snapped = 0
        if snap and self.any_snap:
            up = v == self.snap_right[j]  # NaN (no rounding to match) compares False
            lo = v == self.snap_left[j]
            n_up, n_lo = int(np.count_nonzero(up)), int(np.count_nonzero(lo))
            if n_up or n_lo:
                snapped = n_up + n_lo
                j = j + up
                off[up | lo] = 0.0
        atom = off == 0.0  # never in bin 0: its values are below e[0]
        if clip:
            np.minimum(off, MAX_OFFSET, out=off)
        return j, off, atom, snapped


def pack(hists: Mapping[str, Histogram], edges: bool = False) -> dict[str, Any]:
    """Several histograms in one JSON object (a serving pod's drift counters): their metadata as
    lists, their arrays as one string: little-endian numbers, all the counts, then all the atoms
    (int32, or int64 when a count needs it: ``"ints"``), then all the sums (float64), deflated
    (zlib; atoms and counts are mostly small or zero: about 4x smaller) and base64-encoded.
    Reading a hundred pods' documents is then a hundred strings to decode, not a hundred
    thousand JSON numbers to parse (stdlib json: 40 ms). ``edges``: the edges too (float64,
    after the sums; a reference or a window kept in the DriftMonitor's state ConfigMap)."""
    hs = list(hists.values())
    counts = np.concatenate([h.counts for h in hs]) if hs else np.zeros(0, np.int64)
    atoms = np.concatenate([h.atoms for h in hs]) if hs else np.zeros(0, np.int64)
    sums = np.concatenate([h.sums for h in hs]) if hs else np.zeros(0)
    wide = bool(counts.size) and int(counts.max(initial=0)) >= 2 ** 31
    ints = "<i8" if wide else "<i4"
    parts = [counts.astype(ints).tobytes(), atoms.astype(ints).tobytes(), sums.astype("<f8").tobytes()]
    if edges:
        parts.append(np.concatenate([h._edges() for h in hs] or [np.zeros(0)]).astype("<f8").tobytes())
    doc: dict[str, Any] = {"features": list(hists), "edgesDigests": [h.digest for h in hs],
                           "bins": [h.k + 1 for h in hs], "nulls": [int(h.nulls) for h in hs],
                           "ints": "i8" if wide else "i4", "compression": "zlib",
                           "data": base64.b64encode(zlib.compress(b"".join(parts), 1)).decode("ascii")}
    if edges:
        doc["withEdges"] = True
    if any(h.projected for h in hs):
        doc["projected"] = [bool(h.projected) for h in hs]
    if any(h.snapped for h in hs):
        doc["snapped"] = [int(h.snapped) for h in hs]
    listed = {n: {"values": [[float(v), int(c)] for v, c in h.values.items()], "unlisted": int(h.unlisted)}
              for n, h in hists.items() if h.listing}
    if listed:
        doc["listed"] = listed
    return doc


@dataclass(frozen=True)
class Packed:
    """The histograms of one :func:`pack` document, decoded but not yet split per feature: the
    pods of one model version share a layout, and their arrays add as a whole (:meth:`total`)."""

    layout: tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]  # names, edge digests, bins
    ints: np.ndarray     # int64: every histogram's counts, then every histogram's atoms
    sums: np.ndarray     # float64: every histogram's sums
    nulls: np.ndarray    # per histogram
    snapped: np.ndarray  # per histogram
    listed: Mapping[str, Mapping[str, Any]]  # name -> {"values": [[v, c], ...], "unlisted": n}
    edges: np.ndarray | None = None  # every histogram's edges, when packed with them
    projected: tuple[bool, ...] = ()

    @classmethod
    def decode(cls, doc: Mapping[str, Any]) -> Packed:
        """From :func:`pack`'s document; ValueError when it is malformed."""
        try:
            names, digests = tuple(str(n) for n in doc["features"]), tuple(str(d) for d in doc["edgesDigests"])
            bins = tuple(int(b) for b in doc["bins"])
            nulls = np.asarray(doc["nulls"], dtype=np.int64)
            snapped = np.asarray(doc.get("snapped") or [0] * len(names), dtype=np.int64)
            width = {"i4": 4, "i8": 8}[doc.get("ints", "i8")]
            compression = doc.get("compression")
            if compression not in (None, "zlib"):
                raise ValueError(f"compression {compression!r}")
            raw = base64.b64decode(doc["data"])
            listed = dict(doc.get("listed") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed histograms: {e}") from e
        if not len(names) == len(digests) == len(bins) == nulls.size == snapped.size or min(bins, default=1) < 1:
            raise ValueError("malformed histograms: lists of different lengths")
        n_ints = 2 * sum(bins) - len(bins)
        with_edges = bool(doc.get("withEdges"))
        size = width * n_ints + 8 * sum(bins) + (8 * (sum(bins) - len(bins)) if with_edges else 0)
        if compression == "zlib":  # inflate no more than the layout holds (no decompression bomb)
            try:
                z = zlib.decompressobj()
                raw = z.decompress(raw, size + 1)
            except zlib.error as e:
                raise ValueError(f"malformed histograms: {e}") from e
            if not z.eof:
                raise ValueError("malformed histograms: the data does not match the bins")
        if len(raw) != size:
            raise ValueError("malformed histograms: the data does not match the bins")
        ints = np.frombuffer(raw, dtype=f"<i{width}", count=n_ints).astype(np.int64)
        sums = np.frombuffer(raw, dtype="<f8", offset=width * n_ints, count=sum(bins))
        edges = np.frombuffer(raw, dtype="<f8", offset=width * n_ints + 8 * sum(bins)) if with_edges else None
        projected = tuple(bool(x) for x in doc.get("projected") or [False] * len(names))
        return cls((names, digests, bins), ints, sums, nulls, snapped, listed, edges, projected)

    @classmethod
    def total(cls, parts: list[Packed]) -> Packed:
        """The sum of several pods' histograms of one layout."""
        first = parts[0]
        if len(parts) == 1:
            return first
        if any(p.layout != first.layout for p in parts[1:]):
            raise ValueError("cannot add histograms of different layouts")
        listed: dict[str, dict[str, Any]] = {}
        for p in parts:
            for name, lst in p.listed.items():
                acc = listed.setdefault(name, {"values": {}, "unlisted": 0})
                for v, c in lst["values"]:
                    acc["values"][float(v)] = acc["values"].get(float(v), 0) + int(c)
                acc["unlisted"] += int(lst["unlisted"])
        merged = {n: {"values": [[v, c] for v, c in a["values"].items()], "unlisted": a["unlisted"]}
                  for n, a in listed.items()}
        return cls(first.layout, np.sum([p.ints for p in parts], axis=0), np.sum([p.sums for p in parts], axis=0),
                   np.sum([p.nulls for p in parts], axis=0), np.sum([p.snapped for p in parts], axis=0), merged)

    def histograms(self) -> dict[str, Histogram]:
        """Per feature; ValueError when packed edges do not match their digest."""
        names, digests, bins = self.layout
        out = {}
        oc, oa = 0, sum(bins)
        for i, (name, digest, b) in enumerate(zip(names, digests, bins)):
            lst = self.listed.get(name)
            vals = {float(v): int(c) for v, c in lst["values"]} if lst else {}
            h = Histogram(self.ints[oc:oc + b], self.ints[oa:oa + b - 1], self.sums[oc:oc + b], int(self.nulls[i]),
                          vals, int(lst["unlisted"]) if lst else 0, lst is not None, int(self.snapped[i]), None,
                          digest, bool(self.projected[i]) if self.projected else False)
            if self.edges is not None:
                h = h.on(self.edges[oa - sum(bins):oa - sum(bins) + b - 1])
            out[name] = h
            oc, oa = oc + b, oa + b - 1
        return out


def unpack(doc: Mapping[str, Any]) -> dict[str, Histogram]:
    """The histograms of :func:`pack`. Raises ValueError on a malformed document."""
    return Packed.decode(doc).histograms()


def locate(edges: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(bin, offset, is-atom, how many were snapped) of finite values on ``edges``.

    A value that is exactly an edge's float32 rounding (and not the edge) is snapped: counted as
    that edge's atom. A client that sends float32 tensors (Triton's binary extension) sends 0.1
    as 0.10000000149; without the snap every such value would be a new value next to the
    reference's 0.1. A float64 value is never snapped unless it equals a float32 rounding exactly.
    """
    return _Locator(edges)(np.asarray(v, dtype=np.float64))


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
    e, k = ref._edges(), ref.k
    lower = upper = est = 0.0
    # bin 0 (-inf, e0): the integral of F there is sig[0]; D+ <= F_r, D- <= F_c. Bin k [e_{k-1},
    # inf): the integral of 1 - F is sig[k]; D = G_c - G_r (G = 1 - F), D+ <= G_c, D- <= G_r
    for jt, sign in ((0, 1.0), (k, -1.0)):
        it = sign * (rs.sig[jt] - cs.sig[jt])
        qpt, qnt = (rs.sig[jt], cs.sig[jt]) if sign > 0 else (cs.sig[jt], rs.sig[jt])
        lot = abs(it)
        slt = float(_slack(np.array([it]), np.array([qpt]), np.array([qnt]))[0])
        et = lot
        if slt > 0:  # both sides have mass beyond the edge: each uniform over [0, 2 mean offset]
            mr, mc = rs.sig[jt] / rs.rho[jt], cs.sig[jt] / cs.rho[jt]
            t = np.linspace(0.0, 2 * max(mr, mc), 4 * GRID + 1)
            mid = (t[:-1] + t[1:]) / 2
            g = rs.rho[jt] * np.clip(1 - mid / (2 * mr), 0, 1) - cs.rho[jt] * np.clip(1 - mid / (2 * mc), 0, 1)
            et = min(max(float(np.sum(np.abs(g) * np.diff(t))), lot), lot + slt)
        lower, upper, est = lower + lot, upper + lot + slt, est + et
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
    return h.snapped * SNAP * float(np.abs(h._edges()).max(initial=0.0)) / n if h.snapped else 0.0


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
            w = ref._edges()[amb + 1] - ref._edges()[amb]
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
            from scipy.stats import _stats_py  # scipy's own exact distribution, as ks_2samp calls it

            exact: Any = getattr(_stats_py, "_attempt_exact_2kssamp")  # noqa: B009 (private: no stub)
            ok, _, p = exact(n, m, math.gcd(n, m), d, "two-sided")
            if ok:
                return float(np.clip(p, 0.0, 1.0))
        except (AttributeError, ImportError, FloatingPointError, OverflowError):
            pass
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    return float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def _inner(h: Histogram) -> np.ndarray:
    """Values off the edges, per bin."""
    return np.maximum(h.counts - np.concatenate([[0], h.atoms]), 0)


def complete(h: Histogram) -> bool:
    """Every value counted one by one: on an edge (an atom) or listed."""
    return h.unlisted == 0 and int(_inner(h).sum()) == sum(h.values.values())


def lists_values(reference: Histogram) -> bool:
    """Whether a server lists the off-edge values of a feature with this reference: its values
    are all edges, and at most :data:`TABLE_REFERENCE_VALUES` of them (Evidently then counts
    values one by one: n_values <= 5 decides between tests on values and on distributions, and
    PSI / Jensen-Shannon bucket values below 21 distinct reference values)."""
    return complete(reference) and int(np.count_nonzero(reference.atoms)) + len(reference.values) \
        <= TABLE_REFERENCE_VALUES


def value_counts(ref: Histogram, cur: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(values, reference counts, current counts, complete) over the values of both sides counted
    one by one (atoms and listed values), in increasing order. ``complete``: nothing else was
    counted (see :func:`complete`)."""
    e = ref._edges()
    on = (ref.atoms > 0) | (cur.atoms > 0)
    keys, rc, cc = e[on], ref.atoms[on].astype(np.float64), cur.atoms[on].astype(np.float64)
    listed = sorted(set(ref.values) | set(cur.values))
    if listed:
        keys = np.concatenate([keys, np.asarray(listed, dtype=np.float64)])
        rc = np.concatenate([rc, [float(ref.values.get(v, 0)) for v in listed]])
        cc = np.concatenate([cc, [float(cur.values.get(v, 0)) for v in listed]])
        order = np.argsort(keys, kind="stable")
        keys, rc, cc = keys[order], rc[order], cc[order]
    return keys, rc, cc, complete(ref) and complete(cur)


def distinct_values(ref: Histogram, cur: Histogram) -> tuple[int, bool]:
    """(distinct values of both sides together, exact); when not exact, a lower bound."""
    n = int(np.count_nonzero((ref.atoms > 0) | (cur.atoms > 0))) + len(set(ref.values) | set(cur.values))
    if complete(ref) and complete(cur):
        return n, True
    more = 0  # each bin with unlisted off-edge values holds at least one value not counted yet
    for h in (ref, cur):
        if not complete(h):
            more = max(more, 1 if h.listing else int(np.count_nonzero(_inner(h))))
    return n + more, False


def _model_extremes(h: Histogram) -> tuple[float, float]:
    """The smallest and largest value, exact when they are atoms, else as the uniform model of
    the bin puts them."""
    e, k = h._edges(), h.k
    nz = np.flatnonzero(h.counts)
    if nz.size == 0:
        return float("nan"), float("nan")
    inner = _inner(h)

    def ends(j: int) -> tuple[float, float]:
        if j == 0:
            return e[0] - 2 * h.sums[0] / h.counts[0], e[0]
        lo_e = e[j - 1]
        if inner[j] == 0:
            return lo_e, lo_e
        mu = h.sums[j] / inner[j]
        if j == k:
            return (lo_e if h.atoms[j - 1] else lo_e), lo_e + 2 * mu
        w = e[j] - lo_e
        a, b = (0.0, 2 * mu) if mu <= w / 2 else (2 * mu - w, w)
        return (lo_e if h.atoms[j - 1] else lo_e + a), lo_e + b

    return float(ends(int(nz[0]))[0]), float(ends(int(nz[-1]))[1])


def cdf_below(h: Histogram, x: np.ndarray) -> np.ndarray:
    """Values strictly below each x: exact at the edges, the uniform model inside bins."""
    e, k = h._edges(), h.k
    x = np.asarray(x, dtype=np.float64)
    j = np.searchsorted(e, x, side="right")
    before = np.concatenate([[0.0], np.cumsum(h.counts)[:-1]]).astype(np.float64)
    inner = _inner(h).astype(np.float64)
    out = before[j].copy()
    atoms = np.concatenate([[0.0], h.atoms.astype(np.float64)])
    left = e[np.maximum(j - 1, 0)]
    out += np.where((j > 0) & (x > left), atoms[j], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(inner > 0, h.sums / inner, 0.0)
    m = mu[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        # bin 0: offsets e0 - v uniform on [0, 2mu]; values below x have offsets above e0 - x
        t0 = e[0] - x
        frac0 = 1.0 - np.clip(np.where(m > 0, t0 / (2 * m), 1.0), 0.0, 1.0)
        # the top bin: offsets uniform on [0, 2mu]; inner bins: the widest uniform interval with mean mu
        t = x - left
        w = np.where((j > 0) & (j < k), e[np.minimum(j, k - 1)] - left, 2 * m)
        lo = np.where(m <= w / 2, 0.0, 2 * m - w)
        span = np.where(m <= w / 2, 2 * m, 2 * (w - m))
        frac = np.clip(np.where(span > 0, (t - lo) / span, (t > m).astype(np.float64)), 0.0, 1.0)
    out += inner[j] * np.where(j == 0, frac0, frac)
    return out


def _value_sums_below(h: Histogram, x: np.ndarray) -> np.ndarray:
    """The sum of the values strictly below each x: exact at the edges, the uniform model inside."""
    e, k = h._edges(), h.k
    x = np.asarray(x, dtype=np.float64)
    j = np.searchsorted(e, x, side="right")
    anchor = np.concatenate([e[:1], e])
    value_sums = np.where(np.arange(k + 1) == 0, h.counts * anchor - h.sums, h.counts * anchor + h.sums)
    before = np.concatenate([[0.0], np.cumsum(value_sums)[:-1]])
    out = before[j].copy()
    atoms = np.concatenate([[0.0], h.atoms.astype(np.float64)])
    left = anchor[j]
    out += np.where((j > 0) & (x > left), atoms[j] * left, 0.0)
    inner = _inner(h).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(inner > 0, h.sums / inner, 0.0)
    m = mu[j]
    # bin 0: offsets below e0 uniform on [0, 2mu]; those below x have offsets in (e0 - x, 2mu]
    t0 = np.clip(e[0] - x, 0.0, 2 * m)
    frac0 = np.where(m > 0, 1.0 - t0 / np.where(m > 0, 2 * m, 1.0), 0.0)
    part0 = inner[j] * frac0 * (e[0] - (t0 + 2 * m) / 2)
    w = np.where((j > 0) & (j < k), e[np.minimum(j, k - 1)] - left, 2 * m)
    lo = np.where(m <= w / 2, 0.0, 2 * m - w)
    span = np.where(m <= w / 2, 2 * m, 2 * (w - m))
    t = np.clip(x - left, lo, lo + span)
    frac = np.where(span > 0, (t - lo) / np.where(span > 0, span, 1.0), (x - left > m).astype(np.float64))
    part = inner[j] * frac * (left + (lo + t) / 2)
    return out + np.where(j == 0, part0, part)


def project(h: Histogram, edges: Any) -> Histogram:
    """``h`` counted approximately on other edges: the counts and sums between the new edges as
    the uniform model of each bin puts them, atoms where a new edge is an old one. What a
    reference from another dataset (DriftMonitor spec.reference) becomes on the edges the pods
    count on; statistics on it are approximate ("binned"), without a bound."""
    f = np.asarray(edges, dtype=np.float64)
    n = h.count
    below = np.rint(cdf_below(h, f)) if f.size else np.zeros(0)
    cum = np.concatenate([[0.0], np.maximum.accumulate(np.clip(below, 0, n)), [float(n)]])
    counts = np.diff(cum).astype(np.int64)
    vals = np.concatenate([[0.0], _value_sums_below(h, f) if f.size else np.zeros(0),
                           [float(_value_sums_below(h, np.array([np.inf]))[0])]])
    value_sums = np.diff(vals)
    anchor = np.concatenate([f[:1], f])
    sums = np.where(np.arange(f.size + 1) == 0, counts * anchor - value_sums, value_sums - counts * anchor)
    sums = np.where(counts > 0, np.maximum(sums, 0.0), 0.0)
    old = {float(v): int(c) for v, c in zip(h._edges(), h.atoms) if c}
    atoms = np.array([old.get(float(v), 0) for v in f], dtype=np.int64)
    atoms = np.minimum(atoms, counts[1:])
    return Histogram(counts, atoms, sums, h.nulls, edges=f, digest=edges_digest(f), projected=True)


def sturges_counts(ref: Histogram, cur: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both sides on Evidently's bins for PSI / Jensen-Shannon of a numeric column:
    ``np.histogram_bin_edges(reference + current, "sturges")``, from the histograms (the range
    and the counts between edges as the uniform model puts them: approximate)."""
    from .stats import sturges_edges

    rl, rh_ = _model_extremes(ref)
    cl, ch_ = _model_extremes(cur)
    bins = sturges_edges(min(rl, cl), max(rh_, ch_), ref.count + cur.count)
    out = []
    for h in (ref, cur):
        f = cdf_below(h, bins[1:-1])
        cum = np.concatenate([[0.0], f, [float(h.count)]])
        out.append(np.maximum(np.diff(cum), 0.0))
    return out[0], out[1]


__all__ = ["EDGES", "EXACT_VALUES", "TABLE_SIZE", "Bounded", "Histogram", "cdf_below", "complete", "distinct_values",
           "edges_digest", "ks_pvalue", "ks_statistic", "lists_values", "locate", "pack", "Packed", "project",
           "reference_edges", "sturges_counts", "unpack",
           "value_counts", "wasserstein"]
