"""Dynamic batching: the requests that arrive together are answered by one model run.

A handler parses and checks its request, then `submit`s it and awaits the answer. The first
submit in an event-loop iteration schedules a flush for the next iteration; every request
parsed in between (under load: all connections that had data in the same poll) joins it. The
flush converts all their columns at once, runs ONNX Runtime once, counts the rows for the
monitor once, and hands each request its slice of the outputs. One request alone waits one
loop iteration (microseconds); under concurrency the per-request cost of the model run, the
numpy conversions and the drift counting is shared. A request that nothing can join (the
server has one open client connection: app.ModelServer.infer decides) skips the queue:
`answer_now` runs it in its handler's own turn, which saves the flush's turn and the
handler's wake-up. The answers are the same as one run per
request: the graph computes each row independently.

With `--thread-rows N` (off by default: on a 2-core machine shared with the load generator it
did not pay), runs of at least N rows go to one inference thread (ONNX Runtime releases the
GIL) while the event loop goes on reading, parsing and answering; the requests that arrive
meanwhile wait and then go together in the next run, so the batch size adapts to the load, as
in Triton's dynamic batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .model import LoadedModel
from .monitor import Monitor
from .protocol import ParsedRequest, ServingError, Spec
from .tensors import Layout

log = logging.getLogger(__name__)


class Batcher:
    def __init__(self, model: LoadedModel, spec: Spec, monitor: Monitor, max_rows_per_run: int = 4096,
                 offload_rows: int = 128):
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
        #: nanoseconds inside ONNX Runtime, all runs (Triton's compute_infer)
        self.run_ns = 0
        #: payload capture (serving/capture.py), when on: offered each run's requests
        self.capture: Any = None
        #: runs of at least this many rows go to the inference thread
        self.offload_rows = offload_rows
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="onnxruntime")
        self.busy = False

    def close(self) -> None:
        self.executor.shutdown(wait=False)

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

    def answer_now(self, req: ParsedRequest) -> dict[str, np.ndarray]:
        """Run `req` alone, in the caller's turn of the event loop, and return its outputs (or
        raise its ServingError). For a request that nothing can join: the caller knows no other
        request can arrive before it is answered (one client connection: app.ModelServer.infer).
        A submit costs two more turns of the event loop (the flush, then the handler's wake-up),
        which at one connection are a few per cent of a one-row request. Nothing else is
        different: the same conversion, run, counting and capture as a flush of one request.
        Only when the batcher is idle and the run stays on the event loop's thread (smaller than
        offload_rows); else the caller submits."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        fut = loop.create_future()
        chunk = [(req, fut)]
        try:
            self._run(chunk)
        except Exception as e:  # as flush: a bug is a 500, logged
            self._fail(chunk, e)
        return fut.result()

    def idle_for(self, req: ParsedRequest) -> bool:
        """answer_now may take `req`: nothing waits, nothing runs, and its run stays inline."""
        return not self.pending and not self.busy and req.n < self.offload_rows

    def flush(self) -> None:
        self.scheduled = False
        while self.pending and not self.busy:
            pending = self.pending
            rows, j = 0, 0
            while j < len(pending) and (j == 0 or rows + pending[j][0].n <= self.max_rows):
                rows += pending[j][0].n
                j += 1
            chunk = [p for p in pending[:j] if not p[1].done()]  # a cancelled handler drops out
            self.pending = pending[j:]
            if chunk:
                try:
                    self._run(chunk)
                except Exception as e:  # never leave a handler waiting
                    self._fail(chunk, e)

    def _fail(self, chunk: list[tuple[ParsedRequest, asyncio.Future]], e: BaseException) -> None:
        log.exception("model run failed", exc_info=e)
        for _, fut in chunk:
            if not fut.done():
                fut.set_exception(ServingError(500, f"internal error running the model: {e}"))

    def _run(self, chunk: list[tuple[ParsedRequest, asyncio.Future]]) -> None:
        reqs = [r for r, _ in chunk]
        conv = self.layout.fast(reqs)
        if conv is None:
            good, xs, x32s, cat_parts = [], [], [], []
            for r, fut in chunk:
                try:
                    x, x32, cats = self.layout.careful(r)
                except ServingError as e:
                    fut.set_exception(e)
                    continue
                good.append((r, fut))
                xs.append(x)
                x32s.append(x32)
                cat_parts.append(cats)
            if not good:
                return
            chunk = good
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=1)
            x32 = x32s[0] if len(xs) == 1 else np.concatenate(x32s, axis=1)
            cats = cat_parts[0] if len(cat_parts) == 1 else [
                [v for part in cat_parts for v in part[j]] for j in range(len(self.cat_names))]
        else:
            x, x32, cats = conv
        feeds = self.feeds(x32, cats)
        if x.shape[1] < self.offload_rows:
            try:
                result = self._timed_run(feeds)
            except Exception as e:
                self._refused(chunk, x, x32, cats, e)
                return
            self._deliver(chunk, x, cats, result)
            return
        # a big run: ONNX Runtime releases the GIL, so the event loop keeps reading, parsing and
        # answering other requests meanwhile; those queue up and go together in the next run
        self.busy = True
        assert self.loop is not None  # set by submit()
        done = self.loop.run_in_executor(self.executor, self._timed_run, feeds)
        done.add_done_callback(lambda f: self._finished(f, chunk, x, x32, cats))

    def _timed_run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """One ONNX Runtime run, its time added to run_ns (never two at once: a run in the
        executor holds `busy`, and flush runs nothing inline meanwhile)."""
        t0 = time.perf_counter_ns()
        try:
            return self.model.run(feeds)
        finally:
            self.run_ns += time.perf_counter_ns() - t0

    def _finished(self, f: asyncio.Future, chunk, x, x32, cats) -> None:
        self.busy = False
        try:
            e = f.exception()
            if e is None:
                self._deliver(chunk, x, cats, f.result())
            else:
                self._refused(chunk, x, x32, cats, e)
        except Exception as err:
            self._fail(chunk, err)
        if self.pending and not self.scheduled:
            self.scheduled = True
            assert self.loop is not None  # set by submit()
            self.loop.call_soon(self.flush)

    def _deliver(self, chunk, x: np.ndarray, cats: list[list[str]], result: dict[str, np.ndarray]) -> None:
        self.monitor.observe(x, cats, result)
        if self.capture is not None:
            self.capture.offer(chunk, x, cats, result)
        self.runs += 1
        if len(chunk) == 1:
            if not chunk[0][1].done():
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

    def feeds(self, x32: np.ndarray, cats: list[list[str]]) -> dict[str, Any]:
        """x32: float32 [F_num, N] -> one [N, 1] tensor per feature (views), strings as [N, 1]."""
        cols = x32.reshape(x32.shape[0], -1, 1)
        feeds: dict[str, Any] = dict(zip(self.num_names, cols))
        for name, col in zip(self.cat_names, cats):
            feeds[name] = np.array(col, dtype=object).reshape(-1, 1)  # cols hold str only (tensors.py)
        return feeds

    def _refused(self, chunk, x: np.ndarray, x32: np.ndarray, cats: list[list[str]], e: BaseException) -> None:
        """ONNX Runtime refused a run: answer each request on its own, so only a bad one fails."""
        if len(chunk) == 1:
            log.warning("ONNX Runtime refused a request: %s", e)
            chunk[0][1].set_exception(ServingError(422, f"the model cannot take this input: {e}"))
            return
        log.warning("a batched model run failed (%s); retrying the %d requests one by one", e, len(chunk))
        start = 0
        for r, fut in chunk:
            end = start + r.n
            sub_x = x[:, start:end]
            sub_c = [c[start:end] for c in cats]
            sub_32 = np.ascontiguousarray(x32[:, start:end])
            start = end
            try:
                res = self.model.run(self.feeds(sub_32, sub_c))
            except Exception as err:
                if not fut.done():
                    fut.set_exception(ServingError(422, f"the model cannot take this input: {err}"))
                continue
            self._deliver([(r, fut)], sub_x, sub_c, res)
