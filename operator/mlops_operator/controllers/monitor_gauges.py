"""The DriftMonitor gauges one operator replica exports, kept true across leader changes.

Replicas elect a leader (kopf peering): only the leader ticks the DriftMonitors; the others are
paused, but still serve /metrics. Prometheus scrapes them all and the alert rules take the max
(or min) over replicas. So a gauge set only when a window is judged goes wrong twice:

- a replica that loses the leadership keeps exporting the verdict it had at that moment
  (`mlops_drift_detected` 1, the old model's accuracy) forever: the drift alert never resolves;
- a replica that becomes leader exports nothing until it judges its first window (a window's
  length): the alert flickers, and the dashboard has a gap at every restart.

Hence: every tick (every few seconds, whether or not a window is judged) sets the monitor's
series from its status, which holds the last judged window; and series of a monitor this
replica has not ticked for STALE_AFTER_S (it was paused, or the DriftMonitor was deleted) are
removed, by a sweep that runs even while kopf has the replica paused.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

from prometheus_client import Gauge

SCORE = Gauge("mlops_drift_score", "Drift score of a feature in the last window (p-value or distance)",
              ["namespace", "monitor", "feature", "method"])
DRIFTED = Gauge("mlops_drift_feature_drifted", "1 when the feature drifted in the last window",
                ["namespace", "monitor", "feature"])
SHARE = Gauge("mlops_drift_share", "Share of drifted features in the last window", ["namespace", "monitor"])
DATASET = Gauge("mlops_drift_detected", "1 when the last window drifted (dataset level)", ["namespace", "monitor"])
ACCURACY = Gauge("mlops_window_accuracy", "Accuracy (or error) of the model on labelled feedback in the last window",
                 ["namespace", "monitor", "metric"])
SAMPLES = Gauge("mlops_window_rows", "Rows in the last evaluated window", ["namespace", "monitor"])

#: a monitor not ticked for this long by this replica is not this replica's to report (the tick
#: runs every 2 s; kopf retries a failed one within a minute)
STALE_AFTER_S = 90.0
SWEEP_EVERY_S = 10.0

Series = tuple[Gauge, tuple[str, ...]]


class MonitorGauges:
    """The series of each (namespace, monitor) this replica exports, and when it last ticked it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._series: dict[tuple[str, str], set[Series]] = {}
        self._ticked: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._sweeping = False

    def export(self, ns: str, name: str, status: Mapping[str, Any], metric: str) -> None:
        """Set the monitor's series from its status (the last judged window) and drop those the
        status no longer has (a feature gone, another accuracy metric)."""
        want: dict[Series, float] = {}
        for f in status.get("features") or []:
            if isinstance(f, dict) and isinstance(f.get("score"), (int, float)):
                want[(SCORE, (ns, name, str(f.get("name")), str(f.get("method"))))] = float(f["score"])
                want[(DRIFTED, (ns, name, str(f.get("name"))))] = 1.0 if f.get("drifted") else 0.0
        for gauge, key in ((SHARE, "driftShare"), (SAMPLES, "samples")):
            v = status.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                want[(gauge, (ns, name))] = float(v)
        if isinstance(status.get("datasetDrift"), bool):
            want[(DATASET, (ns, name))] = 1.0 if status["datasetDrift"] else 0.0
        acc = status.get("accuracy")
        if isinstance(acc, (int, float)) and not isinstance(acc, bool):
            want[(ACCURACY, (ns, name, metric))] = float(acc)
        with self._lock:
            for (gauge, labels), v in want.items():
                gauge.labels(*labels).set(v)
            for gone in self._series.get((ns, name), set()) - set(want):
                _remove(gone)
            self._series[(ns, name)] = set(want)
            self._ticked[(ns, name)] = self._clock()

    def sweep(self) -> list[tuple[str, str]]:
        """Remove the series of monitors not ticked for STALE_AFTER_S; which ones."""
        now = self._clock()
        with self._lock:
            stale = [k for k, t in self._ticked.items() if now - t > STALE_AFTER_S]
            for k in stale:
                for s in self._series.pop(k, set()):
                    _remove(s)
                del self._ticked[k]
        return stale

    def start_sweeping(self) -> None:
        """A daemon thread that sweeps every SWEEP_EVERY_S: not a kopf timer, which stops while
        the replica is paused, exactly when its series must go. Once per process."""
        with self._lock:
            if self._sweeping:
                return
            self._sweeping = True

        def loop() -> None:
            while True:
                time.sleep(SWEEP_EVERY_S)
                self.sweep()

        threading.Thread(target=loop, name="mlops-gauge-sweep", daemon=True).start()


def _remove(series: Series) -> None:
    gauge, labels = series
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


GAUGES = MonitorGauges()
