"""The aiohttp application: routes of the Open Inference Protocol V2, KServe V1, stats, feedback.

Routes (`{name}` must be the served model, `{version}` its version, else 404):

    GET  /v2/health/live                         200 {"live": true}
    GET  /v2/health/ready                        200 {"ready": true}, 503 while loading or draining
    GET  /v2                                     server metadata
    GET  /v2/models/{name}[/versions/{version}]  model metadata (inputs, outputs, classes)
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer
    POST /v1/models/{name}:predict               {"instances": [...]} -> {"predictions": [...]}
    GET  /v1/models/{name}                       {"name": ..., "ready": true}
    GET  /v1/models                              {"models": [name]}
    GET  /                                       {"status": "alive"} (KServe V1 liveness)
    POST /v1/models/{name}:explain               501: no explainer (a clear JSON error, not 404/405)
    GET  /v2/models/stats, /v2/models/{name}[/versions/{version}]/stats
                                                 Triton's statistics ({"model_stats": [...]})
    GET  /mlops/v1/models/{name}/stats           the drift monitor's JSON (see below)
    GET  /v2/models/{name}/reference             model.json's training reference (bins, categories)
    POST /v2/models/{name}[/versions/{version}]/feedback  ground truth (see feedback.py)
    GET  /metrics                                Prometheus (see metrics.py)

Every error, including unknown routes (404) and methods (405), is JSON `{"error": "..."}`; bad input is
always a 4xx, never a 500.

Slow and stalled clients are bounded: a connection that sends no complete request head within
`--idle-timeout-seconds` (75 s) of opening or of its last answer is closed; a body has
`--read-timeout-seconds` (30 s, checked every second) once its head is in, else 408 and the
connection is closed. A client that hangs up before its body has arrived is counted as 499
(nginx's "client closed request"), not as a server error.

Stats document (`GET /mlops/v1/models/{name}/stats[?cursor=...]`)
-----------------------------------------------------------------
Counts are cumulative since the process started; `startId` changes with every start. The
`drift` section is what the DriftMonitor reads: with `?cursor=` (empty: start one) the server
keeps a copy of its counters under a new cursor and answers the counts since the cursor it was
given, if it still keeps it (`"since"` is then that cursor), else since the process started
(`"since": null`); without the parameter, cumulative counts and no cursor::

    {"format": "mlops.dev/serving-stats/v1",
     "model": "retail", "version": "3", "digest": "<sha256 of model.onnx>",
     "instance": "<pod name>", "startId": "<uuid4 hex>", "startTime": "2026-01-01T12:00:00Z",
     "startTimeEpoch": 1767268800.0, "now": "...", "nowEpoch": ...,
     "requests": {"infer": {"200": 1200, "422": 3}, "predict": {...}, "feedback": {...}},
     "rows": 35000,                       # rows predicted
     "features": {                        # cumulative, on the reference's decile bins / categories
        "age": {"type": "numeric", "binEdges": [e0, ..., e8], "counts": [c0, ..., c9], "nulls": 12},
        "is_member": {"type": "boolean", "categories": ["false", "true"], "counts": [a, b],
                      "other": 0, "nulls": 0},
        "device": {"type": "categorical", "categories": ["mobile", ...], "counts": [...],
                   "other": 4, "nulls": 0}, ...},
     "drift": {"cursor": "<startId>.<n>", "since": "<the cursor given>" or null, "rows": 1200,
               # the numeric features' histograms (drift/histogram.pack): metadata, and their
               # counts, atoms and sums as one base64 string of little-endian numbers
               "histograms": {"features": ["age", ...], "edgesDigests": ["<16 hex>", ...],
                              "bins": [k + 1, ...], "nulls": [3, ...], "ints": "i4", "data": "<base64>",
                              # a reference with <= 20 distinct values: the other values seen
                              "listed": {"n_children": {"values": [[v, count], ...], "unlisted": 0}}},
               "features": {"is_member": {... as in features ...}, "device": {...}}},
     "prediction": {"type": "score", "positiveClass": "1", "binEdges": [0.1, ..., 0.9],
                    "counts": [10 counts], "count": 35000, "sum": 8123.4},
                   # multiclass: {"type": "class", "classes": [...], "counts": [...], ...}
                   # regression: {"type": "value", "binEdges": [reference edges], "counts": [...], ...}
     "feedback": {"requests": 10, "count": 500, "correct": 430, "classes": ["0", "1"],
                  "confusion": [[t0p0, t0p1], [t1p0, t1p1]],
                  "scoreBinEdges": [...], "scoreCountsByLabel": {"0": [...], "1": [...]}}}
                 # regression: count, sumAbsError, sumSquaredError, sumLabel, sumSquaredLabel, sumPrediction

Numeric bins: bin i holds edges[i-1] <= v < edges[i] (`searchsorted(edges, v, side="right")`),
the convention of the reference in model.json, so live and reference counts compare bin for bin;
the drift histograms are on the edges of model.json's reference histogram (drift/histogram.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import urllib.parse
import uuid

import orjson
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlops_operator import __version__

from .batcher import Batcher
from .config import ServeConfig
from .capture import Capture, ChunkSink
from .feedback import Feedback
from .ranking_feedback import RankingFeedback
from .metrics import RequestStats, registry
from . import topk
from .model import LoadedModel
from .monitor import Monitor, _iso
from .protocol import (JSON_HEADERS, ServingError, Spec, error_body, model_metadata, parse_v1, parse_v2,
                       server_metadata, v1_response, v2_response)

log = logging.getLogger(__name__)
STATS_FORMAT = "mlops.dev/serving-stats/v1"
_HEADER_LEN = "Inference-Header-Content-Length"


def _json(doc: Any, status: int = 200) -> web.Response:
    import orjson

    return web.Response(body=orjson.dumps(doc), status=status, headers=JSON_HEADERS)


def _error(status: int, message: str) -> web.Response:
    return web.Response(body=error_body(message), status=status, headers=JSON_HEADERS)


class ModelServer:
    """One served model version and everything counted about it."""

    def __init__(self, model: LoadedModel, cfg: ServeConfig, seed: int | None = None, clock=time.time):
        self.model = model
        self.cfg = cfg
        self.spec = Spec(model, cfg.name, cfg.version, cfg.max_batch_size)
        self.monitor = Monitor(model, seed=seed, clock=clock, max_category_bytes=cfg.max_category_bytes)
        self.batcher = Batcher(model, self.spec, self.monitor,
                               offload_rows=cfg.thread_rows if cfg.thread_rows > 0 else 1 << 62)
        self.feedback = Feedback(model.classifier, model.classes, cfg.max_batch_size)
        self.ranking_feedback = (RankingFeedback(model.topk.info.k, cfg.max_batch_size)
                                 if model.topk is not None else None)
        self.requests = RequestStats()
        self.ready = True
        self.draining = False
        self.start_id = uuid.uuid4().hex
        self.start_time = time.time()
        self.instance = cfg.instance or os.environ.get("POD_NAME") or socket.gethostname()
        self.capture = self._capture() if cfg.capture_rate > 0 else None
        self.batcher.capture = self.capture
        self.registry = registry(self)
        #: the port gRPC listens on once started (run.serve), 0 when it does not
        self.grpc_port = 0
        self.max_body = cfg.max_body_bytes
        self.read_timeout = cfg.read_timeout_seconds
        #: request tasks reading their body -> deadline; those _sweep cancelled for it
        self._reading: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the HTTP server of the inference routes (http_server): its open connections tell
        #: whether a request can be joined by another (infer)
        self._infer_server: web.Server | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def _check_model(self, mi: dict[str, str]) -> None:
        self.check_model(mi.get("name"), mi.get("version"))

    def check_model(self, name: str | None, v: str | None) -> None:
        """404 unless `name` is the served model and `v` (None: any) its version; REST and gRPC."""
        if name != self.spec.name:
            raise ServingError(404, f"model {name!r} is not served here; this server serves {self.spec.name!r}")
        if v is not None and v != self.spec.version:
            raise ServingError(404, f"model {name!r} has no version {v!r} here; this server serves version "
                                    f"{self.spec.version!r}")

    async def _body(self, request: web.BaseRequest) -> bytes:
        cl = request.content_length
        if cl is not None and cl > self.max_body:
            raise ServingError(413, f"request body of {cl} bytes is over the limit of {self.max_body} bytes")
        # The read timeout: the task is registered with its deadline and _sweep cancels it when
        # that passes (a dict entry per request; asyncio.timeout cost 6 µs a request).
        task = cast("asyncio.Task[Any]", asyncio.current_task())  # a handler runs in a task
        reading = self._reading
        reading[task] = cast(asyncio.AbstractEventLoop, self._loop).time() + self.read_timeout
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ServingError(413, f"request body is over the limit of {self.max_body} bytes") from None
        except ConnectionError:  # it hung up: nginx's 499 "client closed request", not a server error
            raise ServingError(499, "the client closed the connection before its request body arrived") from None
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()  # a stalled or far too slow client: not held in flight any longer
            raise ServingError(408, f"request body did not arrive within {self.read_timeout:g} s") from None
        finally:
            del reading[task]

    async def _sweep(self) -> None:
        """Cancel the body reads that are past their deadline (see _body), a few times per timeout."""
        every = min(1.0, self.read_timeout / 4)
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if now >= deadline and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    def close(self) -> None:
        """Stop the background work (after the HTTP server has stopped)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.batcher.close()
        if self.capture is not None:
            self.capture.close()  # what is buffered is written on a graceful stop

    # -- the data plane --------------------------------------------------------------------------
    async def infer(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        t0 = time.perf_counter()
        stats = self.requests
        stats.inflight += 1
        rows = 0
        try:
            self._check_model(params)
            body = await self._body(request)
            req = parse_v2(body, self.spec, request.headers.get(_HEADER_LEN))
            rows = req.n
            b = self.batcher
            if self._infer_server is not None and len(self._infer_server.connections) == 1 and b.idle_for(req):
                result = b.answer_now(req)  # one client connection: no other request can join a batch
            else:
                result = await b.submit(req)
            out, headers = v2_response(self.spec, req, result)
            resp = web.Response(body=out, headers=headers)
        except ServingError as e:
            resp = _error(e.status, e.message)
        except Exception as e:  # a bug, not bad input: still JSON, and logged
            log.exception("infer failed")
            resp = _error(500, f"internal error: {type(e).__name__}: {e}")
        stats.inflight -= 1
        stats.done("infer", resp.status, time.perf_counter() - t0, rows)
        return resp

    async def _accounted(self, endpoint: str, work: Callable[[list[int]], Awaitable[web.Response]]) -> web.Response:
        """A handler's accounting (in flight, status, time, rows) and its errors as JSON: a
        ServingError is its status, anything else a logged 500. `work` sets rows[0] once it
        knows them, so a request that fails later is still counted with its rows. (infer and
        predict_v1 keep this inline: they are the hot path, where the extra call shows.)"""
        t0 = time.perf_counter()
        stats = self.requests
        stats.inflight += 1
        rows = [0]
        try:
            resp = await work(rows)
        except ServingError as e:
            resp = _error(e.status, e.message)
        except Exception as e:
            log.exception("%s failed", endpoint)
            resp = _error(500, f"internal error: {type(e).__name__}: {e}")
        stats.inflight -= 1
        stats.done(endpoint, resp.status, time.perf_counter() - t0, rows[0])
        return resp

    async def topk_infer(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """A recommender's top k (serving/topk.py): `<name>-topk`, V2 infer on the ranking graph."""
        async def work(rows: list[int]) -> web.Response:
            if params.get("version") not in (None, self.spec.version):
                raise ServingError(404, f"no version {params['version']!r} of {self.spec.name}{topk.SUFFIX} here")
            body = await self._body(request)
            doc, feeds, rows[0], _ = topk.parse(body, self.model.topk, request.headers.get(_HEADER_LEN))
            result = self.model.topk.run(feeds)
            # the pairs are the scorer's inputs: counted for drift like any other request's rows
            self.monitor.observe_inputs(*topk.pair_inputs(self.model.features, feeds, rows[0]))
            return _json(topk.response(result, self.spec.name, self.spec.version, doc.get("id")))

        return await self._accounted("topk", work)

    async def topk_feedback(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """What was bought after a top-k answer (serving/ranking_feedback.py)."""
        async def work(rows: list[int]) -> web.Response:
            assert self.ranking_feedback is not None  # the route exists only for a recommender
            answer = self.ranking_feedback.add(await self._body(request))
            rows[0] = answer["rows"]
            return _json(answer)

        return await self._accounted("feedback", work)

    async def topk_meta(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return _json(topk.model_metadata(self.model.topk, self.spec.name, self.spec.version))

    async def topk_ready(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        name = self.spec.name + topk.SUFFIX
        return _json({"name": name, "ready": self.ready}, 200 if self.ready else 503)

    async def predict_v1(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        t0 = time.perf_counter()
        stats = self.requests
        stats.inflight += 1
        rows = 0
        try:
            self._check_model(params)
            body = await self._body(request)
            req = parse_v1(body, self.spec)
            rows = req.n
            b = self.batcher
            if self._infer_server is not None and len(self._infer_server.connections) == 1 and b.idle_for(req):
                result = b.answer_now(req)  # as in infer
            else:
                result = await b.submit(req)
            resp = web.Response(body=v1_response(self.spec, result), headers=JSON_HEADERS)
        except ServingError as e:
            resp = _error(e.status, e.message)
        except Exception as e:
            log.exception("predict failed")
            resp = _error(500, f"internal error: {type(e).__name__}: {e}")
        stats.inflight -= 1
        stats.done("predict", resp.status, time.perf_counter() - t0, rows)
        return resp

    async def feedback_post(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        async def work(rows: list[int]) -> web.Response:
            self._check_model(params)
            body = await self._body(request)
            answer = self.feedback.add(body)
            rows[0] = answer["rows"]
            if self.capture is not None and isinstance(answer.get("id"), str):
                # labels join captured requests by id (and row); the body was valid: read it again
                self.capture.offer_labels(answer["id"], orjson.loads(body)["labels"])
            return _json(answer)

        return await self._accounted("feedback", work)

    # -- health and metadata ---------------------------------------------------------------------
    async def live(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return _json({"live": True})

    async def kserve_live(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """KServe V1 liveness (`GET /`), what kserve's client `is_server_live` reads."""
        return _json({"status": "alive"})

    async def v1_models(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """KServe V1 model list."""
        return _json({"models": [self.spec.name]})

    async def explain(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """KServe V1 `:explain`: this server has no explainer; say so (501), whatever the method."""
        try:
            self._check_model(params)
        except ServingError as e:
            return _error(e.status, e.message)
        return _error(501, f"model {self.spec.name!r} has no explainer: this server does not implement :explain "
                           "(use :predict, or /v2/models/{name}/infer)")

    async def server_ready(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        if self.ready:
            return _json({"ready": True})
        return _json({"ready": False, "error": "draining: shutting down" if self.draining else "not ready"}, 503)

    async def server_meta(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return _json(server_metadata(__version__))

    async def model_meta(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        try:
            self._check_model(params)
        except ServingError as e:
            return _error(e.status, e.message)
        return _json(model_metadata(self.spec))

    async def model_ready(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        try:
            self._check_model(params)
        except ServingError as e:
            return _error(e.status, e.message)
        return _json({"name": self.spec.name, "ready": self.ready}, 200 if self.ready else 503)

    async def stats(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        try:
            self._check_model(params)
        except ServingError as e:
            return _error(e.status, e.message)
        return _json(self.stats_doc(request.query.get("cursor")))

    async def triton_stats(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """Triton's model statistics (what tritonclient's get_inference_statistics and KServe's
        clients read at this path): success and failure counts and times of inference requests
        (V2 infer and V1 predict), and ONNX Runtime's share as compute_infer. The server does
        not time queueing, input or output conversion apart, nor cache: those are zero."""
        if params:
            try:
                self._check_model(params)
            except ServingError as e:
                return _error(e.status, e.message)
        r, b = self.requests, self.batcher

        def pair(count: int, ns: int) -> dict[str, int]:
            return {"count": count, "ns": ns}

        ok = [sum(r.ok[e][i] for e in ("infer", "predict")) for i in (0, 1)]
        failed = [sum(r.failed[e][i] for e in ("infer", "predict")) for i in (0, 1)]
        zero = pair(0, 0)
        return _json({"model_stats": [{
            "name": self.spec.name, "version": str(self.spec.version),
            "last_inference": r.last_ok_ms, "inference_count": r.ok_rows, "execution_count": b.runs,
            "inference_stats": {"success": pair(*ok), "fail": pair(*failed), "queue": zero,
                                "compute_input": zero, "compute_infer": pair(b.runs, b.run_ns),
                                "compute_output": zero, "cache_hit": zero, "cache_miss": zero},
            "response_stats": {}, "batch_stats": [], "memory_usage": [],
        }]})

    async def reference(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        """The training reference of the served model (model.json's `reference`): what the
        drift monitor compares the stats' counts with, bin for bin."""
        try:
            self._check_model(params)
        except ServingError as e:
            return _error(e.status, e.message)
        ref = self.model.manifest.reference
        q = request.query
        if q.get("dataset") or q.get("digest"):
            # another Dataset version as the reference (DriftMonitor spec.reference): its
            # profile from the store, on this model's features
            try:
                counting = {n: h._edges() for n, h in zip(self.monitor.numeric.features, self.monitor.numeric.hists)}
                # off the event loop: on an s3:// store the read may take its retries' worth of
                # seconds, and inference, probes and stats must not wait on it
                ref = await asyncio.to_thread(_reference_from_store,
                                              self.cfg.reference_store_uri or self.cfg.store_uri, self.model.manifest,
                                              q.get("dataset"), q.get("digest"), counting)
            except ValueError as e:
                return _error(404, str(e))
        if ref is None:
            return _error(404, f"model {self.spec.name} has no reference distribution in its model.json")
        return _json({"model": self.spec.name, "version": self.spec.version, "digest": self.model.digest,
                      "reference": packed_reference(ref)})

    async def metrics(self, request: web.BaseRequest, params: dict[str, str]) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def stats_doc(self, cursor: str | None = None) -> dict[str, Any]:
        now = time.time()
        mon = self.monitor
        mon.sync()
        return {
            "format": STATS_FORMAT, "model": self.spec.name, "version": self.spec.version,
            "digest": self.model.digest, "instance": self.instance, "startId": self.start_id,
            "startTime": _iso(self.start_time), "startTimeEpoch": self.start_time,
            "now": _iso(now), "nowEpoch": now,
            "requests": self.requests.by_code(), "rows": mon.rows,
            "features": mon.features_doc(), "prediction": mon.prediction.stats(),
            "drift": mon.drift_doc(self.start_id, cursor), "feedback": self._feedback_stats(),
            **({"capture": self.capture.stats()} if self.capture is not None else {}),
        }

    def _capture(self) -> Capture:
        """The capture, into a directory (PVC store) or the store's capture area (s3:// store).
        A store that cannot even be opened (bad URI, missing S3 client) fails the start: the
        pod's log says why, and the old version keeps serving."""
        m = self.model
        sink: ChunkSink | str = self.cfg.capture_dir
        if self.cfg.capture_store:
            from mlops_operator.store.store import open_store

            sink = open_store(self.cfg.capture_store).captures(self.cfg.capture_service)
        return Capture(sink, rate=self.cfg.capture_rate, instance=self.instance,
                       start_id=self.start_id, version=self.spec.version, target=m.manifest.target,
                       numeric=[f.name for f in m.num_features], categorical=[f.name for f in m.cat_features],
                       boolean={f.name for f in m.num_features if f.type == "boolean"},
                       classes=m.classes or None,
                       exclude={c.strip() for c in self.cfg.capture_exclude.split(",") if c.strip()},
                       max_rows=self.cfg.capture_max_rows, chunk_rows=self.cfg.capture_chunk_rows,
                       flush_seconds=self.cfg.capture_flush_seconds)

    def _feedback_stats(self) -> dict[str, Any]:
        doc = self.feedback.stats()
        if self.ranking_feedback is not None:
            doc.update(self.ranking_feedback.stats())
        return doc

    # -- the HTTP server ----------------------------------------------------------------------
    def routes(self, part: str = "all") -> list[tuple[str, str, Any]]:
        """Every route (`all`), those of the inference port (`inference`) or of the monitor port
        (`monitor`): with --monitor-port, what label pipelines write (feedback) and the operator
        reads (stats, the training reference) is served there only, apart from inference clients."""
        every = self._routes()
        if part == "all":
            return every
        on_monitor = (self.stats, self.reference, self.feedback_post, self.topk_feedback)
        monitor = [r for r in every if r[2] in on_monitor]
        if part == "monitor":
            return monitor + [("GET", "/v2/health/live", self.live)]
        return [r for r in every if r not in monitor]

    def _routes(self) -> list[tuple[str, str, Any]]:
        ranking: list[tuple[str, str, Any]] = []
        if self.model.topk is not None:  # first: literal paths the `{name}` routes would also match
            base = f"/v2/models/{self.spec.name}{topk.SUFFIX}"
            ranking = [("POST", base + "/infer", self.topk_infer),
                       ("POST", base + "/versions/{version}/infer", self.topk_infer),
                       ("GET", base, self.topk_meta), ("GET", base + "/ready", self.topk_ready),
                       ("POST", base + "/feedback", self.topk_feedback)]
        return ranking + [
            ("POST", "/v2/models/{name}/infer", self.infer),
            ("POST", "/v2/models/{name}/versions/{version}/infer", self.infer),
            ("POST", "/v1/models/{name}:predict", self.predict_v1),
            ("POST", "/v1/models/{name}:explain", self.explain),
            ("GET", "/v1/models/{name}:explain", self.explain),
            ("GET", "/", self.kserve_live),
            ("GET", "/v1/models", self.v1_models),
            ("GET", "/v2/health/live", self.live),
            ("GET", "/v2/health/ready", self.server_ready),
            ("GET", "/v2", self.server_meta),
            ("GET", "/v2/models/{name}", self.model_meta),
            ("GET", "/v2/models/{name}/versions/{version}", self.model_meta),
            ("GET", "/v2/models/{name}/ready", self.model_ready),
            ("GET", "/v2/models/{name}/versions/{version}/ready", self.model_ready),
            ("GET", "/v2/models/stats", self.triton_stats),
            ("GET", "/v2/models/{name}/stats", self.triton_stats),
            ("GET", "/v2/models/{name}/versions/{version}/stats", self.triton_stats),
            ("GET", "/mlops/v1/models/{name}/stats", self.stats),
            ("GET", "/v2/models/{name}/reference", self.reference),
            ("POST", "/v2/models/{name}/feedback", self.feedback_post),
            ("POST", "/v2/models/{name}/versions/{version}/feedback", self.feedback_post),
            ("GET", "/v1/models/{name}", self.model_ready),
            ("GET", "/metrics", self.metrics),
        ]

    def http_server(self, part: str = "all") -> web.Server:
        """aiohttp's low-level server with a small router of our own (the Application router
        and its middleware machinery cost about a tenth of the CPU of a small request).
        `part`: the routes it serves (see routes)."""
        router = Router(self.routes(part))
        max_body = self.max_body
        loop = self._loop = asyncio.get_running_loop()  # called from the coroutine that starts the server
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            try:
                handler, params = router.resolve(request.method, request.raw_path)
            except ServingError as e:
                return _error(e.status, e.message)
            resp = await handler(request, params)
            if resp.status == 408:
                # the body did not come: answer, then close the connection at once (aiohttp
                # would otherwise go on reading what is left of the body for up to 10 s)
                resp.force_close()
                await resp.prepare(request)
                await resp.write_eof()
                request.protocol.force_close()
            return resp

        def request_factory(message, payload, protocol, writer, task):  # the body limit applies to read()
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=max_body)

        # keepalive_timeout: aiohttp's timer runs from a connection's start and from each answer
        # until the next request head is complete, so it closes idle connections and stalled or
        # dripping heads alike (its own default, 3630 s, let a stalled head hold a connection
        # for an hour); the body has --read-timeout-seconds (_body)
        srv = web.Server(handle, request_factory=request_factory, access_log=None,
                         keepalive_timeout=self.cfg.idle_timeout_seconds)
        if part != "monitor":
            self._infer_server = srv
        return srv


class Router:
    """Exact segments and `{param}` segments (optionally with a literal suffix, `{name}:predict`)."""

    def __init__(self, routes: list[tuple[str, str, Any]]):
        self.table: dict[tuple[int, str | None], list[tuple[list[tuple[str | None, str]], dict[str, Any]]]] = {}
        for method, path, handler in routes:
            pat: list[tuple[str | None, str]] = []
            for seg in path.strip("/").split("/"):
                if seg.startswith("{"):
                    name, _, suffix = seg[1:].partition("}")
                    pat.append((name, suffix))
                else:
                    pat.append((None, seg))
            last = pat[-1][1] if pat[-1][0] is None else None
            entries = self.table.setdefault((len(pat), last), [])
            for p, methods in entries:
                if p == pat:
                    methods[method] = handler
                    break
            else:
                entries.append((pat, {method: handler}))

    def resolve(self, method: str, raw_path: str) -> tuple[Any, dict[str, str]]:
        path = raw_path.split("?", 1)[0]
        segs = path.strip("/").split("/")
        if "%" in path:
            segs = [urllib.parse.unquote(x) for x in segs]
        n = len(segs)
        allowed: list[str] = []
        for key in ((n, segs[-1]), (n, None)):
            for pat, methods in self.table.get(key, ()):
                params = {}
                for (name, lit), seg in zip(pat, segs):
                    if name is None:
                        if seg != lit:
                            break
                    elif lit:
                        if not seg.endswith(lit) or len(seg) == len(lit):
                            break
                        params[name] = seg[: -len(lit)]
                    elif seg:
                        params[name] = seg
                    else:
                        break
                else:
                    handler = methods.get(method)
                    if handler is not None:
                        return handler, params
                    allowed.extend(methods)
        if allowed:
            raise ServingError(405, f"method {method} is not allowed on {path}; use {', '.join(sorted(set(allowed)))}")
        raise ServingError(404, f"no route for {method} {path}")


def packed_reference(ref: Any) -> dict[str, Any]:
    """The reference as JSON with each numeric histogram packed, edges included
    (drift/histogram.pack: the DriftMonitor keeps it in its state ConfigMap, where a reference of
    1000 rows, 1000 edges per feature, would take 36 kB per feature as plain JSON, 16 kB packed)."""
    from mlops_operator.drift.histogram import Histogram, pack

    doc = ref.model_dump(by_alias=True, exclude_none=True, mode="json")
    for name, col in (doc.get("columns") or {}).items():
        if col.get("histogram") is not None:
            col["histogram"] = {"packed": pack({name: Histogram.from_json(col["histogram"])}, edges=True)}
    return doc


def _reference_from_store(store_uri: str, manifest: Any, dataset: str | None, digest: str | None,
                          counting: dict[str, Any] | None = None) -> Any:
    """The Reference of a Dataset version's profile.json, for the model's input features; a
    numeric feature's histogram projected onto the edges this server counts on (`counting`) when
    they differ (drift/histogram.project: approximate, marked `projected`)."""
    import json as _json_mod
    import re

    from mlops_operator.store.store import StoreError, open_store
    from mlops_operator.training.artifact import reference_of

    ref = manifest.reference
    dataset = dataset or (ref.dataset if ref else None)
    digest = digest or (ref.dataset_digest if ref else None)
    if not dataset or not digest or not re.fullmatch(r"[a-f0-9]{64}", digest):
        raise ValueError("a reference needs a dataset name and a 64-hex sha256 digest")
    try:  # ImportError: an image without the s3 client; StoreError: also a bad store configuration
        store = open_store(store_uri)
        profile = _json_mod.loads(store.local_path(store.uri("datasets", dataset, digest), "profile.json").read_text())
    except (StoreError, OSError, ValueError, ImportError) as e:
        raise ValueError(f"no profile of dataset {dataset}@{digest[:12]} in the store: {e}") from e
    feats = [{"name": f.name, "type": f.type} for f in manifest.inputs]
    ref = reference_of(profile, feats, None, manifest.target, dataset, digest)
    for name, col in ref.columns.items():
        edges = (counting or {}).get(name)
        if col.histogram is None or edges is None or list(col.histogram.edges) == edges.tolist():
            continue
        from mlops_operator.drift.histogram import Histogram, project

        h = project(Histogram.from_json(col.histogram.model_dump(by_alias=True)), edges)
        ref.columns[name] = col.model_copy(update={"histogram": col.histogram.model_validate(h.to_json(edges=True))})
    return ref
