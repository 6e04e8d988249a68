"""Column types: inference from raw values and casting to the canonical Arrow types.

Canonical types make a snapshot's bytes depend only on its content: numeric -> float64,
categorical -> string, boolean -> bool, timestamp -> timestamp[us, UTC]. Casting counts the
values that do not conform (with examples) instead of failing the whole snapshot, because
the validation report must say which column and which values were wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CANONICAL = {
    "numeric": pa.float64(),
    "categorical": pa.string(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}


@dataclass
class CastResult:
    array: pa.Array
    bad: int = 0
    examples: list[str] = field(default_factory=list)


def infer_type(arr: pa.Array) -> str:
    """The column type a user would declare for these values (used on the first snapshot)."""
    t = arr.type
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_dictionary(t):
        return "categorical"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        values = arr.drop_null()
        if len(values) == 0:
            return "categorical"
        lowered = set(pc.unique(pc.utf8_lower(pc.utf8_trim_whitespace(values))).to_pylist())
        if lowered <= (TRUE | FALSE) and len(lowered) <= 2 and not lowered <= {"0", "1"}:
            return "boolean"
        if _all_cast(values, pa.float64()):
            return "numeric"
        if _all_cast(values, pa.timestamp("us", tz="UTC")):
            return "timestamp"
    return "categorical"


def _all_cast(values: pa.Array, to: pa.DataType) -> bool:
    try:
        pc.cast(values, to)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _strings_to(values: pa.Array, to: pa.DataType, parse) -> CastResult:
    """Slow path for a batch that failed the vectorised cast: find the offending values."""
    out: list[Any] = []
    bad, examples = 0, list[Any]()
    for v in values.to_pylist():
        if v is None or (isinstance(v, str) and v.strip() == ""):
            out.append(None)
            continue
        try:
            out.append(parse(v))
        except (ValueError, TypeError, OverflowError):
            out.append(None)
            bad += 1
            if len(examples) < 10:
                examples.append(str(v)[:60])
    return CastResult(pa.array(out, type=to), bad, examples)


def _parse_bool(v: Any) -> bool:
    s = str(v).strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    raise ValueError(v)


def _parse_ts(v: Any):
    ts = np.datetime64(str(v).strip().replace("Z", "").split("+")[0], "us")
    if np.isnat(ts):
        raise ValueError(v)
    return ts.astype("datetime64[us]").astype(object)


def cast(arr: pa.Array, ctype: str) -> CastResult:
    """Cast raw values to the canonical type of `ctype`, counting non-conforming values."""
    to = CANONICAL[ctype]
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type == to:
        return CastResult(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return CastResult(pa.nulls(len(arr), type=to))
    if ctype == "categorical":
        if pa.types.is_floating(arr.type):
            # 1.0 -> "1": integral floats are how CSV readers often deliver integer codes
            ints = pc.equal(arr, pc.floor(arr))
            if pc.all(pc.fill_null(ints, True)).as_py():
                arr = pc.cast(arr, pa.int64())
        return CastResult(pc.cast(arr, pa.string()))
    if ctype == "timestamp" and pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return CastResult(pc.cast(arr, to))
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        trimmed = pc.utf8_trim_whitespace(arr)
        blank = pc.equal(trimmed, "")
        trimmed = pc.if_else(blank, pa.scalar(None, arr.type), trimmed)
        if ctype == "boolean":
            lowered = pc.utf8_lower(trimmed)
            is_t = pc.is_in(lowered, pa.array(sorted(TRUE)))
            is_f = pc.is_in(lowered, pa.array(sorted(FALSE)))
            known = pc.or_(is_t, is_f)
            if pc.all(pc.or_(known, pc.is_null(lowered))).as_py():
                return CastResult(pc.if_else(pc.is_null(lowered), pa.scalar(None, pa.bool_()), is_t))
            return _strings_to(trimmed, to, _parse_bool)
        try:
            return CastResult(pc.cast(trimmed, to))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _strings_to(trimmed, to, float if ctype == "numeric" else _parse_ts)
    try:
        return CastResult(pc.cast(arr, to))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parse = {"numeric": float, "boolean": _parse_bool, "timestamp": _parse_ts}[ctype]
        return _strings_to(pc.cast(arr, pa.string()), to, parse)
