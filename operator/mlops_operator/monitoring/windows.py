"""Scrapes of the model servers' stats documents -> the counts of one evaluation window.

The servers count cumulatively since they started (serving/app.py "Stats document"); the
monitor keeps the previous scrape of every pod and the window being filled, as JSON in a
ConfigMap, so an operator restart loses no window. Feature counts go through
drift.window.window_delta (restarts and resets handled there); feedback counters get the same
treatment here (a new startId or a counter going down: the new counters are the delta).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..drift.engine import CurrentData
from ..drift.window import PodCounters, add_counts, window_delta

FEEDBACK_KEYS = ("count", "correct", "sumAbsError", "sumSquaredError")


def current_to_json(c: CurrentData) -> dict[str, Any]:
    if c.bin_counts is not None:
        return {"bins": [int(x) for x in c.bin_counts], "nulls": int(c.nulls)}
    return {"categories": {k: int(v) for k, v in (c.categories or {}).items()}, "other": int(c.other_count),
            "nulls": int(c.nulls)}


def current_from_json(d: Mapping[str, Any]) -> CurrentData:
    if "bins" in d:
        return CurrentData(bin_counts=np.asarray(d["bins"], dtype=np.int64), nulls=int(d.get("nulls", 0)))
    return CurrentData(categories=dict(d.get("categories") or {}), other_count=int(d.get("other", 0)),
                       nulls=int(d.get("nulls", 0)))


def pod_counters(doc: Mapping[str, Any]) -> PodCounters:
    feats = {name: CurrentData.from_stats(f) for name, f in (doc.get("features") or {}).items()}
    return PodCounters(start_id=str(doc.get("startId")), features=feats, rows=int(doc.get("rows") or 0))


def _pod_json(p: PodCounters, feedback: Mapping[str, Any]) -> dict[str, Any]:
    return {"startId": p.start_id, "rows": p.rows, "features": {k: current_to_json(v) for k, v in p.features.items()},
            "feedback": {k: float(feedback.get(k) or 0) for k in FEEDBACK_KEYS}}


def _pod_from_json(d: Mapping[str, Any]) -> PodCounters:
    return PodCounters(start_id=d["startId"], rows=int(d.get("rows", 0)),
                       features={k: current_from_json(v) for k, v in (d.get("features") or {}).items()})


def feedback_delta(prev: Mapping[str, Any] | None, cur_doc: Mapping[str, Any], same_process: bool) -> dict[str, float]:
    cur = {k: float((cur_doc.get("feedback") or {}).get(k) or 0) for k in FEEDBACK_KEYS}
    if not same_process or prev is None or any(cur[k] < float(prev.get(k, 0)) for k in FEEDBACK_KEYS):
        return cur  # new process or a reset: everything it counted is new
    return {k: cur[k] - float(prev.get(k, 0)) for k in FEEDBACK_KEYS}


@dataclass
class Window:
    """The window being filled: counts per feature, rows, feedback sums, when it started."""

    start: float
    rows: int = 0
    features: dict[str, CurrentData] = field(default_factory=dict)
    feedback: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in FEEDBACK_KEYS})

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "rows": self.rows, "feedback": self.feedback,
                "features": {k: current_to_json(v) for k, v in self.features.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Window":
        return cls(start=float(d["start"]), rows=int(d.get("rows", 0)),
                   features={k: current_from_json(v) for k, v in (d.get("features") or {}).items()},
                   feedback={k: float((d.get("feedback") or {}).get(k, 0)) for k in FEEDBACK_KEYS})


@dataclass
class ScrapeResult:
    window: Window
    pods: dict[str, Any]  # instance -> last scrape (JSON), the next call's `previous`
    notes: list[str]


def accumulate(window: Window, previous: Mapping[str, Any], docs: Mapping[str, Mapping[str, Any]]) -> ScrapeResult:
    """Add what arrived since the previous scrape (`docs`: instance -> stats document)."""
    prev_pods = {k: _pod_from_json(v) for k, v in previous.items()}
    cur_pods = {k: pod_counters(d) for k, d in docs.items()}
    delta = window_delta(prev_pods, cur_pods)
    features = add_counts(window.features, delta.features)
    fb = dict(window.feedback)
    for inst, doc in docs.items():
        before = previous.get(inst)
        same = before is not None and before.get("startId") == str(doc.get("startId"))
        d = feedback_delta(before.get("feedback") if before else None, doc, same)
        for k in FEEDBACK_KEYS:
            fb[k] += d[k]
    notes = []
    if delta.restarted_pods:
        notes.append(f"restarted: {', '.join(delta.restarted_pods)}")
    if delta.gone_pods:
        notes.append(f"gone: {', '.join(delta.gone_pods)}")
    pods = {inst: _pod_json(cur_pods[inst], docs[inst].get("feedback") or {}) for inst in docs}
    return ScrapeResult(Window(window.start, window.rows + delta.rows, features, fb), pods, notes)
