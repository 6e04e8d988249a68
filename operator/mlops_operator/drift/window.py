"""From the counters of several serving pods to the counts of one window.

Each serving process counts every feature value on the reference's buckets since it started
and announces a ``start_id`` that changes when the process restarts. The DriftMonitor reads
all ready pods every interval through a *cursor* (serving/monitor.py): a pod answers what it
counted since the cursor the monitor gave it last time, computed in the pod, exactly; or,
when the cursor belongs to another process or is no longer kept, everything since the process
started, marked ``since`` None. The monitor keeps only each pod's last cursor, not a copy of
its counters, so its state does not grow with the histograms.

Rules (each one "loses no data and invents none" as far as the readings allow):

* same pod, same start id, the reading's ``since`` is the cursor the monitor holds: the
  reading is what arrived since the last one counted; added;
* same pod, new start id, ``since`` None (the process restarted): the reading counts
  everything since the restart, all of it after the last reading counted; added. What the old
  process counted after that reading is gone with it;
* a pod seen for the first time, ``since`` None: everything it counted so far; added (it
  started after the last reading, or was not ready then: nothing of it was counted before);
* anything else (the same process answered from its start, or from a cursor the monitor does
  not hold: it lost the monitor's cursor, or the monitor lost its state): which part was
  counted before cannot be known, so nothing is added ("lost"); the reading's cursor is kept,
  so the next interval counts again. Never a double count;
* a pod gone since the last reading: nothing (its last interval cannot be read anymore).

A window longer than the read interval is the sum of successive deltas (:func:`add_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .engine import CurrentData
from .histogram import Packed


@dataclass(frozen=True)
class PodReading:
    """One read of one serving process's drift counters (the stats document's ``drift`` section).

    ``features``: the counts per feature since ``since`` (a cursor the monitor gave), or since
    the process started when ``since`` is None; ``rows``: inference rows in the same span, nulls
    included; ``cursor``: the cursor to give next time; ``packed``: histograms of more features
    as a pod sends them (drift.histogram.pack), added over pods as whole arrays.
    """

    start_id: str
    features: Mapping[str, CurrentData]
    rows: int = 0
    cursor: str | None = None
    since: str | None = None
    packed: Packed | None = None  # more features' histograms, as the pod sent them (summed in bulk)

    def all_features(self) -> dict[str, CurrentData]:
        """``features`` and the packed histograms together, per feature."""
        out = dict(self.features)
        if self.packed is not None:
            out.update({n: CurrentData(hist=h, nulls=h.nulls) for n, h in self.packed.histograms().items()})
        return out


@dataclass(frozen=True)
class PodCursor:
    """What the monitor keeps of a pod between readings."""

    start_id: str
    cursor: str | None = None


@dataclass
class WindowDelta:
    """What arrived since the last readings, over all pods, and how each pod was treated.

    The lists exist so the controller can say in an Event why a window is short (a pod gone,
    a reading lost) or why it trusted a drop in the counters (a restart).
    """

    features: dict[str, CurrentData]
    rows: int = 0
    cursors: dict[str, PodCursor] = field(default_factory=dict)  # what to give each pod next time
    new_pods: list[str] = field(default_factory=list)
    restarted_pods: list[str] = field(default_factory=list)
    lost_pods: list[str] = field(default_factory=list)  # read, but not countable: see the module docstring
    gone_pods: list[str] = field(default_factory=list)


def _copy(c: CurrentData) -> CurrentData:
    if c.hist is not None:
        return CurrentData(hist=c.hist.copy(), nulls=int(c.nulls))
    if c.bin_counts is not None:
        return CurrentData(bin_counts=np.asarray(c.bin_counts, dtype=np.int64).copy(), nulls=int(c.nulls))
    return CurrentData(categories=dict(c.categories or {}), other_count=int(c.other_count), nulls=int(c.nulls))


def _add(a: CurrentData | None, b: CurrentData) -> CurrentData:
    """The sum of two counts of one feature; ValueError when they are on different buckets."""
    if a is None:
        return _copy(b)
    if a.hist is not None or b.hist is not None:
        if a.hist is None or b.hist is None:
            raise ValueError("cannot add a histogram to counts of another kind")
        h = a.hist + b.hist
        return CurrentData(hist=h, nulls=h.nulls)
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


def window_delta(previous: Mapping[str, PodCursor] | None, current: Mapping[str, PodReading]) -> WindowDelta:
    """Counts that arrived since the last readings, summed over pods (rules in the module docstring).

    ``previous`` maps a pod instance id (e.g. the pod's name) to what the monitor kept of its
    last reading; ``current`` the same pods' new readings. ``previous`` None (the monitor's first
    read) makes every pod new.
    """
    previous = previous or {}
    out = WindowDelta(features={})
    counted: list[PodReading] = []
    for pod, now in current.items():
        before = previous.get(pod)
        out.cursors[pod] = PodCursor(now.start_id, now.cursor)
        if before is None and now.since is None:
            out.new_pods.append(pod)
        elif before is not None and before.start_id != now.start_id and now.since is None:
            out.restarted_pods.append(pod)
        elif not (before is not None and before.start_id == now.start_id and now.since is not None
                  and now.since == before.cursor):
            out.lost_pods.append(pod)
            continue
        counted.append(now)
        out.rows += max(int(now.rows), 0)
    by_feature: dict[str, list[CurrentData]] = {}
    layouts: dict[tuple, list[Packed]] = {}
    for now in counted:
        for name, counts in now.features.items():
            by_feature.setdefault(name, []).append(counts)
        if now.packed is not None:
            layouts.setdefault(now.packed.layout, []).append(now.packed)
    for same in layouts.values():  # the pods of one model version: one sum of arrays for all of them
        for name, h in Packed.total(same).histograms().items():
            by_feature.setdefault(name, []).append(CurrentData(hist=h, nulls=h.nulls))
    for name, parts in by_feature.items():
        out.features[name] = _sum(parts)
    out.gone_pods = sorted(set(previous) - set(current))
    return out


def _sum(parts: list[CurrentData]) -> CurrentData:
    """The sum of one feature's counts over pods: histograms on the same edges add as arrays,
    all at once (with a hundred pods, pairwise sums were most of a tick); anything else pairwise."""
    hists = [p.hist for p in parts if p.hist is not None]
    if len(hists) == len(parts) and len(parts) > 1 and all(h.same_edges(hists[0]) for h in hists[1:]):
        first = hists[0]
        h = first.copy()
        h.counts = np.sum([x.counts for x in hists], axis=0)
        h.atoms = np.sum([x.atoms for x in hists], axis=0)
        h.sums = np.sum([x.sums for x in hists], axis=0)
        h.nulls = sum(x.nulls for x in hists)
        h.unlisted = sum(x.unlisted for x in hists)
        h.snapped = sum(x.snapped for x in hists)
        h.listing = any(x.listing for x in hists)
        vals: dict[float, int] = {}
        for x in hists:
            for key, c in x.values.items():
                vals[key] = vals.get(key, 0) + c
        h.values = vals
        return CurrentData(hist=h, nulls=h.nulls)
    total: CurrentData | None = None
    for p in parts:
        total = _add(total, p)
    assert total is not None
    return total


def add_counts(window: Mapping[str, CurrentData], delta: Mapping[str, CurrentData]) -> dict[str, CurrentData]:
    """The sum of two sets of per-feature counts (a window is the sum of successive deltas).
    ValueError when a feature's counts are on different buckets (another model version)."""
    out = {k: _copy(v) for k, v in window.items()}
    for k, v in delta.items():
        out[k] = _add(out.get(k), v)
    return out


__all__ = ["PodCursor", "PodReading", "WindowDelta", "add_counts", "window_delta"]
