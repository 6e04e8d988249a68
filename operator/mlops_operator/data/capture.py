"""A Dataset source from captured traffic: the rows an InferenceService's model answered
(sampled by serving/capture.py, Parquet chunks under ``<store>/captures/<service>/``), joined
with the labels sent back for them as feedback.

Each row becomes the model's input columns as the model saw them, the label under the name of
the model's target (so a retraining TrainingRun finds it where the first one did) and
``captured_at``, the time the model answered (a timestamp column, so a time split works).

- The labels are read first (every labels chunk; a later label for a row wins) and joined to
  each requests chunk by (request_id, row) with Arrow's hash join; one record batch per chunk,
  so memory stays bounded by a chunk plus the labels, whatever the traffic.
- ``since`` / ``until`` bound ``captured_at``: Arrow skips row groups outside the range by
  their statistics.
- ``labelledOnly`` (default): rows no label arrived for are left out: a model can only learn
  from rows whose outcome is known.
- Chunks are read in name order (instance, start, sequence) and each batch sorted by
  (captured_at, request_id, row), so the same captures give the same bytes and the snapshot the
  same content-addressed version.
- The columns are the union over the chunks (a retrained model may see other inputs): a column
  a chunk lacks is null there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .sources import SourceError

TIME_COLUMN = "captured_at"
KEYS = ["request_id", "row"]
#: the joined label's name until it takes the target's (an input may be called "label")
_LABEL = "_mlops_label"
_INT = r"^-?[0-9]+$"


class CaptureSourceError(SourceError):
    """The captured traffic cannot make a Dataset version (the snapshot fails with this message)."""


def _time(ts: str | None, what: str) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError as e:
        raise CaptureSourceError(f"capture {what} {ts!r} is not an RFC 3339 time: {e}") from e


def _read(path: Path, **kw: Any) -> pa.Table:
    try:
        return pq.read_table(path, **kw)
    except (OSError, pa.ArrowException) as e:
        raise CaptureSourceError(f"capture chunk {path.name} cannot be read: {e}") from e


def read_labels(directory: Path) -> pa.Table:
    """request_id, row, label: one per (request, row), the latest sent; integer labels as int64
    (classification labels come back as class strings "0", "1"), so the label column has the type
    the training data had."""
    parts = [_read(p, columns=["request_id", "row", "label", "labelled_at"])
             for p in sorted(directory.glob("*.labels.parquet"))]
    if not parts:
        return pa.table({"request_id": pa.array([], pa.string()), "row": pa.array([], pa.int32()),
                         _LABEL: pa.array([], pa.string())})
    t = pa.concat_tables(parts).sort_by([("labelled_at", "ascending")])
    t = t.group_by(KEYS, use_threads=False).aggregate([("label", "last")]).rename_columns(KEYS + [_LABEL])
    labels = t.column(_LABEL)
    if labels.null_count < len(labels) and pc.all(pc.match_substring_regex(labels.drop_null(), _INT)).as_py():
        t = t.set_column(2, _LABEL, pc.cast(labels, pa.int64()))
    return t


def _schema(paths: list[Path]) -> tuple[list[str], str, pa.Schema]:
    """The inputs (union, in first-seen order), the target name and the input columns' types."""
    inputs: list[str] = []
    target = "label"
    fields: dict[str, pa.Field] = {}
    for p in paths:
        try:
            s = pq.read_schema(p)
        except (OSError, pa.ArrowException) as e:
            raise CaptureSourceError(f"capture chunk {p.name} cannot be read: {e}") from e
        meta = s.metadata or {}
        names = orjson.loads(meta.get(b"mlops.inputs", b"[]"))
        target = meta.get(b"mlops.target", target.encode()).decode()
        for name in names:
            if name not in fields:
                inputs.append(name)
                fields[name] = s.field(name)
    return inputs, target, pa.schema([fields[n] for n in inputs])


def capture_batches(directory: Path, *, since: str | None = None, until: str | None = None,
                    labelled_only: bool = True) -> Iterator[pa.RecordBatch]:
    """Record batches of the captured rows under `directory` (module docstring)."""
    lo, hi = _time(since, "since"), _time(until, "until")
    if lo is not None and hi is not None and lo >= hi:
        raise CaptureSourceError(f"capture since ({since}) must be before until ({until})")
    paths = sorted(directory.glob("*.requests.parquet")) if directory.is_dir() else []
    if not paths:
        raise CaptureSourceError(f"no captured traffic at captures/{directory.name}: is spec.capture set on the "
                                 "InferenceService, and has it served requests since?")
    inputs, target, in_schema = _schema(paths)
    labels = read_labels(directory)
    out_schema = pa.schema([*in_schema, pa.field(target, labels.schema.field(_LABEL).type),
                            pa.field(TIME_COLUMN, pa.timestamp("us", tz="UTC"))])
    time_filter = None
    if lo is not None:
        time_filter = pc.field(TIME_COLUMN) >= pa.scalar(lo, pa.timestamp("us", tz="UTC"))
    if hi is not None:
        upper = pc.field(TIME_COLUMN) < pa.scalar(hi, pa.timestamp("us", tz="UTC"))
        time_filter = upper if time_filter is None else time_filter & upper
    seen = labelled = 0
    for path in paths:
        t = _read(path, filters=time_filter)
        seen += t.num_rows
        if not t.num_rows:
            continue
        t = t.join(labels, keys=KEYS, join_type="inner" if labelled_only else "left outer")
        labelled += t.num_rows if labelled_only else t.num_rows - t.column(_LABEL).null_count
        if not t.num_rows:
            continue
        t = t.sort_by([(TIME_COLUMN, "ascending"), ("request_id", "ascending"), ("row", "ascending")])
        cols = [t.column(n).cast(f.type) if n in t.column_names else pa.nulls(t.num_rows, f.type)
                for n, f in zip(inputs, in_schema)]
        cols += [t.column(_LABEL), t.column(TIME_COLUMN)]
        yield from pa.Table.from_arrays(cols, schema=out_schema).to_batches()
    if labelled_only and not labelled:
        span = f" between {since or 'the start'} and {until or 'now'}" if lo or hi else ""
        if not seen:
            raise CaptureSourceError(f"no captured rows in captures/{directory.name}{span}")
        raise CaptureSourceError(f"none of the {seen} captured rows in captures/{directory.name}{span} has a "
                                 "label yet: labels join requests by the id sent with both (the inference "
                                 "request's \"id\" and the feedback's \"id\")")
    if not seen:
        span = f" between {since or 'the start'} and {until or 'now'}" if lo or hi else ""
        raise CaptureSourceError(f"no captured rows in captures/{directory.name}{span}")
