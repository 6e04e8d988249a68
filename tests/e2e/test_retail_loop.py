"""The whole loop on the real control plane, unattended: drift -> retrain -> promote -> roll
out -> recover, with the operator restarted in the middle; and a failing retraining that
leaves the serving model alone. The retail demo runs the same driver (cli/retail_loop.py)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Callable

import pytest

from mlops_operator.cli.retail_loop import MODEL, Kubectl, LoopError, RetailLoop, cond, plot, summary_table
from mlops_operator.localcluster import binaries
from tests.conftest import Cluster, OperatorProcess, enable_namespace, wait_for
from tests.integration.test_inference_service import Forward
from tests.prometheus_server import PrometheusProcess, firing_times, wait_ready

pytestmark = pytest.mark.cluster

#: The loop's Prometheus scrapes the PodMonitors' jobs every SCRAPE instead of their 30 s, and
#: loads the PrometheusRule's alerts with every `for:` capped at MAX_FOR (`mlops prometheus
#: --scrape-interval --max-for`: a copy of the shipped rules where only those durations differ).
#: The loop's season change lasts about a minute; the shipped alerts wait 5 to 10.
SCRAPE, MAX_FOR = "2s", "6s"
#: the alerts the season change must fire, and the rollout resolve, in the loop's namespace.
#: The accuracy alert is the relative one (0.05 below the day's best window): v1's window accuracy
#: falls from about 0.81 to 0.74-0.75 on the shifted traffic, so the absolute one (below 0.75, a
#: threshold marked "tune") fires in some runs and not in others. Both must be resolved at the end.
LOOP_ALERTS = ("MLOpsDataDriftDetected", "MLOpsAccuracyDropped")
RESOLVED_AT_END = (*LOOP_ALERTS, "MLOpsAccuracyBelowThreshold")


@pytest.fixture
def prometheus(local_cluster: Cluster, tmp_path):
    """A real Prometheus (Debian's, `mlops prometheus`) scraping the operator and the model
    servers as manifests/monitoring's PodMonitors say, with its PrometheusRule's alerts."""
    p = PrometheusProcess(local_cluster.cfg.name, tmp_path / "prometheus", "--scrape-interval", SCRAPE,
                          "--max-for", MAX_FOR)
    try:
        wait_ready(p)
        yield p
    finally:
        p.stop()


def test_the_loop_closes_by_itself(local_cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path,
                                   prometheus: PrometheusProcess):
    """With the operator deployed from manifests/ (its own ServiceAccount and exactly the
    manifest's two ClusterRoles, namespace-scoped: the loop's namespace enabled by the
    RoleBinding of manifests/namespace; 2 replicas, leader election): the loop also proves the
    RBAC. A real Prometheus watches it: the drift and accuracy alerts fire after the shift and
    resolve after the rollout, and every query of the Grafana dashboard has data."""
    c, ns = local_cluster, namespace
    operator.stop()  # only the in-cluster replicas act in this test
    t_start = time.time()
    try:
        _loop_in_cluster(c, ns, tmp_path)
        check_alerts_fire_and_resolve(prometheus, c, ns, t_start)
        check_dashboard_has_data(prometheus, ns, t_start)
    finally:
        c.kubectl("delete", "deploy", "mlops-operator", "-n", "mlops-system", "--wait=true", check=False, timeout=120)
        operator.start()


def _loop_in_cluster(c: Cluster, ns: str, tmp_path, image: str = "mlops-runtime:test",
                     also_while_retraining: Callable[[], str] | None = None):
    """The retail loop with the operator deployed from manifests/overlays/local; `image` is the
    runtime image of the loop's own export Jobs. `also_while_retraining` is a second fault
    injected once the retraining is under way (its return value goes into the timeline)."""
    from datetime import datetime, timezone

    from tests.conftest import REPO

    started = datetime.now(timezone.utc)
    c.kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "local"))
    c.kubectl("rollout", "restart", "deploy/mlops-operator", "-n", "mlops-system")
    c.kubectl("rollout", "status", "deploy/mlops-operator", "-n", "mlops-system", "--timeout=180s", timeout=190)
    # namespace-scoped (the default): the operator may write only where an admin allows it
    enable_namespace(c, ns)
    k = Kubectl(str(binaries.binary_path("kubectl")), c.kubeconfig, ns)
    fwd: list[Forward] = []
    base_url = _forwarder(c, ns, fwd)
    loop = RetailLoop(k, base_url, image=image, rows=12000, timeout=600)  # per step; a loaded 2-core machine needs more than 300 s for the first run

    # restart the operator once the retraining is under way: the loop must still complete
    # with exactly one retraining run
    def restart_when_retraining():
        deadline = time.time() + 900
        while time.time() < deadline:
            dm = k.get("driftmonitor", MODEL) or {}
            if (dm.get("status") or {}).get("retrain"):
                c.kubectl("delete", "pod", "-n", "mlops-system", "-l", "app.kubernetes.io/name=mlops-operator",
                          "--wait=false")
                loop.mark("operator pods deleted while retraining (the Deployment starts new ones)")
                if also_while_retraining is not None:
                    loop.mark(also_while_retraining())
                return
            time.sleep(0.5)

    restarter = threading.Thread(target=restart_when_retraining, daemon=True)
    restarter.start()
    try:
        r = loop.run()
    finally:
        for f in fwd:
            f.close()
    print(summary_table(r))
    assert any("operator pods deleted" in what for _, what in r.timeline)
    assert r.requests > 100 and not r.failed, r.failed[:5]
    assert r.versions["v1"] == "propensity-v1" and r.versions["v2"] == "propensity-v2"
    assert r.accuracy["before"] >= 0.76 and r.accuracy["during"] is not None
    assert r.accuracy["after"] > r.accuracy["during"], r.accuracy
    assert r.drift["after"] < r.drift["during"], r.drift
    runs = [x["metadata"]["name"] for x in c.get_json("trainingruns", "-n", ns, "-l",
                                                        "mlops.dev/drift-monitor=propensity")["items"]]
    assert runs == r.retrain_runs and len(runs) == 1, runs
    mvs = c.get_json("modelversions", "-n", ns)["items"]
    assert sorted(m["metadata"]["name"] for m in mvs) == ["propensity-v1", "propensity-v2"]
    assert [m["metadata"]["name"] for m in mvs if "production" in m["spec"]["aliases"]] == ["propensity-v2"]
    events = {e["reason"] for e in c.get_json("events", "-n", ns)["items"]}
    assert {"DataDrift", "RetrainingStarted", "RetrainingSucceeded", "Promoted", "RolledOut"} <= events or \
        {"DataDriftAndAccuracy", "RetrainingStarted", "RetrainingSucceeded", "Promoted", "RolledOut"} <= events, events
    png = plot(r, tmp_path / "loop.png")
    assert png.stat().st_size > 10_000
    # nothing the flow needed was refused by the ClusterRoles or the admission policy
    logs = c.kubectl("logs", "-n", "mlops-system", "-l", "app.kubernetes.io/name=mlops-operator", "--tail=-1").stdout
    assert "forbidden" not in logs.lower(), [x for x in logs.splitlines() if "orbidden" in x][:3]
    check_rbac_usage(c, ns, started)
    return r


def _event_time(e: dict) -> float:
    stamp = e.get("eventTime") or e.get("lastTimestamp") or e.get("firstTimestamp") or e["metadata"]["creationTimestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def check_alerts_fire_and_resolve(prom: PrometheusProcess, c: Cluster, ns: str, since: float) -> None:
    """Seen from Prometheus' own ALERTS series and alerts API: each of LOOP_ALERTS fired in `ns`,
    not before the DriftMonitor's drift Event (the shift, as the operator saw it), went on firing
    until the rollout started (v2's Promoted Event), and is neither firing nor pending once the
    new model serves. Their rules are the shipped ones (MAX_FOR aside)."""
    loaded = {r["name"] for r in prom.rules()}
    assert set(LOOP_ALERTS) <= loaded, loaded
    events = c.get_json("events", "-n", ns)["items"]
    drift_at = min(_event_time(e) for e in events if e["reason"] in ("DataDrift", "DataDriftAndAccuracy"))
    # v2's promotion starts the rollout; its pods take traffic before the rollout completes
    promoted_at = max(_event_time(e) for e in events if e["reason"] == "Promoted")
    rolled_at = max(_event_time(e) for e in events if e["reason"] == "RolledOut")

    active: list[dict] = []

    def resolved() -> bool:
        active[:] = [a for a in prom.alerts() if a["labels"].get("alertname") in RESOLVED_AT_END
                     and a["labels"].get("namespace") == ns]
        return not active

    # the loop ends on a quiet window of the new model: the next evaluations clear the alerts
    try:
        wait_for(resolved, timeout=120, interval=2, what=f"{RESOLVED_AT_END} resolved in {ns}")
    except AssertionError as e:
        raise AssertionError(f"{e}; still active: {[(a['labels'], a.get('state'), a.get('value')) for a in active]}"
                             ) from None
    end = time.time()
    for name in RESOLVED_AT_END:
        fired = firing_times(prom.query_range(f'ALERTS{{alertname="{name}",alertstate="firing",namespace="{ns}"}}',
                                              since, end, 1))
        if name in LOOP_ALERTS:
            assert fired, f"{name} never fired in {ns} during the loop"
            # the old model drifts and errs until the new one serves: still firing when the
            # rollout started (v2 promoted), resolved after it
            assert fired[-1] >= promoted_at - 1, (name, fired[-1], promoted_at)
        if fired:
            # Event times have whole seconds; a firing alert waited MAX_FOR after the gauge it reads
            assert fired[0] >= drift_at - 1, (name, fired[0], drift_at)
            print(f"{name}: fired {fired[0] - drift_at:+.0f} s after the drift Event, last firing "
                  f"{fired[-1] - promoted_at:+.0f} s from v2's promotion and {fired[-1] - rolled_at:+.0f} s from "
                  f"the end of its rollout; resolved by {end - rolled_at:.0f} s after it")
        else:
            print(f"{name}: did not fire")


def check_dashboard_has_data(prom: PrometheusProcess, ns: str, since: float) -> None:
    """Every PromQL expression of the Grafana dashboard (panels and variables, its variables set to
    the loop's namespace, model and monitor) returned at least one series during the loop."""
    import json

    from mlops_operator.cli import dashboard
    from tests.conftest import REPO

    board = json.loads((REPO / "manifests" / "monitoring" / "mlops-dashboard.json").read_text())
    values = {"namespace": ns, "model": MODEL, "monitor": MODEL, "datasource": "prometheus",
              "__rate_interval": dashboard.rate_interval(SCRAPE), "__interval": SCRAPE}
    end = time.time()
    empty = [f"{q.where}: {q.promql}" for q in dashboard.queries(board, values)
             if not prom.query_range(q.promql, since, end, 2)
             or (q.label and not any(q.label in s["metric"] for s in prom.query_range(q.promql, since, end, 2)))]
    assert not empty, "dashboard queries without data during the loop:\n" + "\n".join(empty)


#: Granted but not exercised by the loop above, and the code path that needs each one.
NOT_IN_THE_LOOP = {
    ("apps", "deployments", "delete"): "canary: the canary Deployment is deleted on promotion or rollback",
    ("autoscaling", "horizontalpodautoscalers", "create"): "InferenceService spec.autoscaling",
    ("autoscaling", "horizontalpodautoscalers", "patch"): "InferenceService spec.autoscaling changed",
    ("mlops.dev", "modelversions", "delete"): "retention of archived ModelVersions (MLOPS_MODEL_RETENTION)",
    ("", "pods/log", "get"): "the log tail of a Job that failed without a termination message",
}


def check_rbac_usage(c: Cluster, ns: str, since: datetime | None = None) -> None:
    """Least privilege, measured: every verb the two ClusterRoles grant (their union: the
    cluster-wide one and the one bound in `ns`) was used by the in-cluster operator (API server
    audit log, from `since`), or is listed above with the path that needs it; and what only the
    namespace role grants was used in `ns` alone."""
    import yaml

    from mlops_operator.localcluster import audit
    from mlops_operator.localcluster.components import audit_log
    from tests.conftest import REPO

    roles = {d["metadata"]["name"]: d for d in yaml.safe_load_all((REPO / "manifests" / "base" / "rbac.yaml").read_text())
             if d and d["kind"] == "ClusterRole"}
    assert set(roles) == {"mlops-operator", "mlops-operator-namespace"}, set(roles)
    log = audit_log(c.cfg)
    where = audit.used_where(sorted(log.parent.glob(log.name + "*")), "system:serviceaccount:mlops-system:mlops-operator",
                             since=since)
    assert where, f"no audit events in {log}"
    seen = set(where)
    unused = audit.unused(roles.values(), seen)
    print("granted but not used in the loop:", sorted(unused))
    unexplained = sorted(unused - set(NOT_IN_THE_LOOP))
    assert not unexplained, f"verbs granted but never used (remove them or say why): {unexplained}"
    stale = sorted(set(NOT_IN_THE_LOOP) - audit.granted(*roles.values()))
    assert not stale, f"listed as needed but not granted: {stale}"
    # the writes the namespace role grants happened in the loop's namespace only
    per_ns = audit.granted(roles["mlops-operator-namespace"]) - audit.granted(roles["mlops-operator"])
    elsewhere = {p: sorted(where[p] - {ns}) for p in per_ns & seen if where[p] - {ns}}
    assert not elsewhere, f"namespace-role permissions used outside {ns}: {elsewhere}"


def test_a_failing_retraining_leaves_v1_serving(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    k = Kubectl(str(binaries.binary_path("kubectl")), c.kubeconfig, ns)
    fwd: list[Forward] = []
    base_url = _forwarder(c, ns, fwd)
    loop = RetailLoop(k, base_url, image="mlops-runtime:test", rows=8000, timeout=480)
    # the retraining template asks for an impossible parameter value: the run fails
    original = loop.apply

    def apply(name: str) -> None:
        if name != "driftmonitor.yaml":
            return original(name)
        text = (loop_dir() / name).read_text().replace("params: {max_iter: 60}", "params: {max_iter: -5}")
        k("apply", "-f", "-", input=text)

    loop.apply = apply  # type: ignore[method-assign]
    try:
        with pytest.raises(LoopError, match="retraining failed"):
            loop.run()
    finally:
        for f in fwd:
            f.close()
    # the monitor follows its run on its next tick
    dm = wait_for(lambda: (lambda d: d if (d["status"].get("retrain") or {}).get("phase") == "Failed" else None)(
        k.get("driftmonitor", MODEL)), 60, what="the DriftMonitor to record the failed retraining")
    r = dm["status"]["retrain"]
    assert r["phase"] == "Failed" and "failed" in r["result"] and "stays" in r["result"], r
    assert "max_iter" in r["result"], r  # the TrainingRun's own reason comes through
    isvc = k.get("inferenceservice", MODEL)
    assert isvc["status"]["modelVersion"] == "propensity-v1" and cond(isvc, "Ready")["status"] == "True"
    assert any(e["reason"] == "RetrainingFailed" for e in c.get_json("events", "-n", ns)["items"])


def _forwarder(c: Cluster, ns: str, opened: list[Forward], service: str = MODEL):
    """A base URL of the InferenceService's port `remote` per call (mlops port-forward), closed
    by the caller."""
    def base_url(remote: int = 80) -> str:
        opened.append(Forward(c, ns, remote, service))
        return opened[-1].base
    return base_url


def loop_dir():
    from mlops_operator.cli.retail_loop import LOOP

    return LOOP
