"""Request accounting and the Prometheus exposition (`GET /metrics`).

Counts live in plain Python lists and numpy arrays updated on the hot path (an increment and a
bisect per request, a few numpy calls per model run); a custom collector turns them into
metric families only when Prometheus scrapes, on a registry of this app alone.

Metrics (all with labels model, version):

    mlops_serving_requests_total{endpoint, code, protocol} requests answered, by HTTP status
    mlops_serving_request_duration_seconds{endpoint, protocol}  histogram, handler time
    mlops_serving_request_rows{endpoint, protocol}         histogram, rows per request

`protocol` is `rest` or `grpc`. A gRPC request is counted under the endpoint its REST twin has
(ModelInfer: `infer`) with the HTTP status REST answers for the same outcome (a wrong shape is
422 whichever way it came; grpc_service.py maps statuses to gRPC codes), so the canary's error
rate, the alerts and the dashboard see both protocols without a second set of rules.
    mlops_serving_rows_total                               rows predicted
    mlops_serving_model_runs_total                         ONNX Runtime runs (batched)
    mlops_serving_inflight_requests                        gauge
    mlops_serving_capture_rows_total{outcome}              payload capture: written, dropped, failed
    mlops_serving_ready                                    gauge, 1 when ready
    mlops_serving_start_time_seconds{start_id, instance}   gauge: a new start_id = counters reset
    mlops_serving_feature_values_total{feature, bin, upper}
        numeric: bin = index "0".."k", upper = the bin's exclusive upper edge ("+Inf" last);
        boolean/categorical: bin = the category, upper = ""; bin "__other__" for categories
        not in the reference, "__null__" for nulls
    mlops_serving_predictions_total{bin, upper}            the same scheme for the prediction
    mlops_serving_feedback_rows_total, mlops_serving_feedback_correct_total,
    mlops_serving_feedback_confusion_total{label, predicted},
    mlops_serving_feedback_abs_error_sum, mlops_serving_feedback_squared_error_sum
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


class Histogram:
    """A fixed-bucket histogram: one bisect and two adds per observation."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1  # le semantics: v <= bound
        self.sum += v
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for b, c in zip(self.bounds, self.counts):
            acc += c
            out.append((_fmt(b), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out


class RequestStats:
    ENDPOINTS = ("infer", "predict", "feedback", "topk")
    PROTOCOLS = ("rest", "grpc")

    def __init__(self) -> None:
        #: (endpoint, HTTP status) -> requests, both protocols together (the stats document)
        self.codes: dict[tuple[str, int], int] = {}
        #: (endpoint, HTTP status, protocol) -> requests (Prometheus)
        self.by_protocol: dict[tuple[str, int, str], int] = {}
        self.latency = {(e, p): Histogram(LATENCY_BUCKETS) for e in self.ENDPOINTS for p in self.PROTOCOLS}
        self.rows = {(e, p): Histogram(ROW_BUCKETS) for e in self.ENDPOINTS for p in self.PROTOCOLS}
        self.inflight = 0
        #: per endpoint: [requests, nanoseconds] answered 2xx, and the others (Triton's
        #: inference_stats success / fail), and the epoch ms of the last 2xx inference
        self.ok = {e: [0, 0] for e in self.ENDPOINTS}
        self.failed = {e: [0, 0] for e in self.ENDPOINTS}
        self.ok_rows = 0
        self.last_ok_ms = 0

    def done(self, endpoint: str, code: int, seconds: float, rows: int, protocol: str = "rest") -> None:
        codes = self.codes
        key = (endpoint, code)
        codes[key] = codes.get(key, 0) + 1
        split = self.by_protocol
        pkey = (endpoint, code, protocol)
        split[pkey] = split.get(pkey, 0) + 1
        self.latency[endpoint, protocol].observe(seconds)
        acc = self.ok[endpoint] if 200 <= code < 300 else self.failed[endpoint]
        acc[0] += 1
        acc[1] += int(seconds * 1e9)
        if code < 300 and endpoint != "feedback":
            self.ok_rows += rows
            self.last_ok_ms = int(time.time() * 1000)
        if rows:
            self.rows[endpoint, protocol].observe(rows)

    def by_code(self) -> dict[str, dict[str, int]]:
        """endpoint -> HTTP status -> requests, both protocols together (the stats document)."""
        out: dict[str, dict[str, int]] = {}
        for (e, c), n in sorted(self.codes.items()):
            out.setdefault(e, {})[str(c)] = n
        return out


def _fmt(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v))


class ServingCollector(Collector):
    def __init__(self, server: Any):
        self.server = server  # app.ModelServer: reads its counters at scrape time

    def collect(self):  # noqa: C901 - a flat list of families
        s = self.server
        s.monitor.sync()
        base = [s.spec.name, s.spec.version]
        bl = ["model", "version"]

        fam: Any = CounterMetricFamily("mlops_serving_requests", "Requests answered, by endpoint, HTTP status "
                                       "(for gRPC: the status REST answers for the same outcome) and protocol.",
                                       labels=bl + ["endpoint", "code", "protocol"])  # counters and histograms below
        for (e, c, p), n in sorted(s.requests.by_protocol.items()):
            fam.add_metric(base + [e, str(c), p], n)
        yield fam

        fam = HistogramMetricFamily("mlops_serving_request_duration_seconds", "Time in the request handler.",
                                    labels=bl + ["endpoint", "protocol"])
        for (e, p), h in s.requests.latency.items():
            if h.count:
                fam.add_metric(base + [e, p], h.buckets(), h.sum)
        yield fam

        fam = HistogramMetricFamily("mlops_serving_request_rows", "Rows per request.",
                                    labels=bl + ["endpoint", "protocol"])
        for (e, p), h in s.requests.rows.items():
            if h.count:
                fam.add_metric(base + [e, p], h.buckets(), h.sum)
        yield fam

        mon = s.monitor
        fam = CounterMetricFamily("mlops_serving_rows", "Rows predicted.", labels=bl)
        fam.add_metric(base, mon.rows)
        yield fam
        fam = CounterMetricFamily("mlops_serving_model_runs", "ONNX Runtime runs (each answers one or more "
                                  "requests).", labels=bl)
        fam.add_metric(base, s.batcher.runs)
        yield fam
        cap = getattr(s, "capture", None)
        if cap is not None:
            fam = CounterMetricFamily("mlops_serving_capture_rows", "Rows of payload capture, by outcome: written "
                                      "to the store, dropped (buffer full), failed (the store refused).",
                                      labels=bl + ["outcome"])
            for outcome, n in (("written", cap.written), ("dropped", cap.dropped), ("failed", cap.failed)):
                fam.add_metric(base + [outcome], n)
            yield fam
        g = GaugeMetricFamily("mlops_serving_inflight_requests", "Requests being handled.", labels=bl)
        g.add_metric(base, s.requests.inflight)
        yield g
        g = GaugeMetricFamily("mlops_serving_ready", "1 when the server takes traffic.", labels=bl)
        g.add_metric(base, 1.0 if s.ready else 0.0)
        yield g
        g = GaugeMetricFamily("mlops_serving_start_time_seconds", "Process start (a new start_id: counters reset).",
                              labels=bl + ["start_id", "instance"])
        g.add_metric(base + [s.start_id, s.instance], s.start_time)
        yield g

        fam = CounterMetricFamily("mlops_serving_feature_values", "Feature values by reference bin.",
                                  labels=bl + ["feature", "bin", "upper"])
        for name, doc in mon.features_doc().items():
            _bins(fam, base + [name], doc)
        yield fam

        fam = CounterMetricFamily("mlops_serving_predictions", "Predictions by bin (score, class or value).",
                                  labels=bl + ["bin", "upper"])
        p = mon.prediction.stats()
        if p["type"] == "class":
            for c, n in zip(p["classes"], p["counts"]):
                fam.add_metric(base + [c, ""], n)
        else:
            _numeric_bins(fam, base, p["binEdges"], p["counts"])
        yield fam

        fb = s.feedback
        fam = CounterMetricFamily("mlops_serving_feedback_rows", "Rows of ground truth received.", labels=bl)
        fam.add_metric(base, fb.count)
        yield fam
        if fb.classifier:
            fam = CounterMetricFamily("mlops_serving_feedback_correct", "Feedback rows predicted right.", labels=bl)
            fam.add_metric(base, fb.correct)
            yield fam
            fam = CounterMetricFamily("mlops_serving_feedback_confusion", "Feedback rows by true and predicted "
                                      "class.", labels=bl + ["label", "predicted"])
            for i, t in enumerate(fb.classes):
                for j, pr in enumerate(fb.classes):
                    fam.add_metric(base + [t, pr], int(fb.confusion[i, j]))
            yield fam
        else:
            g = GaugeMetricFamily("mlops_serving_feedback_abs_error_sum", "Sum of |prediction - label|.", labels=bl)
            g.add_metric(base, fb.sum_abs)
            yield g
            g = GaugeMetricFamily("mlops_serving_feedback_squared_error_sum", "Sum of (prediction - label)^2.",
                                  labels=bl)
            g.add_metric(base, fb.sum_sq)
            yield g


def _numeric_bins(fam: CounterMetricFamily, labels: list[str], edges: list[float], counts: list[int]) -> None:
    uppers = [_fmt(e) for e in edges] + ["+Inf"]
    for i, (u, n) in enumerate(zip(uppers, counts)):
        fam.add_metric(labels + [str(i), u], n)


def _bins(fam: CounterMetricFamily, labels: list[str], doc: dict[str, Any]) -> None:
    if "binEdges" in doc:
        _numeric_bins(fam, labels, doc["binEdges"], doc["counts"])
    else:
        for c, n in zip(doc["categories"], doc["counts"]):
            fam.add_metric(labels + [c, ""], n)
        fam.add_metric(labels + ["__other__", ""], doc.get("other", 0))
    fam.add_metric(labels + ["__null__", ""], doc["nulls"])


def registry(server: Any) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServingCollector(server))
    return reg
