"""Canary sizing and verdicts from the model server's Prometheus text."""

from __future__ import annotations

import math

from mlops_operator.rollout import canary

METRICS = """# TYPE mlops_serving_requests_total counter
mlops_serving_requests_total{model="m",version="2",endpoint="infer",code="200"} 90
mlops_serving_requests_total{model="m",version="2",endpoint="infer",code="422"} 10
mlops_serving_requests_total{model="m",version="2",endpoint="feedback",code="500"} 7
# TYPE mlops_serving_request_duration_seconds histogram
mlops_serving_request_duration_seconds_bucket{endpoint="infer",le="0.001"} 50
mlops_serving_request_duration_seconds_bucket{endpoint="infer",le="0.01"} 99
mlops_serving_request_duration_seconds_bucket{endpoint="infer",le="0.1"} 100
mlops_serving_request_duration_seconds_bucket{endpoint="infer",le="+Inf"} 100
mlops_serving_request_duration_seconds_count{endpoint="infer"} 100
mlops_serving_request_duration_seconds_sum{endpoint="infer"} 0.5
"""


def test_replica_share():
    assert canary.canary_replicas(50, 2) == 2
    assert canary.canary_replicas(25, 3) == 1
    assert canary.canary_replicas(1, 1) == 1  # never zero
    assert canary.canary_replicas(90, 1) == 9


def test_parse_counts_inference_only_and_reads_the_histogram():
    s = canary.parse(METRICS)
    assert (s.requests, s.errors) == (100, 10)  # the feedback endpoint's 500s are not inference
    assert s.quantile(0.5) == 0.001 and s.quantile(0.99) == 0.01 and s.quantile(1.0) == 0.1
    assert canary.ServerStats().quantile(0.99) is None
    both = canary.combine([s, s])
    assert both.requests == 200 and both.buckets[0.01] == 198


def test_verdicts():
    bad = canary.parse(METRICS)
    good = canary.ServerStats(100, 0, {0.01: 100, math.inf: 100})
    assert canary.verdict(bad, good, 0.05, None, 20)[0] == "fail"
    assert canary.verdict(bad, bad, 0.05, None, 20)[0] == "pass"  # no worse than the stable version
    assert canary.verdict(canary.ServerStats(5, 0), good, 0.05, None, 20)[0] == "wait"
    slow = canary.ServerStats(100, 0, {0.5: 100, math.inf: 100})
    v, why = canary.verdict(slow, good, 0.05, 100, 20)
    assert v == "fail" and "p99" in why
