"""What the server counts about the traffic, in constant memory: the drift monitor's input.

* Per-feature binned counts on the reference of model.json (cumulative since the process
  started): numeric features on the reference bin edges (bin i holds edges[i-1] <= v <
  edges[i], i.e. `searchsorted(edges, v, side="right")`, as the trainer's profile counts),
  boolean features as false/true, categorical features per reference category plus one
  "other" count; nulls counted apart.
* The prediction: the positive-class score of a binary classifier on fixed edges 0.1 .. 0.9
  (10 bins), the predicted class of a multiclass one, or the predicted value of a regressor on
  the reference prediction's bin edges.
* A reservoir sample (Algorithm R) of at most `size` raw rows and their predictions per
  window; windows are aligned to multiples of `window_seconds` since the epoch, so the
  replicas of a model share window boundaries. The last complete window is kept.

Counting is deferred and done in bulk: a model run only appends references to its arrays to a
bounded buffer (at most `FLUSH_ROWS` rows, or until the window ends, or until someone reads the
counts), and the buffer is counted with a fixed number of numpy calls (no per-row Python),
so the cost per row is small and independent of how the rows arrived.

Bounded whatever clients send:

* Counts are per reference category plus one "other" (and nulls): a client sending a million
  distinct categories adds to "other"; no new count or label is ever made.
* A categorical value whose JSON text (UTF-8, escapes included, quotes not) is longer than
  `max_category_bytes` (256 by default; `--max-category-bytes`) is recorded as
  `sha256:<first 16 hex digits of the sha256 of its UTF-8>` in the reservoir (and counted as
  "other", which it is anyway: reference categories are always kept as they are). The model
  gets the value as sent; only what is kept about it is replaced, before it is buffered, so
  a request's huge strings are not held after it is answered. Checked per column (one
  `max(map(len, col))` per categorical column and model run; per value only in a column that
  holds a long value), so the common request pays next to nothing.
* So a window of the stats document holds at most `reservoir size` rows of
  `F_num` numbers, `F_cat` strings of at most `max_category_bytes` and one prediction, two
  windows at a time: with the defaults and the 18-feature retail model (4 categorical), about
  2.7 MB at most (every categorical value at the limit; measured) and 0.3 MB for its usual
  traffic, well under what the operator reads of it (controllers/kube.py, 64 MiB).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from itertools import chain
from typing import Any

import numpy as np
import orjson

from mlops_operator.store.model_manifest import ReferenceColumn

from .model import LoadedModel

SCORE_EDGES = [round(0.1 * i, 1) for i in range(1, 10)]
_TRUE = ("true", "True", "TRUE", "1", "1.0", "yes")
_FALSE = ("false", "False", "FALSE", "0", "0.0", "no")
#: rows buffered before they are counted
FLUSH_ROWS = 2048
#: above this many comparisons per batch, bin with one searchsorted per feature instead
_BROADCAST_LIMIT = 1 << 14


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
    """Binned counts of all numeric/boolean features at once: one count vector."""

    def __init__(self, model: LoadedModel):
        ref = model.manifest.reference.columns if model.manifest.reference else {}
        self.features = [f.name for f in model.num_features]
        self.types = [f.type for f in model.num_features]
        self.edges: list[np.ndarray] = []
        self.labels: list[list[str] | None] = []  # boolean: category names of bins 0 and 1
        for f in model.num_features:
            col = ref.get(f.name)
            if col is not None and col.bin_edges:
                self.edges.append(np.asarray(col.bin_edges, dtype=np.float64))
                self.labels.append(None)
            elif f.type == "boolean":
                self.edges.append(np.array([1.0]))  # 0 -> bin 0 (false), 1 -> bin 1 (true)
                self.labels.append(list(_bool_keys(col)))
            else:
                self.edges.append(np.empty(0))
                self.labels.append(None)
        k = max((len(e) for e in self.edges), default=0)
        self.k = k
        self.padded = np.full((len(self.edges), max(k, 1)), np.inf)
        for i, e in enumerate(self.edges):
            self.padded[i, : len(e)] = e
        sizes = np.array([len(e) + 2 for e in self.edges], dtype=np.int64)  # bins + null slot
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if len(sizes) else sizes
        self.null_slots = self.offsets + sizes - 1
        self.counts = np.zeros(int(sizes.sum()), dtype=np.int64)

    def observe(self, x: np.ndarray) -> None:
        """x: float64 [F, N], NaN for nulls."""
        f, n = x.shape
        if f == 0 or n == 0:
            return
        if self.k == 0:
            bins = np.zeros((f, n), dtype=np.int64)
        elif f * n * self.k <= _BROADCAST_LIMIT:
            bins = (x[:, :, None] >= self.padded[:, None, :]).sum(axis=2)
        else:
            bins = np.stack([np.searchsorted(e, x[i], side="right") for i, e in enumerate(self.edges)])
        idx = bins + self.offsets[:, None]
        nan = np.isnan(x)
        if nan.any():
            idx = np.where(nan, self.null_slots[:, None], idx)
        self.counts += np.bincount(idx.ravel(), minlength=self.counts.size)

    def feature(self, i: int) -> dict[str, Any]:
        e, o = self.edges[i], int(self.offsets[i])
        c = self.counts[o: o + len(e) + 2].tolist()
        if self.labels[i] is not None:
            return {"type": "boolean", "categories": self.labels[i], "counts": c[:2], "other": 0, "nulls": c[-1]}
        return {"type": self.types[i], "binEdges": e.tolist(), "counts": c[:-1], "nulls": c[-1]}


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


class Window:
    """Reservoir of one window: at most `size` rows, uniform over the rows seen in it."""

    def __init__(self, start: float, size: int, n_num: int, n_cat: int):
        self.start = start
        self.size = size
        self.seen = 0
        self.filled = 0
        self.num = np.empty((size, n_num), dtype=np.float64)
        self.cat = np.empty((size, n_cat), dtype=object)
        self.pred = np.empty(size, dtype=np.float64)


class Reservoir:
    def __init__(self, size: int, window_seconds: int, n_num: int, n_cat: int, seed: int | None = None,
                 clock=time.time):
        self.size = size
        self.window_seconds = window_seconds
        self.n_num, self.n_cat = n_num, n_cat
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.current = self._new(clock())
        self.previous: Window | None = None

    @property
    def end(self) -> float:
        return self.current.start + self.window_seconds

    def _new(self, now: float) -> Window:
        start = float(int(now // self.window_seconds) * self.window_seconds)
        return Window(start, self.size, self.n_num, self.n_cat)

    def roll(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if now >= self.current.start + self.window_seconds:
            nxt = self._new(now)
            # a window with no traffic in between is the previous one, empty
            self.previous = self.current if nxt.start == self.current.start + self.window_seconds else \
                Window(nxt.start - self.window_seconds, 0, self.n_num, self.n_cat)
            self.current = nxt

    def observe(self, x: np.ndarray, cats: list[list[str]], pred: np.ndarray) -> None:
        """Add rows to the current window (the caller rolls windows: see Monitor.observe).

        x: float64 [F_num, N]; cats: F_cat columns of N strings; pred: [N]."""
        w = self.current
        if self.size == 0:
            w.seen += pred.size
            return
        n = pred.size
        take = min(n, w.size - w.filled)
        if take:
            sl = slice(w.filled, w.filled + take)
            w.num[sl] = x[:, :take].T
            for j, col in enumerate(cats):
                w.cat[sl, j] = col[:take]
            w.pred[sl] = pred[:take]
            w.filled += take
        if take < n:  # Algorithm R, vectorised: row with global index g replaces slot U{0..g} if < size
            g = np.arange(w.seen + take, w.seen + n)
            slots = self.rng.integers(0, g + 1)
            hit = np.nonzero(slots < w.size)[0]
            if hit.size:
                rows = hit + take
                w.num[slots[hit]] = x[:, rows].T
                if cats:
                    w.cat[slots[hit]] = np.array([[col[r] for col in cats] for r in rows.tolist()], dtype=object)
                w.pred[slots[hit]] = pred[rows]
        w.seen += n

    def window_doc(self, w: Window | None, columns: list[str], order: list[tuple[bool, int]],
                   pred_kind: str, classes: list[str]) -> dict[str, Any] | None:
        if w is None:
            return None
        rows = []
        for i in range(w.filled):
            row = []
            for is_cat, j in order:
                if is_cat:
                    v = w.cat[i, j]
                    row.append(None if v == "" else v)
                else:
                    v = float(w.num[i, j])
                    row.append(None if v != v else v)
            rows.append(row)
        preds: list[Any] = w.pred[: w.filled].tolist()
        if pred_kind == "class":
            preds = [classes[int(p)] for p in preds]
        return {"windowStart": _iso(w.start), "windowStartEpoch": w.start, "seen": w.seen, "columns": columns,
                "rows": rows, "predictions": preds}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Monitor:
    """Everything counted about the rows the model answered."""

    def __init__(self, model: LoadedModel, reservoir_size: int, window_seconds: int, seed: int | None = None,
                 clock=time.time, max_category_bytes: int = MAX_CATEGORY_BYTES):
        self.model = model
        ref = model.manifest.reference.columns if model.manifest.reference else {}
        self.numeric = NumericCounts(model)
        self.categorical = [CategoricalCounts(f.name, ref.get(f.name)) for f in model.cat_features]
        self.max_category_bytes = max_category_bytes
        #: per categorical feature, the values always kept as they are (the reference categories)
        self.keep = [frozenset(c.index) for c in self.categorical]
        self.prediction = PredictionCounts(model)
        self.reservoir = Reservoir(reservoir_size, window_seconds, len(model.num_features),
                                   len(model.cat_features), seed, clock)
        self.rows = 0
        self.batches = 0
        self.clock = clock
        self.pending: list[tuple[np.ndarray, list[list[str]], dict[str, np.ndarray]]] = []
        self.pending_rows = 0

    def observe(self, x: np.ndarray, cats: list[list[str]], result: dict[str, np.ndarray]) -> None:
        """Buffer one model run's rows (x: float64 [F_num, N]; cats: F_cat columns; the outputs).
        `cats` is not changed: a value too long to keep is replaced in a copy (see cap_column)."""
        n = x.shape[1]
        cap = self.max_category_bytes
        if cats and max(map(len, chain.from_iterable(cats))) * _WORST_ESCAPE > cap:  # one pass, in C
            cats = [cap_column(col, cap, keep) for col, keep in zip(cats, self.keep)]
        if self.clock() >= self.reservoir.end:
            self.sync()  # the buffered rows belong to the window that is ending
            self.reservoir.roll()
        self.pending.append((x, cats, result))
        self.pending_rows += n
        self.rows += n
        self.batches += 1
        if self.pending_rows >= FLUSH_ROWS:
            self.sync()

    def sync(self) -> None:
        """Count the buffered rows."""
        if not self.pending:
            return
        pend, self.pending, self.pending_rows = self.pending, [], 0
        if len(pend) == 1:
            x, cats, result = pend[0]
        else:
            x = np.concatenate([p[0] for p in pend], axis=1)
            cats = [list(chain.from_iterable(p[1][j] for p in pend)) for j in range(len(self.categorical))]
            result = {k: np.concatenate([p[2][k] for p in pend]) for k in pend[0][2]}
        self.numeric.observe(x)
        for c, col in zip(self.categorical, cats):
            c.observe(col)
        pred = self.prediction.values(result)
        self.prediction.observe(pred)
        self.reservoir.observe(x, cats, pred)

    def features_doc(self) -> dict[str, Any]:
        self.sync()
        out: dict[str, Any] = {}
        num_i = {f.name: i for i, f in enumerate(self.model.num_features)}
        cat_i = {f.name: i for i, f in enumerate(self.model.cat_features)}
        for f in self.model.features:
            out[f.name] = (self.numeric.feature(num_i[f.name]) if f.name in num_i
                           else self.categorical[cat_i[f.name]].stats())
        return out

    def reservoir_doc(self, order: list[tuple[bool, int]]) -> dict[str, Any]:
        self.sync()
        r = self.reservoir
        r.roll()
        cols = [f.name for f in self.model.features]
        kind, classes = self.prediction.kind, self.prediction.classes
        return {"size": r.size, "windowSeconds": r.window_seconds,
                "current": r.window_doc(r.current, cols, order, kind, classes),
                "previous": r.window_doc(r.previous, cols, order, kind, classes)}
