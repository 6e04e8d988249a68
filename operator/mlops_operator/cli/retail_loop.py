"""The retail demo's continuous-retraining loop, as one driver the demo prints and the
end-to-end test asserts on (the demo is the test).

1. The company's export Job lands 20k sessions of current behaviour; Dataset, TrainingRun
   (tuned), ModelVersion v1 promoted to production, InferenceService Ready.
2. Traffic from current behaviour, with delayed purchase labels sent back as feedback; the
   DriftMonitor judges windows and stays quiet.
3. A new season: the export lands shifted sessions and traffic shifts; drift and accuracy
   breach, the monitor refreshes the Dataset and retrains, v2 beats v1 on the newest data,
   is promoted and rolled out (no failed request), and accuracy recovers.
4. A timeline, a summary table and a PNG of accuracy and drift over time.

Everything goes through the Kubernetes API and the InferenceService's V2 endpoint; nothing
here talks to the operator directly.
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
from typing import Any, Callable

from ..data import retail
from ..resources.serving import MONITOR_PORT

REPO = Path(__file__).resolve().parents[3]
LOOP = REPO / "examples" / "retail" / "loop"
MODEL = "propensity"
BATCH = 25
FEEDBACK_DELAY = 4  # labels of a request are sent this many requests later (purchases come later)


class LoopError(RuntimeError):
    pass


@dataclass
class Sample:
    t: float
    drift_share: float | None
    drifted: str | None
    accuracy: float | None
    serving: str | None
    phase: str


@dataclass
class LoopResult:
    timeline: list[tuple[float, str]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    requests: int = 0
    failed: list[str] = field(default_factory=list)
    accuracy: dict[str, float | None] = field(default_factory=dict)
    drift: dict[str, float | None] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    retrain_runs: list[str] = field(default_factory=list)
    client_series: list[tuple[float, float]] = field(default_factory=list)  # (t, accuracy) per 5 s


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


def _finished(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The TrainingRun once it has succeeded or failed, else None (for RetailLoop.wait)."""
    run = run or {}
    return run if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None


class Traffic:
    """A bounded load generator: V1 `:predict` requests of BATCH sessions from the current
    behaviour, and the true labels sent back as feedback a few requests later."""

    def __init__(self, base_url: str, features: list[str], interval: float = 0.05, feedback_url: str | None = None):
        self.base, self.features, self.interval = base_url, features, interval
        self.feedback_base = feedback_url or base_url
        self.shift, self.seed = 0.0, 1000
        self.stop = threading.Event()
        self.requests = 0
        self.failed: list[str] = []
        self.correct: deque[tuple[float, int, int]] = deque(maxlen=100_000)  # (t, right, rows) client side
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _post(self, path: str, body: dict[str, Any], base: str | None = None) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request((base or self.base) + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, {"error": e.read().decode(errors="replace")[:300]}
        except OSError as e:
            return 0, {"error": str(e)}

    def _batches(self):
        while not self.stop.is_set():
            self.seed += 1
            t = retail.generate(400, seed=self.seed, behaviour_shift=self.shift,
                                start="2026-06-01" if self.shift else "2026-01-01")
            cols = {f: t.column(f).to_pylist() for f in self.features}
            labels = [int(v) for v in t.column(retail.LABEL).to_pylist()]
            for i in range(0, t.num_rows, BATCH):
                yield ([{f: cols[f][j] for f in self.features} for j in range(i, min(i + BATCH, t.num_rows))],
                       labels[i:i + BATCH])

    def _run(self) -> None:
        pending: deque[tuple[list[Any], list[int]]] = deque()
        for rows, labels in self._batches():
            code, body = self._post(f"/v1/models/{MODEL}:predict", {"instances": rows})
            self.requests += 1
            if code != 200:
                self.failed.append(f"{code}: {body.get('error', body)}"[:300])
            else:
                preds = body["predictions"]
                self.correct.append((time.time(), sum(int(p) == y for p, y in zip(preds, labels)), len(labels)))
                pending.append((preds, labels))
            if len(pending) > FEEDBACK_DELAY:
                preds, labels = pending.popleft()
                code, body = self._post(f"/v2/models/{MODEL}/feedback", {"predictions": preds, "labels": labels},
                                        self.feedback_base)
                if code != 200:
                    self.failed.append(f"feedback {code}: {body.get('error', body)}"[:300])
            time.sleep(self.interval)

    def series(self, t0: float, bucket: float = 5.0) -> list[tuple[float, float]]:
        """Client-side accuracy per `bucket` seconds (what the customers' purchases say)."""
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


class RetailLoop:
    def __init__(self, kubectl: Kubectl, base_url: Callable[[int], str], image: str, say: Callable[[str], None] = print,
                 rows: int = 20000, timeout: float = 600):
        self.k, self.base_url, self.say, self.rows, self.timeout = kubectl, base_url, say, rows, timeout
        self.image = image  # the runtime image, for the export Jobs
        self.r = LoopResult()
        self.t0 = time.time()
        self.phase = "setup"
        self.traffic: Traffic | None = None
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
        self.k("apply", "-f", str(LOOP / name))

    def export(self, n: int, seed: int, shift: float, start: str) -> None:
        """The company's export Job: replace sessions.parquet on the landing volume."""
        job = f"retail-export-{n}"
        manifest = {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "landing", "persistentVolumeClaim": {"claimName": "retail-landing"}}],
                "containers": [{
                    "name": "export", "image": self.image,
                    "command": ["python", "-m", "mlops_operator.data.retail", "--rows", str(self.rows),
                                "--seed", str(seed), "--shift", str(shift), "--start", start,
                                "--out", "/landing/sessions.parquet"],
                    "volumeMounts": [{"name": "landing", "mountPath": "/landing"}],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}}]}}}}
        self.k("apply", "-f", "-", input=json.dumps(manifest))
        self.k("wait", "--for=condition=Complete", f"job/{job}", "--timeout=180s")

    def _sample_once(self) -> None:
        dm = self.k.get("driftmonitor", MODEL) or {}
        isvc = self.k.get("inferenceservice", MODEL) or {}
        st = dm.get("status") or {}
        self.r.samples.append(Sample(time.time() - self.t0, st.get("driftShare"), cond(dm, "Drifted").get("status"),
                                     st.get("accuracy"), (isvc.get("status") or {}).get("modelVersion"), self.phase))

    def _sampler(self) -> None:
        while not self._sampler_stop.is_set():
            self._sample_once()
            self._sampler_stop.wait(2.0)

    def evaluations_after(self, t: float, n: int) -> list[dict[str, Any]] | None:
        """The DriftMonitor's status once it has evaluated `n` windows that started after `t`."""
        dm = self.k.get("driftmonitor", MODEL) or {}
        st = dm.get("status") or {}
        seen = self._evals
        if st.get("lastEvaluationTime") and (not seen or seen[-1]["lastEvaluationTime"] != st["lastEvaluationTime"]):
            seen.append({**st, "_t": time.time(), "_drifted": cond(dm, "Drifted").get("status")})
        after = [s for s in seen if s["_t"] >= t]
        return after if len(after) >= n else None

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> LoopResult:
        k = self.k
        self.mark(f"export Job lands {self.rows} sessions of current behaviour")
        self.apply("landing.yaml")
        self.export(1, seed=1, shift=0.0, start="2026-01-01")
        self.apply("dataset.yaml")
        self.wait(lambda: cond(k.get("dataset", "retail-sessions"), "Ready").get("status") == "True", "Dataset Ready")
        ds = (k.get("dataset", "retail-sessions") or {})["status"]["latestValid"]
        self.mark(f"Dataset retail-sessions version {ds['id']} ({ds['rows']} rows) validated")
        self.apply("trainingrun.yaml")
        run = self.wait(lambda: _finished(k.get("trainingrun", "propensity-initial")), "initial training")
        st = run["status"]
        if st["phase"] != "Succeeded":
            raise LoopError(f"initial training failed: {st.get('message')}")
        self.mark(f"TrainingRun propensity-initial: {len(st.get('trials') or [])} trials, roc_auc "
                  f"{st['metrics']['roc_auc']:.3f}, registered {st['modelVersion']} ({st['promotion']['decision']})")
        self.r.versions["v1"] = st["modelVersion"]
        self.apply("inferenceservice.yaml")
        self.wait(lambda: (k.get("inferenceservice", MODEL) or {}).get("status", {}).get("modelVersion") ==
                  self.r.versions["v1"] and cond(k.get("inferenceservice", MODEL), "Ready").get("status") == "True",
                  "InferenceService Ready")
        self.mark(f"InferenceService {MODEL} serves {self.r.versions['v1']} on 2 pods")
        base = self.base_url(80)
        meta = json.loads(urllib.request.urlopen(f"{base}/v2/models/{MODEL}", timeout=10).read())
        # feedback goes to the servers' monitor port (apart from inference: serving --monitor-port)
        self.traffic = Traffic(base, [i["name"] for i in meta["inputs"]], feedback_url=self.base_url(MONITOR_PORT))
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
            self.r.client_series = self.traffic.series(self.t0)
            self._sample_once()

    def _loop(self) -> LoopResult:
        k, tr = self.k, self.traffic
        assert tr is not None, "the traffic starts before the loop"
        self.phase = "before"
        self.mark("traffic from current behaviour, labels fed back as feedback")
        t_before = time.time()
        before = self.wait(lambda: self.evaluations_after(t_before, 2), "two quiet windows")
        if any(e["_drifted"] == "True" for e in before):
            raise LoopError(f"the monitor raised drift on unshifted traffic: {before[-1].get('message')}")
        self.r.accuracy["before"], self.r.drift["before"] = before[-1].get("accuracy"), before[-1].get("driftShare")
        self.mark(f"DriftMonitor quiet: drift share {before[-1].get('driftShare')}, "
                  f"accuracy {before[-1].get('accuracy')}")

        self.phase = "shifted"
        self.mark("a new season: the export lands shifted sessions, traffic shifts")
        self.export(2, seed=2, shift=1.0, start="2026-06-01")
        tr.shift = 1.0
        t_shift = time.time()
        drifted = self.wait(lambda: (lambda d: d if cond(d, "Drifted").get("status") == "True" else None)(
            k.get("driftmonitor", MODEL)), "Drifted=True")
        c = cond(drifted, "Drifted")
        self.r.drift["during"] = drifted["status"].get("driftShare")
        self.r.accuracy["during"] = drifted["status"].get("accuracy")
        self.mark(f"Drifted=True ({c['reason']}): {c['message'][:160]}")
        dm = self.wait(lambda: (lambda d: d if (d.get("status") or {}).get("lastTrainingRun") else None)(
            k.get("driftmonitor", MODEL) or {}), "a retraining TrainingRun")
        run_name = dm["status"]["lastTrainingRun"]
        self.r.retrain_runs.append(run_name)
        self.mark(f"DriftMonitor refreshed the Dataset and created TrainingRun {run_name}")
        run = self.wait(lambda: _finished(k.get("trainingrun", run_name)), f"TrainingRun {run_name}")
        rst = run["status"]
        if rst["phase"] != "Succeeded":
            raise LoopError(f"retraining failed: {rst.get('message')}")
        p = rst.get("promotion") or {}
        self.mark(f"{run_name}: {rst['modelVersion']} {p.get('decision')}: {p.get('reason')}")
        self.r.versions["v2"] = rst["modelVersion"]
        if p.get("decision") != "promoted":
            raise LoopError(f"the retrained model was not promoted: {p.get('reason')}")
        self.wait(lambda: (k.get("inferenceservice", MODEL) or {}).get("status", {}).get("modelVersion") ==
                  self.r.versions["v2"], f"InferenceService serving {self.r.versions['v2']}")
        t_v2 = time.time()
        self.mark(f"InferenceService rolled out {self.r.versions['v2']} (was {self.r.versions['v1']})")
        self.phase = "after"
        self.r.accuracy["client_during"] = tr.accuracy_since(t_shift, t_v2)
        after = self.wait(lambda: (lambda ev: ev if ev and ev[-1]["_drifted"] == "False" else None)(
            self.evaluations_after(t_v2, 1)), "Drifted=False on the new model")
        self.r.accuracy["after"], self.r.drift["after"] = after[-1].get("accuracy"), after[-1].get("driftShare")
        self.r.accuracy["client_after"] = tr.accuracy_since(t_v2)
        self.r.accuracy["client_before"] = tr.accuracy_since(t_before, t_shift)
        self.mark(f"Drifted=False on {self.r.versions['v2']}: drift share {self.r.drift['after']}, accuracy "
                  f"{self.r.accuracy['after']}")
        return self.r


def summary_table(r: LoopResult) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    rows = [("", "before", "during", "after"),
            ("serving version", r.versions.get("v1"), r.versions.get("v1"), r.versions.get("v2")),
            ("window accuracy (feedback)", f(r.accuracy.get("before")), f(r.accuracy.get("during")),
             f(r.accuracy.get("after"))),
            ("client-side accuracy", f(r.accuracy.get("client_before")), f(r.accuracy.get("client_during")),
             f(r.accuracy.get("client_after"))),
            ("drift share", f(r.drift.get("before")), f(r.drift.get("during")), f(r.drift.get("after")))]
    w = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)) for row in rows]
    lines.append(f"requests: {r.requests}, failed: {len(r.failed)}; retraining runs: {', '.join(r.retrain_runs)}")
    return "\n".join(lines)


def plot(r: LoopResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    if r.client_series:
        ax.plot([t for t, _ in r.client_series], [a for _, a in r.client_series], color="lightsteelblue",
                label="accuracy per 5 s (purchases fed back)")
    ts = [s.t for s in r.samples]
    ax.step(ts, [s.accuracy if s.accuracy is not None else float("nan") for s in r.samples], where="post",
            label="DriftMonitor window accuracy")
    ax.step(ts, [s.drift_share if s.drift_share is not None else float("nan") for s in r.samples], where="post",
            label="share of drifted features")
    marks = [(t, w) for t, w in r.timeline if any(k in w for k in ("new season", "Drifted=True", "rolled out"))]
    for i, (t, what) in enumerate(marks):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
        label = "new season" if "new season" in what else ("drift detected" if "Drifted" in what else "v2 rolled out")
        ax.text(t + 1, 0.06 + 0.06 * i, label, fontsize=8)
    ax.set_xlabel("seconds since the start of the loop")
    ax.set_ylim(0, 1.0)
    ax.legend(loc="center left", fontsize=8)
    ax.set_title("retail purchase propensity: drift, retraining and recovery")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the loop against any cluster where the operator is deployed (`make e2e-kind`):

        python -m mlops_operator.cli.retail_loop --context kind-mlops -n retail --image IMAGE

    The InferenceService is reached through `kubectl port-forward`.
    """
    import argparse
    import os
    import re
    import shutil
    import sys

    ap = argparse.ArgumentParser(prog="python -m mlops_operator.cli.retail_loop")
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")))
    ap.add_argument("--context", default=None)
    ap.add_argument("-n", "--namespace", default="retail")
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
        p = subprocess.Popen([*k.argv, "port-forward", "svc/propensity", f":{remote}"], stdout=subprocess.PIPE,
                             text=True)
        forwards.append(p)
        assert p.stdout is not None  # stdout=PIPE
        m = re.search(r"127\.0\.0\.1:(\d+)", p.stdout.readline())
        if not m:
            raise LoopError("kubectl port-forward did not start")
        return f"http://127.0.0.1:{m.group(1)}"

    try:
        r = RetailLoop(k, base_url, image=a.image).run()
    except LoopError as e:
        print(f"retail loop failed: {e}", file=sys.stderr)
        return 1
    finally:
        for p in forwards:
            p.terminate()
    print(summary_table(r))
    print(f"plot: {plot(r, Path(a.out) / 'retail-loop.png')}")
    return 0 if not r.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
