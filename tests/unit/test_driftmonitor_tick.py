"""The DriftMonitor controller's tick end to end on the fake API (issue 17): serving pods with
real counters (serving/monitor.py) read through their cursors, a pod restart, an operator
restart, the window judged on the histograms, the status and the state ConfigMap."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import orjson

from mlops_operator import drift
from mlops_operator.controllers import driftmonitor as dmc
from mlops_operator.controllers import kube
from mlops_operator.serving.app import packed_reference
from mlops_operator.serving.monitor import Monitor
from mlops_operator.settings import Settings

from .test_drift_window import MODEL
from .test_kube_pod_proxy import LoopbackApiServer


class Pod:
    def __init__(self, name: str, start: str):
        self.name, self.start, self.mon = name, start, Monitor(MODEL, seed=0)
        self.sent: list[tuple[float, str]] = []

    def serve(self, g: np.random.Generator, n: int, shift: float) -> None:
        x = np.round(g.normal(2.0 + shift, 1.0, n), 2)
        c = [str(v) for v in g.choice(["u", "v"], n, p=[0.6 - 0.55 * min(shift, 1), 0.4 + 0.55 * min(shift, 1)])]
        self.mon.observe(x[None, :], [c], {"label": np.zeros(n, np.int64),
                                           "probabilities": np.full((n, 2), 0.5, np.float32)})
        self.sent += list(zip(x.tolist(), c))

    def get(self, path: str) -> str:
        url = urlparse(path)
        if url.path.endswith("/reference"):
            ref = packed_reference(MODEL.manifest.reference)  # as the model server answers
            return orjson.dumps({"model": "m", "version": "1", "reference": ref}).decode()
        cursor = parse_qs(url.query, keep_blank_values=True).get("cursor", [None])[0]
        return orjson.dumps({"version": "1", "instance": self.name, "startId": self.start,
                             "drift": self.mon.drift_doc(self.start, cursor),
                             "feedback": {"count": 0}}).decode()


def pod_object(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"mlops.dev/inference-service": "svc", "mlops.dev/track": "stable"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def add_monitor(fake, window: str, min_samples: int) -> None:
    """The InferenceService `svc` serving m-v1 and the DriftMonitor `dm` watching it."""
    fake.add("inferenceservices", {"metadata": {"name": "svc"}, "spec": {"model": "m"},
                                   "status": {"modelVersion": "m-v1"}})
    fake.add("modelversions", {"metadata": {"name": "m-v1"}, "spec": {"model": "m", "version": 1}})
    fake.add("driftmonitors", {"apiVersion": "mlops.dev/v1alpha1", "kind": "DriftMonitor",
                               "metadata": {"name": "dm", "uid": "u1"},
                               "spec": {"inferenceService": "svc", "interval": "30s",
                                        "window": {"duration": window, "minSamples": min_samples}}})


def test_tick_reads_pods_through_cursors_and_judges_the_histograms(fake, monkeypatch):
    clock = [time.time()]  # status times are real (conditions.now): the clock starts at the real time
    monkeypatch.setattr(dmc.time, "time", lambda: clock[0])
    states: dict[str, str] = {}

    async def load(dm):
        return orjson.loads(states.get(dm["metadata"]["name"], "{}"))

    async def save(dm, state):
        states[dm["metadata"]["name"]] = orjson.dumps(state).decode()  # a ConfigMap holds text

    monkeypatch.setattr(dmc, "_load_state", load)
    monkeypatch.setattr(dmc, "_save_state", save)
    pods = {n: Pod(n, f"{n}-0") for n in ("pod-a", "pod-b")}
    reads: list[str] = []

    async def proxy(namespace, pod, port, path, **_):
        reads.append(path)
        return pods[pod].get(path)

    monkeypatch.setattr(kube, "pod_proxy_get", proxy)
    fake.pods = [pod_object(n) for n in pods]
    add_monitor(fake, "2m", 100)
    g = np.random.default_rng(0)
    counted: list[tuple[float, str]] = []

    def tick() -> dict[str, Any]:
        asyncio.run(dmc.tick(fake.get("driftmonitors", "dm"), Settings.from_env()))
        return fake.get("driftmonitors", "dm")["status"]

    for p in pods.values():
        p.serve(g, 300, 0.0)
    st = tick()  # the first read: everything the pods counted so far
    counted += pods["pod-a"].sent + pods["pod-b"].sent
    assert st["windowRows"] == 600 and all("cursor=" in r for r in reads if "stats" in r)
    for p in pods.values():
        p.sent = []
    # traffic shifts; pod-b restarts after serving 50 rows nobody read (gone with it)
    clock[0] += 40
    for p in pods.values():
        p.serve(g, 200, 1.0)
    lost = pods["pod-b"].sent[-200:]
    pods["pod-b"] = Pod("pod-b", "pod-b-1")
    pods["pod-b"].serve(g, 120, 1.0)
    st = tick()
    counted += pods["pod-a"].sent + pods["pod-b"].sent
    assert st["windowRows"] == 600 + 200 + 120 and lost
    assert "restarted: pod-b" in next(c["message"] for c in st["conditions"] if c["type"] == "Ready")
    for p in pods.values():
        p.sent = []
    # the operator restarts: its state is the ConfigMap's; the pods still hold its cursors
    clock[0] += 40
    for p in pods.values():
        p.serve(g, 150, 1.0)
    state = orjson.loads(states["dm"])
    assert all(len(orjson.dumps(v)) < 300 for v in state["pods"].values())  # a cursor per pod, not its counters
    states["dm"] = orjson.dumps(state).decode()
    clock[0] += 120  # the window is full: judged
    st = tick()
    counted += pods["pod-a"].sent + pods["pod-b"].sent
    assert st["samples"] == len(counted) == 600 + 320 + 300
    by = {f["name"]: f for f in st["features"]}
    assert by["x"]["method"] == "wasserstein" and by["x"]["scoreLower"] <= by["x"]["score"] <= by["x"]["scoreUpper"]
    assert st["datasetDrift"] is True and by["x"]["drifted"] and by["c"]["drifted"], by
    # the same decisions as the exact statistic on the raw rows the window counted
    x = np.array([v for v, _ in counted])
    ref = drift.references_from_profile(MODEL.manifest.reference.model_dump(by_alias=True)["columns"])
    hist = drift.CurrentData.from_sample(x, ref["x"])
    exact = drift.evaluate_feature("x", ref["x"], hist, None, 1)
    assert exact.score == by["x"]["score"] or abs(exact.score - by["x"]["score"]) < 1e-6
    assert st["driftShare"] == 1.0 and st["message"].startswith("2 of 2 features drifted")
    # a new window starts empty
    assert orjson.loads(states["dm"])["window"]["rows"] == 0


def test_scrape_reads_pods_concurrently_bounded_and_reports_a_stalled_one(monkeypatch):
    """32 pods, one of which never answers: at most SCRAPE_CONCURRENCY reads are in flight at
    once, the stalled pod costs one SCRAPE_TIMEOUT_S (not a serial wait per pod) and is named
    in the problems, and every other pod's document arrives."""
    monkeypatch.setattr(dmc, "SCRAPE_TIMEOUT_S", 0.3)
    inflight, peak = [0], [0]

    async def proxy(namespace, pod, port, path, **_):
        inflight[0] += 1
        peak[0] = max(peak[0], inflight[0])
        try:
            await asyncio.sleep(3600 if pod == "pod-7" else 0.01)
            return json.dumps({"version": "1", "instance": pod})
        finally:
            inflight[0] -= 1

    monkeypatch.setattr(kube, "pod_proxy_get", proxy)
    pods = [{"metadata": {"name": f"pod-{i}"}} for i in range(32)]
    docs, problems = asyncio.run(dmc._scrape("ns", pods, "m", 1))
    assert peak[0] == dmc.SCRAPE_CONCURRENCY
    assert sorted(docs) == sorted(f"pod-{i}" for i in range(32) if i != 7)
    assert problems == ["pod-7: no stats within 0.3s"]
    assert inflight[0] == 0  # the stalled read was cancelled, not left behind


def test_scrape_keeps_off_the_shared_executor_and_its_threads_end_with_the_timeout(monkeypatch):
    """Through a real kubernetes client and HTTP (LoopbackApiServer): 8 stalled pods first, then
    20 answering ones. The reads run on the scrape's own threads, so the loop's default executor
    (every other API call of the operator; here 1 thread) is never queued behind them: a job on it
    runs while all 8 stalled reads are held at the server. The 8 are in flight together (one
    timeout for all, not one after another), each got one request (no retry), the answering pods
    all arrive, and every reading thread ends. Checked by the order of events, not the clock (the
    waits below only bound a hang)."""
    monkeypatch.setattr(dmc, "SCRAPE_TIMEOUT_S", 2.0)  # not less: answering reads must make it on a busy machine
    stalled = [f"stall-{i}" for i in range(8)]
    healthy = [f"ok-{i}" for i in range(20)]
    pods = [{"metadata": {"name": n}} for n in stalled + healthy]

    async def go(srv: LoopbackApiServer) -> tuple[dict, list[str], int]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        task = asyncio.create_task(dmc._scrape("ns", pods, "m", 1))
        for _ in range(3000):  # until the stalled reads are all held (a bound on a hang: 30 s)
            if srv.stalled_now == len(stalled):
                break
            await asyncio.sleep(0.01)
        held = await loop.run_in_executor(None, lambda: srv.stalled_now)  # what kube.call does
        docs, problems = await task
        return docs, problems, held

    with LoopbackApiServer() as srv:
        monkeypatch.setattr(kube, "_api", srv.client)
        docs, problems, held = asyncio.run(go(srv))
        assert held == len(stalled)  # the shared executor ran a job while the 8 stalled reads were held
        assert srv.stalled_peak == len(stalled)  # all 8 in flight at once: one timeout round
        assert sorted(docs) == sorted(healthy)
        assert problems == [f"{n}: no stats within 2s" for n in stalled]
        assert all(srv.requests[n] == 1 for n in stalled)
        for t in [t for t in threading.enumerate() if t.name.startswith("mlops-scrape")]:
            t.join(30)  # each ends with its read's timeout (before: four tries of 30 s)
        assert not any(t.name.startswith("mlops-scrape") for t in threading.enumerate())


def test_judged_windows_are_kept_in_status_history_bounded(fake, monkeypatch):
    """status.history: one record per evaluated window (time, rows, drift share, verdict,
    version), oldest first, at most HISTORY: what the web view plots over time."""
    clock = [time.time()]
    monkeypatch.setattr(dmc.time, "time", lambda: clock[0])
    states: dict[str, str] = {}

    async def load(dm):
        return orjson.loads(states.get("dm", "{}"))

    async def save(dm, state):
        states["dm"] = orjson.dumps(state).decode()

    monkeypatch.setattr(dmc, "_load_state", load)
    monkeypatch.setattr(dmc, "_save_state", save)
    pod = Pod("pod-a", "pod-a-0")

    async def proxy(namespace, name, port, path, **_):
        return pod.get(path)

    monkeypatch.setattr(kube, "pod_proxy_get", proxy)
    monkeypatch.setattr(dmc, "HISTORY", 3)
    fake.pods = [pod_object("pod-a")]
    add_monitor(fake, "1m", 50)
    g = np.random.default_rng(1)
    shares = []
    for shift in (0.0, 0.0, 1.0, 1.0):
        pod.serve(g, 200, shift)
        asyncio.run(dmc.tick(fake.get("driftmonitors", "dm"), Settings.from_env()))  # read into the window
        clock[0] += 61  # the window is full: the next tick judges it
        asyncio.run(dmc.tick(fake.get("driftmonitors", "dm"), Settings.from_env()))
        st = fake.get("driftmonitors", "dm")["status"]
        shares.append(st["driftShare"])
        assert st["history"][-1]["time"] == st["lastEvaluationTime"]
    hist = st["history"]
    assert len(hist) == 3, hist  # bounded: the oldest window dropped
    assert [h["driftShare"] for h in hist] == shares[1:]
    assert [h["datasetDrift"] for h in hist] == [False, True, True]
    assert all(h["modelVersion"] == "m-v1" and h["samples"] >= 50 and "accuracy" not in h for h in hist)
    assert [h["time"] for h in hist] == sorted(h["time"] for h in hist)
