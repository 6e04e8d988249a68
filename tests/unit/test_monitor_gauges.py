"""The DriftMonitor gauges across leader changes (controllers/monitor_gauges.py): a replica
exports a monitor's series from its status at every tick, drops series the status no longer
has, and drops all of a monitor's series once it has stopped ticking it (paused by leader
election, or the DriftMonitor deleted), so the max over replicas that the alert rules take never
reads a verdict frozen in a standby."""

from __future__ import annotations

from prometheus_client import REGISTRY

from mlops_operator.controllers import monitor_gauges as mg

STATUS = {"features": [{"name": "x", "method": "wasserstein", "score": 0.4, "drifted": True},
                       {"name": "c", "method": "jensenshannon", "score": 0.05, "drifted": False}],
          "driftShare": 0.5, "datasetDrift": True, "samples": 800, "accuracy": 0.71}


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_tick_exports_the_status_and_drops_what_it_no_longer_holds():
    clock = [1000.0]
    g = mg.MonitorGauges(clock=lambda: clock[0])
    g.export("ns1", "dm", STATUS, "accuracy")
    assert value("mlops_drift_detected", namespace="ns1", monitor="dm") == 1.0
    assert value("mlops_drift_score", namespace="ns1", monitor="dm", feature="x", method="wasserstein") == 0.4
    assert value("mlops_drift_feature_drifted", namespace="ns1", monitor="dm", feature="c") == 0.0
    assert value("mlops_window_accuracy", namespace="ns1", monitor="dm", metric="accuracy") == 0.71
    assert value("mlops_window_rows", namespace="ns1", monitor="dm") == 800
    # the next window: no drift, feature c no longer scored, no labels (accuracy unknown)
    g.export("ns1", "dm", {"features": STATUS["features"][:1], "driftShare": 0.0, "datasetDrift": False,
                           "samples": 500, "accuracy": None}, "accuracy")
    assert value("mlops_drift_detected", namespace="ns1", monitor="dm") == 0.0
    assert value("mlops_drift_feature_drifted", namespace="ns1", monitor="dm", feature="c") is None
    assert value("mlops_window_accuracy", namespace="ns1", monitor="dm", metric="accuracy") is None
    # a status with nothing judged yet exports nothing, and breaks nothing
    g.export("ns1", "fresh", {}, "accuracy")
    assert value("mlops_drift_detected", namespace="ns1", monitor="fresh") is None


def test_a_monitor_this_replica_stopped_ticking_is_swept_and_the_others_stay():
    clock = [1000.0]
    g = mg.MonitorGauges(clock=lambda: clock[0])
    g.export("ns2", "paused", STATUS, "accuracy")  # the verdict when the replica lost the leadership
    clock[0] += mg.STALE_AFTER_S / 2
    g.export("ns2", "ticking", STATUS, "f1")
    assert g.sweep() == []
    clock[0] += mg.STALE_AFTER_S / 2 + 1
    assert g.sweep() == [("ns2", "paused")]
    assert value("mlops_drift_detected", namespace="ns2", monitor="paused") is None
    assert value("mlops_drift_score", namespace="ns2", monitor="paused", feature="x", method="wasserstein") is None
    assert value("mlops_window_accuracy", namespace="ns2", monitor="paused", metric="accuracy") is None
    assert value("mlops_drift_detected", namespace="ns2", monitor="ticking") == 1.0
    assert value("mlops_window_accuracy", namespace="ns2", monitor="ticking", metric="f1") == 0.71
    # ticked again later (leader again): exported again
    g.export("ns2", "paused", STATUS, "accuracy")
    assert value("mlops_drift_detected", namespace="ns2", monitor="paused") == 1.0
