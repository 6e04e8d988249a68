"""A Dataset source from captured traffic: the rows an InferenceService's model answered
(sampled by serving/capture.py), joined with the labels sent back for them as feedback.

Read from the capture chunks in the artifact store (``<store>/captures/<service>/``), in name
order (instance, start, sequence), one record batch per chunk, so memory stays bounded by a
chunk whatever the traffic. The labels are read first (one small dict of (request id, row) ->
label). Each row becomes the model's input columns as the model saw them, the label under the
name of the model's target (so a retraining TrainingRun finds it where the first one did) and
``captured_at``, the time the model answered (a timestamp column, so a time split works).

``labelledOnly`` (default): rows no label arrived for are left out: a model can only learn from
rows whose outcome is known. ``since`` / ``until`` bound ``captured_at``.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from .sources import SourceError

TIME_COLUMN = "captured_at"
_INT = re.compile(r"-?[0-9]+")


class CaptureSourceError(SourceError):
    """The captured traffic cannot make a Dataset version (the snapshot fails with this message)."""


def _label(v: Any) -> Any:
    """Classification labels come back as class strings ("0", "1", "gold"); integer classes are
    restored to integers so that the label column has the type the training data had."""
    if isinstance(v, str) and _INT.fullmatch(v):
        return int(v)
    return v


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with gzip.open(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)
    except (OSError, EOFError, orjson.JSONDecodeError) as e:
        raise CaptureSourceError(f"capture chunk {path.name} cannot be read: {e}") from e


def read_labels(directory: Path) -> dict[tuple[str, int], Any]:
    """(request id, row) -> label, from every labels chunk (a later label for a row wins)."""
    labels: dict[tuple[str, int], Any] = {}
    for path in sorted(directory.glob("*.labels.jsonl.gz")):
        for r in _lines(path):
            rid, vals = r.get("id"), r.get("labels")
            if isinstance(rid, str) and isinstance(vals, list):
                for i, v in enumerate(vals):
                    labels[(rid, i)] = _label(v)
    return labels


def capture_batches(directory: Path, *, since: str | None = None, until: str | None = None,
                    labelled_only: bool = True) -> Iterator[pa.RecordBatch]:
    """Record batches of the captured rows under `directory` (module docstring)."""
    if not directory.is_dir():
        raise CaptureSourceError(f"no captured traffic at {directory.name}: is spec.capture set on the "
                                 "InferenceService, and has it served requests since?")
    lo, hi = _epoch(since), _epoch(until)
    labels = read_labels(directory)
    found = False
    for path in sorted(directory.glob("*.requests.jsonl.gz")):
        rows: list[dict[str, Any]] = []
        target = None
        for r in _lines(path):
            t = float(r.get("t") or 0)
            if (lo is not None and t < lo) or (hi is not None and t >= hi):
                continue
            rid, n = r.get("id"), int(r.get("n") or 0)
            target = r.get("target") or "label"
            inputs = r.get("inputs") or {}
            when = datetime.fromtimestamp(t, tz=timezone.utc)
            for i in range(n):
                key = (rid, i) if isinstance(rid, str) else None
                has = key is not None and key in labels
                if labelled_only and not has:
                    continue
                row = {name: col[i] for name, col in inputs.items()}
                row[target] = labels[key] if key is not None and has else None
                row[TIME_COLUMN] = when
                rows.append(row)
        if rows:
            found = True
            yield pa.RecordBatch.from_pylist(rows)
    if not found:
        raise CaptureSourceError(f"no {'labelled ' if labelled_only else ''}captured rows in {directory.name}"
                                 + (f" between {since or 'the start'} and {until or 'now'}" if lo or hi else "")
                                 + ("; labels join requests by the id sent with both" if labelled_only else ""))
