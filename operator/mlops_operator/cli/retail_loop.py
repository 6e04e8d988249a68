"""The retail demo's continuous-retraining loop, as one driver the demo prints and the
end-to-end test asserts on (the demo is the test).

1. The company's export Job lands 20k sessions of current behaviour; Dataset, TrainingRun
   (tuned), ModelVersion v1 promoted to production, InferenceService Ready, capturing its
   traffic (spec.capture).
2. Traffic from current behaviour, each request with an id, and the purchases sent back later
   as feedback under the same id; the DriftMonitor judges windows and stays quiet. The captured,
   labelled traffic becomes Dataset retail-traffic (source.type capture).
3. A new season: traffic shifts, and retail-traffic's range moves to the traffic since the
   season began (`since`); drift and accuracy breach, the monitor refreshes retail-traffic (the
   shifted sessions captured so far and their purchases) and retrains on it, v2 beats v1 on the
   newest captured traffic (a time split on captured_at), is promoted and rolled out (no failed
   request), and accuracy recovers.
4. A timeline, a summary table and a PNG of accuracy and drift over time.

Everything goes through the Kubernetes API and the InferenceService's V2 endpoint; nothing
here talks to the operator directly.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ..data import retail
from ..resources.serving import MONITOR_PORT
from .loop_common import (REPO, ClientTraffic, Kubectl, LoopDriver, LoopError, LoopResult, Sample, cluster_main,
                          cond, finished, phase_rows, requests_line, table)
from .loop_common import plot as _plot

__all__ = ["REPO", "LOOP", "MODEL", "Kubectl", "LoopError", "LoopResult", "Sample", "cond", "RetailLoop", "Traffic",
           "summary_table", "plot", "main"]

LOOP = REPO / "examples" / "retail" / "loop"
MODEL = "propensity"
BATCH = 25
TRAFFIC_DATASET = "retail-traffic"  # the captured, labelled traffic (dataset-traffic.yaml)
FEEDBACK_DELAY = 4  # labels of a request are sent this many requests later (purchases come later)
_finished = finished  # the name the tests knew


class Traffic(ClientTraffic):
    """A bounded load generator: V2 infer requests of BATCH sessions from the current
    behaviour, each with an id, and the true labels sent back as feedback under that id a few
    requests later (so the captured requests and their labels join)."""

    def __init__(self, base_url: str, inputs: list[dict[str, Any]], interval: float = 0.05,
                 feedback_url: str | None = None):
        super().__init__(base_url, interval, feedback_url)
        self.inputs = inputs  # the model's metadata: name and datatype of each input
        self.seed = 1000
        self.run_id = uuid.uuid4().hex[:8]

    def _batches(self):
        while not self.stop.is_set():
            self.seed += 1
            t = retail.generate(400, seed=self.seed, behaviour_shift=self.shift,
                                start="2026-06-01" if self.shift else "2026-01-01")
            cols = {i["name"]: t.column(i["name"]).to_pylist() for i in self.inputs}
            labels = [int(v) for v in t.column(retail.LABEL).to_pylist()]
            for i in range(0, t.num_rows, BATCH):
                j = min(i + BATCH, t.num_rows)
                yield [{"name": f["name"], "datatype": f["datatype"], "shape": [j - i],
                        "data": [v if f["datatype"] == "BYTES" or v is None else float(v)
                                 for v in cols[f["name"]][i:j]]} for f in self.inputs], labels[i:j]

    def _run(self) -> None:
        pending: deque[tuple[str, list[Any], list[int]]] = deque()
        for inputs, labels in self._batches():
            rid = f"{self.run_id}-{self.requests}"
            code, body = self._post(f"/v2/models/{MODEL}/infer", {"id": rid, "inputs": inputs})
            self.requests += 1
            if code != 200:
                self.failed.append(f"{code}: {body.get('error', body)}"[:300])
            else:
                preds = next(o for o in body["outputs"] if o["name"] == "label")["data"]
                self.record(sum(int(p) == y for p, y in zip(preds, labels)), len(labels))
                pending.append((rid, preds, labels))
            if len(pending) > FEEDBACK_DELAY:
                rid, preds, labels = pending.popleft()
                code, body = self._post(f"/v2/models/{MODEL}/feedback",
                                        {"id": rid, "predictions": preds, "labels": labels}, self.feedback_base)
                if code != 200:
                    self.failed.append(f"feedback {code}: {body.get('error', body)}"[:300])
            time.sleep(self.interval)


class RetailLoop(LoopDriver):
    model = MODEL
    loop_dir = LOOP
    landing = "retail-landing"
    export_prefix = "retail-export"

    def __init__(self, kubectl: Kubectl, base_url: Callable[[int], str], image: str, say: Callable[[str], None] = print,
                 rows: int = 20000, timeout: float = 600):
        super().__init__(kubectl, base_url, image, say, timeout)
        self.rows = rows

    def export_sessions(self, n: int, seed: int, shift: float, start: str) -> None:
        """The company's export Job: replace sessions.parquet on the landing volume."""
        self.export(n, ["python", "-m", "mlops_operator.data.retail", "--rows", str(self.rows), "--seed", str(seed),
                        "--shift", str(shift), "--start", start, "--out", "/landing/sessions.parquet"])

    def setup(self) -> Traffic:
        k = self.k
        self.mark(f"export Job lands {self.rows} sessions of current behaviour")
        self.apply("landing.yaml")
        self.export_sessions(1, seed=1, shift=0.0, start="2026-01-01")
        self.apply("dataset.yaml")
        ds = self.wait_dataset("retail-sessions")
        self.mark(f"Dataset retail-sessions version {ds['id']} ({ds['rows']} rows) validated")
        self.apply("trainingrun.yaml")
        st = self.wait_run("propensity-initial", "initial training")
        self.r.runs["v1"] = st
        self.mark(f"TrainingRun propensity-initial: {len(st.get('trials') or [])} trials, roc_auc "
                  f"{st['metrics']['roc_auc']:.3f}, registered {st['modelVersion']} ({st['promotion']['decision']})")
        self.r.versions["v1"] = st["modelVersion"]
        self.apply("inferenceservice.yaml")
        self.wait(lambda: (k.get("inferenceservice", MODEL) or {}).get("status", {}).get("modelVersion") ==
                  self.r.versions["v1"] and cond(k.get("inferenceservice", MODEL), "Ready").get("status") == "True",
                  "InferenceService Ready")
        self.mark(f"InferenceService {MODEL} serves {self.r.versions['v1']} on 2 pods, capturing its traffic")
        base = self.base_url(80)
        meta = json.loads(urllib.request.urlopen(f"{base}/v2/models/{MODEL}", timeout=10).read())
        # feedback goes to the servers' monitor port (apart from inference: serving --monitor-port)
        return Traffic(base, meta["inputs"], feedback_url=self.base_url(MONITOR_PORT))

    def new_season(self) -> None:
        # what the model saw, joined with what customers bought: the data retraining will use
        self.apply("dataset-traffic.yaml")
        ds = self.wait_dataset(TRAFFIC_DATASET)
        self.mark(f"Dataset {TRAFFIC_DATASET} version {ds['id']}: {ds['rows']} captured sessions with their "
                  "purchases, validated")
        self.mark("a new season: customers' behaviour shifts, and with it the traffic")
        assert self.traffic is not None
        self.traffic.shift = 1.0
        # the company's calendar says when the season began: the traffic the next model should
        # learn from starts there (the earlier traffic is the season v1 already knows)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.k("patch", "dataset", TRAFFIC_DATASET, "--type=merge",
               "-p", json.dumps({"spec": {"source": {"capture": {"since": since}}}}))
        self.mark(f"Dataset {TRAFFIC_DATASET} now covers the traffic since the season began ({since})")


def summary_table(r: LoopResult) -> str:
    return "\n".join([*table(phase_rows(r)), requests_line(r)])


def plot(r: LoopResult, path: Path) -> Path:
    return _plot(r, path)


def main(argv: list[str] | None = None) -> int:
    """Run the loop against any cluster where the operator is deployed (`make e2e-kind`):

        python -m mlops_operator.cli.retail_loop --context kind-mlops -n retail --image IMAGE

    The InferenceService is reached through `kubectl port-forward`.
    """
    return cluster_main(argv, "python -m mlops_operator.cli.retail_loop", "retail", MODEL,
                        lambda k, base_url, image: RetailLoop(k, base_url, image=image), summary_table, plot,
                        "retail-loop.png")

if __name__ == "__main__":
    raise SystemExit(main())
