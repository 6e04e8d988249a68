"""Payload capture: a sampled share of requests, and the labels sent back for them, written to
the artifact store in chunks, so that the traffic a model actually saw becomes the next Dataset
(data/capture.py reads it back as a Dataset source). Off unless `--capture-rate` > 0
(InferenceService `spec.capture`).

Never on the request path: a request is sampled with one random draw after the model answered
(in the batcher, where its rows are already converted), and its rows are kept by reference in
a buffer bounded by `--capture-max-rows`. A writer thread turns the buffer into a chunk every
`--capture-flush-seconds` (or sooner when `--capture-chunk-rows` are waiting). When the store
is slow or failing the buffer fills and further rows are dropped and counted (`dropped`,
`failed`, `lastError` in the stats document and `mlops_serving_capture_rows_total`): serving
never waits on capture and capture never fails a request.

Chunks are gzip-compressed JSON Lines, one object per request with its rows as columns,
written to a temporary name and renamed when complete (a reader never sees half a chunk)::

    <dir>/<instance>-<startId[:8]>-<seq>.requests.jsonl.gz
      {"t": 1767268800.1, "id": "r-1" | null, "n": 2, "version": "3", "target": "purchased",
       "inputs": {"age": [34.0, null], "device": ["mobile", "web"], ...},   # minus --capture-exclude
       "outputs": {"label": ["1", "0"], "score": [0.83, 0.12]} | {"value": [12.5, 3.0]}}
    <dir>/<instance>-<startId[:8]>-<seq>.labels.jsonl.gz
      {"t": ..., "id": "r-1", "labels": ["1", "0"]}             # from feedback with an "id"

Why not Parquet in the server: pyarrow is 170 MB installed against a 273 MB server image
(measured); the snapshot Job, which has pyarrow, writes the Dataset version as Parquet. Labels
join requests by (id, row): send the request's `id` with the inference request and again with
its feedback.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger(__name__)


class Capture:
    def __init__(self, directory: Path | str, *, rate: float, instance: str, start_id: str, version: str,
                 target: str, numeric: list[str], categorical: list[str], boolean: set[str],
                 classes: list[str] | None, exclude: set[str] | None = None, max_rows: int = 20_000,
                 chunk_rows: int = 5_000, flush_seconds: float = 30.0, seed: int | None = None):
        self.dir = Path(directory)
        self.rate = rate
        self.prefix = f"{instance}-{start_id[:8]}"
        self.version, self.target = version, target
        exclude = exclude or set()
        self.num = [(i, n) for i, n in enumerate(numeric) if n not in exclude]
        self.cat = [(j, n) for j, n in enumerate(categorical) if n not in exclude]
        self.boolean = boolean
        self.classes = classes
        self.max_rows, self.chunk_rows, self.flush_seconds = max_rows, chunk_rows, flush_seconds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.pending: list[tuple[Any, ...]] = []  # ("req", t, id, x, cats, result) | ("label", t, id, labels)
        self.pending_rows = 0
        self.sampled = self.written = self.dropped = self.failed = self.labels_written = 0
        self.chunks = 0
        self.last_error: str | None = None
        self.seq = 0
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.thread.start()

    # -- the event loop side: cheap, never blocks on the store ---------------------------------
    def offer(self, chunk: list[tuple[Any, Any]], x: np.ndarray, cats: list[list[str]],
              result: dict[str, np.ndarray]) -> None:
        """One model run's requests (the batcher's chunk, rows in order): each is kept with
        probability `rate`, by reference, if the buffer has room, else dropped and counted."""
        start = 0
        now = time.time()
        for req, _ in chunk:
            n = req.n
            if self.rng.random() < self.rate:
                self.sampled += 1
                end = start + n
                with self.lock:
                    if self.pending_rows + n > self.max_rows:
                        self.dropped += n
                    else:
                        self.pending.append(("req", now, req.id if isinstance(req.id, str) else None,
                                             x[:, start:end], [c[start:end] for c in cats],
                                             {k: v[start:end] for k, v in result.items()}))
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
            self.pending.append(("label", time.time(), request_id, list(labels)))
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
            with self.lock:
                batch, self.pending, self.pending_rows = self.pending, [], 0
            if batch:
                self._write(batch)
            if self.stopping:
                return

    def _request_line(self, entry: tuple[Any, ...]) -> tuple[bytes, int]:
        """One request as one JSON line, its columns as arrays (orjson serialises numpy arrays
        in C, NaN as null): the writer's work is per request, not per row, so it holds the
        GIL (which serving shares) for as little as possible."""
        _, t, rid, x, cats, result = entry
        n = x.shape[1]
        inputs: dict[str, Any] = {}
        for i, name in self.num:
            row = x[i]
            inputs[name] = (row != 0.0) if name in self.boolean and not np.isnan(row).any() else row
        for j, name in self.cat:
            inputs[name] = cats[j]
        label = result.get("label")
        if label is not None:
            outputs: dict[str, Any] = {"label": [str(v) for v in label.reshape(-1)]}
            probs = result.get("probabilities")
            if probs is not None and probs.shape[-1] == 2:
                outputs["score"] = np.ascontiguousarray(probs.reshape(-1, 2)[:, 1], dtype=np.float64)
        else:
            value = result.get("variable")
            outputs = {"value": None if value is None else np.ascontiguousarray(value.reshape(-1), dtype=np.float64)}
        doc = {"t": t, "id": rid, "n": n, "version": self.version, "target": self.target, "inputs": inputs,
               "outputs": outputs}
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), n

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        reqs = [e for e in batch if e[0] == "req"]
        labels = [e for e in batch if e[0] == "label"]
        try:
            lines, rows = [], 0
            for e in reqs:
                line, n = self._request_line(e)
                lines.append(line)
                rows += n
            label_lines = [orjson.dumps({"t": t, "id": rid, "labels": vals}) for _, t, rid, vals in labels]
            self.dir.mkdir(parents=True, exist_ok=True)
            self.seq += 1
            for kind, data in (("requests", lines), ("labels", label_lines)):
                if data:
                    self._put(f"{self.prefix}-{self.seq:06d}.{kind}.jsonl.gz", data)
                    self.chunks += 1
            self.written += rows
            self.labels_written += sum(len(e[3]) for e in labels)
        except Exception as e:  # a full or failing store: counted, never raised into serving
            self.failed += sum(e[3].shape[1] for e in reqs) + sum(len(e[3]) for e in labels)
            self.last_error = f"{type(e).__name__}: {e}"[:300]
            log.warning("payload capture could not write a chunk: %s", self.last_error)

    def _put(self, name: str, lines: list[bytes]) -> None:
        tmp = self.dir / f".{name}.tmp"
        with gzip.open(tmp, "wb", compresslevel=1) as f:  # level 1: a third of level 5's CPU, chunks ~10% larger
            f.write(b"\n".join(lines) + b"\n")
        os.replace(tmp, self.dir / name)  # complete or absent, never half a chunk
