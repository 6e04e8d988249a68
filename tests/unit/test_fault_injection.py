"""Fault injection: the operator is killed at every point of each flow, and each flow still
completes exactly once: no duplicate Job, run or version, and no stuck step.

The controllers run against the in-memory API of tests/unit/fakekube.py, driven round by round
as kopf would (every object reconciled, as on resume and on events), while a small world plays
the kubelet and the Job controller (Jobs finish, Deployments become ready, servers count
requests). A kill is an exception no controller catches, raised just before or just after the
N-th API call, for every N of the flow's clean run; the "restarted operator" then starts with
fresh in-memory state (locks, follow-ups) and only what the API holds. Random multi-kill runs
over many seeds follow. The number of kill points tried is printed (`-s`) and asserted.

The same flows run against a real API server, with the operator pod deleted mid-flow, in
tests/e2e/.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import kopf
import pytest

from mlops_operator.api.conditions import now
from mlops_operator.controllers import dataset as dsc
from mlops_operator.controllers import driftmonitor as dmc
from mlops_operator.controllers import inferenceservice as isc
from mlops_operator.controllers import kube
from mlops_operator.controllers import modelversion as mvc
from mlops_operator.controllers import trainingrun as trc
from mlops_operator.monitoring import retrain as rt

from .fakekube import FakeKube
from .test_reconcile import SETTINGS, dataset, inference_service, model_version

API = ("get_custom", "list_custom", "patch_status", "patch_custom", "create_custom", "delete_custom",
       "create_or_adopt", "read_job", "job_termination_message", "ensure_deployment", "delete_deployment",
       "list_pods", "pod_proxy_get")
MAX_ROUNDS = 40


class Killed(BaseException):
    """The operator process dies here (a BaseException: no controller's `except Exception` sees it)."""


@dataclass
class Faults:
    """Kill just before (or just after) the API calls numbered in `at`."""

    at: set[int] = field(default_factory=set)
    after: bool = False
    calls: int = 0
    kills: int = 0

    def wrap(self, fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in API:
            monkeypatch.setattr(kube, name, self._wrapped(getattr(fake, name)))

    def _wrapped(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            hit = self.calls in self.at
            if hit and not self.after:
                self.kills += 1
                raise Killed
            out = await fn(*args, **kwargs)
            if hit:
                self.kills += 1
                raise Killed
            return out
        return call


def restart() -> None:
    """What a new operator process does not have: every in-memory lock and follow-up."""
    for locks in (dsc._locks, trc._locks, trc.model_locks, isc._locks):
        locks.clear()
    isc._follow_ups.clear()


# ------------------------------------------------------------------------------ the world

def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def summary_for(job: dict) -> str:
    labels = job["metadata"]["labels"]
    if "mlops.dev/dataset" in labels:
        return json.dumps({"digest": digest_of("data"), "rows": 100, "columns": 3, "validated": True,
                           "uri": "file:///store/datasets/d"})
    if "mlops.dev/training-run" in labels:
        run = labels["mlops.dev/training-run"]
        return json.dumps({"digest": digest_of(run), "uri": f"file:///store/models/{run}", "task": "classification",
                           "metric": "roc_auc", "metrics": {"roc_auc": 0.8}, "candidateScore": 0.8,
                           "datasetDigest": digest_of("data")})
    return json.dumps({"ok": True})  # a verification Job


class World:
    """The kubelet, the Job and Deployment controllers and the model servers' traffic."""

    def __init__(self, fake: FakeKube, clock: list[float]):
        self.fake, self.clock = fake, clock
        self.requests = 0

    def advance(self) -> None:
        self.clock[0] += 11
        for (kind, ns, name), obj in list(self.fake.objects.items()):
            if kind == "Job" and not (obj.get("status") or {}).get("conditions"):
                self.fake.job(ns, name, "Complete", summary_for(obj))
        self.fake.deployment_status = lambda d: {
            "observedGeneration": d["metadata"]["generation"], "replicas": d["spec"].get("replicas") or 1,
            "updatedReplicas": d["spec"].get("replicas") or 1, "availableReplicas": d["spec"].get("replicas") or 1,
            "readyReplicas": d["spec"].get("replicas") or 1}
        for (kind, _, _name), dep in list(self.fake.objects.items()):
            if kind == "Deployment":
                dep["status"] = self.fake.deployment_status(dep)
        self.requests += 40
        self.fake.pods = []
        for (kind, _, name), dep in self.fake.objects.items():
            if kind != "Deployment":
                continue
            labels = dep["spec"]["template"]["metadata"]["labels"]
            pod = f"{name}-pod"
            self.fake.pods.append({"metadata": {"name": pod, "labels": labels}, "status": {"phase": "Running"}})
            self.fake.proxy[(pod, "metrics")] = (
                f'mlops_serving_requests_total{{endpoint="infer",code="200"}} {self.requests}\n')


async def one_round(fake: FakeKube, faults: Faults) -> None:
    """Every object reconciled once, as kopf's resume and event handlers would."""
    steps: list[Callable[[], Any]] = []
    for (plural, ns, name), obj in sorted(fake.custom.items()):
        if plural == "datasets":
            steps.append(lambda ns=ns, name=name: dsc.reconcile(ns, name, SETTINGS))
        elif plural == "trainingruns":
            steps.append(lambda ns=ns, name=name: trc.reconcile(ns, name, SETTINGS))
        elif plural == "modelversions":
            steps.append(lambda ns=ns, m=obj["spec"]["model"]: mvc.reconcile_model(ns, m, SETTINGS))
            steps.append(lambda ns=ns, name=name: mvc.reconcile_verification(ns, name, SETTINGS))
        elif plural == "inferenceservices":
            steps.append(lambda ns=ns, name=name: isc.reconcile(ns, name, SETTINGS))
        elif plural == "driftmonitors":
            steps.append(lambda ns=ns, name=name: follow(fake, ns, name))
    for step in steps:
        try:
            await step()
        except Killed:
            restart()
        except (kopf.TemporaryError, kopf.PermanentError):
            pass


async def follow(fake: FakeKube, ns: str, name: str) -> None:
    dm = await kube.get_custom("driftmonitors", ns, name)
    if dm is not None:
        await dmc._follow_retrain(dm, dm.get("status") or {})


# ------------------------------------------------------------------------------ the flows

@dataclass
class Flow:
    name: str
    setup: Callable[[FakeKube, list[float]], None]
    done: Callable[[FakeKube], bool]
    check: Callable[[FakeKube], None]


def jobs(fake: FakeKube, label: str) -> list[str]:
    return [n for (k, _, n), o in fake.objects.items() if k == "Job" and label in o["metadata"]["labels"]]


def custom(fake: FakeKube, plural: str) -> list[dict]:
    return [o for (p, _, _), o in fake.custom.items() if p == plural]


def cond_status(obj: dict, ctype: str) -> str | None:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def training_setup(fake: FakeKube, clock: list[float]) -> None:
    fake.add("datasets", dataset())
    fake.add("trainingruns", {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "r"},
                              "spec": {"modelName": "m", "dataset": {"name": "d"}, "promotion": {"policy": "always"},
                                       "estimator": {"type": "LogisticRegression"}}})


def training_done(fake: FakeKube) -> bool:
    run = fake.custom.get(("trainingruns", "ns", "r"))
    mvs = custom(fake, "modelversions")
    return bool(run and (run.get("status") or {}).get("phase") == "Succeeded" and mvs
                and all(cond_status(v, "Ready") == "True" for v in mvs)
                and (mvs[0].get("status") or {}).get("heldAliases") == ["production"])


def training_check(fake: FakeKube) -> None:
    assert len(jobs(fake, "mlops.dev/dataset")) == 1
    assert len(jobs(fake, "mlops.dev/training-run")) == 1
    assert [v["metadata"]["name"] for v in custom(fake, "modelversions")] == ["m-v1"]
    run = fake.get("trainingruns", "r")
    assert run["status"]["modelVersion"] == "m-v1" and run["status"]["promotion"]["decision"] == "promoted"
    assert not any(c["type"] in ("Reconciling", "Stalled") for c in run["status"]["conditions"])


def rollout_setup(fake: FakeKube, clock: list[float]) -> None:
    fake.add("modelversions", model_version("m-v1", 1))
    fake.add("modelversions", model_version("m-v2", 2, ["production"]))
    isvc = inference_service(replicas=2)
    isvc["status"] = {"modelVersion": "m-v1"}
    fake.add("inferenceservices", isvc)


def rollout_done(fake: FakeKube) -> bool:
    st = fake.get("inferenceservices", "svc").get("status") or {}
    return st.get("modelVersion") == "m-v2" and cond_status(fake.get("inferenceservices", "svc"), "Ready") == "True" \
        and "previousModelVersion" not in st


def rollout_check(fake: FakeKube) -> None:
    deps = [n for (k, _, n) in fake.objects if k == "Deployment"]
    assert deps == ["svc-predictor"], deps
    assert len(custom(fake, "modelversions")) == 2


def canary_setup(fake: FakeKube, clock: list[float]) -> None:
    rollout_setup(fake, clock)
    fake.custom[("inferenceservices", "ns", "svc")]["spec"]["rollout"] = {
        "strategy": "canary", "canary": {"steps": [25, 50], "pauseSeconds": 10, "minRequests": 20}}


def canary_done(fake: FakeKube) -> bool:
    st = fake.get("inferenceservices", "svc").get("status") or {}
    return rollout_done(fake) and (st.get("lastCanary") or {}).get("result") == "promoted" and not st.get("canary")


def canary_check(fake: FakeKube) -> None:
    rollout_check(fake)  # the canary Deployment is gone
    assert fake.get("inferenceservices", "svc")["status"]["lastCanary"]["version"] == "m-v2"


def retrain_setup(fake: FakeKube, clock: list[float]) -> None:
    fake.add("datasets", dataset())
    fake.add("modelversions", model_version("m-v1", 1, ["production"]))
    template = {"modelName": "m", "dataset": {"name": "d"}, "promotion": {"policy": "always"},
                "estimator": {"type": "LogisticRegression"}}
    dm = fake.add("driftmonitors", {"apiVersion": "mlops.dev/v1alpha1", "kind": "DriftMonitor",
                                    "metadata": {"name": "dm"},
                                    "spec": {"inferenceService": "svc", "retrain": {"enabled": True,
                                                                                   "template": template}}})
    # the window's verdict has just started retraining #1 (the decision itself: test_reconcile)
    step = rt.new_step(dm, 1, "data drift: 3 of 4 features drifted", "d", True, clock[0] - 1, nonce="abc123")
    dm["status"] = {"retrain": step, "retrainCount": 1, "lastRetrainTime": now()}


def retrain_done(fake: FakeKube) -> bool:
    r = (fake.get("driftmonitors", "dm").get("status") or {}).get("retrain") or {}
    return r.get("phase") in ("Succeeded", "Failed")


def retrain_check(fake: FakeKube) -> None:
    r = fake.get("driftmonitors", "dm")["status"]["retrain"]
    assert r["phase"] == "Succeeded", r
    runs = custom(fake, "trainingruns")
    assert [x["metadata"]["name"] for x in runs] == ["dm-retrain-1-abc123"]
    assert runs[0]["status"]["phase"] == "Succeeded"
    assert sorted(v["metadata"]["name"] for v in custom(fake, "modelversions")) == ["m-v1", "m-v2"]
    assert len(jobs(fake, "mlops.dev/training-run")) == 1
    assert 1 <= len(jobs(fake, "mlops.dev/dataset")) <= 2  # the first snapshot, and the refresh if apart
    ds = fake.get("datasets", "d")
    assert ds["metadata"]["annotations"][rt.REFRESH_ANNOTATION] == "dm/" + r["token"]


FLOWS = [Flow("snapshot-training-registration", training_setup, training_done, training_check),
         Flow("rollout", rollout_setup, rollout_done, rollout_check),
         Flow("canary", canary_setup, canary_done, canary_check),
         Flow("retraining", retrain_setup, retrain_done, retrain_check)]


def play(flow: Flow, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeKube, int]:
    """The flow from its start to done (or MAX_ROUNDS: a stuck step). (world, rounds)."""
    fake = FakeKube()
    clock = [1_700_000_000.0]
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    monkeypatch.setattr(isc, "_later", lambda *a, **k: None)
    monkeypatch.setattr(isc.time, "time", lambda: clock[0])
    faults.wrap(fake, monkeypatch)
    restart()
    flow.setup(fake, clock)
    world = World(fake, clock)

    async def run() -> int:
        for n in range(MAX_ROUNDS):
            if flow.done(fake):
                return n
            await one_round(fake, faults)
            world.advance()
        return MAX_ROUNDS
    rounds = asyncio.run(run())
    return fake, rounds


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_kill_point_of_a_flow_completes_it_exactly_once(flow: Flow, monkeypatch: pytest.MonkeyPatch):
    clean = Faults()
    fake, rounds = play(flow, clean, monkeypatch)
    assert rounds < MAX_ROUNDS, f"{flow.name} never completed without faults"
    flow.check(fake)
    points = clean.calls
    tried = 0
    for after in (False, True):
        for k in range(1, points + 1):
            faults = Faults(at={k}, after=after)
            fake, rounds = play(flow, faults, monkeypatch)
            where = f"{flow.name}: killed {'after' if after else 'before'} API call {k}/{points}"
            assert faults.kills == 1, where
            assert rounds < MAX_ROUNDS, f"{where}: stuck"
            try:
                flow.check(fake)
            except AssertionError as e:
                raise AssertionError(f"{where}: {e}") from e
            tried += 1
    print(f"\n{flow.name}: {tried} kill points tried ({points} API calls, killed before and after each)")
    assert tried == 2 * points and points >= 10


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_random_repeated_kills_over_many_seeds(flow: Flow, monkeypatch: pytest.MonkeyPatch):
    clean = Faults()
    play(flow, clean, monkeypatch)
    kills = 0
    for seed in range(40):
        rnd = random.Random(seed)
        at = set(rnd.sample(range(1, clean.calls * 2), k=3))
        faults = Faults(at=at, after=rnd.random() < 0.5)
        fake, rounds = play(flow, faults, monkeypatch)
        assert rounds < MAX_ROUNDS, f"{flow.name} seed {seed} ({sorted(at)}): stuck"
        try:
            flow.check(fake)
        except AssertionError as e:
            raise AssertionError(f"{flow.name} seed {seed} ({sorted(at)}): {e}") from e
        kills += faults.kills
    print(f"\n{flow.name}: 40 seeds, {kills} kills")
    assert kills >= 40
