"""What the server counts about the traffic, in constant memory: the drift monitor's input.

* Per numeric feature, the reference-anchored histogram of drift/histogram.py on the edges of
  model.json's reference histogram (counts per bin, values equal to an edge, sums of the values'
  offsets in their bin, nulls; for a feature whose reference has at most 20 distinct values also
  the first 32 other values seen, one by one). Cumulative since the process started. A model
  whose reference predates histograms is counted on its 10 decile edges the same way. The
  profile's decile counts (Prometheus, the `features` section) are sums of histogram bins.
* Boolean features as false/true, categorical features per reference category plus one
  "other" count; nulls counted apart.
* The prediction: the positive-class score of a binary classifier on fixed edges 0.1 .. 0.9
  (10 bins), the predicted class of a multiclass one, or the predicted value of a regressor on
  the reference prediction's bin edges.

The drift monitor reads the counters through a *cursor* (:meth:`Monitor.drift_doc`): every
read with a cursor keeps a copy of the counters under a new cursor id and answers what was
counted since the cursor it was given, computed here, exactly; so the monitor keeps no copy of
a pod's counters, only its cursor. A read with a cursor drops that cursor's parent (the reader
saved the cursor it gives, so it is done with the one before); at most :data:`CURSORS` copies
are kept, the oldest dropped first. A cursor of
another process (a restart) or one no longer kept gets the counters since the process started,
marked ``"since": null``.

Counting is deferred and done in bulk: a model run copies its rows into preallocated buffers
(one float64 [F_num, FLUSH_ROWS] array, one list per categorical feature, one array of
prediction values: a slice assignment and a few list extends per run), and the buffers are
counted when full or when someone reads the counts, with a fixed number of numpy calls per
feature (no per-row Python), so the cost per row is small and independent of how the rows
arrived. Copying at each run (about 2.5 µs for a one-row run), not keeping each run's arrays
and concatenating 2,048 of them at count time, is what keeps the count short: concatenating
them was most of the count, which took 3-9 ms of CPU every 2,048 one-row requests (a 13-38 ms
stall of one request on a busy machine); now the count is about 1 ms (benchmarks/README.md,
"serving": the tail).

Bounded whatever clients send:

* Counts are per reference bin or category plus one "other" (and nulls); the listed numeric
  values are at most 32 per feature: a client sending a million distinct values or categories
  adds to "other"/"unlisted"; no new count or label is ever made. Non-finite numbers are nulls.
* Nothing a client sent is kept as text after its batch is counted. A categorical value whose
  JSON text (UTF-8, escapes included, quotes not) is longer than `max_category_bytes` (256 by
  default; `--max-category-bytes`) is replaced by `sha256:<first 16 hex digits of the sha256 of
  its UTF-8>` before it is buffered (reference categories are always kept as they are), so a
  request's huge strings are not held after it is answered. Checked per column (one
  `max(map(len, col))` per categorical column and model run; per value only in a column that
  holds a long value), so the common request pays next to nothing.
* So the stats document is bounded by the model: with the 18-feature retail model and 128-edge
  histograms, about 40 kB (measured: benchmarks/README.md, "drift_capture"), whatever the traffic.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, OrderedDict
from itertools import chain
from typing import Any

import numpy as np
import orjson

from mlops_operator.drift.histogram import Histogram, lists_values, pack
from mlops_operator.store.model_manifest import ReferenceColumn

from .model import LoadedModel

SCORE_EDGES = [round(0.1 * i, 1) for i in range(1, 10)]
_TRUE = ("true", "True", "TRUE", "1", "1.0", "yes")
_FALSE = ("false", "False", "FALSE", "0", "0.0", "no")
#: rows buffered before they are counted
FLUSH_ROWS = 2048
#: counter copies kept for drift monitors' cursors. A reader holds two at most: the cursor it
#: saved and the one it was just given (a read with a cursor drops that cursor's parent, which
#: the reader is done with), so a fast reader does not push out a slow one's; the oldest go first
#: past this many (readers that come and go, reads never saved)
CURSORS = 16


#: the default of `--max-category-bytes`
MAX_CATEGORY_BYTES = 256
#: characters JSON escapes (orjson: "\\uXXXX" for most control characters, the longest)
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
_WORST_ESCAPE = 6


def category_token(v: str) -> str:
    """What the stats record instead of a categorical value that is too long: its digest."""
    return "sha256:" + hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _json_bytes(v: str) -> int:
    try:
        return len(orjson.dumps(v)) - 2
    except TypeError:  # a lone surrogate (the parser refuses them; never shown as is anyway)
        return 1 << 62


def cap_column(col: list[str], cap: int, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """`col` as the stats may record it: a value whose JSON text is over `cap` bytes and is not in
    `keep` (the reference categories) becomes its `category_token`. Returns `col` itself (not a
    copy) when nothing is over, which is the common case, decided without a per-value loop."""
    if not col:
        return col
    longest = max(map(len, col))
    if longest * _WORST_ESCAPE <= cap:
        return col
    if longest <= cap:
        joined = "".join(col)
        if joined.isascii() and _ESCAPED.search(joined) is None:  # JSON text == the characters
            return col
    short = cap // _WORST_ESCAPE
    return [v if len(v) <= short or v in keep or _json_bytes(v) <= cap else category_token(v) for v in col]


def _bool_keys(col: ReferenceColumn | None) -> tuple[str, str]:
    cats = (col.categories or {}) if col is not None else {}
    f = next((k for k in _FALSE if k in cats), "false")
    t = next((k for k in _TRUE if k in cats), "true")
    return f, t


class NumericCounts:
    """Histograms of all numeric and boolean features (drift/histogram.py), one per feature."""

    def __init__(self, model: LoadedModel):
        ref = model.manifest.reference.columns if model.manifest.reference else {}
        self.features = [f.name for f in model.num_features]
        self.types = [f.type for f in model.num_features]
        self.hists: list[Histogram] = []
        self.labels: list[list[str] | None] = []  # boolean: category names of false and true
        self.coarse: list[tuple[list[float], np.ndarray | None]] = []  # decile edges, fine bin -> decile bin
        for f in model.num_features:
            col = ref.get(f.name)
            label = None
            coarse = list(col.bin_edges) if col is not None and col.bin_edges else []
            if col is not None and col.histogram is not None:
                ref_hist = Histogram.from_json(col.histogram.model_dump(by_alias=True))
                edges = ref_hist._edges()
                listing = lists_values(ref_hist)
            elif coarse:
                edges, listing = np.asarray(coarse, dtype=np.float64), False
            elif f.type == "boolean":
                edges, listing, coarse = np.array([0.0, 1.0]), False, [1.0]
                label = list(_bool_keys(col))
            else:
                edges, listing = np.empty(0), False
            self.hists.append(Histogram.empty(edges, listing))
            self.labels.append(label)
            self.coarse.append((coarse, _fine_to_coarse(edges, np.asarray(coarse, dtype=np.float64))))

    def observe(self, x: np.ndarray) -> None:
        """x: float64 [F, N], NaN for nulls (numbers beyond float32's range were refused)."""
        if x.shape[1] == 0 or not self.hists:
            return
        bad = ~np.isfinite(x)
        nulls = bad.sum(axis=1) if bad.any() else None
        # a value can only be some edge's float32 rounding if it is float32-exact: a batch of
        # decimal JSON numbers has few, of floats sent as float32 (Triton's binary tensors) all
        with np.errstate(over="ignore", invalid="ignore"):
            exact32 = (x == x.astype(np.float32)).any(axis=1)
        for i, (h, row) in enumerate(zip(self.hists, x)):
            if nulls is not None and nulls[i]:
                h.nulls += int(nulls[i])
                row = row[~bad[i]]
            h.count_finite(row, snap=bool(exact32[i]), clip=False)

    def feature(self, i: int) -> dict[str, Any]:
        """The decile counts (cumulative) of the `features` section and Prometheus."""
        h = self.hists[i]
        edges, fmap = self.coarse[i]
        if fmap is not None:
            c = np.bincount(fmap, weights=h.counts, minlength=len(edges) + 1).astype(np.int64).tolist()
        else:  # deciles that are not histogram edges (a hand-made model.json): none to give
            c = [0] * (len(edges) + 1)
        if self.labels[i] is not None:
            return {"type": "boolean", "categories": self.labels[i], "counts": c[:2], "other": 0, "nulls": h.nulls}
        return {"type": self.types[i], "binEdges": list(edges), "counts": c, "nulls": h.nulls}

    def drift(self, i: int, h: Histogram) -> dict[str, Any]:
        """A boolean feature in the drift section: its false/true counts."""
        labels = self.labels[i] or ["false", "true"]  # edges [0, 1]: below 1 is false (as the reference counts)
        return {"type": "boolean", "categories": labels, "counts": [int(h.counts[0] + h.counts[1]), int(h.counts[2])],
                "other": 0, "nulls": h.nulls}


def _fine_to_coarse(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray | None:
    """For each histogram bin the decile bin holding it, or None when a decile edge is not a
    histogram edge (a bin would straddle it)."""
    if not np.isin(coarse, fine).all():
        return None
    left = np.concatenate([[-np.inf], fine])  # bin j holds values >= left[j]
    return np.searchsorted(coarse, left, side="right").astype(np.int64)


class CategoricalCounts:
    """Counts per reference category of one feature, plus other and null ("" is null)."""

    def __init__(self, name: str, col: ReferenceColumn | None):
        self.name = name
        self.categories = [c for c in (col.categories or {}) if c != ""] if col is not None else []
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.other = len(self.categories)
        self.index[""] = self.other + 1
        self.counts = np.zeros(len(self.categories) + 2, dtype=np.int64)

    def observe(self, col: list[str]) -> None:
        counts, index, other = self.counts, self.index, self.other
        if len(col) == 1:
            counts[index.get(col[0], other)] += 1
            return
        for v, c in Counter(col).items():
            counts[index.get(v, other)] += c

    def stats(self) -> dict[str, Any]:
        c = self.counts.tolist()
        return {"type": "categorical", "categories": list(self.categories), "counts": c[:-2], "other": c[-2],
                "nulls": c[-1]}


class PredictionCounts:
    def __init__(self, model: LoadedModel):
        m = model.manifest
        self.kind = "value"
        self.classes = model.classes
        self.edges = np.empty(0)
        self.labels: list[str] = []
        if model.classifier and len(self.classes) == 2:
            self.kind = "score"
            self.edges = np.array(SCORE_EDGES)
        elif model.classifier:
            self.kind = "class"
        else:
            ref = m.reference.prediction if m.reference else None
            if ref is not None and ref.bin_edges:
                self.edges = np.asarray(ref.bin_edges, dtype=np.float64)
        size = len(self.classes) if self.kind == "class" else len(self.edges) + 1
        self.counts = np.zeros(size, dtype=np.int64)
        self.total = 0
        self.sum = 0.0

    def values(self, result: dict[str, np.ndarray]) -> np.ndarray:
        """One number per row: the score, the class index or the value."""
        if self.kind == "score":
            return result["probabilities"][:, 1].astype(np.float64)
        if self.kind == "class":
            return result["probabilities"].argmax(axis=1).astype(np.float64)
        return result["variable"].reshape(-1).astype(np.float64)

    def observe(self, v: np.ndarray) -> None:
        if self.kind == "class":
            self.counts += np.bincount(v.astype(np.int64), minlength=self.counts.size)
        else:
            self.counts += np.bincount(np.searchsorted(self.edges, v, side="right"), minlength=self.counts.size)
        self.total += v.size
        self.sum += float(v.sum())

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.kind, "count": self.total, "sum": self.sum, "counts": self.counts.tolist()}
        if self.kind == "class":
            doc["classes"] = list(self.classes)
        else:
            doc["binEdges"] = self.edges.tolist()
        if self.kind == "score":
            doc["positiveClass"] = self.classes[1]
        return doc


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _Reading:
    """A copy of the counters under a cursor id (what a later read is differenced with), and the
    cursor the read that made it was given (its parent)."""

    __slots__ = ("rows", "hists", "cats", "parent")

    def __init__(self, rows: int, hists: list[Histogram], cats: list[np.ndarray], parent: int | None = None):
        self.rows, self.hists, self.cats, self.parent = rows, hists, cats, parent


class Monitor:
    """Everything counted about the rows the model answered."""

    def __init__(self, model: LoadedModel, seed: int | None = None, clock=time.time,
                 max_category_bytes: int = MAX_CATEGORY_BYTES):
        self.model = model
        ref = model.manifest.reference.columns if model.manifest.reference else {}
        self.numeric = NumericCounts(model)
        self.categorical = [CategoricalCounts(f.name, ref.get(f.name)) for f in model.cat_features]
        self.max_category_bytes = max_category_bytes
        #: per categorical feature, the values always kept as they are (the reference categories)
        self.keep = [frozenset(c.index) for c in self.categorical]
        self.prediction = PredictionCounts(model)
        self.rows = 0
        self.batches = 0
        self.clock = clock
        #: the rows buffered until sync (module docstring): numeric values, categorical columns
        #: (values too long already replaced by their token), prediction values; the first
        #: pending_rows of each
        self.pending_x = np.empty((len(self.numeric.features), FLUSH_ROWS))
        self.pending_cats: list[list[str]] = [[] for _ in self.categorical]
        self.pending_pred = np.empty(FLUSH_ROWS)
        self.pending_rows = 0
        #: rows without predictions (observe_inputs), counted with the others at sync
        self.pending_inputs: list[tuple[np.ndarray, list[list[str]]]] = []
        self.pending_input_rows = 0
        self.readings: OrderedDict[int, _Reading] = OrderedDict()
        self.cursor_seq = 0

    def observe(self, x: np.ndarray, cats: list[list[str]], result: dict[str, np.ndarray]) -> None:
        """Buffer one model run's rows (x: float64 [F_num, N]; cats: F_cat columns; the outputs).
        `cats` is not changed: a value too long to keep is replaced in a copy (see cap_column)."""
        n = x.shape[1]
        if n == 0:
            return
        cap = self.max_category_bytes
        if cats and max(map(len, chain.from_iterable(cats))) * _WORST_ESCAPE > cap:  # one pass, in C
            cats = [cap_column(col, cap, keep) for col, keep in zip(cats, self.keep)]
        self.rows += n
        self.batches += 1
        k = self.pending_rows
        if k + n > FLUSH_ROWS:  # no room: count what is buffered first
            self.sync()
            k = 0
        if n >= FLUSH_ROWS:  # a run as big as the buffer is counted at once, without a copy
            self._count(x, cats, self.prediction.values(result))
            return
        end = k + n
        self.pending_x[:, k:end] = x
        for buf, col in zip(self.pending_cats, cats):
            buf.extend(col)
        self.pending_pred[k:end] = self.prediction.values(result)
        self.pending_rows = end
        if end == FLUSH_ROWS:
            self.sync()

    def observe_inputs(self, x: np.ndarray, cats: list[list[str]]) -> None:
        """Buffer rows whose inputs the model saw without a pointwise prediction: a
        recommender's top-k request, whose (customer, candidate) pairs are the scorer's inputs
        (the ranking graph returns only the k best scores). Feature histograms and rows only;
        counted with the other buffered rows (sync)."""
        n = x.shape[1]
        if n == 0:
            return
        cap = self.max_category_bytes
        if cats and max(map(len, chain.from_iterable(cats))) * _WORST_ESCAPE > cap:
            cats = [cap_column(col, cap, keep) for col, keep in zip(cats, self.keep)]
        self.pending_inputs.append((x, cats))
        self.pending_input_rows += n
        self.rows += n
        if self.pending_input_rows >= FLUSH_ROWS:
            self.sync()

    def sync(self) -> None:
        """Count the buffered rows."""
        if self.pending_inputs:
            inputs, self.pending_inputs, self.pending_input_rows = self.pending_inputs, [], 0
            x = inputs[0][0] if len(inputs) == 1 else np.concatenate([p[0] for p in inputs], axis=1)
            self.numeric.observe(x)
            for j, c in enumerate(self.categorical):
                c.observe(list(chain.from_iterable(p[1][j] for p in inputs)))
        k = self.pending_rows
        if not k:
            return
        self.pending_rows = 0
        self._count(self.pending_x[:, :k], self.pending_cats, self.pending_pred[:k])
        for buf in self.pending_cats:
            buf.clear()  # nothing a client sent is held once counted

    def _count(self, x: np.ndarray, cats: list[list[str]], pred: np.ndarray) -> None:
        self.numeric.observe(x)
        for c, col in zip(self.categorical, cats):
            c.observe(col)
        self.prediction.observe(pred)

    def features_doc(self) -> dict[str, Any]:
        """Cumulative counts per feature on the reference's decile bins or categories."""
        self.sync()
        out: dict[str, Any] = {}
        num_i = {f.name: i for i, f in enumerate(self.model.num_features)}
        cat_i = {f.name: i for i, f in enumerate(self.model.cat_features)}
        for f in self.model.features:
            out[f.name] = (self.numeric.feature(num_i[f.name]) if f.name in num_i
                           else self.categorical[cat_i[f.name]].stats())
        return out

    def drift_doc(self, start_id: str, cursor: str | None = None) -> dict[str, Any]:
        """The drift monitor's counters (module docstring): since ``cursor`` when this process
        still keeps it (``since`` is then the cursor), else since the process started (``since``
        null). ``cursor`` None (no cursor asked for): cumulative, and no copy is kept. The answer
        names the cursor to give next time."""
        self.sync()
        now = _Reading(self.rows, [h.copy() for h in self.numeric.hists], [c.counts.copy() for c in self.categorical])
        base, since, parent = None, None, None
        if cursor:
            sid, _, seq = cursor.rpartition(".")
            if sid == start_id and seq.isdigit() and int(seq) in self.readings:
                parent = int(seq)
                base, since = self.readings[parent], cursor
                # a reader gives the cursor it saved last: the one before it is done with
                if base.parent is not None:
                    self.readings.pop(base.parent, None)
        new_cursor = None
        if cursor is not None:
            self.cursor_seq += 1
            now.parent = parent
            self.readings[self.cursor_seq] = now
            while len(self.readings) > CURSORS:
                self.readings.popitem(last=False)
            new_cursor = f"{start_id}.{self.cursor_seq}"
        feats: dict[str, Any] = {}
        hists: dict[str, Histogram] = {}
        for i, name in enumerate(self.numeric.features):
            h = now.hists[i]
            if base is not None:
                h = h.minus(base.hists[i]) or h  # never None within one process: counters only grow
            if self.numeric.labels[i] is not None:
                feats[name] = self.numeric.drift(i, h)
            else:
                hists[name] = h
        for j, c in enumerate(self.categorical):
            counts = now.cats[j] - (base.cats[j] if base is not None else 0)
            feats[c.name] = {"type": "categorical", "categories": list(c.categories), "counts": counts[:-2].tolist(),
                             "other": int(counts[-2]), "nulls": int(counts[-1])}
        return {"cursor": new_cursor, "since": since, "rows": now.rows - (base.rows if base is not None else 0),
                "histograms": pack(hists), "features": feats}
