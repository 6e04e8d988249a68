"""Dynamic batching: the requests that arrive together are answered by one model run.

A handler parses and checks its request, then `submit`s it and awaits the answer. The first
submit in an event-loop iteration schedules a flush for the next iteration; every request
parsed in between (under load: all connections that had data in the same poll) joins it. The
flush converts all their columns at once, runs ONNX Runtime once, counts the rows for the
monitor once, and hands each request its slice of the outputs. One request alone waits one
loop iteration (microseconds); under concurrency the per-request cost of the model run, the
numpy conversions and the drift counting is shared. The answers are the same as one run per
request: the graph computes each row independently.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from .model import LoadedModel
from .monitor import Monitor
from .protocol import ParsedRequest, ServingError, Spec
from .tensors import Layout

log = logging.getLogger(__name__)


class Batcher:
    def __init__(self, model: LoadedModel, spec: Spec, monitor: Monitor, max_rows_per_run: int = 4096):
        self.model = model
        self.spec = spec
        self.monitor = monitor
        self.layout = Layout(spec)
        self.max_rows = max(max_rows_per_run, spec.max_rows)
        self.pending: list[tuple[ParsedRequest, asyncio.Future]] = []
        self.scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.num_names = [f.name for f in spec.num]
        self.cat_names = [f.name for f in spec.cat]
        self.runs = 0
        self.run_rows = 0

    def submit(self, req: ParsedRequest) -> asyncio.Future:
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((req, fut))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, []
        i, n = 0, len(pending)
        while i < n:
            rows, j = 0, i
            while j < n and (j == i or rows + pending[j][0].n <= self.max_rows):
                rows += pending[j][0].n
                j += 1
            chunk = [p for p in pending[i:j] if not p[1].done()]  # a cancelled handler drops out
            if chunk:
                try:
                    self._run(chunk)
                except Exception as e:  # never leave a handler waiting
                    log.exception("model run failed")
                    for _, fut in chunk:
                        if not fut.done():
                            fut.set_exception(ServingError(500, f"internal error running the model: {e}"))
            i = j

    def _run(self, chunk: list[tuple[ParsedRequest, asyncio.Future]]) -> None:
        reqs = [r for r, _ in chunk]
        conv = self.layout.fast(reqs)
        if conv is None:
            good, xs, cat_parts = [], [], []
            for r, fut in chunk:
                try:
                    x, cats = self.layout.careful(r)
                except ServingError as e:
                    fut.set_exception(e)
                    continue
                good.append((r, fut))
                xs.append(x)
                cat_parts.append(cats)
            if not good:
                return
            chunk = good
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=1)
            cats = cat_parts[0] if len(cat_parts) == 1 else [
                [v for part in cat_parts for v in part[j]] for j in range(len(self.cat_names))]
        else:
            x, cats = conv
        result = self._predict(chunk, x, cats)
        if result is None:
            return
        self.monitor.observe(x, cats, result)
        self.runs += 1
        if len(chunk) == 1:
            chunk[0][1].set_result(result)
            self.run_rows += x.shape[1]
            return
        start = 0
        for r, fut in chunk:
            end = start + r.n
            if not fut.done():
                fut.set_result({k: v[start:end] for k, v in result.items()})
            start = end
        self.run_rows += start

    def feeds(self, x: np.ndarray, cats: list[list[str]]) -> dict[str, Any]:
        x32 = x.astype(np.float32)
        feeds: dict[str, Any] = {name: x32[j].reshape(-1, 1) for j, name in enumerate(self.num_names)}
        for name, col in zip(self.cat_names, cats):
            feeds[name] = np.array(col, dtype=object).reshape(-1, 1)
        return feeds

    def _predict(self, chunk, x: np.ndarray, cats: list[list[str]]) -> dict[str, np.ndarray] | None:
        try:
            return self.model.run(self.feeds(x, cats))
        except Exception as e:
            if len(chunk) == 1:
                log.warning("ONNX Runtime refused a request: %s", e)
                chunk[0][1].set_exception(ServingError(422, f"the model cannot take this input: {e}"))
                return None
        # a merged run failed: answer each request on its own so only the bad one fails
        log.warning("a batched model run failed; retrying the %d requests one by one", len(chunk))
        start = 0
        for r, fut in chunk:
            end = start + r.n
            sub_x = x[:, start:end]
            sub_c = [c[start:end] for c in cats]
            start = end
            try:
                res = self.model.run(self.feeds(sub_x, sub_c))
            except Exception as e:
                fut.set_exception(ServingError(422, f"the model cannot take this input: {e}"))
                continue
            self.monitor.observe(sub_x, sub_c, res)
            fut.set_result(res)
        return None
