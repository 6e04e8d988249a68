"""Drift of a serving window against the training reference: what the DriftMonitor calls.

Input per feature, reference and current alike, is what the serving pods and the training
profile already hold, in constant memory:

* numeric: a reference-anchored :class:`.histogram.Histogram` (counts, atoms and offset sums
  on edges taken from the reference; the training profile's for the reference, the pods'
  counters for a window). References written before issue 17 have only counts on 10 decile
  bins: those are compared as before, approximately ("binned");
* categorical / boolean: counts per value (plus an ``other`` count).

What a method computes on them:

========================= ============================================================
ks, wasserstein           on the histograms: exact, or an estimate inside a guaranteed
                          interval (``FeatureDrift.lower``/``upper``) around the value
                          Evidently computes on the raw data (see :mod:`.histogram`)
chisquare, ztest, psi,    counts per value: exact for categorical features, and for numeric
jensenshannon             ones whose values are all counted one by one (a reference with at
                          most 20 distinct values: the pods list the others they see); PSI
                          and Jensen-Shannon of a numeric feature with more distinct values use
                          Sturges bins over reference + current as Evidently does, counted on
                          the histograms (approximate: "binned")
========================= ============================================================

The method, when not overridden, is Evidently's default (:func:`.methods.default_method`): the
reference size is the training reference's non-null rows; the number of distinct values of
reference and window together comes from the histograms, exactly whenever it matters (a
reference with at most 5 distinct values has them all as edges, and the pods list the values
they see off those edges).

Rules that keep false alarms out: a window with fewer than ``min_samples`` rows gives an
"insufficient samples" result with no decision; so does a feature with fewer non-null values
(it is left out of the drift share); a NaN score never counts as drift; a bad per-feature
override is reported on that feature and leaves the others alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from . import histogram as H
from . import stats
from .histogram import Histogram
from .methods import (
    DEFAULT_DRIFT_SHARE,
    DISCRETE_MAX_VALUES,
    METHODS,
    NUMERIC_BINNING_MIN_UNIQUE,
    Kind,
    as_override,
    check_method,
    default_method,
    resolve_method,
)

OTHER = "__other__"  # the bucket of values outside the reference's listed categories
DEFAULT_MIN_SAMPLES = 200  # the DriftMonitor CRD's window.minSamples default
BINS = 10  # coarse (decile) bins of ReferenceData.from_sample, as the data profile (data/profile.py)
#: what a feature's score was computed on (FeatureDrift.basis): "histogram" the reference-anchored
#: histograms (exact, or within [lower, upper]), "counts" exact counts per value or category,
#: "binned" an approximation without a bound (10 decile bins of an old reference; Sturges bins
#: counted on histograms), "raw" the raw values (drift.compare)
Basis = Literal["raw", "histogram", "binned", "counts", "none"]


def _floats(values: Any) -> np.ndarray:
    """A finite float64 copy-free view where possible: NaN/inf dropped (Evidently drops them)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(a)
    return a if ok.all() else a[ok]


def _strings(values: Any) -> np.ndarray:
    """Non-null values of a categorical sample as strings (the category keys of the profile)."""
    a = np.asarray(values, dtype=object).ravel()
    keep = np.array([v is not None and v == v for v in a], dtype=bool) if a.size else np.zeros(0, bool)
    return np.array([_key(v) for v in a[keep]], dtype=object)


def _key(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True)
class ReferenceData:
    """The training distribution of one feature.

    Numeric: ``hist``, the reference-anchored histogram of the training profile (what the pods
    count live traffic on); ``bin_edges``/``bin_counts``, the profile's 10 decile bins (all an
    old profile has; the pods' Prometheus histograms). ``std``: the reference standard deviation
    that normalises Wasserstein (Evidently: ``max(np.std(reference), 0.001)``); when missing it
    is estimated from the decile bins. Categorical/boolean: counts per category.
    """

    kind: Kind
    bin_edges: np.ndarray | None = None
    bin_counts: np.ndarray | None = None
    categories: Mapping[str, int] | None = None
    other_count: int = 0
    std: float | None = None
    hist: Histogram | None = None

    @property
    def rows(self) -> int:
        """Non-null reference rows (Evidently's reference size for the choice of method)."""
        if self.kind == "numeric":
            if self.hist is not None:
                return self.hist.count
            return int(np.sum(self.bin_counts)) if self.bin_counts is not None else 0
        return int(sum(self.categories.values())) + int(self.other_count) if self.categories is not None else 0

    @classmethod
    def from_column(cls, column: Any, std: float | None = None) -> ReferenceData:
        """From the model manifest's ReferenceColumn or the profile's column dict (camelCase)."""
        get = (lambda k, a: column.get(k, column.get(a))) if isinstance(column, Mapping) else \
            (lambda k, a: getattr(column, a, None))
        kind = get("type", "type")
        if kind not in ("numeric", "categorical", "boolean"):
            raise ValueError(f"reference column of type {kind!r} has no drift statistics")
        if kind == "numeric":
            edges, counts = get("binEdges", "bin_edges"), get("binCounts", "bin_counts")
            hist_doc = get("histogram", "histogram")
            if (edges is None or counts is None) and hist_doc is None:
                raise ValueError("numeric reference column without binEdges/binCounts or a histogram")
            hist = None
            if hist_doc is not None:
                if not isinstance(hist_doc, Mapping):
                    hist_doc = hist_doc.model_dump(by_alias=True)
                if hist_doc.get("packed") is not None:  # as the model server's /reference gives it
                    hists = list(H.unpack(hist_doc["packed"]).values())
                    if len(hists) != 1 or hists[0].edges is None:
                        raise ValueError("a packed reference histogram needs one histogram with its edges")
                    hist = hists[0]
                elif hist_doc.get("edges") is None:
                    raise ValueError("a reference histogram needs its edges")
                else:
                    hist = Histogram.from_json(hist_doc)
            if edges is not None and counts is not None:
                edges = np.asarray(edges, dtype=np.float64)
                counts = np.asarray(counts, dtype=np.int64)
                if counts.size != edges.size + 1:
                    raise ValueError(f"{edges.size} bin edges need {edges.size + 1} bin counts, got {counts.size}")
                if edges.size > 1 and np.any(np.diff(edges) <= 0):
                    raise ValueError("bin edges must increase strictly")
            if std is None:  # a profile that records it (the manifest may add `std` later)
                std = get("std", "std")
            return cls("numeric", bin_edges=edges, bin_counts=counts, std=None if std is None else float(std),
                       hist=hist)
        cats = get("categories", "categories")
        if cats is None:
            raise ValueError(f"{kind} reference column without categories")
        return cls(kind, categories={str(k): int(v) for k, v in cats.items()},
                   other_count=int(get("otherCount", "other_count") or 0))

    @classmethod
    def from_sample(cls, values: Any, kind: Kind, bins: int = BINS, histogram: bool = True) -> ReferenceData:
        """From raw reference values, as the data profile summarises a column: decile edges and
        exact counts; for a numeric column also the histogram (``histogram=False``: the decile
        bins only, as an old profile) and the exact standard deviation."""
        if kind == "numeric":
            v = np.sort(_floats(values))
            edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])) if v.size else np.zeros(0)
            counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
            hist = Histogram.of(H.reference_edges(v, extra=edges), v) if histogram else None
            return cls("numeric", bin_edges=edges, bin_counts=counts, std=float(np.std(v)) if v.size else None,
                       hist=hist)
        s = _strings(values)
        keys, counts = np.unique(s.astype(str), return_counts=True)  # empty arrays for an empty sample
        return cls(kind, categories={str(k): int(c) for k, c in zip(keys, counts)})


@dataclass(frozen=True)
class CurrentData:
    """One window of live traffic for one feature, counted on the reference's buckets.

    Numeric: ``hist`` (on the reference histogram's edges) or, from a server without one,
    ``bin_counts`` on the decile edges; categorical: ``categories`` (+ ``other_count`` for values
    the server lumps together). Both are deltas of the pods' counters (see :mod:`.window`);
    ``nulls`` counts missing values, which no statistic uses (as in Evidently) but which count
    as rows.
    """

    bin_counts: np.ndarray | None = None
    categories: Mapping[str, int] | None = None
    other_count: int = 0
    nulls: int = 0
    hist: Histogram | None = None

    @property
    def count(self) -> int:
        """Non-null values in the window."""
        if self.hist is not None:
            return self.hist.count
        if self.bin_counts is not None:
            return int(np.sum(self.bin_counts))
        if self.categories is not None:
            return int(sum(self.categories.values())) + int(self.other_count)
        return 0

    @classmethod
    def from_stats(cls, doc: Mapping[str, Any]) -> CurrentData:
        """From one feature of a stats document (serving/monitor.py).

        Numeric: the histogram (``{"edgesDigest", "counts", "atoms", "sums", "nulls", ...}``) or,
        from an older server, ``{"binEdges", "counts" (k + 1), "nulls"}``; boolean/categorical:
        ``{"categories": [...], "counts": [...], "other", "nulls"}`` where ``other`` counts values
        outside the reference's categories.
        """
        if "sums" in doc:
            h = Histogram.from_json(doc)
            return cls(hist=h, nulls=h.nulls)
        if "binEdges" in doc:
            return cls(bin_counts=np.asarray(doc["counts"], dtype=np.int64), nulls=int(doc.get("nulls") or 0))
        cats = {str(k): int(v) for k, v in zip(doc.get("categories") or [], doc.get("counts") or [])}
        return cls(categories=cats, other_count=int(doc.get("other") or 0), nulls=int(doc.get("nulls") or 0))

    @classmethod
    def from_sample(cls, values: Any, reference: ReferenceData) -> CurrentData:
        """Count raw values on the reference's buckets, as a serving pod does."""
        if reference.kind == "numeric":
            raw = np.asarray(values, dtype=np.float64).ravel()
            if reference.hist is not None:
                h = Histogram.of(reference.hist._edges(), raw, listing=H.lists_values(reference.hist))
                return cls(hist=h, nulls=h.nulls)
            edges = reference.bin_edges
            if edges is None:
                raise ValueError("a numeric reference needs bin edges")
            v = _floats(raw)
            counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
            return cls(bin_counts=counts, nulls=int(raw.size - v.size))
        raw = np.asarray(values, dtype=object).ravel()
        s = _strings(raw)
        keys, counts = np.unique(s.astype(str), return_counts=True)  # empty arrays for an empty sample
        return cls(categories={str(k): int(c) for k, c in zip(keys, counts)}, nulls=int(raw.size - s.size))


@dataclass
class FeatureDrift:
    """The decision on one feature, with what it rests on.

    ``score`` is a p-value for tests (ks, chisquare, ztest) and a distance otherwise; compare it
    with ``threshold`` through the method's rule (:data:`.methods.METHODS`). ``basis`` says
    what it was computed on (:data:`Basis`), so an approximate score is never mistaken for an
    exact one. ``lower``/``upper``: the interval guaranteed to hold the score Evidently computes
    on the raw values the counters counted (equal to ``score`` when exact; NaN when no bound is
    known: "binned"). ``status`` is ``ok``, ``insufficient`` (too few values: no decision),
    ``missing`` (not in the window) or ``error`` (bad override or reference; see ``message``);
    only ``ok`` features count in the drift share.
    """

    name: str
    method: str
    score: float
    threshold: float
    drifted: bool
    samples: int
    kind: str = "numeric"
    basis: Basis = "counts"
    status: Literal["ok", "insufficient", "missing", "error"] = "ok"
    message: str = ""
    lower: float = float("nan")
    upper: float = float("nan")

    @property
    def ambiguous(self) -> bool:
        """The guaranteed interval holds the threshold: the raw data might decide the other way."""
        if not (self.lower == self.lower and self.upper == self.upper):
            return False
        m = METHODS.get(self.method)
        return m is not None and m.drifted(self.lower, self.threshold) != m.drifted(self.upper, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a NaN score or threshold, i.e. no decision, becomes None)."""
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v


@dataclass
class DatasetDrift:
    """The decision on a window: per-feature results, the share of drifted features, the verdict.

    ``drifted`` is ``share >= drift_share`` (Evidently's dataset drift) over the features that
    could be evaluated; it is False whenever ``insufficient`` is True, so a thin window never
    raises an alarm. ``message`` is a one-line summary for a status condition or an Event.
    """

    features: list[FeatureDrift]
    share: float
    drifted: bool
    insufficient: bool
    message: str
    samples: int = 0
    drift_share: float = DEFAULT_DRIFT_SHARE

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, features included (see :meth:`FeatureDrift.to_dict`)."""
        d = {k: v for k, v in asdict(self).items() if k != "features"}
        d["features"] = [f.to_dict() for f in self.features]
        d["drifted_features"] = self.drifted_features
        return d


# ---------------------------------------------------------------------------------------------
# buckets

def _category_buckets(ref: ReferenceData, cur: CurrentData) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Aligned (keys, reference counts, current counts) over the union of categories.

    Current values the reference does not list go to the reference's ``other`` bucket when it
    has one (they may be in its long tail), else each is its own bucket with reference count
    0: a category never seen in training (chi-squared then gives p = 0, as in Evidently).
    """
    cats = ref.categories or {}
    keys = list(cats)
    index = {k: i for i, k in enumerate(keys)}
    rc = list(cats.values())
    has_other = ref.other_count > 0
    if has_other:
        index[OTHER] = len(keys)
        keys.append(OTHER)
        rc.append(int(ref.other_count))
    cc = [0] * len(keys)
    unseen: dict[str, int] = {}
    items = list((cur.categories or {}).items())
    if cur.other_count:
        items.append((OTHER, int(cur.other_count)))
    for k, v in items:
        i = index.get(k)
        if i is None and has_other:
            i = index[OTHER]
        if i is None:
            unseen[k] = unseen.get(k, 0) + int(v)
        else:
            cc[i] += int(v)
    for k, v in unseen.items():
        keys.append(k)
        rc.append(0)
        cc.append(v)
    return keys, np.asarray(rc, dtype=np.float64), np.asarray(cc, dtype=np.float64)


def bucket_score(method: str, keys: Sequence[Any] | None, rc: np.ndarray, cc: np.ndarray) -> float:
    """A counts method on aligned buckets, as Evidently computes it; ``keys`` are the bucket
    values (categories, numeric values) or None for ordered bins."""
    if method == "psi":
        keep = (rc > 0) | (cc > 0) if keys is not None else np.ones(rc.size, bool)
        return stats.psi(rc[keep], cc[keep])
    if method == "jensenshannon":
        return stats.jensenshannon(rc, cc)
    if method == "chisquare":
        return stats.chisquare_pvalue(rc, cc)[1]
    if method == "ztest":
        seen = np.flatnonzero((rc > 0) | (cc > 0))
        if seen.size <= 1:
            return 1.0  # both samples one and the same value
        if keys is None:  # bins, in order
            first = int(seen[0])
        else:  # Evidently codes the first value in sorted order as 0
            order = [int(i) for i in seen]
            try:
                first = min(order, key=lambda i: keys[i])
            except TypeError:
                first = min(order, key=lambda i: str(keys[i]))
        return stats.ztest_pvalue(rc[first], rc.sum(), cc[first], cc.sum())[1]
    raise ValueError(f"{method} is not a counts method")


def _binned_score(method: str, ref: ReferenceData, rc: np.ndarray, cc: np.ndarray) -> float:
    """ks and wasserstein on counts on the decile bins of an old reference (approximate)."""
    if method == "ks":
        return stats.ks_binned(rc, cc)[1]
    if method == "wasserstein":
        edges = ref.bin_edges
        if edges is None:  # check_method allows wasserstein on numeric features only
            raise ValueError("wasserstein needs the reference's bin edges")
        std = ref.std if ref.std is not None else stats.binned_std(edges, rc)
        return stats.wasserstein_binned(edges, rc, cc) / max(std, 0.001)
    return bucket_score(method, None, rc, cc)


def _histogram_feature(name: str, ref: ReferenceData, rh: Histogram, cur: Histogram, requested: str,
                       ov: Any, samples: int) -> FeatureDrift:
    """A numeric feature on the reference-anchored histograms (module docstring)."""
    def fail(method: str, threshold: float, message: str) -> FeatureDrift:
        return FeatureDrift(name, method, float("nan"), threshold, False, samples, "numeric", "none", "error", message)

    try:
        ch = cur.on(rh._edges())
    except ValueError as e:
        return fail(requested, float("nan"), str(e))
    n_values, exact = H.distinct_values(rh, ch)
    note = ""
    if not exact and n_values <= DISCRETE_MAX_VALUES:
        # off-edge values beyond what the pods list: a column that has turned continuous
        n_values = DISCRETE_MAX_VALUES + 1
        note = f"more distinct values than the pods list ({H.TABLE_SIZE}): judged as continuous"
    method = default_method("numeric", ref.rows, n_values) if requested == "auto" else requested
    m = METHODS[method]
    threshold = float(ov.threshold) if ov.threshold is not None else m.default_threshold
    problem = check_method(method, "numeric", n_values)
    if problem:
        return fail(method, threshold, problem)
    lower = upper = float("nan")
    basis: Basis = "histogram"
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "ks":
            d = H.ks_statistic(rh, ch)
            n, mm = rh.count, ch.count
            score = H.ks_pvalue(d.estimate, n, mm)
            lower, upper = H.ks_pvalue(d.upper, n, mm), H.ks_pvalue(d.lower, n, mm)
        elif method == "wasserstein":
            w = H.wasserstein(rh, ch)
            if ref.std is not None:
                std = ref.std
            elif ref.bin_edges is not None and ref.bin_counts is not None:
                std = stats.binned_std(ref.bin_edges, ref.bin_counts)
            else:
                std = 0.0
            norm = max(std, 0.001)
            score, lower, upper = w.estimate / norm, w.lower / norm, w.upper / norm
        else:
            ref_values, ref_exact = H.distinct_values(rh, rh)
            if method in ("psi", "jensenshannon") and (ref_values >= NUMERIC_BINNING_MIN_UNIQUE or not ref_exact):
                rc, cc = H.sturges_counts(rh, ch)  # Evidently's bins over reference + current
                score, basis = bucket_score(method, None, rc, cc), "binned"
            else:
                keys, rc, cc, complete = H.value_counts(rh, ch)
                if complete:
                    score = bucket_score(method, list(keys), rc, cc)
                    lower = upper = score
                elif method in ("chisquare", "ztest") and not ref_exact:
                    # a continuous column under a per-value test: the histogram bins as buckets
                    score = bucket_score(method, None, rh.counts.astype(float), ch.counts.astype(float))
                    basis = "binned"
                else:  # the values the pods did not list, as one more bucket
                    rest_r, rest_c = rh.count - rc.sum(), ch.count - cc.sum()
                    keys = np.append(keys, np.inf)
                    rc, cc = np.append(rc, rest_r), np.append(cc, rest_c)
                    score, basis = bucket_score(method, list(keys), rc, cc), "binned"
    if rh.projected:  # a reference from another dataset, counted approximately on these edges: no bound
        basis, lower, upper = "binned", float("nan"), float("nan")
        note = (note + "; " if note else "") + "reference projected onto the pods' edges (approximate)"
    return FeatureDrift(name, method, float(score), threshold, m.drifted(score, threshold), samples, "numeric", basis,
                        message=note, lower=float(lower), upper=float(upper))


def evaluate_feature(name: str, ref: ReferenceData, cur: CurrentData | None, override: Any = None,
                     min_samples: int = DEFAULT_MIN_SAMPLES) -> FeatureDrift:
    """The decision on one feature (see :func:`evaluate`)."""
    ov = as_override(override)
    if cur is None:
        return FeatureDrift(name, ov.method, float("nan"), float("nan"), False, 0, ref.kind, "none",
                            "missing", "no current data for this feature")
    samples = cur.count
    try:
        requested = resolve_method(ov.method)
    except ValueError as e:
        return FeatureDrift(name, str(ov.method), float("nan"), float("nan"), False, samples, ref.kind, "none",
                            "error", str(e))
    if ref.rows <= 0:
        return FeatureDrift(name, requested, float("nan"), float("nan"), False, samples, ref.kind, "none",
                            "error", "empty reference")
    if samples < min_samples:
        return FeatureDrift(name, requested, float("nan"), float("nan"), False, samples, ref.kind, "none",
                            "insufficient", f"insufficient samples: {samples} < {min_samples}")
    keys: list[str] | None
    if ref.kind == "numeric":
        if ref.hist is not None and cur.hist is not None:
            return _histogram_feature(name, ref, ref.hist, cur.hist, requested, ov, samples)
        cc_ = cur.bin_counts
        if cc_ is None and cur.hist is not None and ref.bin_edges is not None and \
                cur.hist.digest == H.edges_digest(ref.bin_edges):
            cc_ = cur.hist.counts  # a server counting on the decile edges (an old model's reference)
        if cc_ is None or ref.bin_counts is None:
            return FeatureDrift(name, requested, float("nan"), float("nan"), False, samples, ref.kind, "none",
                                "error", "no counts on the reference's bins (counted on other bin edges: another "
                                         "model version, or a reference from another dataset?)")
        rc = np.asarray(ref.bin_counts, dtype=np.float64)
        cc = np.asarray(cc_, dtype=np.float64)
        if cc.size != rc.size:
            return FeatureDrift(name, requested, float("nan"), float("nan"), False, samples, ref.kind, "none",
                                "error", f"current has {cc.size} bins, the reference {rc.size}: "
                                         "counted on other bin edges (another model version?)")
        n_values = int(np.count_nonzero((rc > 0) | (cc > 0)))
        keys = None
    else:
        keys, rc, cc = _category_buckets(ref, cur)
        n_values = int(np.count_nonzero((rc > 0) | (cc > 0)))
    method = default_method(ref.kind, ref.rows, n_values) if requested == "auto" else requested
    m = METHODS[method]
    threshold = float(ov.threshold) if ov.threshold is not None else m.default_threshold
    problem = check_method(method, ref.kind, n_values)
    if problem:
        return FeatureDrift(name, method, float("nan"), threshold, False, samples, ref.kind, "none", "error", problem)
    basis: Basis
    with np.errstate(divide="ignore", invalid="ignore"):
        if ref.kind == "numeric":
            score, basis = _binned_score(method, ref, rc, cc), "binned"
            lower = upper = float("nan")
        else:
            score, basis = bucket_score(method, keys, rc, cc), "counts"
            lower = upper = score
    return FeatureDrift(name, method, float(score), threshold, m.drifted(score, threshold), samples, ref.kind, basis,
                        lower=float(lower), upper=float(upper))


def evaluate(reference: Mapping[str, ReferenceData], current: Mapping[str, CurrentData],
             overrides: Mapping[str, Any] | None = None, *, drift_share: float = DEFAULT_DRIFT_SHARE,
             min_samples: int = DEFAULT_MIN_SAMPLES, features: Iterable[str] | None = None) -> DatasetDrift:
    """Per-feature drift of a window and the dataset-level decision.

    ``reference``: feature name -> :class:`ReferenceData` (e.g. :func:`references_from_profile`).
    ``current``: feature name -> :class:`CurrentData` for the window (e.g. from
    :func:`.window.window_delta`). ``overrides``: feature name -> method/threshold (an
    :class:`.methods.Override`, the CRD's FeatureOverride, a dict or a method name); a method
    of ``auto`` or no override takes Evidently's default for the feature's type and reference
    size. ``features``: the features to judge (default: every reference feature).

    The window is "insufficient" (no decision, ``drifted`` False) when it has fewer than
    ``min_samples`` rows or no feature can be judged.
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    overrides = overrides or {}
    names = list(features) if features is not None else list(reference)
    results = [evaluate_feature(n, reference[n], current.get(n), overrides.get(n), min_samples) for n in names]
    rows = max((c.count + int(c.nulls) for c in current.values()), default=0)
    ok = [f for f in results if f.status == "ok"]
    n_drift = sum(bool(f.drifted) for f in ok)
    share = float(n_drift / len(ok)) if ok else 0.0
    errors = [f"{f.name}: {f.message}" for f in results if f.status == "error"]
    if rows < min_samples:
        insufficient, drifted = True, False
        msg = f"insufficient samples: {rows} rows in the window, {min_samples} needed"
        for f in ok:  # no decision on any feature of a thin window
            f.drifted = False
    elif not ok:
        insufficient, drifted = True, False
        msg = "insufficient samples: no feature has enough values" if not errors else "no feature could be judged"
    else:
        insufficient = False
        drifted = bool(share >= drift_share)
        names_drifted = ", ".join(f.name for f in ok if f.drifted)
        msg = (f"{n_drift} of {len(ok)} features drifted (share {share:.2f} "
               f"{'>=' if drifted else '<'} {drift_share:.2f})" + (f": {names_drifted}" if names_drifted else ""))
    if errors:
        msg += "; " + "; ".join(errors)
    return DatasetDrift(results, share if not insufficient else 0.0, drifted, insufficient, msg, rows, drift_share)


def references_from_profile(columns: Mapping[str, Any], stds: Mapping[str, float] | None = None
                            ) -> dict[str, ReferenceData]:
    """ReferenceData per feature from the manifest's ``reference.columns`` or a data profile.

    Columns that are not features (id, label, timestamp roles; timestamp type) are skipped.
    """
    out: dict[str, ReferenceData] = {}
    stds = stds or {}
    for name, col in columns.items():
        kind = col.get("type") if isinstance(col, Mapping) else getattr(col, "type", None)
        role = col.get("role", "feature") if isinstance(col, Mapping) else "feature"
        if kind not in ("numeric", "categorical", "boolean") or role != "feature":
            continue
        out[name] = ReferenceData.from_column(col, stds.get(name))
    return out


__all__ = ["OTHER", "CurrentData", "DatasetDrift", "FeatureDrift", "ReferenceData", "bucket_score", "evaluate",
           "evaluate_feature", "references_from_profile"]
