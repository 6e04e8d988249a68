"""Reconcile decisions of every controller against an in-memory API (tests/unit/fakekube.py):
status conventions (observedGeneration, kstatus Reconciling/Stalled) and the review's defects,
each test written to fail before its fix. The same flows run on a real API server in
tests/integration/."""

from __future__ import annotations

import asyncio
import json

import kopf
import pytest

from mlops_operator.api.conditions import now
from mlops_operator.controllers import dataset as dsc
from mlops_operator.controllers import driftmonitor as dmc
from mlops_operator.controllers import inferenceservice as isc
from mlops_operator.controllers import modelversion as mvc
from mlops_operator.controllers import trainingrun as trc
from mlops_operator.drift.engine import DatasetDrift
from mlops_operator.monitoring.decisions import judge_window
from mlops_operator.settings import Settings

from .fakekube import FakeKube

SETTINGS = Settings(runtime_image="runtime", store_claim="mlops-store", store_size="1Gi",
                    store_access_mode="ReadWriteOnce", store_storage_class=None, server_image="server")
DIGEST = "a" * 64


def run(coro):
    return asyncio.run(coro)


def cond(obj: dict, ctype: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def all_observed(obj: dict) -> bool:
    gen, st = obj["metadata"]["generation"], obj.get("status") or {}
    return st.get("observedGeneration") == gen and all(
        c.get("observedGeneration") == gen for c in st.get("conditions") or [])


def model_version(name: str, version: int, aliases: list[str] | None = None, ready: bool = True) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "labels": {"mlops.dev/model": "m"}},
            "spec": {"model": "m", "version": version, "aliases": aliases or [],
                     "artifact": {"uri": f"file:///store/{name}", "digest": DIGEST}},
            "status": {"observedGeneration": 1, "lastVerifyTrigger": mvc.verify_trigger(
                {"metadata": {}, "spec": {"artifact": {"digest": DIGEST}}}),
                "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                "reason": "Verified" if ready else "ArtifactInvalid", "message": "",
                                "lastTransitionTime": now(), "observedGeneration": 1}]}}


def inference_service(name: str = "svc", **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": name}, "spec": {"model": "m", "alias": "production", **spec}}


# ------------------------------------------------------------------------------ ModelVersion

def test_an_alias_change_is_observed_so_kubectl_wait_returns(fake: FakeKube):
    """After a promotion the version was at generation 2 with conditions at 1: `kubectl wait
    --for=condition=Ready` waited forever."""
    fake.add("modelversions", model_version("m-v1", 1))
    run(fake.patch_custom("modelversions", "ns", "m-v1", {"spec": {"aliases": ["production"]}}))
    assert fake.get("modelversions", "m-v1")["metadata"]["generation"] == 2
    run(mvc.reconcile_model("ns", "m", SETTINGS))
    mv = fake.get("modelversions", "m-v1")
    assert all_observed(mv), mv["status"]
    assert cond(mv, "Ready")["status"] == "True" and not cond(mv, "Reconciling") and not cond(mv, "Stalled")
    assert mv["status"]["stage"] == "aliased" and mv["status"]["heldAliases"] == ["production"]


def test_a_version_that_failed_verification_is_stalled(fake: FakeKube):
    fake.add("modelversions", model_version("m-v1", 1, ready=False))
    run(fake.patch_custom("modelversions", "ns", "m-v1", {"spec": {"aliases": ["staging"]}}))
    run(mvc.reconcile_model("ns", "m", SETTINGS))
    mv = fake.get("modelversions", "m-v1")
    assert all_observed(mv) and cond(mv, "Stalled")["status"] == "True"
    assert cond(mv, "Stalled")["reason"] == "ArtifactInvalid"


def test_verification_is_reconciling_until_its_job_ends(fake: FakeKube):
    mv = model_version("m-v1", 1)
    mv["status"] = {}
    fake.add("modelversions", mv)
    run(mvc.reconcile_verification("ns", "m-v1", SETTINGS))
    got = fake.get("modelversions", "m-v1")
    assert cond(got, "Reconciling")["reason"] == "Verifying" and cond(got, "Ready")["status"] == "False"
    job = got["status"]["verifyJob"]
    fake.job("ns", job, "Complete", json.dumps({"ok": True}))
    run(mvc.reconcile_verification("ns", "m-v1", SETTINGS))
    got = fake.get("modelversions", "m-v1")
    assert cond(got, "Ready")["status"] == "True" and not cond(got, "Reconciling") and all_observed(got)


def test_a_version_serving_canary_traffic_cannot_be_deleted(fake: FakeKube):
    """The controller read `status.canaryModelVersion`, which nothing writes; the canary is
    recorded in `status.canary.version`."""
    isvc = inference_service()
    isvc["status"] = {"modelVersion": "m-v1", "canary": {"version": "m-v2", "step": 0}}
    fake.add("inferenceservices", isvc)
    assert run(mvc.serving("ns", "m-v2")) == ["svc"]
    assert run(mvc.serving("ns", "m-v1")) == ["svc"]
    assert run(mvc.serving("ns", "m-v3")) == []


# ------------------------------------------------------------------------------ InferenceService

def complete(dep: dict) -> dict:
    n = dep["spec"].get("replicas") or 1
    return {"observedGeneration": dep["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
            "availableReplicas": n, "readyReplicas": n}


def test_previous_model_version_is_cleared_once_no_pod_serves_it(fake: FakeKube):
    """It was never cleared, so the old version stayed protected from deletion and retention."""
    fake.add("modelversions", model_version("m-v1", 1))
    fake.add("modelversions", model_version("m-v2", 2, ["production"]))
    isvc = inference_service()
    isvc["status"] = {"modelVersion": "m-v2", "previousModelVersion": "m-v1"}
    fake.add("inferenceservices", isvc)
    fake.deployment_status = complete
    old_pod = {"metadata": {"name": "p1", "labels": {"mlops.dev/inference-service": "svc",
                                                      "mlops.dev/model-version": "m-v1"}}}
    fake.pods = [old_pod]  # the old version's pod is still terminating: keep protecting it
    run(isc.reconcile("ns", "svc", SETTINGS))
    assert fake.get("inferenceservices", "svc")["status"]["previousModelVersion"] == "m-v1"
    fake.pods = []
    run(isc.reconcile("ns", "svc", SETTINGS))
    st = fake.get("inferenceservices", "svc")["status"]
    assert "previousModelVersion" not in st and st["modelVersion"] == "m-v2"
    assert run(mvc.serving("ns", "m-v1")) == []
    assert all_observed(fake.get("inferenceservices", "svc"))


def test_a_rollout_is_reconciling_then_done(fake: FakeKube):
    fake.add("modelversions", model_version("m-v1", 1, ["production"]))
    fake.add("inferenceservices", inference_service())
    fake.deployment_status = lambda dep: {"observedGeneration": dep["metadata"]["generation"], "replicas": 1}
    run(isc.reconcile("ns", "svc", SETTINGS))
    isvc = fake.get("inferenceservices", "svc")
    assert cond(isvc, "Reconciling")["reason"] == "RollingOut" and all_observed(isvc)
    fake.deployment_status = complete
    run(isc.reconcile("ns", "svc", SETTINGS))
    isvc = fake.get("inferenceservices", "svc")
    assert cond(isvc, "Ready")["status"] == "True" and not cond(isvc, "Reconciling") and all_observed(isvc)
    # a spec change (more replicas) is observed at the new generation
    run(fake.patch_custom("inferenceservices", "ns", "svc", {"spec": {"replicas": 2}}))
    run(isc.reconcile("ns", "svc", SETTINGS))
    isvc = fake.get("inferenceservices", "svc")
    assert isvc["metadata"]["generation"] == 2 and all_observed(isvc) and isvc["status"]["replicas"] == 2


def test_canary_follow_up_tasks_are_kept_until_done(fake: FakeKube, monkeypatch):
    """The task was created with no reference kept: the event loop holds tasks weakly."""
    seen = []

    async def reconcile(namespace, name, settings):
        seen.append(name)
    monkeypatch.setattr(isc, "reconcile", reconcile)

    async def main():
        isc._later("ns", "svc", SETTINGS, 0.01)
        assert len(isc._follow_ups) == 1
        await asyncio.sleep(0.05)
        assert not isc._follow_ups
    run(main())
    assert seen == ["svc"]


def metrics_text(requests: int, errors: int = 0) -> str:
    return (f'mlops_serving_requests_total{{endpoint="infer",code="200"}} {requests - errors}\n'
            f'mlops_serving_requests_total{{endpoint="infer",code="500"}} {errors}\n')


def test_a_two_step_canary_needs_min_requests_in_each_step(fake: FakeKube, monkeypatch):
    """minRequests is per step: before, the counters since pod start carried the first step's
    requests into the second, which passed with none of its own."""
    import time as _time

    clock = [1_000_000.0]
    monkeypatch.setattr(isc.time, "time", lambda: clock[0])
    monkeypatch.setattr(isc, "_later", lambda *a, **k: None)
    fake.add("modelversions", model_version("m-v1", 1))
    fake.add("modelversions", model_version("m-v2", 2, ["production"]))
    isvc = inference_service(replicas=2, rollout={"strategy": "canary", "canary": {
        "steps": [25, 50], "pauseSeconds": 10, "minRequests": 20}})
    isvc["status"] = {"modelVersion": "m-v1"}
    fake.add("inferenceservices", isvc)
    fake.deployment_status = complete
    pod = lambda name, track: {"metadata": {"name": name, "labels": {  # noqa: E731
        "mlops.dev/inference-service": "svc", "mlops.dev/track": track}}, "status": {"phase": "Running"}}
    fake.pods = [pod("c1", "canary"), pod("s1", "stable")]
    fake.proxy[("s1", "metrics")] = metrics_text(100)

    def look(canary_requests: int, advance: float = 11):
        clock[0] += advance
        fake.proxy[("c1", "metrics")] = metrics_text(canary_requests)
        run(isc.reconcile("ns", "svc", SETTINGS))
        return fake.get("inferenceservices", "svc")["status"]

    st = look(0, 0)  # starts the canary; its pods are ready (complete) but not observed yet
    assert st["canary"]["step"] == 0 and cond(fake.get("inferenceservices", "svc"), "Reconciling")["reason"] == "Canary"
    st = look(30)  # step 1 observed for 10 s with 30 requests: on to 50%
    assert st["canary"]["step"] == 1, st["canary"]
    st = look(35)  # only 5 requests in step 2: wait
    assert st["canary"]["step"] == 1 and "5 of the 20" in st["canary"]["message"], st["canary"]
    st = look(55)  # 25 in step 2: promoted
    assert st.get("lastCanary", {}).get("result") == "promoted", st
    assert ("Normal", "CanaryPromoted") in [(t, r) for t, r, _ in fake.events]
    del _time


def test_a_canary_whose_counters_restart_counts_from_zero():
    from mlops_operator.rollout import canary

    before = {"c1": canary.ServerStats(50, 0, {})}
    base = canary.baseline_of(before)
    assert canary.since({"c1": canary.ServerStats(70, 1, {})}, base).requests == 20
    assert canary.since({"c1": canary.ServerStats(7, 0, {})}, base).requests == 7  # restarted
    assert canary.since({"c2": canary.ServerStats(9, 0, {})}, base).requests == 9  # a new pod


# ------------------------------------------------------------------------------ DriftMonitor

def drift(drifted: bool, insufficient: bool = False) -> DatasetDrift:
    return DatasetDrift(features=[], share=1.0 if drifted else 0.0, drifted=drifted, insufficient=insufficient,
                        message="2 of 4 features drifted" if drifted else "0 of 4 features drifted")


def test_no_breach_starts_no_retraining(fake: FakeKube):
    """The gate was always told breached=True."""
    dm = {"apiVersion": "mlops.dev/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": "dm", "namespace": "ns",
                                                                                  "generation": 1, "uid": "u"},
          "spec": {"inferenceService": "svc", "retrain": {"enabled": True, "cooldown": "1s", "template": {
              "modelName": "m", "dataset": {"name": "d"}, "estimator": {"type": "LogisticRegression"}}}}}
    patch: dict = {}
    run(dmc._maybe_retrain(dm, {}, patch, judge_window(drift(False), None, {})))
    assert "retrain" not in patch and "retraining not started" not in patch.get("message", "")
    run(dmc._maybe_retrain(dm, {}, patch, judge_window(drift(True), None, {})))
    assert patch["retrain"]["phase"] == "Training" and patch["retrainCount"] == 1


def test_window_verdicts():
    from mlops_operator.api.driftmonitor import AccuracyPolicy

    policy = AccuracyPolicy(metric="accuracy", threshold=0.8, min_samples=10)
    v = judge_window(drift(False), policy, {"count": 20, "correct": 10})
    assert v.breached and v.condition[:2] == ("True", "AccuracyDegraded") and v.accuracy == 0.5
    v = judge_window(drift(True), policy, {"count": 20, "correct": 10})
    assert v.condition[1] == "DataDriftAndAccuracy"
    v = judge_window(drift(False), policy, {"count": 5, "correct": 0})  # too few labels for a decision
    assert not v.breached and v.condition[1] == "NoDrift"
    v = judge_window(drift(False, insufficient=True), None, {})
    assert not v.breached and v.condition[:2] == ("Unknown", "InsufficientSamples")
    rmse = AccuracyPolicy(metric="rmse", threshold=1.0, min_samples=1)
    assert judge_window(drift(False), rmse, {"count": 4, "sumSquaredError": 16}).breached  # rmse 2 > 1


# ------------------------------------------------------------------------------ Dataset

def dataset(name: str = "d") -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name},
            "spec": {"source": {"type": "generator", "generator": {"rows": 100}}}}


SUMMARY = {"digest": DIGEST, "rows": 100, "columns": 3, "validated": True, "uri": "file:///store/x"}


def test_a_spec_change_during_a_snapshot_starts_the_next_one(fake: FakeKube):
    """Spec changes were ignored while a Job ran, and nothing looked again once it ended."""
    fake.add("datasets", dataset())
    run(dsc.reconcile("ns", "d", SETTINGS))
    ds = fake.get("datasets", "d")
    first = ds["status"]["activeJob"]
    assert cond(ds, "Reconciling")["reason"] == "Snapshotting" and all_observed(ds)
    run(fake.patch_custom("datasets", "ns", "d", {"spec": {"source": {"generator": {"rows": 200}}}}))
    run(dsc.reconcile("ns", "d", SETTINGS))  # the update event while the Job runs: nothing to do yet
    assert fake.get("datasets", "d")["status"]["activeJob"] == first
    fake.job("ns", first, "Complete", json.dumps(SUMMARY))
    run(dsc.reconcile("ns", "d", SETTINGS))  # the Job's event
    ds = fake.get("datasets", "d")
    assert ds["status"]["latestValid"]["digest"] == DIGEST
    second = ds["status"]["activeJob"]
    assert second and second != first, ds["status"]
    assert ds["metadata"]["generation"] == 2 and all_observed(ds)
    assert cond(ds, "Ready")["status"] == "True" and cond(ds, "Reconciling")["status"] == "True"
    fake.job("ns", second, "Complete", json.dumps(SUMMARY))
    run(dsc.reconcile("ns", "d", SETTINGS))
    ds = fake.get("datasets", "d")
    assert not ds["status"].get("activeJob") and not cond(ds, "Reconciling") and all_observed(ds)


def test_a_dataset_with_no_valid_version_is_stalled(fake: FakeKube):
    fake.add("datasets", dataset())
    run(dsc.reconcile("ns", "d", SETTINGS))
    job = fake.get("datasets", "d")["status"]["activeJob"]
    fake.job("ns", job, "Failed", json.dumps({"error": "source unreachable"}))
    run(dsc.reconcile("ns", "d", SETTINGS))
    ds = fake.get("datasets", "d")
    assert ds["status"]["phase"] == "Failed" and cond(ds, "Stalled")["status"] == "True"
    assert "source unreachable" in cond(ds, "Stalled")["message"] and all_observed(ds)


# ------------------------------------------------------------------------------ TrainingRun

def test_a_training_run_reconciles_then_stalls_on_failure(fake: FakeKube):
    ds = dataset()
    ds["status"] = {"latestValid": {"digest": DIGEST, "uri": "file:///store/x", "id": DIGEST[:12]},
                    "schema": {"columns": [{"name": "y", "type": "integer", "role": "label"}]}}
    fake.add("datasets", ds)
    fake.add("trainingruns", {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "r"},
                              "spec": {"modelName": "m", "dataset": {"name": "d"},
                                       "estimator": {"type": "LogisticRegression"}}})
    run(trc.reconcile("ns", "r", SETTINGS))
    tr = fake.get("trainingruns", "r")
    assert tr["status"]["phase"] == "Running" and cond(tr, "Reconciling")["reason"] == "Training" and all_observed(tr)
    fake.job("ns", tr["status"]["jobName"], "Failed", json.dumps({"error": "label has one class"}))
    run(trc.reconcile("ns", "r", SETTINGS))
    tr = fake.get("trainingruns", "r")
    assert tr["status"]["phase"] == "Failed" and not cond(tr, "Reconciling")
    assert cond(tr, "Stalled")["reason"] == "TrainingFailed" and all_observed(tr)


@pytest.mark.parametrize("reconciling, stalled", [(None, None), (("Working", "w"), None), (None, ("Stuck", "s"))])
def test_observe_stamps_every_condition_and_keeps_transition_times(reconciling, stalled):
    from mlops_operator.api.conditions import observe, set_condition

    conds, _ = set_condition(None, "Ready", True, "Fine", "", 1)
    conds = observe(conds, 1, reconciling=("Old", "o"))
    started = conds[-1]["lastTransitionTime"]
    out = observe(conds, 3, reconciling=reconciling, stalled=stalled)
    assert all(c["observedGeneration"] == 3 for c in out)
    types = {c["type"] for c in out}
    assert ("Reconciling" in types) == (reconciling is not None) and ("Stalled" in types) == (stalled is not None)
    if reconciling:
        r = next(c for c in out if c["type"] == "Reconciling")
        assert r["lastTransitionTime"] == started and r["reason"] == "Working"
    assert out[0]["type"] == "Ready"


def test_every_api_call_has_a_timeout():
    """No API call had one: a stalled connection held a reconcile forever."""
    from mlops_operator.controllers import kube

    seen = {}

    def api_method(*args, **kwargs):
        seen.update(kwargs)
        return "ok"
    assert run(kube.call(api_method, "ns")) == "ok"
    connect, read = seen["_request_timeout"]
    assert 0 < connect <= 10 and 0 < read <= 60


# ------------------------------------------------------------------------------ issue 16: names and uids

def test_datasets_whose_names_differ_past_the_cut_get_their_own_jobs(fake: FakeKube):
    """Child names were the parent's name cut at 40 characters: two Datasets got one Job."""
    a, b = "retail-sessions-from-the-warehouse-export-europe-west1", "retail-sessions-from-the-warehouse-export-europe-west2"
    fake.add("datasets", dataset(a))
    fake.add("datasets", dataset(b))
    run(dsc.reconcile("ns", a, SETTINGS))
    run(dsc.reconcile("ns", b, SETTINGS))
    ja, jb = fake.get("datasets", a)["status"]["activeJob"], fake.get("datasets", b)["status"]["activeJob"]
    assert ja != jb and len(ja) <= 63 and len(jb) <= 63
    import re
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", j) for j in (ja, jb))


def test_an_object_of_another_owner_is_never_adopted(fake: FakeKube):
    """create_or_adopt adopted any object of the same name on 409."""
    fake.add("datasets", dataset())
    run(dsc.reconcile("ns", "d", SETTINGS))
    job = fake.get("datasets", "d")["status"]["activeJob"]
    # the Dataset is deleted and re-applied (a new uid) while its old Job still exists
    del fake.custom[("datasets", "ns", "d")]
    fake.add("datasets", {**dataset(), "metadata": {"name": "d", "uid": "uid-d-2"}})
    from mlops_operator.resources.snapshot_job import job_name
    from mlops_operator.controllers.dataset import trigger_of
    new = fake.get("datasets", "d")
    assert job_name(new, trigger_of(new)) != job  # the trigger covers the uid: no clash here ...
    # ... and where names do clash, the other owner's object is refused, said, and retried
    fake.objects[("Job", "ns", job_name(new, trigger_of(new)))] = {**fake.objects[("Job", "ns", job)]}
    with pytest.raises(kopf.TemporaryError):
        run(dsc.reconcile("ns", "d", SETTINGS))
    got = fake.get("datasets", "d")
    assert cond(got, "Stalled")["reason"] == "NameTaken" and ("Warning", "NameTaken") in [e[:2] for e in fake.events]


def test_a_training_run_reapplied_under_the_same_name_registers_its_own_version(fake: FakeKube):
    """It found the old ModelVersion by the training-run=<name> label and promoted the old artifact."""
    ds = dataset()
    ds["status"] = {"latestValid": {"digest": DIGEST, "uri": "file:///store/x", "id": DIGEST[:12]},
                    "schema": {"columns": [{"name": "y", "type": "integer", "role": "label"}]}}
    fake.add("datasets", ds)
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "r"},
            "spec": {"modelName": "m", "dataset": {"name": "d"}, "estimator": {"type": "LogisticRegression"}}}

    def train(uid: str, digest: str) -> dict:
        fake.add("trainingruns", {**body, "metadata": {"name": "r", "uid": uid}})
        run(trc.reconcile("ns", "r", SETTINGS))
        job = fake.get("trainingruns", "r")["status"]["jobName"]
        fake.job("ns", job, "Complete", json.dumps({"digest": digest, "uri": f"file:///store/{digest[:8]}",
                                                    "metric": "roc_auc", "metrics": {"roc_auc": 0.8}}))
        run(trc.reconcile("ns", "r", SETTINGS))
        return fake.get("trainingruns", "r")
    first = train("uid-1", "1" * 64)
    assert first["status"]["modelVersion"] == "m-v1"
    # GitOps deletes and re-applies it: its Job and ConfigMap go with it (owner references)
    del fake.custom[("trainingruns", "ns", "r")]
    for key in [k for k in fake.objects if k[0] in ("Job", "ConfigMap")]:
        del fake.objects[key]
    second = train("uid-2", "2" * 64)
    assert second["status"]["modelVersion"] == "m-v2", second["status"]
    assert fake.get("modelversions", "m-v2")["spec"]["artifact"]["digest"] == "2" * 64


def test_a_reapplied_monitor_asks_for_a_new_snapshot(fake: FakeKube):
    """The refresh token was <monitor>-<n> from status: a re-applied monitor set the same
    annotation again, no snapshot ran, and the step stayed Refreshing for ever."""
    from mlops_operator.monitoring import retrain as rt

    tokens = []
    for uid in ("uid-a", "uid-b"):
        dm = {"metadata": {"name": "dm", "namespace": "ns", "uid": uid}}
        tokens.append(rt.refresh_value(dm, rt.new_step(dm, 1, "drift", "d", True, 0.0)))
    assert tokens[0] != tokens[1]
    # the same monitor retraining #1 twice (an operator killed between two writes): new tokens too
    dm = {"metadata": {"name": "dm", "namespace": "ns", "uid": "uid-a"}}
    assert rt.new_step(dm, 1, "d", "d", True, 0.0)["token"] != rt.new_step(dm, 1, "d", "d", True, 0.0)["token"]


def test_a_refresh_that_never_finishes_fails_the_retraining_instead_of_blocking_it():
    from mlops_operator.monitoring import retrain as rt

    step = {"startedAt": "2026-01-01T00:00:00Z", "dataset": "d"}
    running = {"status": {"activeJob": "d-snap-x", "lastSnapshotTime": "2025-12-31T00:00:00Z"}}
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    assert rt.refresh_progress(step, running, False, t0 + 60)[0] == "waiting"
    assert rt.refresh_progress(step, running, False, t0 + rt.REFRESH_DEADLINE_S + 1)[0] == "failed"
    done = {"status": {"lastSnapshotTime": "2026-01-01T00:05:00Z"}}
    assert rt.refresh_progress(step, done, True, t0 + 400)[0] == "done"
    assert rt.refresh_progress(step, done, False, t0 + 400)[0] == "waiting"  # a snapshot still owed
    old = {"status": {"lastSnapshotTime": "2025-12-31T23:59:00Z"}}
    assert rt.refresh_progress(step, old, True, t0 + 400)[0] == "waiting"  # finished before it started


# ------------------------------------------------------------------------------ issue 20: ranking

@pytest.mark.parametrize("gate, decision", [
    ({"metric": "hit_rate@10", "margin": 0.0, "candidate": 0.71, "baseline": 0.64}, "promoted"),
    ({"metric": "hit_rate@10", "margin": 0.0, "candidate": 0.60, "baseline": 0.64}, "kept"),
    (None, "kept"),  # required by the spec but not reported by the Job: the gate stays shut
])
def test_a_ranking_run_records_the_baseline_and_the_gate_decides_promotion(fake: FakeKube, gate, decision):
    ds = dataset()
    ds["status"] = {"latestValid": {"digest": DIGEST, "uri": "file:///store/x", "id": DIGEST[:12]},
                    "schema": {"columns": [{"name": "purchased", "type": "numeric", "role": "label"}]}}
    fake.add("datasets", ds)
    fake.add("trainingruns", {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "r"},
                              "spec": {"modelName": "m", "dataset": {"name": "d"}, "task": "ranking",
                                       "ranking": {"groupColumn": "customer_id", "itemColumn": "item_id"},
                                       "estimator": {"type": "LogisticRegression"},
                                       "promotion": {"policy": "always", "requireBaseline": {"metric": "hit_rate@10"}}}})
    run(trc.reconcile("ns", "r", SETTINGS))
    job = fake.get("trainingruns", "r")["status"]["jobName"]
    summary = {"digest": "3" * 64, "uri": "file:///store/3", "task": "ranking", "metric": "ndcg@10",
               "metrics": {"ndcg@10": 0.41, "hit_rate@10": 0.71}, "baseline": {"ndcg@10": 0.33, "hit_rate@10": 0.64},
               "ranking": {"k": 10, "cutoff": "2026-02-12T00:00:00+00:00", "groups": 300, "groupsEvaluated": 280,
                           "groupsWithoutPositive": 20, "items": 120},
               "promotionMetric": "ndcg@10", "candidateScore": 0.41, **({"baselineGate": gate} if gate else {})}
    fake.job("ns", job, "Complete", json.dumps(summary))
    run(trc.reconcile("ns", "r", SETTINGS))
    st = fake.get("trainingruns", "r")["status"]
    assert st["phase"] == "Succeeded" and st["task"] == "ranking" and st["score"] == 0.41
    assert st["baseline"] == summary["baseline"] and st["ranking"]["groupsWithoutPositive"] == 20
    assert st["promotion"]["decision"] == decision, st["promotion"]
    aliases = fake.get("modelversions", st["modelVersion"])["spec"].get("aliases") or []
    assert ("production" in aliases) == (decision == "promoted")
