"""What the demo loops share (cli/retail_loop.py: purchase propensity; cli/recommender_loop.py:
the recommender): kubectl, the export Job that lands new data, waiting, the timeline, sampling
the DriftMonitor, the client's load generator skeleton, the phases of a season change (quiet
windows -> shift -> Drifted -> retraining -> promotion -> rollout -> recovery), the summary
table and the plot.

Everything goes through the Kubernetes API and the InferenceService's endpoints; nothing here
talks to the operator directly.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[3]


class LoopError(RuntimeError):
    pass


@dataclass
class Sample:
    t: float
    drift_share: float | None
    drifted: str | None
    accuracy: float | None  # the DriftMonitor's window metric (accuracy, hit rate, ...)
    serving: str | None
    phase: str


@dataclass
class LoopResult:
    timeline: list[tuple[float, str]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    failed: list[str] = field(default_factory=list)
    accuracy: dict[str, float | None] = field(default_factory=dict)  # the window metric per phase
    drift: dict[str, float | None] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    retrain_runs: list[str] = field(default_factory=list)
    client_series: list[tuple[float, float]] = field(default_factory=list)  # (t, metric) per client_bucket
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # TrainingRun status per version (v1, v2)
    client_bucket: float = 5.0  # seconds per point of client_series


class Kubectl:
    def __init__(self, kubectl: str, kubeconfig: Path, namespace: str):
        self.argv = [kubectl, "--kubeconfig", str(kubeconfig), "-n", namespace]
        self.namespace = namespace

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        p = subprocess.run([*self.argv, *args], input=input, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise LoopError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self("get", kind, name, "-o", "json", check=False)
        return json.loads(out) if out.strip() else None


def cond(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def finished(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The TrainingRun once it has succeeded or failed, else None (for LoopDriver.wait)."""
    run = run or {}
    return run if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None


def post_json(url: str, body: dict[str, Any], timeout: float = 15) -> tuple[int, dict[str, Any]]:
    """POST a JSON body; (status, JSON answer), status 0 when the connection failed."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")[:300]}
    except OSError as e:
        return 0, {"error": str(e)}


class ClientTraffic:
    """A bounded load generator's skeleton: a thread running `_run` until `stop`, counting
    requests and failures, and the client-side quality of what it was served: `record(right,
    n)` per request (right of n), read back per time bucket or phase."""

    def __init__(self, base_url: str, interval: float = 0.05, feedback_url: str | None = None):
        self.base, self.interval = base_url, interval
        self.feedback_base = feedback_url or base_url
        self.shift = 0.0
        self.stop = threading.Event()
        self.requests = 0
        self.failed: list[str] = []
        self.correct: deque[tuple[float, int, int]] = deque(maxlen=100_000)  # (t, right, rows) client side
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _post(self, path: str, body: dict[str, Any], base: str | None = None) -> tuple[int, dict[str, Any]]:
        return post_json((base or self.base) + path, body)

    def _run(self) -> None:  # pragma: no cover - each loop's traffic says what it sends
        raise NotImplementedError

    def record(self, right: int, n: int) -> None:
        self.correct.append((time.time(), right, n))

    def series(self, t0: float, bucket: float = 5.0) -> list[tuple[float, float]]:
        """Client-side quality per `bucket` seconds (what the customers' purchases say)."""
        acc: dict[int, list[int]] = {}
        for t, r, n in list(self.correct):
            b = acc.setdefault(int((t - t0) // bucket), [0, 0])
            b[0], b[1] = b[0] + r, b[1] + n
        return [((k + 0.5) * bucket, r / n) for k, (r, n) in sorted(acc.items()) if n]

    def accuracy_since(self, t0: float, t1: float | None = None) -> float | None:
        right = rows = 0
        for t, r, n in list(self.correct):
            if t >= t0 and (t1 is None or t < t1):
                right, rows = right + r, rows + n
        return right / rows if rows else None


class LoopDriver:
    """The demo loop's machinery; a subclass sets `model` (the InferenceService, DriftMonitor
    and model name), `loop_dir` (its manifests), `landing` (the landing PVC's name), `metric`
    (the window metric's name in messages), implements `setup()` (data, v1, serving; returns
    the traffic) and `new_season()` (lands shifted data, shifts the traffic)."""

    model = ""
    loop_dir = REPO
    landing = ""
    metric = "accuracy"
    export_prefix = "export"
    #: windows judged after the first quiet one on the new model, before the loop ends ("after"
    #: is the last one's); 0: end at the first
    settle_windows = 0
    #: seconds per point of the client-side series
    client_bucket = 5.0

    def __init__(self, kubectl: Kubectl, base_url: Callable[[int], str], image: str, say: Callable[[str], None] = print,
                 timeout: float = 600):
        self.k, self.base_url, self.say, self.timeout = kubectl, base_url, say, timeout
        self.image = image  # the runtime image, for the export Jobs
        #: more of the export Jobs' pod spec (e.g. a nodeSelector: the landing volume's node)
        self.export_pod: dict[str, Any] = {}
        self.r = LoopResult()
        self.t0 = time.time()
        self.phase = "setup"
        self.traffic: ClientTraffic | None = None
        self._sampler_stop = threading.Event()
        self._evals: list[dict[str, Any]] = []  # the DriftMonitor's evaluations seen, in order

    # -- helpers ---------------------------------------------------------------------------
    def mark(self, what: str) -> None:
        t = time.time() - self.t0
        self.r.timeline.append((t, what))
        self.say(f"[{t:6.1f}s] {what}")

    def wait(self, check: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        deadline = time.time() + (timeout or self.timeout)
        while time.time() < deadline:
            got = check()
            if got:
                return got
            time.sleep(1.0)
        raise LoopError(f"timed out waiting for {what}")

    def apply(self, name: str) -> None:
        self.k("apply", "-f", str(self.loop_dir / name))

    def export(self, n: int, command: Sequence[str]) -> None:
        """The company's export Job: `command` (in the runtime image) replaces a file on the
        landing volume, mounted at /landing."""
        job = f"{self.export_prefix}-{n}"
        manifest = {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", **self.export_pod,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "landing", "persistentVolumeClaim": {"claimName": self.landing}}],
                "containers": [{
                    "name": "export", "image": self.image, "command": list(command),
                    "volumeMounts": [{"name": "landing", "mountPath": "/landing"}],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}}]}}}}
        self.k("apply", "-f", "-", input=json.dumps(manifest))
        self.k("wait", "--for=condition=Complete", f"job/{job}", "--timeout=180s")

    def wait_dataset(self, name: str) -> dict[str, Any]:
        self.wait(lambda: cond(self.k.get("dataset", name), "Ready").get("status") == "True", f"Dataset {name} Ready")
        return (self.k.get("dataset", name) or {})["status"]["latestValid"]

    def wait_run(self, name: str, what: str) -> dict[str, Any]:
        """The status of TrainingRun `name` once it succeeded (else LoopError)."""
        run = self.wait(lambda: finished(self.k.get("trainingrun", name)), f"TrainingRun {name}")
        st: dict[str, Any] = run["status"]
        if st["phase"] != "Succeeded":
            raise LoopError(f"{what} failed: {st.get('message')}")
        return st

    def wait_serving(self, version: str | None) -> None:
        self.wait(lambda: (self.k.get("inferenceservice", self.model) or {}).get("status", {}).get("modelVersion") ==
                  version and cond(self.k.get("inferenceservice", self.model), "Ready").get("status") == "True",
                  f"InferenceService serving {version}")

    def _sample_once(self) -> None:
        dm = self.k.get("driftmonitor", self.model) or {}
        isvc = self.k.get("inferenceservice", self.model) or {}
        st = dm.get("status") or {}
        self.r.samples.append(Sample(time.time() - self.t0, st.get("driftShare"), cond(dm, "Drifted").get("status"),
                                     st.get("accuracy"), (isvc.get("status") or {}).get("modelVersion"), self.phase))

    def _sampler(self) -> None:
        while not self._sampler_stop.is_set():
            self._sample_once()
            self._sampler_stop.wait(2.0)

    def evaluations_after(self, t: float, n: int) -> list[dict[str, Any]] | None:
        """The DriftMonitor's status once it has evaluated `n` windows that started after `t`."""
        dm = self.k.get("driftmonitor", self.model) or {}
        st = dm.get("status") or {}
        seen = self._evals
        if st.get("lastEvaluationTime") and (not seen or seen[-1]["lastEvaluationTime"] != st["lastEvaluationTime"]):
            seen.append({**st, "_t": time.time(), "_drifted": cond(dm, "Drifted").get("status")})
        after = [s for s in seen if s["_t"] >= t]
        return after if len(after) >= n else None

    # -- the loop ----------------------------------------------------------------------------
    def setup(self) -> ClientTraffic:  # pragma: no cover - per loop
        raise NotImplementedError

    def new_season(self) -> None:  # pragma: no cover - per loop
        raise NotImplementedError

    def describe_run(self, st: dict[str, Any]) -> str:
        """A line about a retraining run's result (promotion decision and why)."""
        p = st.get("promotion") or {}
        return f"{st['modelVersion']} {p.get('decision')}: {p.get('reason')}"

    def run(self) -> LoopResult:
        self.traffic = self.setup()
        self.apply("driftmonitor.yaml")
        sampler = threading.Thread(target=self._sampler, daemon=True)
        sampler.start()
        self.traffic.thread.start()
        try:
            return self._loop()
        finally:
            self.traffic.stop.set()
            self._sampler_stop.set()
            self.traffic.thread.join(20)
            sampler.join(10)
            self.r.requests, self.r.failed = self.traffic.requests, list(self.traffic.failed)
            self.r.client_series = self.traffic.series(self.t0, self.client_bucket)
            self.r.client_bucket = self.client_bucket
            self._sample_once()

    def _loop(self) -> LoopResult:
        k, tr, m = self.k, self.traffic, self.metric
        assert tr is not None, "the traffic starts before the loop"
        self.phase = "before"
        self.mark("traffic from current behaviour, what customers bought fed back as feedback")
        t_before = time.time()
        before = self.wait(lambda: self.evaluations_after(t_before, 2), "two quiet windows")
        if any(e["_drifted"] == "True" for e in before):
            raise LoopError(f"the monitor raised drift on unshifted traffic: {before[-1].get('message')}")
        self.r.accuracy["before"], self.r.drift["before"] = before[-1].get("accuracy"), before[-1].get("driftShare")
        self.mark(f"DriftMonitor quiet: drift share {before[-1].get('driftShare')}, {m} {before[-1].get('accuracy')}")

        self.phase = "shifted"
        self.new_season()
        t_shift = time.time()
        drifted = self.wait(lambda: (lambda d: d if cond(d, "Drifted").get("status") == "True" else None)(
            k.get("driftmonitor", self.model)), "Drifted=True")
        c = cond(drifted, "Drifted")
        self.r.drift["during"] = drifted["status"].get("driftShare")
        self.r.accuracy["during"] = drifted["status"].get("accuracy")
        self.mark(f"Drifted=True ({c['reason']}): {c['message'][:160]}")
        dm = self.wait(lambda: (lambda d: d if (d.get("status") or {}).get("lastTrainingRun") else None)(
            k.get("driftmonitor", self.model) or {}), "a retraining TrainingRun")
        run_name = dm["status"]["lastTrainingRun"]
        self.r.retrain_runs.append(run_name)
        self.mark(f"DriftMonitor refreshed the Dataset and created TrainingRun {run_name}")
        rst = self.wait_run(run_name, "retraining")
        self.r.runs["v2"] = rst
        p = rst.get("promotion") or {}
        self.mark(f"{run_name}: {self.describe_run(rst)}")
        self.r.versions["v2"] = rst["modelVersion"]
        if p.get("decision") != "promoted":
            raise LoopError(f"the retrained model was not promoted: {p.get('reason')}")
        self.wait(lambda: (k.get("inferenceservice", self.model) or {}).get("status", {}).get("modelVersion") ==
                  self.r.versions["v2"], f"InferenceService serving {self.r.versions['v2']}")
        t_v2 = time.time()
        self.mark(f"InferenceService rolled out {self.r.versions['v2']} (was {self.r.versions['v1']})")
        self.phase = "after"
        self.r.accuracy["client_during"] = tr.accuracy_since(t_shift, t_v2)
        after = self.wait(lambda: (lambda ev: ev if ev and ev[-1]["_drifted"] == "False" else None)(
            self.evaluations_after(t_v2, 1)), "Drifted=False on the new model")
        self.r.accuracy["after"], self.r.drift["after"] = after[-1].get("accuracy"), after[-1].get("driftShare")
        self.mark(f"Drifted=False on {self.r.versions['v2']}: drift share {self.r.drift['after']}, {m} "
                  f"{self.r.accuracy['after']}")
        if self.settle_windows:  # windows of the new model's traffic alone: what "after" means
            t_false = time.time()
            settled = self.wait(lambda: self.evaluations_after(t_false, self.settle_windows),
                                f"{self.settle_windows} more window(s) on the new model")
            self.r.accuracy["after"], self.r.drift["after"] = (settled[-1].get("accuracy"),
                                                               settled[-1].get("driftShare"))
            self.mark(f"next window on {self.r.versions['v2']}: Drifted={settled[-1]['_drifted']}, drift share "
                      f"{self.r.drift['after']}, {m} {self.r.accuracy['after']}")
        self.r.accuracy["client_after"] = tr.accuracy_since(t_v2)
        self.r.accuracy["client_before"] = tr.accuracy_since(t_before, t_shift)
        return self.r


def fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def table(rows: Sequence[Sequence[Any]]) -> list[str]:
    """Rows of cells as left-aligned columns."""
    w = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in rows]


def phase_rows(r: LoopResult, metric: str = "accuracy") -> list[tuple[Any, ...]]:
    """The before / during / after rows every loop's summary starts with."""
    a, d = r.accuracy, r.drift
    return [("", "before", "during", "after"),
            ("serving version", r.versions.get("v1"), r.versions.get("v1"), r.versions.get("v2")),
            (f"window {metric} (feedback)", fmt(a.get("before")), fmt(a.get("during")), fmt(a.get("after"))),
            (f"client-side {metric}", fmt(a.get("client_before")), fmt(a.get("client_during")),
             fmt(a.get("client_after"))),
            ("drift share", fmt(d.get("before")), fmt(d.get("during")), fmt(d.get("after")))]


def requests_line(r: LoopResult) -> str:
    return f"requests: {r.requests}, failed: {len(r.failed)}; retraining runs: {', '.join(r.retrain_runs)}"


#: timeline entries marked on the plot: (what the entry contains, the mark's label)
MARKS = (("new season", "new season"), ("Drifted=True", "drift detected"), ("created TrainingRun", "retraining"),
         ("rolled out", "v2 rolled out"))


def marks(r: LoopResult) -> list[tuple[float, str]]:
    """The timeline's turning points, (seconds, label), in time order."""
    return [(t, label) for t, what in r.timeline for key, label in MARKS if key in what]


def plot(r: LoopResult, path: Path, title: str = "retail purchase propensity: drift, retraining and recovery",
         metric: str = "accuracy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    if r.client_series:
        ax.plot([t for t, _ in r.client_series], [a for _, a in r.client_series], color="lightsteelblue",
                label=f"{metric} per {r.client_bucket:g} s (purchases fed back)")
    ts = [s.t for s in r.samples]
    ax.step(ts, [s.accuracy if s.accuracy is not None else float("nan") for s in r.samples], where="post",
            label=f"DriftMonitor window {metric}")
    ax.step(ts, [s.drift_share if s.drift_share is not None else float("nan") for s in r.samples], where="post",
            label="share of drifted features")
    for i, (t, label) in enumerate(marks(r)):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
        ax.text(t + 1, 0.06 + 0.06 * i, label, fontsize=8)
    ax.set_xlabel("seconds since the start of the loop")
    ax.set_ylim(0, 1.0)
    ax.legend(loc="center left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cluster_main(argv: list[str] | None, prog: str, namespace: str, service: str,
                 make_loop: Callable[[Kubectl, Callable[[int], str], str], LoopDriver],
                 summary: Callable[[LoopResult], str], plot_to: Callable[[LoopResult, Path], Path], png: str) -> int:
    """A loop's command line against any cluster where the operator is deployed; the
    InferenceService `service` is reached through `kubectl port-forward`."""
    import argparse
    import os
    import re
    import shutil
    import sys

    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")))
    ap.add_argument("--context", default=None)
    ap.add_argument("-n", "--namespace", default=namespace)
    ap.add_argument("--image", default=os.environ.get("MLOPS_RUNTIME_IMAGE", "ghcr.io/mlops-dev/mlops-runtime:0.1.0"))
    ap.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl")
    ap.add_argument("--out", default="demo-output")
    ap.add_argument("--no-enable", action="store_true",
                    help="do not apply manifests/namespace (the RoleBinding that lets a namespace-scoped operator "
                         "write in the namespace)")
    a = ap.parse_args(argv)
    k = Kubectl(a.kubectl, Path(a.kubeconfig), a.namespace)
    if a.context:
        k.argv[3:3] = ["--context", a.context]
    subprocess.run([*k.argv[:-2], "create", "namespace", a.namespace], capture_output=True)
    if not a.no_enable:  # namespace-scoped operators write only in namespaces holding this RoleBinding
        enabled = subprocess.run([*k.argv, "apply", "-k", str(REPO / "manifests" / "namespace")],
                                 capture_output=True, text=True)
        if enabled.returncode != 0:  # a cluster-wide operator needs none; a namespace-scoped one ignores the loop
            print(f"could not enable namespace {a.namespace} for the operator: {enabled.stderr.strip()}",
                  file=sys.stderr)
    forwards: list[subprocess.Popen] = []

    def base_url(remote: int = 80) -> str:
        p = subprocess.Popen([*k.argv, "port-forward", f"svc/{service}", f":{remote}"], stdout=subprocess.PIPE,
                             text=True)
        forwards.append(p)
        assert p.stdout is not None  # stdout=PIPE
        m = re.search(r"127\.0\.0\.1:(\d+)", p.stdout.readline())
        if not m:
            raise LoopError("kubectl port-forward did not start")
        return f"http://127.0.0.1:{m.group(1)}"

    try:
        r = make_loop(k, base_url, a.image).run()
    except LoopError as e:
        print(f"{prog}: the loop failed: {e}", file=sys.stderr)
        return 1
    finally:
        for p in forwards:
            p.terminate()
    print(summary(r))
    print(f"plot: {plot_to(r, Path(a.out) / png)}")
    return 0 if not r.failed else 1
