"""Readings of the model servers' stats documents -> the counts of one evaluation window.

Each read asks a server for its counters since the monitor's cursor (``stats?cursor=...``;
:func:`stats_path`), so the monitor keeps of each pod only its start id, its cursor and its
feedback counters, as JSON in a ConfigMap with the window being filled: an operator restart
loses no window, and the state stays a few hundred bytes per pod however fine the histograms
are. Feature counts go through drift.window.window_delta (restarts, lost cursors, new and gone
pods handled there); feedback counters are cumulative and get the same treatment here as
before (a new startId or a counter going down: the new counters are the delta).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote

import numpy as np

from ..drift.engine import CurrentData
from ..drift.histogram import Histogram, Packed, pack, unpack
from ..drift.window import PodCursor, PodReading, add_counts, window_delta

FEEDBACK_KEYS = ("count", "correct", "sumAbsError", "sumSquaredError")
#: a recommender's feedback (serving/ranking_feedback.py)
RANKING_KEYS = ("rankCount", "hits", "ndcgSum")


def stats_path(model: str, previous: Mapping[str, Any] | None) -> str:
    """The path of a pod's stats document with the cursor the monitor holds for it (the pod's
    entry in the state: ``{"startId", "cursor", ...}``), or a new cursor when it holds none."""
    cursor = (previous or {}).get("cursor") or ""
    return f"mlops/v1/models/{model}/stats?cursor={quote(str(cursor), safe='.')}"


def current_to_json(c: CurrentData) -> dict[str, Any]:
    if c.hist is not None:
        return {"hist": c.hist.to_json()}
    if c.bin_counts is not None:
        return {"bins": [int(x) for x in c.bin_counts], "nulls": int(c.nulls)}
    return {"categories": {k: int(v) for k, v in (c.categories or {}).items()}, "other": int(c.other_count),
            "nulls": int(c.nulls)}


def current_from_json(d: Mapping[str, Any]) -> CurrentData:
    if "hist" in d:
        h = Histogram.from_json(d["hist"])
        return CurrentData(hist=h, nulls=h.nulls)
    if "bins" in d:
        return CurrentData(bin_counts=np.asarray(d["bins"], dtype=np.int64), nulls=int(d.get("nulls", 0)))
    return CurrentData(categories=dict(d.get("categories") or {}), other_count=int(d.get("other", 0)),
                       nulls=int(d.get("nulls", 0)))


def pod_reading(doc: Mapping[str, Any]) -> PodReading | None:
    """The reading in a stats document, or None when the server has no drift section (older).
    Raises ValueError on a malformed one."""
    d = doc.get("drift")
    if not isinstance(d, Mapping):
        return None
    feats = {name: CurrentData.from_stats(f) for name, f in (d.get("features") or {}).items()}
    packed = Packed.decode(d["histograms"]) if d.get("histograms") is not None else None
    return PodReading(start_id=str(doc.get("startId")), features=feats, rows=int(d.get("rows") or 0),
                      cursor=d.get("cursor"), since=d.get("since"), packed=packed)


def pod_readings(docs: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, PodReading], dict[str, str]]:
    """The readings of many stats documents, and why some could not be read (instance -> reason:
    an older server without a drift section, or a malformed one)."""
    out: dict[str, PodReading] = {}
    bad: dict[str, str] = {}
    for inst, doc in docs.items():
        try:
            r = pod_reading(doc)
        except (ValueError, TypeError, KeyError) as e:
            bad[inst] = f"malformed drift counters ({str(e)[:80]})"
            continue
        if r is None:
            bad[inst] = "no drift counters (an older server)"
        else:
            out[inst] = r
    return out, bad


def feedback_counters(fb: Mapping[str, Any] | None) -> dict[str, float]:
    """A stats document's feedback section as flat cumulative counters: the sums
    (:data:`FEEDBACK_KEYS`, always present), a classifier's confusion matrix
    (``confusion:<true>:<predicted>``, class indices) and its positive-class score histogram
    per true class (``scores:<class index>:<bin>``), and a recommender's ranking counts
    (:data:`RANKING_KEYS`). Flat, so that a window's counters are differences and sums of
    numbers whatever the model (decisions.window_accuracy reads them)."""
    fb = fb or {}
    out = {k: float(fb.get(k) or 0) for k in FEEDBACK_KEYS}
    out.update({k: float(fb.get(k) or 0) for k in RANKING_KEYS if k in fb})
    conf = fb.get("confusion")
    if isinstance(conf, list):
        for i, row in enumerate(conf):
            for j, v in enumerate(row if isinstance(row, list) else []):
                out[f"confusion:{i}:{j}"] = float(v or 0)
    scores, classes = fb.get("scoreCountsByLabel"), fb.get("classes")
    if isinstance(scores, Mapping) and isinstance(classes, list):
        for i, c in enumerate(classes):
            for b, v in enumerate(scores.get(str(c)) or []):
                out[f"scores:{i}:{b}"] = float(v or 0)
    return out


def feedback_delta(prev: Mapping[str, Any] | None, cur_doc: Mapping[str, Any], same_process: bool) -> dict[str, float]:
    cur = feedback_counters(cur_doc.get("feedback"))
    if not same_process or prev is None or any(cur[k] < float(prev.get(k, 0)) for k in cur):
        return cur  # new process or a reset: everything it counted is new
    return {k: cur[k] - float(prev.get(k, 0)) for k in cur}


@dataclass
class Window:
    """The window being filled: counts per feature, rows, feedback sums, when it started."""

    start: float
    rows: int = 0
    features: dict[str, CurrentData] = field(default_factory=dict)
    feedback: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in FEEDBACK_KEYS})

    def to_json(self) -> dict[str, Any]:
        """JSON for the state ConfigMap: the histograms packed (drift.histogram.pack: a few kB
        per feature even with a 1000-edge reference), the other counts as they are."""
        hists = {k: v.hist for k, v in self.features.items() if v.hist is not None}
        return {"start": self.start, "rows": self.rows, "feedback": self.feedback,
                "histograms": pack(hists),
                "features": {k: current_to_json(v) for k, v in self.features.items() if v.hist is None}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Window":
        features = {k: current_from_json(v) for k, v in (d.get("features") or {}).items()}
        if d.get("histograms"):
            features.update({k: CurrentData(hist=h.copy(), nulls=h.nulls) for k, h in unpack(d["histograms"]).items()})
        fb = {k: 0.0 for k in FEEDBACK_KEYS}
        fb.update({str(k): float(v) for k, v in (d.get("feedback") or {}).items()})
        return cls(start=float(d["start"]), rows=int(d.get("rows", 0)), features=features, feedback=fb)


@dataclass
class ScrapeResult:
    window: Window
    pods: dict[str, Any]  # instance -> what is kept of its last reading (JSON), the next call's `previous`
    notes: list[str]


def accumulate(window: Window, previous: Mapping[str, Any], docs: Mapping[str, Mapping[str, Any]]) -> ScrapeResult:
    """Add what arrived since the previous readings (`docs`: instance -> stats document)."""
    prev_cursors = {k: PodCursor(str(v.get("startId")), v.get("cursor")) for k, v in previous.items()}
    readings, unreadable = pod_readings(docs)
    notes = [f"{inst}: {why}" for inst, why in unreadable.items()]
    delta = window_delta(prev_cursors, readings)
    features = dict(window.features)
    reset = []
    for name, counts in delta.features.items():
        try:
            features.update(add_counts({name: features[name]} if name in features else {}, {name: counts}))
        except ValueError:  # counted on other buckets (the window predates a change): start the feature anew
            features[name] = counts
            reset.append(name)
    fb = dict(window.feedback)
    for inst, doc in docs.items():
        before = previous.get(inst)
        same = before is not None and before.get("startId") == str(doc.get("startId"))
        d = feedback_delta(before.get("feedback") if before else None, doc, same)
        for k, v in d.items():
            fb[k] = fb.get(k, 0.0) + v
    if delta.restarted_pods:
        notes.append(f"restarted: {', '.join(delta.restarted_pods)}")
    if delta.gone_pods:
        notes.append(f"gone: {', '.join(delta.gone_pods)}")
    if delta.lost_pods:
        notes.append(f"not counted this time (cursor lost): {', '.join(delta.lost_pods)}")
    if reset:
        notes.append(f"counted anew (other buckets than the window's): {', '.join(reset)}")
    pods = {}
    for inst, doc in docs.items():
        c = delta.cursors.get(inst)
        pods[inst] = {"startId": str(doc.get("startId")), "cursor": c.cursor if c else None,
                      "feedback": feedback_counters(doc.get("feedback"))}
    return ScrapeResult(Window(window.start, window.rows + delta.rows, features, fb), pods, notes)
