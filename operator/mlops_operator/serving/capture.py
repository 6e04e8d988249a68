"""Payload capture: a sampled share of requests, and the labels sent back for them, written to
the artifact store as Parquet chunks, so that the traffic a model actually saw becomes the next
Dataset (data/capture.py reads it back as a Dataset source). Off unless `--capture-rate` > 0
(InferenceService `spec.capture`).

Never on the request path. The batcher offers each model run's requests after the model
answered, with the arrays it already converted; the event loop then does almost nothing:

- sampling is a countdown, not a draw per request: the number of requests to skip until the
  next sampled one is drawn from the geometric distribution of `rate` (the same share as one
  Bernoulli draw per request), so an unsampled request costs one subtraction;
- a sampled request is kept by reference (views of the run's arrays; copied only when the run
  is much larger than the request, so a small sample never pins a big batch in memory) in a
  buffer bounded by `--capture-max-rows`. A full buffer drops the request and counts it.

A writer thread turns the buffer into a chunk every `--capture-flush-seconds` (sooner when
`--capture-chunk-rows` wait): one numpy concatenation per column, an Arrow table, Parquet
(zstd) written by Arrow's C++ code, which releases the GIL that serving needs. The bytes go to a
`ChunkSink`, the store's capture area (store/store.py CaptureArea): in a PVC store a file written
under a temporary name and renamed, in an s3:// store one PUT (S3 shows an object only once its
PUT completed) with the chunk's sha256 as metadata, checked when the Dataset reads it back; a
reader sees whole chunks only. When the store is slow or failing the buffer fills and rows are dropped and counted
(`dropped`, `failed`, `lastError` in the stats document and `mlops_serving_capture_rows_total`):
serving never waits on capture and capture never fails a request.

Chunks, both Parquet, in `<store>/captures/<service>/`::

    <instance>-<startId[:8]>-<seq>.requests.parquet
        request_id (string, null without an id), row (int32, the row in its request),
        captured_at (timestamp[us, UTC]), model_version (string),
        <inputs as the model saw them, minus --capture-exclude>,
        output_label (string) and output_score (float64, binary: P(second class)) | output_value
        schema metadata: mlops.inputs (JSON list of the input columns), mlops.target
    <instance>-<startId[:8]>-<seq>.labels.parquet
        request_id, row, label (string, as sent), labelled_at

Labels join requests by (request_id, row): send the request's `id` with the inference request
and again with its feedback.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from ..store.store import DirectoryCaptureArea

log = logging.getLogger(__name__)

#: columns every requests chunk has besides the model's inputs (an input may not take these names)
META_COLUMNS = ("request_id", "row", "captured_at", "model_version", "output_label", "output_score", "output_value")
#: a sampled request in a run this many times its size is copied out, so it does not pin the run
_COPY_FACTOR = 4


class ChunkSink(Protocol):
    """Where finished chunks go. `put` either stores the whole chunk under `name` or raises
    (a store's CaptureArea: a directory in the PVC store, objects in an s3:// store)."""

    def put(self, name: str, data: bytes) -> None: ...


#: chunks as files in a directory (the PVC store's volume, or any directory)
DirectorySink = DirectoryCaptureArea


class Capture:
    def __init__(self, directory: Path | str | ChunkSink, *, rate: float, instance: str, start_id: str,
                 version: str, target: str, numeric: list[str], categorical: list[str], boolean: set[str],
                 classes: list[str] | None, exclude: set[str] | None = None, max_rows: int = 20_000,
                 chunk_rows: int = 5_000, flush_seconds: float = 30.0, seed: int | None = None):
        self.sink: ChunkSink = DirectorySink(directory) if isinstance(directory, (str, Path)) else directory
        clash = sorted(set(numeric + categorical) & set(META_COLUMNS) - (exclude or set()))
        if clash:
            raise ValueError(f"payload capture: input column(s) {', '.join(clash)} clash with the capture's own "
                             f"columns ({', '.join(META_COLUMNS)}); list them in spec.capture.excludeColumns")
        self.rate = rate
        self.prefix = f"{instance}-{start_id[:8]}"
        self.version, self.target = version, target
        exclude = exclude or set()
        self.n_numeric, self.n_categorical = len(numeric), len(categorical)
        self.num = [(i, n) for i, n in enumerate(numeric) if n not in exclude]
        self.cat = [(j, n) for j, n in enumerate(categorical) if n not in exclude]
        self.boolean = boolean
        self.classes = classes
        self.max_rows, self.chunk_rows, self.flush_seconds = max_rows, chunk_rows, flush_seconds
        self.rng = random.Random(seed)
        self._log1m = math.log1p(-rate) if rate < 1.0 else 0.0
        self.skip = self._gap()
        self.lock = threading.Lock()
        self.requests: list[tuple[Any, ...]] = []  # (t, id, x [F, n], cats, result) per sampled request
        self.labels: list[tuple[float, str, list[Any]]] = []
        self.pending_rows = 0
        self.sampled = self.written = self.dropped = self.failed = self.labels_written = 0
        self.chunks = 0
        self.last_error: str | None = None
        self.seq = 0
        self._warm_up()
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.thread.start()

    def _warm_up(self) -> None:
        """Convert and write one made-up row now, at start, not at the first flush: importing
        pyarrow and its first timestamp and dictionary conversions hold the GIL for about 0.3 s
        (measured), which the event loop would otherwise wait out in the middle of serving."""
        x = np.zeros((self.n_numeric, 1))
        fake = (time.time(), "warm-up", x, [["x"] for _ in range(self.n_categorical)],
                {"label": np.zeros(1, dtype=np.int64), "probabilities": np.zeros((1, 2), np.float32),
                 "variable": np.zeros(1)})
        _parquet(self.requests_table([fake]))
        _parquet(self.labels_table([(time.time(), "warm-up", [0])]))

    def _gap(self) -> int:
        """Requests to skip before the next sampled one: geometric with success probability
        `rate` (inverse transform), so that each request is sampled with probability `rate`."""
        if self._log1m == 0.0:
            return 0
        return int(math.log(1.0 - self.rng.random()) / self._log1m)

    # -- the event loop side: cheap, never blocks on the store ---------------------------------
    def offer(self, chunk: list[tuple[Any, Any]], x: np.ndarray, cats: list[list[str]],
              result: dict[str, np.ndarray]) -> None:
        """One model run's requests (the batcher's chunk, rows in order): the sampled ones are
        kept, by reference, if the buffer has room, else dropped and counted."""
        if self.skip >= len(chunk):  # the common case: nothing sampled in this run
            self.skip -= len(chunk)
            return
        start = 0
        now = time.time()
        total = x.shape[1]
        for req, _ in chunk:
            n = req.n
            if self.skip:
                self.skip -= 1
            else:
                self.skip = self._gap()
                self.sampled += 1
                end = start + n
                with self.lock:
                    if self.pending_rows + n > self.max_rows:
                        self.dropped += n
                    else:
                        sx = x[:, start:end]
                        sr = {k: v[start:end] for k, v in result.items()}
                        if total > _COPY_FACTOR * n:  # do not pin a big run for a small request
                            sx = sx.copy()
                            sr = {k: v.copy() for k, v in sr.items()}
                        rid = req.id if isinstance(req.id, str) else None
                        self.requests.append((now, rid, sx, [c[start:end] for c in cats], sr))
                        self.pending_rows += n
                        if self.pending_rows >= self.chunk_rows:
                            self.wake.set()
            start += n

    def offer_labels(self, request_id: str, labels: list[Any]) -> None:
        """Ground truth sent as feedback for the request `request_id` (its rows in order)."""
        with self.lock:
            if self.pending_rows + len(labels) > self.max_rows:
                self.dropped += len(labels)
                return
            self.labels.append((time.time(), request_id, list(labels)))
            self.pending_rows += len(labels)

    def stats(self) -> dict[str, Any]:
        return {"rate": self.rate, "sampledRequests": self.sampled, "rows": self.written,
                "labels": self.labels_written, "dropped": self.dropped, "failed": self.failed,
                "pending": self.pending_rows, "chunks": self.chunks, "lastError": self.last_error}

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (a graceful stop), then stop the writer."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self.wake.wait(self.flush_seconds)
            self.wake.clear()
            stop = self.stopping  # read before taking the buffer: a stop asked meanwhile writes all
            with self.lock:
                reqs, labels = self.requests, self.labels
                self.requests, self.labels, self.pending_rows = [], [], 0
            if reqs or labels:
                self._write(reqs, labels)
            if stop:
                return

    def requests_table(self, reqs: list[tuple[Any, ...]]) -> Any:
        """The sampled requests as one Arrow table: a concatenation per column (numpy and Arrow
        do the per-row work in C), the per-request work is a slice reference."""
        import pyarrow as pa

        sizes = np.fromiter((e[2].shape[1] for e in reqs), dtype=np.int64, count=len(reqs))
        n = int(sizes.sum())
        starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
        cols: dict[str, Any] = {
            "request_id": pa.array(np.repeat(np.array([e[1] for e in reqs], dtype=object), sizes), pa.string()),
            "row": pa.array((np.arange(n, dtype=np.int64) - starts).astype(np.int32)),
            "captured_at": pa.array(np.repeat(np.array([e[0] for e in reqs]) * 1e6, sizes).astype("int64"),
                                    pa.timestamp("us", tz="UTC")),
            "model_version": pa.array([self.version] * n, pa.string()).dictionary_encode(),
        }
        x = np.concatenate([e[2] for e in reqs], axis=1) if len(reqs) > 1 else reqs[0][2]
        for i, name in self.num:
            row = x[i]
            nulls = np.isnan(row)
            if name in self.boolean:
                cols[name] = pa.array(row != 0.0, pa.bool_(), mask=nulls if nulls.any() else None)
            else:
                cols[name] = pa.array(row, pa.float64(), mask=nulls if nulls.any() else None)
        for j, name in self.cat:
            cols[name] = pa.array([v for e in reqs for v in e[3][j]], pa.string())
        first = reqs[0][4]
        if "label" in first:
            cols["output_label"] = pa.array(np.concatenate([e[4]["label"].reshape(-1) for e in reqs]).astype(str))
            if "probabilities" in first and first["probabilities"].shape[-1] == 2:
                probs = np.concatenate([e[4]["probabilities"].reshape(-1, 2)[:, 1] for e in reqs])
                cols["output_score"] = pa.array(probs.astype(np.float64))
        elif "variable" in first:
            cols["output_value"] = pa.array(
                np.concatenate([e[4]["variable"].reshape(-1) for e in reqs]).astype(np.float64))
        inputs = [name for _, name in self.num] + [name for _, name in self.cat]
        meta = {"mlops.inputs": orjson.dumps(inputs), "mlops.target": self.target.encode()}
        return pa.table(cols).replace_schema_metadata(meta)

    def labels_table(self, labels: list[tuple[float, str, list[Any]]]) -> Any:
        import pyarrow as pa

        sizes = np.array([len(e[2]) for e in labels], dtype=np.int64)
        n = int(sizes.sum())
        starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
        return pa.table({
            "request_id": pa.array(np.repeat(np.array([e[1] for e in labels], dtype=object), sizes), pa.string()),
            "row": pa.array((np.arange(n, dtype=np.int64) - starts).astype(np.int32)),
            "label": pa.array([None if v is None else str(v) for e in labels for v in e[2]], pa.string()),
            "labelled_at": pa.array(np.repeat(np.array([e[0] for e in labels]) * 1e6, sizes).astype("int64"),
                                    pa.timestamp("us", tz="UTC")),
        })

    def _write(self, reqs: list[tuple[Any, ...]], labels: list[tuple[float, str, list[Any]]]) -> None:
        rows = sum(e[2].shape[1] for e in reqs)
        nlabels = sum(len(e[2]) for e in labels)
        try:
            self.seq += 1
            if reqs:
                self.sink.put(f"{self.prefix}-{self.seq:06d}.requests.parquet", _parquet(self.requests_table(reqs)))
                self.chunks += 1
                self.written += rows
                rows = 0
            if labels:
                self.sink.put(f"{self.prefix}-{self.seq:06d}.labels.parquet", _parquet(self.labels_table(labels)))
                self.chunks += 1
                self.labels_written += nlabels
                nlabels = 0
        except Exception as e:  # a full or failing store: counted, never raised into serving
            self.failed += rows + nlabels
            self.last_error = f"{type(e).__name__}: {e}"[:300]
            log.warning("payload capture could not write a chunk: %s", self.last_error)


def _parquet(table: Any) -> bytes:
    """A table as Parquet bytes (zstd): Arrow's writer runs in C++ without the GIL."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = pa.BufferOutputStream()
    pq.write_table(table, out, compression="zstd")
    return bytes(out.getvalue())
