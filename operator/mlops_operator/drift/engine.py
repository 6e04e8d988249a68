"""Drift of a serving window against the training reference: what the DriftMonitor calls.

Input per feature, reference and current alike, is what the serving pods and the training
profile already hold, in constant memory:

* numeric: counts on the reference bin edges (``k`` inner edges, ``k + 1`` bins, a value ``v``
  in bin ``searchsorted(edges, v, side="right")``), optionally a raw sample (the training
  profile's sample for the reference, the pods' reservoir for the window);
* categorical / boolean: counts per value (plus an ``other`` count), optionally a raw sample.

Which data a method uses:

========================= ============================================================
ks, wasserstein           raw samples when both sides have one (exact, as Evidently);
                          otherwise the binned approximation of :mod:`.stats`
chisquare, ztest, psi,    counts: exact for categorical features; on the reference bins for
jensenshannon             numeric ones (Evidently bins numeric data with Sturges bins over
                          reference + current instead, which needs raw data); a numeric
                          feature with at most 5 distinct values in the samples is counted
                          per value in the samples, as Evidently does (bins may merge values)
========================= ============================================================

The method, when not overridden, is Evidently's default (:func:`.methods.default_method`):
the reference size is the training reference's non-null rows; the number of distinct values
comes from the samples, or, without samples, from the non-empty bins.

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

from . import stats
from .methods import (
    DEFAULT_DRIFT_SHARE,
    DISCRETE_MAX_VALUES,
    METHODS,
    Kind,
    as_override,
    check_method,
    default_method,
    resolve_method,
)

OTHER = "__other__"  # the bucket of values outside the reference's listed categories
DEFAULT_MIN_SAMPLES = 200  # the DriftMonitor CRD's window.minSamples default
BINS = 10  # bins of ReferenceData.from_sample, as the data profile (data/profile.py)
#: what a feature's score was computed on (FeatureDrift.basis)
Basis = Literal["raw", "binned", "counts", "none"]


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

    Why both counts and a sample: counts on fixed bins are what the model server can keep for
    live traffic in constant memory and are exact for categories; KS and Wasserstein are
    defined on raw values, so a raw sample (when the profile has one) makes them exact too.
    ``std`` is the reference standard deviation that normalises Wasserstein (Evidently:
    ``max(np.std(reference), 0.001)``); when missing it comes from the sample, else the bins.
    """

    kind: Kind
    bin_edges: np.ndarray | None = None
    bin_counts: np.ndarray | None = None
    categories: Mapping[str, int] | None = None
    other_count: int = 0
    sample: np.ndarray | None = None
    std: float | None = None

    @property
    def rows(self) -> int:
        """Non-null reference rows (Evidently's reference size for the choice of method)."""
        if self.kind == "numeric":
            return int(np.sum(self.bin_counts)) if self.bin_counts is not None else 0
        return int(sum(self.categories.values())) + int(self.other_count) if self.categories is not None else 0

    @classmethod
    def from_column(cls, column: Any, sample: Any = None, std: float | None = None) -> ReferenceData:
        """From the model manifest's ReferenceColumn or the profile's column dict (camelCase)."""
        get = (lambda k, a: column.get(k, column.get(a))) if isinstance(column, Mapping) else \
            (lambda k, a: getattr(column, a, None))
        kind = get("type", "type")
        if kind not in ("numeric", "categorical", "boolean"):
            raise ValueError(f"reference column of type {kind!r} has no drift statistics")
        if kind == "numeric":
            edges, counts = get("binEdges", "bin_edges"), get("binCounts", "bin_counts")
            if edges is None or counts is None:
                raise ValueError("numeric reference column without binEdges/binCounts")
            edges = np.asarray(edges, dtype=np.float64)
            counts = np.asarray(counts, dtype=np.int64)
            if counts.size != edges.size + 1:
                raise ValueError(f"{edges.size} bin edges need {edges.size + 1} bin counts, got {counts.size}")
            if edges.size > 1 and np.any(np.diff(edges) <= 0):
                raise ValueError("bin edges must increase strictly")
            smp = None if sample is None else np.sort(_floats(sample))
            if std is None:  # a profile that records it (the manifest may add `std` later)
                std = get("std", "std")
            return cls("numeric", bin_edges=edges, bin_counts=counts, sample=smp,
                       std=None if std is None else float(std))
        cats = get("categories", "categories")
        if cats is None:
            raise ValueError(f"{kind} reference column without categories")
        smp = None if sample is None else _strings(sample)
        return cls(kind, categories={str(k): int(v) for k, v in cats.items()},
                   other_count=int(get("otherCount", "other_count") or 0), sample=smp)

    @classmethod
    def from_sample(cls, values: Any, kind: Kind, bins: int = BINS, keep_sample: bool = True) -> ReferenceData:
        """From raw reference values: decile edges as the data profile, exact counts, the sample."""
        if kind == "numeric":
            v = np.sort(_floats(values))
            edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])) if v.size else np.zeros(0)
            counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
            return cls("numeric", bin_edges=edges, bin_counts=counts, sample=v if keep_sample else None,
                       std=float(np.std(v)) if v.size else None)
        s = _strings(values)
        keys, counts = np.unique(s.astype(str), return_counts=True)  # empty arrays for an empty sample
        return cls(kind, categories={str(k): int(c) for k, c in zip(keys, counts)},
                   sample=s if keep_sample else None)


@dataclass(frozen=True)
class CurrentData:
    """One window of live traffic for one feature, counted on the reference's buckets.

    ``bin_counts`` (numeric: on the reference edges) or ``categories`` (+ ``other_count`` for
    values the server lumps together) are deltas of the pods' cumulative counters (see
    :mod:`.window`); ``sample`` is the window's reservoir of raw values, if any; ``nulls``
    counts missing values, which no statistic uses (as in Evidently) but which count as rows.
    """

    bin_counts: np.ndarray | None = None
    categories: Mapping[str, int] | None = None
    other_count: int = 0
    sample: np.ndarray | None = None
    nulls: int = 0

    @property
    def count(self) -> int:
        """Non-null values in the window."""
        if self.bin_counts is not None:
            return int(np.sum(self.bin_counts))
        if self.categories is not None:
            return int(sum(self.categories.values())) + int(self.other_count)
        return 0

    @classmethod
    def from_stats(cls, doc: Mapping[str, Any], sample: Any = None) -> CurrentData:
        """From the model server's per-feature counters (serving/monitor.py's feature docs).

        Numeric: ``{"binEdges", "counts" (k + 1), "nulls"}``; boolean/categorical:
        ``{"categories": [...], "counts": [...], "other", "nulls"}`` where ``other`` counts
        values outside the reference's categories.
        """
        if "binEdges" in doc:
            return cls(bin_counts=np.asarray(doc["counts"], dtype=np.int64), sample=sample,
                       nulls=int(doc.get("nulls") or 0))
        cats = {str(k): int(v) for k, v in zip(doc.get("categories") or [], doc.get("counts") or [])}
        return cls(categories=cats, other_count=int(doc.get("other") or 0), sample=sample,
                   nulls=int(doc.get("nulls") or 0))

    @classmethod
    def from_sample(cls, values: Any, reference: ReferenceData, keep_sample: bool = True) -> CurrentData:
        """Count raw values on the reference's buckets (what the server does per request)."""
        if reference.kind == "numeric":
            edges = reference.bin_edges
            if edges is None:
                raise ValueError("a numeric reference needs bin edges")
            raw = np.asarray(values, dtype=np.float64).ravel()
            v = _floats(raw)
            counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=edges.size + 1)
            return cls(bin_counts=counts, sample=np.sort(v) if keep_sample else None, nulls=int(raw.size - v.size))
        raw = np.asarray(values, dtype=object).ravel()
        s = _strings(raw)
        keys, counts = np.unique(s.astype(str), return_counts=True)  # empty arrays for an empty sample
        return cls(categories={str(k): int(c) for k, c in zip(keys, counts)}, sample=s if keep_sample else None,
                   nulls=int(raw.size - s.size))


@dataclass
class FeatureDrift:
    """The decision on one feature, with what it rests on.

    ``score`` is a p-value for tests (ks, chisquare, ztest) and a distance otherwise; compare it
    with ``threshold`` through the method's rule (:data:`.methods.METHODS`). ``basis`` says
    whether it came from raw samples or from counts, so an approximate score is never mistaken
    for an exact one. ``status`` is ``ok``, ``insufficient`` (too few values: no decision),
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


def _sorted_sample(sample: Any) -> np.ndarray | None:
    """A numeric sample as sorted finite floats, or None when there is none."""
    if sample is None:
        return None
    v = np.sort(_floats(sample))
    return v if v.size else None


def _numeric_n_values(rs: np.ndarray | None, cs: np.ndarray | None, rc: np.ndarray, cc: np.ndarray) -> int:
    """Distinct values from the samples (exact up to the discrete limit), else non-empty bins."""
    if rs is not None and cs is not None:
        ur = np.unique(rs)
        if ur.size > DISCRETE_MAX_VALUES:
            return int(ur.size)
        return int(np.union1d(ur, cs).size)
    return int(np.count_nonzero((rc > 0) | (cc > 0)))


def _score(method: str, kind: str, keys: Sequence[Any] | None, rc: np.ndarray, cc: np.ndarray,
           ref: ReferenceData, rs: np.ndarray | None, cs: np.ndarray | None) -> tuple[float, Basis]:
    """(score, basis) of ``method`` on aligned buckets, or on sorted raw samples ``rs``/``cs``."""
    if method == "ks":
        if rs is not None and cs is not None:
            return stats.ks_sorted(rs, cs)[1], "raw"
        return stats.ks_binned(rc, cc)[1], "binned"
    if method == "wasserstein":
        if rs is not None and cs is not None:
            std = ref.std if ref.std is not None else float(np.std(rs))
            return stats.wasserstein_sorted(rs, cs) / max(std, 0.001), "raw"
        edges = ref.bin_edges
        if edges is None:  # check_method allows wasserstein on numeric features only
            raise ValueError("wasserstein needs the reference's bin edges")
        std = ref.std if ref.std is not None else stats.binned_std(edges, rc)
        return stats.wasserstein_binned(edges, rc, cc) / max(std, 0.001), "binned"
    basis: Basis = "counts" if kind != "numeric" else ("raw" if keys is not None else "binned")
    if method == "psi":
        return stats.psi(rc, cc), basis
    if method == "jensenshannon":
        return stats.jensenshannon(rc, cc), basis
    if method == "chisquare":
        return stats.chisquare_pvalue(rc, cc)[1], basis
    if method == "ztest":
        seen = (rc > 0) | (cc > 0)
        if np.count_nonzero(seen) <= 1:
            return 1.0, basis  # both samples one and the same value
        order = [int(i) for i in np.flatnonzero(seen)]
        if keys is not None:  # categories: the first key in sorted order is Evidently's "0"
            order.sort(key=lambda i: keys[i])
        first = order[0]
        return stats.ztest_pvalue(rc[first], rc.sum(), cc[first], cc.sum())[1], basis
    raise ValueError(method)


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
        rc = np.asarray(ref.bin_counts, dtype=np.float64)
        if cur.bin_counts is None:
            return FeatureDrift(name, requested, float("nan"), float("nan"), False, samples, ref.kind, "none",
                                "error", "numeric feature without current bin counts")
        cc = np.asarray(cur.bin_counts, dtype=np.float64)
        if cc.size != rc.size:
            return FeatureDrift(name, requested, float("nan"), float("nan"), False, samples, ref.kind, "none",
                                "error", f"current has {cc.size} bins, the reference {rc.size}: "
                                         "counted on other bin edges (another model version?)")
        keys = None
        rs, cs = _sorted_sample(ref.sample), _sorted_sample(cur.sample)
        if rs is None or cs is None:
            rs = cs = None
        n_values = _numeric_n_values(rs, cs, rc, cc)
        if n_values <= DISCRETE_MAX_VALUES and rs is not None and cs is not None:
            # a few distinct values: count them in the samples, as Evidently does, instead of on
            # bins that may lump two of them together (a constant reference has a single edge)
            values = np.union1d(rs, cs)
            rn = np.searchsorted(rs, values, "right") - np.searchsorted(rs, values, "left")
            cn = np.searchsorted(cs, values, "right") - np.searchsorted(cs, values, "left")
            rc, cc, keys = rn.astype(np.float64), cn.astype(np.float64), list(values)
    else:
        keys, rc, cc = _category_buckets(ref, cur)
        rs = cs = None
        n_values = int(np.count_nonzero((rc > 0) | (cc > 0)))
    method = default_method(ref.kind, ref.rows, n_values) if requested == "auto" else requested
    m = METHODS[method]
    threshold = float(ov.threshold) if ov.threshold is not None else m.default_threshold
    problem = check_method(method, ref.kind, n_values)
    if problem:
        return FeatureDrift(name, method, float("nan"), threshold, False, samples, ref.kind, "none", "error", problem)
    with np.errstate(divide="ignore", invalid="ignore"):
        score, basis = _score(method, ref.kind, keys, rc, cc, ref, rs, cs)
    return FeatureDrift(name, method, float(score), threshold, m.drifted(score, threshold), samples, ref.kind, basis)


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
    n_drift = sum(f.drifted for f in ok)
    share = n_drift / len(ok) if ok else 0.0
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
        drifted = share >= drift_share
        names_drifted = ", ".join(f.name for f in ok if f.drifted)
        msg = (f"{n_drift} of {len(ok)} features drifted (share {share:.2f} "
               f"{'>=' if drifted else '<'} {drift_share:.2f})" + (f": {names_drifted}" if names_drifted else ""))
    if errors:
        msg += "; " + "; ".join(errors)
    return DatasetDrift(results, share if not insufficient else 0.0, drifted, insufficient, msg, rows, drift_share)


def samples_from_window(doc: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Per-feature raw samples from a reservoir window document (``columns`` + ``rows``).

    Numeric columns become float arrays with NaN for nulls, the others object arrays; which is
    which follows the values (a column of numbers and None is numeric).
    """
    if not doc or not doc.get("rows"):
        return {}
    columns = list(doc["columns"])
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(columns):
        col = [row[j] for row in doc["rows"]]
        numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in col)
        out[name] = (np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64) if numeric
                     else np.array(col, dtype=object))
    return out


def references_from_profile(columns: Mapping[str, Any], samples: Mapping[str, Any] | None = None,
                            stds: Mapping[str, float] | None = None) -> dict[str, ReferenceData]:
    """ReferenceData per feature from the manifest's ``reference.columns`` or a data profile.

    Columns that are not features (id, label, timestamp roles; timestamp type) are skipped.
    """
    out: dict[str, ReferenceData] = {}
    samples, stds = samples or {}, stds or {}
    for name, col in columns.items():
        kind = col.get("type") if isinstance(col, Mapping) else getattr(col, "type", None)
        role = col.get("role", "feature") if isinstance(col, Mapping) else "feature"
        if kind not in ("numeric", "categorical", "boolean") or role != "feature":
            continue
        out[name] = ReferenceData.from_column(col, samples.get(name), stds.get(name))
    return out


__all__ = ["OTHER", "CurrentData", "DatasetDrift", "FeatureDrift", "ReferenceData", "evaluate", "evaluate_feature",
           "references_from_profile", "samples_from_window"]
