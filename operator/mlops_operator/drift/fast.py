"""Whole-dataset drift on raw columns: Evidently's DataDriftPreset decisions, vectorised.

For a reference and a current dataset held as arrays (a benchmark, an offline comparison, a
backfill), this gives per feature the same method, score and decision as Evidently 0.7's
``Report([DataDriftPreset()])`` with the same column types, without pandas:

* numeric columns are sorted once (the reference when it is prepared, so comparing many
  windows against one reference sorts it once); KS is scipy's ks_2samp on the sorted arrays,
  the normed Wasserstein distance is computed on the sorted arrays in O(n + m)
  (:func:`.stats.wasserstein_sorted`), Sturges-binned PSI / Jensen-Shannon take their
  histogram counts with ``searchsorted`` of the bin edges into the sorted arrays;
* categorical columns are counted, not sorted: ``np.bincount`` of dictionary codes
  (:class:`Categorical`, the layout of Arrow dictionary arrays and pandas Categoricals), of
  booleans; runs of object pointers for object arrays that repeat a few string objects
  (:func:`_count_objects`); pyarrow's hash-based ``value_counts`` for other arrays;
* the choice of method, thresholds and the drift rules are those of :mod:`.methods`.

Column types: ``kinds`` maps names to "numeric" or "categorical" (like an Evidently
DataDefinition); by default floats are numeric and everything else categorical.
Non-finite values (NaN, +-inf) and nulls are dropped, as Evidently does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats
from .engine import DatasetDrift, FeatureDrift, bucket_score as _bucket_score
from .methods import (
    DEFAULT_DRIFT_SHARE,
    DISCRETE_MAX_VALUES,
    METHODS,
    NUMERIC_BINNING_MIN_UNIQUE,
    as_override,
    check_method,
    default_method,
    resolve_method,
)


@dataclass(frozen=True)
class Categorical:
    """A dictionary-encoded column: ``categories[codes[i]]``, a negative code is a null."""

    codes: np.ndarray
    categories: Sequence[Any]

    @classmethod
    def from_arrow(cls, array: Any) -> Categorical:
        """From a pyarrow DictionaryArray (or ChunkedArray of them), nulls as -1."""
        import pyarrow as pa

        if isinstance(array, pa.ChunkedArray):
            array = array.unify_dictionaries().combine_chunks() if array.num_chunks > 1 else array.chunk(0)
        codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        return cls(codes, array.dictionary.to_pylist())


@dataclass(frozen=True)
class _Num:
    sorted: np.ndarray  # finite values, ascending
    std: float          # np.std (ddof 0) of the finite values
    nunique: int        # distinct values (-1: not computed, for a current column)

    @property
    def n(self) -> int:
        return int(self.sorted.size)


@dataclass(frozen=True)
class _Cat:
    keys: list[Any]         # values with a non-zero count
    counts: np.ndarray      # float64, aligned with keys

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def _sorted_finite(values: Any) -> np.ndarray:
    """Ascending finite values as float64: one sort of a copy, non-finite trimmed off the ends.

    numpy sorts -inf first and +inf then NaN last, so the finite values are the slice between
    them; no mask over the whole column is needed.
    """
    a = np.asarray(values)
    s = np.sort(a.astype(np.float64) if a.dtype != np.float64 else a)
    if s.size and not (np.isfinite(s[0]) and np.isfinite(s[-1])):
        lo = int(np.searchsorted(s, -np.inf, side="right"))
        hi = int(np.searchsorted(s, np.inf, side="left"))
        s = s[lo:hi]
    return s


def _distinct_sorted(s: np.ndarray) -> int:
    """Distinct values of a sorted array."""
    if s.size == 0:
        return 0
    return int(np.count_nonzero(s[1:] != s[:-1])) + 1


def _unique_sorted(s: np.ndarray) -> np.ndarray:
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _num(values: Any, reference: bool = True) -> _Num:
    """Sorted finite values; for a reference also the std and the number of distinct values."""
    s = _sorted_finite(values)
    if not reference:
        return _Num(s, float("nan"), -1)
    std = float(np.std(s)) if s.size else float("nan")
    return _Num(s, std, _distinct_sorted(s))


def _hash_counts(a: np.ndarray) -> tuple[list[Any], Any]:
    """Counts per distinct value, nulls (None, NaN) dropped, in order of first appearance.

    pyarrow's hash-based ``value_counts`` when pyarrow is installed; a dict otherwise (the
    operator's image has no pyarrow: its drift windows are small, parsed from JSON).
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        counter: dict[Any, int] = {}
        for v in a.tolist():
            if v is None or (isinstance(v, float) and v != v):
                continue
            counter[v] = counter.get(v, 0) + 1
        return list(counter), np.fromiter(counter.values(), dtype=np.int64, count=len(counter))
    vc = pc.value_counts(pa.array(a, from_pandas=True))
    vals = vc.field("values")
    keep = vals.is_valid()
    return vals.filter(keep).to_pylist(), vc.field("counts").filter(keep).to_numpy()


def _count_objects(a: np.ndarray) -> tuple[list[Any], np.ndarray] | None:
    """Counts of an object array by object identity, merged by value; None if too many objects.

    Columns of strings from a small vocabulary usually hold the same few string objects many
    times over (pyarrow's ``to_pandas`` deduplicates them, indexing an array of categories
    repeats them), so sorting the 8-byte object pointers and counting runs is a few times
    faster than hashing every string. Equal values held by distinct objects are merged
    afterwards; nulls (None, NaN) are dropped. A column with many distinct objects (a parser
    that made one string per row) returns None and is hashed by pyarrow instead.
    """
    import ctypes

    if a.ndim != 1 or not a.flags.c_contiguous:
        return None
    ptr = np.sort(np.frombuffer(a, dtype=np.uintp))  # the object pointers
    if ptr.size == 0:
        return [], np.zeros(0)
    starts = np.flatnonzero(np.concatenate([[True], ptr[1:] != ptr[:-1]]))
    if starts.size > max(1000, ptr.size // 20):
        return None
    runs = np.diff(np.append(starts, ptr.size))
    acc: dict[Any, int] = {}
    for address, n in zip(ptr[starts].tolist(), runs.tolist()):
        v = ctypes.cast(address, ctypes.py_object).value  # alive: ``a`` holds a reference
        try:
            null = v is None or bool(v != v)
        except TypeError:  # pandas.NA and the like
            null = True
        if null:
            continue
        acc[v] = acc.get(v, 0) + n
    return list(acc), np.fromiter(acc.values(), dtype=np.float64, count=len(acc))


def _cat(values: Any) -> _Cat:
    if isinstance(values, Categorical):
        codes = np.asarray(values.codes)
        counts = np.bincount((codes + 1).astype(np.intp, copy=False), minlength=len(values.categories) + 1)[1:]
        keys = list(values.categories)
    else:
        a = np.asarray(values)
        if a.dtype.kind == "b":
            c = np.bincount(a.view(np.uint8), minlength=2)
            keys, counts = [False, True], c
        elif (counted := _count_objects(a) if a.dtype == object else None) is not None:
            keys, counts = counted
        else:
            keys, counts = _hash_counts(a)
    counts = np.asarray(counts, dtype=np.float64)
    nz = np.flatnonzero(counts)
    return _Cat([keys[i] for i in nz], counts[nz])


@dataclass(frozen=True)
class PreparedReference:
    """Reference statistics computed once: sorted numeric columns and their std, category counts.

    Build it with :func:`prepare_reference` and pass it to :func:`compare` for every current
    dataset; the time it takes is the reference's one-off cost.
    """

    columns: Mapping[str, _Num | _Cat]

    @property
    def kinds(self) -> dict[str, str]:
        return {k: "numeric" if isinstance(v, _Num) else "categorical" for k, v in self.columns.items()}


def _kind_of(values: Any) -> str:
    if isinstance(values, Categorical):
        return "categorical"
    return "numeric" if np.asarray(values).dtype.kind == "f" else "categorical"


def _map(fn, items: list, workers: int) -> list:
    if workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items))
    return [fn(x) for x in items]


def prepare_reference(columns: Mapping[str, Any], kinds: Mapping[str, str] | None = None,
                      workers: int = 1) -> PreparedReference:
    """Sort the numeric reference columns and count the categorical ones (see :class:`Categorical`)."""
    kinds = dict(kinds or {})
    names = list(columns)

    def one(name: str):
        kind = kinds.get(name) or _kind_of(columns[name])
        if kind == "numeric":
            if isinstance(columns[name], Categorical):
                raise ValueError(f"{name}: a Categorical column cannot be numeric")
            return _num(columns[name])
        if kind in ("categorical", "boolean"):
            return _cat(columns[name])
        raise ValueError(f"{name}: kind must be numeric or categorical, got {kind!r}")

    return PreparedReference(dict(zip(names, _map(one, names, workers))))


def _value_counts_sorted(s: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return (np.searchsorted(s, keys, side="right") - np.searchsorted(s, keys, side="left")).astype(np.float64)


def _numeric_feature(name: str, ref: _Num, cur_values: Any, override: Any) -> FeatureDrift:
    cur = _num(cur_values, reference=False)
    ov = as_override(override)
    requested = resolve_method(ov.method)
    if ref.n == 0 or cur.n == 0:
        return FeatureDrift(name, requested, float("nan"), float("nan"), False, cur.n, "numeric", "none", "error",
                            "empty " + ("reference" if ref.n == 0 else "current") + " column")
    values = None
    if ref.nunique <= DISCRETE_MAX_VALUES:  # only then can reference + current have <= 5 values
        values = np.union1d(_unique_sorted(ref.sorted), _unique_sorted(cur.sorted))
        n_values = int(values.size)
    else:
        n_values = ref.nunique  # > 5: all the rule needs to know
    method = default_method("numeric", ref.n, n_values) if requested == "auto" else requested
    m = METHODS[method]
    threshold = float(ov.threshold) if ov.threshold is not None else m.default_threshold
    problem = check_method(method, "numeric", n_values)
    if problem:
        return FeatureDrift(name, method, float("nan"), threshold, False, cur.n, "numeric", "none", "error", problem)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "ks":
            score = stats.ks_sorted(ref.sorted, cur.sorted)[1]
        elif method == "wasserstein":
            score = stats.wasserstein_sorted(ref.sorted, cur.sorted) / max(ref.std, 0.001)
        else:
            if method in ("psi", "jensenshannon") and ref.nunique >= NUMERIC_BINNING_MIN_UNIQUE:
                # Evidently's get_binned_data: Sturges bins over reference + current together
                edges = stats.sturges_edges(min(ref.sorted[0], cur.sorted[0]), max(ref.sorted[-1], cur.sorted[-1]),
                                            ref.n + cur.n)
                rc = stats.sorted_histogram(ref.sorted, edges).astype(np.float64)
                cc = stats.sorted_histogram(cur.sorted, edges).astype(np.float64)
            else:  # the distinct values are the buckets
                if values is None:
                    values = np.union1d(_unique_sorted(ref.sorted), _unique_sorted(cur.sorted))
                rc, cc = _value_counts_sorted(ref.sorted, values), _value_counts_sorted(cur.sorted, values)
            score = _bucket_score(method, list(values) if values is not None else None, rc, cc)
    return FeatureDrift(name, method, float(score), threshold, m.drifted(score, threshold), cur.n, "numeric", "raw")


def _categorical_feature(name: str, ref: _Cat, cur_values: Any, override: Any) -> FeatureDrift:
    cur = _cat(cur_values)
    ov = as_override(override)
    requested = resolve_method(ov.method)
    if ref.n == 0 or cur.n == 0:
        return FeatureDrift(name, requested, float("nan"), float("nan"), False, cur.n, "categorical", "none",
                            "error", "empty " + ("reference" if ref.n == 0 else "current") + " column")
    index = {k: i for i, k in enumerate(ref.keys)}
    keys = list(ref.keys)
    cc = np.zeros(len(keys) + len(cur.keys))
    for k, v in zip(cur.keys, cur.counts):
        i = index.get(k)
        if i is None:
            i = index[k] = len(keys)
            keys.append(k)
        cc[i] = v
    cc = cc[:len(keys)]
    rc = np.zeros(len(keys))
    rc[:ref.counts.size] = ref.counts
    n_values = len(keys)
    method = default_method("categorical", ref.n, n_values) if requested == "auto" else requested
    m = METHODS[method]
    threshold = float(ov.threshold) if ov.threshold is not None else m.default_threshold
    problem = check_method(method, "categorical", n_values)
    if problem:
        return FeatureDrift(name, method, float("nan"), threshold, False, cur.n, "categorical", "none", "error",
                            problem)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = _bucket_score(method, keys, rc, cc)
    return FeatureDrift(name, method, float(score), threshold, m.drifted(score, threshold), cur.n, "categorical",
                        "raw")


def compare(reference: PreparedReference | Mapping[str, Any], current: Mapping[str, Any], *,
            kinds: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None,
            drift_share: float = DEFAULT_DRIFT_SHARE, workers: int = 1) -> DatasetDrift:
    """Per-column drift of ``current`` against ``reference`` and the dataset decision.

    ``reference``: a :class:`PreparedReference`, or raw columns (prepared here, and counted in
    the time of this call). ``current``: column name -> numpy array (numeric) or numpy array /
    :class:`Categorical` (categorical). ``overrides``: column -> method/threshold as in
    :func:`.engine.evaluate`. ``workers`` > 1 spreads the columns over threads (numpy sorts
    and counts without the GIL).
    """
    if not isinstance(reference, PreparedReference):
        reference = prepare_reference(reference, kinds, workers)
    overrides = overrides or {}
    names = [n for n in reference.columns if n in current]

    def one(name: str) -> FeatureDrift:
        ref = reference.columns[name]
        try:
            if isinstance(ref, _Num):
                return _numeric_feature(name, ref, current[name], overrides.get(name))
            return _categorical_feature(name, ref, current[name], overrides.get(name))
        except ValueError as e:
            return FeatureDrift(name, "auto", float("nan"), float("nan"), False, 0,
                                "numeric" if isinstance(ref, _Num) else "categorical", "none", "error", str(e))

    results = _map(one, names, workers)
    ok = [f for f in results if f.status == "ok"]
    n_drift = sum(f.drifted for f in ok)
    share = n_drift / len(ok) if ok else 0.0
    drifted = bool(ok) and share >= drift_share
    msg = (f"{n_drift} of {len(ok)} columns drifted (share {share:.2f} {'>=' if drifted else '<'} "
           f"{drift_share:.2f})")
    errors = [f"{f.name}: {f.message}" for f in results if f.status != "ok"]
    if errors:
        msg += "; " + "; ".join(errors)
    rows = max((f.samples for f in results), default=0)
    return DatasetDrift(results, share, drifted, not ok, msg, rows, drift_share)


__all__ = ["Categorical", "PreparedReference", "compare", "prepare_reference"]
