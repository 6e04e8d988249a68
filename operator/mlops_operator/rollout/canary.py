"""Canary analysis and its state machine: how many canary pods give a traffic share, whether
the canary's answers (read from its Prometheus metrics) are good enough to go on, and what to
do next at each look (`plan`, then `judge` once metrics are read).

The Service spreads connections over ready pods, so a share of traffic is a share of pods:
`k` canary pods next to `n` stable ones get about k / (n + k) of the requests.

Counts are per step: a step's verdict uses only the requests answered since the step began.
The per-pod counters at that moment are kept in the canary's status (`baseline`), so a step
needs `minRequests` of its own, and a pod whose counters restarted counts from zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from prometheus_client.parser import text_string_to_metric_families

from ..api.conditions import epoch, iso

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

    def since(self, base: "ServerStats | None") -> "ServerStats":
        """What was counted after `base` (the same pod earlier). Counters that went down mean
        the process restarted: then everything counted now is new."""
        if base is None or self.requests < base.requests or self.errors < base.errors:
            return self
        return ServerStats(self.requests - base.requests, self.errors - base.errors,
                           {le: max(0.0, n - base.buckets.get(le, 0.0)) for le, n in self.buckets.items()})

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "buckets": {repr(le) if le != math.inf else "+Inf": n for le, n in self.buckets.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ServerStats":
        return cls(float(d.get("requests", 0)), float(d.get("errors", 0)),
                   {float(le): float(n) for le, n in (d.get("buckets") or {}).items()})

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


# ------------------------------------------------------------------------------ the state machine

PerPod = dict[str, ServerStats]


def since(current: PerPod, baseline: dict[str, Any] | None) -> ServerStats:
    """The requests all pods answered since the step's baseline (per pod, wire form)."""
    base = {pod: ServerStats.from_json(d) for pod, d in (baseline or {}).items()}
    return combine(stats.since(base.get(pod)) for pod, stats in current.items())


def baseline_of(current: PerPod) -> dict[str, Any]:
    return {pod: stats.to_json() for pod, stats in current.items()}


@dataclass(frozen=True)
class Options:
    """The canary's settings (InferenceService spec.rollout.canary), as the machine reads them."""

    steps: tuple[int, ...] = (25, 50)
    pause_seconds: float = 30
    max_error_rate: float = 0.01
    max_latency_p99_ms: float | None = None
    min_requests: int = 20
    ready_timeout_seconds: float = 120


Action = Literal["wait", "measure", "rollback", "advance", "promote"]


@dataclass
class Step:
    """What the controller does after one look: `wait` (look again after `delay`), `measure`
    (read both tracks' metrics and call `judge`), `rollback`, `advance` (to the next share),
    `promote` (every step passed). `state` is the canary's new status."""

    action: Action
    state: dict[str, Any]
    message: str
    delay: float = 0.0


def start(version: str, now: float) -> dict[str, Any]:
    return {"version": version, "step": 0, "startedAt": iso(now), "stepStartedAt": iso(now), "baseline": {}}


def plan(c: dict[str, Any], opts: Options, now: float, available: int, wanted: int) -> Step:
    """Before any metric is read: are the step's canary pods ready, and has the step been
    observed for `pause_seconds` since they were?"""
    c = dict(c)
    c["replicas"], c["share"] = wanted, opts.steps[c["step"]]
    if available < wanted:
        c.pop("readyAt", None)
        if now - (epoch(c["stepStartedAt"]) or now) > opts.ready_timeout_seconds:
            return Step("rollback", c, f"canary pods not ready within {opts.ready_timeout_seconds:g}s")
        c["message"] = f"waiting for {wanted} canary pod(s) to be ready"
        return Step("wait", c, c["message"], 2.0)
    c.setdefault("readyAt", iso(now))
    waited = now - max(epoch(c["readyAt"]) or now, epoch(c["stepStartedAt"]) or now)
    if waited < opts.pause_seconds:
        c["message"] = f"observing step {c['step'] + 1}/{len(opts.steps)} ({opts.steps[c['step']]}%)"
        return Step("wait", c, c["message"], max(1.0, opts.pause_seconds - waited))
    return Step("measure", c, "")


def judge(c: dict[str, Any], opts: Options, now: float, canary_pods: PerPod, stable_pods: PerPod) -> Step:
    """The step's verdict from both tracks' counters since the step began."""
    c = dict(c)
    base = c.get("baseline") or {}
    result, why = verdict(since(canary_pods, base.get("canary")), since(stable_pods, base.get("stable")),
                          opts.max_error_rate, opts.max_latency_p99_ms, opts.min_requests)
    c["verdict"] = why
    if result == "fail":
        return Step("rollback", c, why)
    if result == "wait":
        c["message"] = why
        return Step("wait", c, why, 5.0)
    if c["step"] + 1 < len(opts.steps):
        c.update(step=c["step"] + 1, stepStartedAt=iso(now),
                 baseline={"canary": baseline_of(canary_pods), "stable": baseline_of(stable_pods)})
        c.pop("readyAt", None)
        return Step("advance", c, f"{why}; now {opts.steps[c['step']]}%", 1.0)
    return Step("promote", c, why, 1.0)
