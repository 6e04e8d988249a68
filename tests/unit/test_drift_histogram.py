"""The reference-anchored histogram (drift/histogram.py): its statistics against scipy on the raw
values, and the stated error bound, on generated distributions (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs

from mlops_operator.drift import histogram as H
from mlops_operator.drift.histogram import Histogram

FAMILIES = {
    "normal": lambda g, n, s: g.normal(0.3 * s, 1 + 0.2 * s, n),
    "lognormal": lambda g, n, s: g.lognormal(0, 1, n) * (1 + 0.3 * s),
    "cauchy": lambda g, n, s: g.standard_cauchy(n) + s,
    "pareto": lambda g, n, s: g.pareto(1.2 + s, n),
    "ties": lambda g, n, s: np.round(g.normal(40 + 3 * s, 10, n)),
    "near_constant": lambda g, n, s: 1e6 + 0.3 * s + g.normal(0, 0.05, n),
    "discrete": lambda g, n, s: g.choice([0.0, 0.5, 3.0], n, p=[0.5, 0.3, 0.2] if s == 0 else [0.3, 0.3, 0.4]),
    "spike": lambda g, n, s: np.where(g.random(n) < 0.9 - 0.2 * s, 7.0, g.exponential(2, n)),
    "tiny": lambda g, n, s: g.normal(0, 1e-9, n) + 1e-9 * s,
}


def inner(h: Histogram) -> np.ndarray:
    return (h.counts - np.concatenate([[0], h.atoms])) / h.count


def stated_bounds(r: Histogram, c: Histogram) -> tuple[float, float]:
    """The a priori bound of the interval widths (README, "Drift on histograms: the error bound"):
    W: sum over inner bins of width x (reference + current mass off the edges), plus twice the
    smaller tail sum where both sides have mass beyond an outer edge; KS: the largest mass off
    the edges of one side in one bin."""
    e = r.edges
    w = np.diff(e)
    ir, ic = inner(r), inner(c)
    wb = float(np.sum(w * (ir[1:-1] + ic[1:-1])))
    for j in (0, e.size):
        if ir[j] > 0 and ic[j] > 0:
            wb += 2 * min(r.sums[j] / r.count, c.sums[j] / c.count)
    kb = float(np.max(np.maximum(ir, ic)))
    return wb, kb


@settings(max_examples=120, deadline=None, derandomize=True)
@given(fam=hs.sampled_from(sorted(FAMILIES)), n_ref=hs.sampled_from([50, 300, 1000, 1001, 5000, 30000]),
       n_cur=hs.integers(1, 20000), shift=hs.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]), seed=hs.integers(0, 2 ** 31))
def test_the_statistics_are_inside_their_interval_and_the_interval_inside_the_stated_bound(fam, n_ref, n_cur, shift,
                                                                                          seed):
    g = np.random.default_rng(seed)
    ref, cur = FAMILIES[fam](g, n_ref, 0.0), FAMILIES[fam](g, n_cur, shift)
    r = Histogram.of(H.reference_edges(np.sort(ref)), ref)
    c = Histogram.of(r.edges, cur)
    w, d = H.wasserstein(r, c), H.ks_statistic(r, c)
    exact_w, exact_d = st.wasserstein_distance(ref, cur), st.ks_2samp(ref, cur).statistic
    tol = 1e-9 * max(1.0, exact_w) + 1e-12 * float(np.abs(r.edges).max())
    assert w.lower - tol <= exact_w <= w.upper + tol, (w, exact_w)
    assert w.lower - tol <= w.estimate <= w.upper + tol
    assert d.lower - 1e-12 <= exact_d <= d.upper + 1e-12, (d, exact_d)
    wb, kb = stated_bounds(r, c)
    assert w.upper - w.lower <= wb + tol, (w, wb)
    assert d.upper - d.lower <= kb + 1e-12, (d, kb)
    if n_ref <= H.SMALL_REFERENCE_ROWS or np.unique(ref).size <= H.EXACT_VALUES:
        # every reference value is an edge: KS exact, and so is its p-value
        assert d.upper - d.lower <= 1e-12 and d.estimate == pytest.approx(exact_d, abs=1e-12)
        assert H.ks_pvalue(d.estimate, n_ref, n_cur) == pytest.approx(st.ks_2samp(ref, cur).pvalue, rel=1e-9,
                                                                        abs=1e-300)


def test_the_reference_edges():
    g = np.random.default_rng(0)
    x = np.sort(g.lognormal(0, 1, 40000))
    e = H.reference_edges(x, lo=0.001, hi=1e4)
    assert e[0] == 0.001 and e[-1] == 1e4 and np.all(np.diff(e) > 0)
    assert H.EDGES <= e.size <= H.EDGES + 2
    assert np.isin(e[1:-1], x).all()  # order statistics: ties land on edges
    # the widest x heaviest bins were split: the top tail is finer than equal-mass bins would be
    q = H.reference_edges(x, split=False)
    assert np.sum(x > e[-20]) < np.sum(x > q[-20])
    small = g.normal(size=900)
    assert np.array_equal(H.reference_edges(np.sort(small)), np.sort(small))  # <= 1000 rows: every value
    ints = np.sort(g.integers(0, 200, 50000).astype(float))
    assert np.array_equal(H.reference_edges(ints), np.unique(ints))  # few distinct values: every value
    assert H.reference_edges(np.array([]), lo=None, hi=None).size == 0


def test_sign_constant_bins_are_exact_and_disjoint_windows_too():
    g = np.random.default_rng(1)
    ref = g.normal(0, 1, 5000)
    r = Histogram.of(H.reference_edges(np.sort(ref)), ref)
    for cur in (g.normal(10, 1, 700), g.normal(-10, 3, 700)):
        c = Histogram.of(r.edges, cur)
        w = H.wasserstein(r, c)
        assert w.exact and w.estimate == pytest.approx(st.wasserstein_distance(ref, cur), rel=1e-9)
    # the same counts and sums: the estimate is 0; the raw values could still differ inside bins
    same = H.wasserstein(r, Histogram.of(r.edges, ref))
    assert same.estimate == 0.0 and same.lower == 0.0 < same.upper


def test_float32_values_are_counted_on_the_edge_they_were_rounded_from():
    ref = np.array([0.1, 0.3, 0.7, 1.0, 0.1, 0.3])
    r = Histogram.of(H.reference_edges(np.sort(ref)), ref)
    assert H.lists_values(r)
    sent = np.array([0.1, 0.7, 0.7, 0.3], dtype=np.float32).astype(np.float64)  # Triton binary FP32
    c = Histogram.of(r.edges, sent, listing=True)
    assert c.atoms.tolist() == [1, 1, 2, 0] and c.snapped == 4 and c.values == {}
    assert H.distinct_values(r, c) == (4, True)
    d = H.ks_statistic(r, c)
    exact = st.ks_2samp(ref, sent).statistic
    assert d.lower <= exact <= d.upper  # the snapped values moved by float32 rounding at most
    # a float64 value next to an edge is not snapped
    near = Histogram.of(r.edges, [0.1 + 1e-12], listing=True)
    assert near.snapped == 0 and near.values == {0.1 + 1e-12: 1}


def test_listed_values_decide_the_number_of_values_exactly():
    ref = np.repeat([1.0, 2.0, 5.0], [60, 30, 10])
    r = Histogram.of(H.reference_edges(np.sort(ref)), ref)
    c = Histogram.of(r.edges, [1.0, 2.0, 7.5, 7.5, 0.5], listing=True)
    keys, rc, cc, complete = H.value_counts(r, c)
    assert complete and keys.tolist() == [0.5, 1.0, 2.0, 5.0, 7.5] and cc.tolist() == [1, 1, 1, 0, 2]
    assert H.distinct_values(r, c) == (5, True)
    many = Histogram.of(r.edges, np.linspace(10, 11, 100), listing=True)  # more than the pods list
    assert many.unlisted == 100 - H.TABLE_SIZE and H.distinct_values(r, many)[1] is False


def test_json_round_trip_subtraction_and_addition():
    g = np.random.default_rng(2)
    ref = g.normal(size=3000)
    e = H.reference_edges(np.sort(ref))
    a = Histogram.of(e, g.normal(size=500))
    b = a.copy()
    b.add(np.r_[g.normal(size=200), np.nan, -np.inf])
    d = Histogram.from_json(b.to_json()).minus(Histogram.from_json(a.to_json()))
    assert d is not None and d.count == 200 and d.nulls == 2
    assert (Histogram.from_json(a.to_json()) + d).on(e).counts.tolist() == b.counts.tolist()
    assert Histogram.from_json(b.to_json(edges=True)).edges.tolist() == e.tolist()
    with pytest.raises(ValueError):
        Histogram.from_json({**b.to_json(edges=True), "edgesDigest": "0" * 16})


def test_projection_onto_other_edges_keeps_the_mass_and_the_distance_close():
    g = np.random.default_rng(3)
    a, b = g.lognormal(0, 1, 20000), g.lognormal(0, 1, 20000)
    ha = Histogram.of(H.reference_edges(np.sort(a)), a)
    eb = H.reference_edges(np.sort(b))
    p = H.project(ha, eb)
    assert p.count == ha.count and p.projected and np.all(p.counts >= 0) and np.all(p.sums >= 0)
    cur = g.lognormal(0, 1, 3000) * 1.2
    exact = st.wasserstein_distance(a, cur)
    assert H.wasserstein(p, Histogram.of(eb, cur)).estimate == pytest.approx(exact, rel=0.02)


def test_huge_values_never_overflow_the_sums():
    e = H.reference_edges(np.sort(np.random.default_rng(4).normal(size=2000)))
    h = Histogram.of(e, [1e308, -1e308, 1e300, np.inf, np.nan])
    assert np.all(np.isfinite(h.sums)) and h.nulls == 2 and h.count == 3
    assert math.isfinite(H.wasserstein(h, Histogram.of(e, [0.0, 1.0])).upper)


def test_pack_and_unpack_many_histograms():
    g = np.random.default_rng(5)
    e1 = H.reference_edges(np.sort(g.normal(size=2000)))
    e2 = np.array([1.0, 2.0, 5.0])
    hs = {"a": Histogram.of(e1, np.r_[g.normal(size=300), np.nan]),
          "b": Histogram.of(e2, [1.0, 2.0, 7.5, 0.5], listing=True),
          "c": Histogram.of(e2, np.array([1.0, 2.0], dtype=np.float32).astype(float) + 0)}
    hs["a"].counts[3] += 2 ** 31  # a count beyond int32: packed as int64
    doc = H.pack(hs)
    assert doc["ints"] == "i8"
    back = H.unpack(orjson.loads(orjson.dumps(doc)))
    for k, h in hs.items():
        b = back[k]
        assert b.digest == h.digest and b.counts.tolist() == h.counts.tolist() and b.atoms.tolist() == h.atoms.tolist()
        assert b.sums.tolist() == h.sums.tolist() and b.nulls == h.nulls and b.values == h.values
        assert b.listing == h.listing and b.on(h.edges).count == h.count
    assert H.pack({"b": hs["b"]})["ints"] == "i4"
    for bad in ({**doc, "data": doc["data"][:-8]}, {**doc, "bins": doc["bins"][:1]}, {**doc, "data": "!!"},
                {k: v for k, v in doc.items() if k != "nulls"}):
        with pytest.raises(ValueError):
            H.unpack(bad)
    assert H.unpack(H.pack({})) == {}


def test_a_packed_document_cannot_inflate_beyond_its_layout():
    import base64
    import zlib

    doc = H.pack({"a": Histogram.of([0.0, 1.0], [0.5])})
    bomb = base64.b64encode(zlib.compress(b"\0" * (64 << 20))).decode()
    with pytest.raises(ValueError, match="does not match"):
        H.unpack({**doc, "data": bomb})
    with pytest.raises(ValueError, match="compression"):
        H.unpack({**doc, "compression": "lz4"})
    plain = {k: v for k, v in doc.items() if k != "compression"}
    plain["data"] = base64.b64encode(zlib.decompress(base64.b64decode(doc["data"]))).decode()
    assert H.unpack(plain)["a"].counts.tolist() == [0, 1, 0]  # uncompressed is read too
