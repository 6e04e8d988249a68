"""Raw request columns -> checked arrays the ONNX graph takes.

Two paths give the same result. The fast path converts the columns of many requests at once
(one `np.array` over nested lists, a fixed number of vectorised checks per batch, whatever the
number of rows or requests); when anything there looks wrong (strings or objects among
numbers, a null in a non-nullable feature, a number outside float32, a boolean that is not
0/1, a non-string category, "" in a non-nullable categorical feature) it gives up, and the
careful path converts each request on its own and names the feature, row and value at
fault, so one bad request fails alone.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import numpy as np

from .protocol import ParsedRequest, Spec, unfit

F32_MAX = float(np.finfo(np.float32).max)
_NONE = type(None)
#: the raw values a boolean feature takes on the fast path (True == 1 and False == 0 in a set)
_BOOLEAN_VALUES = frozenset((0, 1, None))


class Layout:
    """Per-feature checks, precomputed from the model's features."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.n_num = len(spec.num)
        #: numeric rows that may not hold NaN (a null)
        self.nonnull = np.array([not f.nullable for f in spec.num], dtype=bool)
        self.any_nonnull = bool(self.nonnull.any())
        #: positions of the boolean features among the numeric ones
        self.boolean = [j for j, f in enumerate(spec.num) if f.type == "boolean"]
        self.cat_nullable = [f.nullable for f in spec.cat]

    def _checks_pass(self, x: np.ndarray, x32: np.ndarray) -> bool:
        """x: float64 [F, N], x32 the same as float32 (a number beyond float32 became inf there).

        First one reduction: a finite sum means no null (NaN) anywhere and nothing beyond
        float32 (inf), the common request. Only a sum that is not finite (a null somewhere, an
        out-of-range number) pays for the per-feature checks. On a
        one-row request the six ufunc calls below cost about 30 us of the server's ~550 us
        (py-spy, benchmarks/README.md "one connection"); the sum costs about 3."""
        if math.isfinite(x32.sum(dtype=np.float64)):  # float64 sums: no overflow, no warning
            return True
        if self.any_nonnull and (np.isnan(x).any(axis=1) & self.nonnull).any():
            return False
        return not np.isinf(x32).any()

    # ----------------------------------------------------------------------------------------
    def fast(self, reqs: list[ParsedRequest]) -> tuple[np.ndarray, np.ndarray, list[list[str]]] | None:
        """(float64 [F_num, N], the same as float32, categorical columns) for all requests, or
        None: use `careful`.

        The numeric columns of all requests become one flat list and one `np.array` call
        (`None` -> NaN; anything but numbers, booleans, None and numeric strings raises or
        changes the size), then a fixed number of vectorised checks per batch. Booleans are
        checked on the raw values (a set of at most a few distinct values: 0/1/True/False/None)."""
        n_num = self.n_num
        total = 0
        for r in reqs:
            if r.careful:
                return None
            total += r.n
        try:
            for j in self.boolean:
                vals = set(reqs[0].num[j]) if len(reqs) == 1 else set(chain.from_iterable(r.num[j] for r in reqs))
                if not vals <= _BOOLEAN_VALUES:
                    return None
        except TypeError:  # an unhashable value (an object or array): not a boolean
            return None
        if n_num:
            try:
                flat = np.array(list(chain.from_iterable(chain.from_iterable(r.num for r in reqs))),
                                dtype=np.float64)
            except (ValueError, TypeError, OverflowError):
                return None
            if flat.shape != (n_num * total,):
                return None
            n0 = reqs[0].n
            if n0 * len(reqs) == total:  # all requests of the same size: [k, F, n] -> [F, k*n]
                x = flat.reshape(len(reqs), n_num, n0).transpose(1, 0, 2).reshape(n_num, total) \
                    if len(reqs) > 1 else flat.reshape(n_num, total)
            else:
                parts, o = [], 0
                for r in reqs:
                    parts.append(flat[o:o + n_num * r.n].reshape(n_num, r.n))
                    o += n_num * r.n
                x = np.concatenate(parts, axis=1)
            with np.errstate(over="ignore"):
                x32 = x.astype(np.float32)
            if not self._checks_pass(x, x32):
                return None
        else:
            x = np.empty((0, total), dtype=np.float64)
            x32 = np.empty((0, total), dtype=np.float32)
        cats = []
        for j, nullable in enumerate(self.cat_nullable):
            col = reqs[0].cat[j] if len(reqs) == 1 else list(chain.from_iterable(r.cat[j] for r in reqs))
            kinds = set(map(type, col))
            if kinds != {str}:
                if not kinds <= {str, _NONE} or not nullable:
                    return None
                col = ["" if v is None else v for v in col]
            elif not nullable and "" in col:  # "" is a null (the encoder ignores it)
                return None
            cats.append(col)
        return x, x32, cats

    # ----------------------------------------------------------------------------------------
    def careful(self, req: ParsedRequest) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """One request's arrays, or a ServingError (422) naming the feature, row and value."""
        spec = self.spec
        x = np.empty((self.n_num, req.n), dtype=np.float64)
        for j, f in enumerate(spec.num):
            x[j] = _numeric(f.name, req.num[j], f.type == "boolean")
            if not f.nullable:
                nan = np.isnan(x[j])
                if nan.any():
                    raise unfit(f"feature {f.name!r} is not nullable: row {int(np.argmax(nan))} is null/NaN")
        cats = []
        for j, f in enumerate(spec.cat):
            cats.append(_categorical(f.name, req.cat[j], f.nullable))
        return x, x.astype(np.float32), cats


def _numeric(name: str, part: Any, boolean: bool) -> np.ndarray:
    if isinstance(part, np.ndarray):
        if part.dtype == object:
            raise unfit(f"feature {name!r}: values must be numbers, got strings")
        a = part.astype(np.float64)
    else:
        try:
            a = np.array(part)
        except (ValueError, TypeError):
            a = np.array(part, dtype=object)
        if a.dtype.kind in "fiub" and a.ndim == 1:
            a = a.astype(np.float64)
        else:
            out = np.empty(len(part), dtype=np.float64)
            for i, v in enumerate(part):
                t = type(v)
                if v is None:
                    out[i] = np.nan
                elif t is float or t is int or t is bool:
                    try:
                        out[i] = v
                    except OverflowError:
                        raise unfit(f"feature {name!r}: row {i}: {_short(v)} is outside the float32 range") from None
                elif t is str:
                    try:
                        out[i] = float(v)
                    except ValueError:
                        raise unfit(f"feature {name!r}: row {i}: expected a number or null, got the string "
                                    f"{_short(v)}") from None
                else:
                    raise unfit(f"feature {name!r}: row {i}: expected a number or null, got "
                                f"{t.__name__} {_short(v)}")
            a = out
    with np.errstate(invalid="ignore"):
        big = np.abs(a) > F32_MAX
    if big.any():
        i = int(np.argmax(big))
        raise unfit(f"feature {name!r}: row {i}: {a[i]!r} is outside the float32 range")
    if boolean:
        off = np.abs(a * (a - 1.0)) > 0
        if off.any():
            i = int(np.argmax(off))
            raise unfit(f"feature {name!r} is boolean: row {i} is {a[i]!r}, not true/false or 0/1")
    return a


def _categorical(name: str, part: Any, nullable: bool) -> list[str]:
    col = part.tolist() if isinstance(part, np.ndarray) else part
    out = []
    for i, v in enumerate(col):
        if type(v) is str:
            if not v and not nullable:
                raise unfit(f"feature {name!r} is not nullable: row {i} is \"\" (a null for a categorical "
                            "feature)")
            out.append(v)
        elif v is None:
            if not nullable:
                raise unfit(f"feature {name!r} is not nullable: row {i} is null")
            out.append("")
        else:
            raise unfit(f"feature {name!r} is categorical: row {i}: expected a string, got "
                        f"{type(v).__name__} {_short(v)}")
    return out


def _short(v: Any, n: int = 40) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."
