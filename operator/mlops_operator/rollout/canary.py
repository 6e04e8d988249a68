"""Canary analysis: how many canary pods give a traffic share, and whether the canary's
answers (read from its Prometheus metrics) are good enough to go on.

The Service spreads connections over ready pods, so a share of traffic is a share of pods:
`k` canary pods next to `n` stable ones get about k / (n + k) of the requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "mlops_serving_requests"
LATENCY = "mlops_serving_request_duration_seconds"


def canary_replicas(step_percent: int, stable: int) -> int:
    """Canary pods for a traffic share of `step_percent` next to `stable` stable pods (at least 1)."""
    p = min(max(step_percent, 1), 99) / 100.0
    return max(1, round(p * max(stable, 1) / (1.0 - p)))


@dataclass
class ServerStats:
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # cumulative latency histogram (le -> count)

    def add(self, other: "ServerStats") -> "ServerStats":
        b = dict(self.buckets)
        for le, n in other.buckets.items():
            b[le] = b.get(le, 0.0) + n
        return ServerStats(self.requests + other.requests, self.errors + other.errors, b)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (as Prometheus' histogram_quantile,
        without interpolation)."""
        if not self.buckets:
            return None
        total = max(self.buckets.values())
        if not total:
            return None
        for le in sorted(self.buckets):
            if self.buckets[le] >= q * total:
                return le
        return math.inf


def parse(text: str) -> ServerStats:
    """Inference requests, failed ones (any non-2xx) and the latency histogram from /metrics."""
    out = ServerStats()
    for fam in text_string_to_metric_families(text):
        if fam.name in (REQUESTS, REQUESTS + "_total"):  # the parser names counter families either way
            for s in fam.samples:
                if s.name.endswith("_total") and _is_inference(s.labels):
                    out.requests += s.value
                    if not str(s.labels.get("code", "200")).startswith("2"):
                        out.errors += s.value
        elif fam.name == LATENCY:
            for s in fam.samples:
                if s.name.endswith("_bucket") and _is_inference(s.labels):
                    le = float(s.labels["le"])
                    out.buckets[le] = out.buckets.get(le, 0.0) + s.value
    return out


def _is_inference(labels: dict[str, str]) -> bool:
    ep = labels.get("endpoint", "infer")
    return any(k in ep for k in ("infer", "predict"))


def combine(stats: Iterable[ServerStats]) -> ServerStats:
    total = ServerStats()
    for s in stats:
        total = total.add(s)
    return total


def verdict(canary: ServerStats, stable: ServerStats, max_error_rate: float, max_latency_p99_ms: float | None,
            min_requests: int) -> tuple[str, str]:
    """('pass' | 'fail' | 'wait', why)."""
    if canary.requests < min_requests:
        return "wait", f"the canary answered {int(canary.requests)} of the {min_requests} requests needed for a verdict"
    excess = canary.error_rate - stable.error_rate
    if excess > max_error_rate:
        return "fail", (f"canary error rate {canary.error_rate:.1%} ({int(canary.errors)}/{int(canary.requests)}) "
                        f"exceeds the stable version's {stable.error_rate:.1%} by more than {max_error_rate:.1%}")
    p99 = canary.quantile(0.99)
    if max_latency_p99_ms is not None and p99 is not None and p99 * 1000 > max_latency_p99_ms:
        return "fail", f"canary p99 latency {p99 * 1000:.0f} ms exceeds {max_latency_p99_ms:g} ms"
    return "pass", (f"canary error rate {canary.error_rate:.1%} over {int(canary.requests)} requests"
                    + (f", p99 <= {p99 * 1000:.0f} ms" if p99 not in (None, math.inf) else ""))
