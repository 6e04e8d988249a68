"""From cumulative counters scraped off several serving pods to the counts of one window.

Each serving process counts every feature value on the reference buckets since it started
(Prometheus-style cumulative counters) and announces a ``start_id`` that changes when the
process restarts. The DriftMonitor scrapes all ready pods every interval; the difference of
two successive scrapes is what arrived in between, summed over the pods.

Rules (each one "loses no data and invents none" as far as the scrapes allow):

* same pod, same start id, every counter >= before: delta = now - before;
* same pod, new start id (the process restarted): delta = the new counters themselves. They
  count everything since the restart, all of it after the previous scrape, and what the old
  process counted after the previous scrape is gone with it;
* same start id but a counter went down (a reset the start id did not show): for that
  feature, delta = the new counters (the same reasoning), never a negative count;
* a pod seen for the first time: delta = its counters (it started after the last scrape, or
  was not ready then; nothing of it was counted before);
* a pod gone since the last scrape: nothing (its last interval cannot be read anymore);
* bins that changed shape (another model version, other edges): treated as a reset.

A window longer than the scrape interval is the sum of successive deltas (:func:`add_counts`).
Reservoir samples are per window, not cumulative: :func:`merge_reservoirs` combines the pods'
reservoirs into one uniform sample of the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import CurrentData


@dataclass(frozen=True)
class PodCounters:
    """One scrape of one serving process.

    ``start_id`` identifies the process (e.g. its start time or a random id made at start):
    a new value means every counter began again from zero. ``features`` holds the cumulative
    counts per feature as :class:`.engine.CurrentData` (no sample). ``rows`` counts the rows
    (inference inputs) seen, nulls included.
    """

    start_id: str
    features: Mapping[str, CurrentData]
    rows: int = 0


@dataclass
class WindowDelta:
    """What arrived between two scrapes, over all pods, and how each pod was treated.

    The lists exist so the controller can say in an Event why a window is short (a pod gone)
    or why it trusted a drop in the counters (a restart or a reset).
    """

    features: dict[str, CurrentData]
    rows: int = 0
    new_pods: list[str] = field(default_factory=list)
    restarted_pods: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)  # "pod/feature" whose counters went down
    gone_pods: list[str] = field(default_factory=list)


def _minus(cur: CurrentData, prev: CurrentData | None) -> tuple[CurrentData, bool]:
    """(cur - prev, False), or (cur, True) when a counter went down (reset)."""
    if prev is None:
        return _strip(cur), False
    if cur.bin_counts is not None:
        c = np.asarray(cur.bin_counts, dtype=np.int64)
        p = None if prev.bin_counts is None else np.asarray(prev.bin_counts, dtype=np.int64)
        if p is None or p.shape != c.shape:
            return _strip(cur), True
        d = c - p
        nulls = int(cur.nulls) - int(prev.nulls)
        if (d < 0).any() or nulls < 0:
            return _strip(cur), True
        return CurrentData(bin_counts=d, nulls=nulls), False
    cc, pc = dict(cur.categories or {}), dict(prev.categories or {})
    dc = {k: int(cc.get(k, 0)) - int(pc.get(k, 0)) for k in cc.keys() | pc.keys()}
    other = int(cur.other_count) - int(prev.other_count)
    nulls = int(cur.nulls) - int(prev.nulls)
    if any(v < 0 for v in dc.values()) or other < 0 or nulls < 0 or prev.bin_counts is not None:
        return _strip(cur), True
    return CurrentData(categories={k: v for k, v in dc.items() if v}, other_count=other, nulls=nulls), False


def _strip(c: CurrentData) -> CurrentData:
    if c.bin_counts is not None:
        return CurrentData(bin_counts=np.asarray(c.bin_counts, dtype=np.int64).copy(), nulls=int(c.nulls))
    return CurrentData(categories=dict(c.categories or {}), other_count=int(c.other_count), nulls=int(c.nulls))


def _add(a: CurrentData | None, b: CurrentData) -> CurrentData:
    if a is None:
        return _strip(b)
    if b.bin_counts is not None or a.bin_counts is not None:
        if a.bin_counts is None or b.bin_counts is None or np.shape(a.bin_counts) != np.shape(b.bin_counts):
            raise ValueError("cannot add counts on different bins (another model version?)")
        return CurrentData(bin_counts=np.asarray(a.bin_counts, np.int64) + np.asarray(b.bin_counts, np.int64),
                           nulls=int(a.nulls) + int(b.nulls))
    cats = dict(a.categories or {})
    for k, v in (b.categories or {}).items():
        cats[k] = cats.get(k, 0) + int(v)
    return CurrentData(categories=cats, other_count=int(a.other_count) + int(b.other_count),
                       nulls=int(a.nulls) + int(b.nulls))


def window_delta(previous: Mapping[str, PodCounters] | None, current: Mapping[str, PodCounters]) -> WindowDelta:
    """Counts that arrived between two scrapes, summed over pods (rules in the module docstring).

    ``previous`` and ``current`` map a pod instance id (e.g. the pod's uid) to its scrape;
    ``previous`` None (the monitor's first scrape) makes everything counted so far the delta.
    """
    previous = previous or {}
    out = WindowDelta(features={})
    for pod, now in current.items():
        before = previous.get(pod)
        if before is None:
            out.new_pods.append(pod)
            base: Mapping[str, CurrentData] = {}
            rows = int(now.rows)
        elif before.start_id != now.start_id:
            out.restarted_pods.append(pod)
            base = {}
            rows = int(now.rows)
        else:
            base = before.features
            rows = int(now.rows) - int(before.rows)
            if rows < 0:
                rows = int(now.rows)
        out.rows += rows
        for name, counts in now.features.items():
            delta, was_reset = _minus(counts, base.get(name))
            if was_reset:
                out.reset.append(f"{pod}/{name}")
            out.features[name] = _add(out.features.get(name), delta)
    out.gone_pods = sorted(set(previous) - set(current))
    return out


def add_counts(window: Mapping[str, CurrentData], delta: Mapping[str, CurrentData]) -> dict[str, CurrentData]:
    """The sum of two sets of per-feature counts (a window is the sum of successive deltas)."""
    out = {k: _strip(v) for k, v in window.items()}
    for k, v in delta.items():
        out[k] = _add(out.get(k), v)
    return out


def merge_reservoirs(parts: Sequence[tuple[Any, int]], size: int, seed: int | None = 0) -> np.ndarray:
    """One uniform sample of at most ``size`` values from several pods' reservoir samples.

    ``parts``: (reservoir values, rows the reservoir was drawn from) per pod. Each pod gets a
    share of the sample drawn from a multivariate hypergeometric over the rows it saw, so a
    busy pod weighs as much as its traffic, not as much as its reservoir; a pod whose
    reservoir is smaller than its share gives all it has (the result is then shorter).
    """
    arrays = [np.asarray(v).ravel() for v, _ in parts]
    seen = np.array([max(int(n), len(a)) for a, (_, n) in zip(arrays, parts)], dtype=np.int64)
    if not arrays or seen.sum() == 0 or size <= 0:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    k = int(min(size, seen.sum()))
    alloc = rng.multivariate_hypergeometric(seen, k)
    picks = [a[rng.choice(len(a), size=min(int(n), len(a)), replace=False)] for a, n in zip(arrays, alloc) if len(a)]
    return np.concatenate(picks) if picks else np.empty(0)


__all__ = ["PodCounters", "WindowDelta", "add_counts", "merge_reservoirs", "window_delta"]
