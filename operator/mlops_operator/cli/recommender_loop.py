"""The retail recommender's continuous-retraining loop (issue 20), as one driver the demo
(`make demo-recommender`) prints and the end-to-end test asserts on.

1. The shop's export Job lands 8 weeks of newsletters (each customer, each week: 20 candidate
   items and what they bought); Dataset, ranking TrainingRun, ModelVersion v1 promoted to
   production (it beats the popularity baseline), InferenceService Ready.
2. Traffic: for each newsletter of the current season, the top 5 of its candidates from the V2
   model `recommender-topk`; a few requests later the item the customer bought (or none) is fed
   back on the monitor port. The DriftMonitor judges hit rate@5 per window and stays quiet.
3. A new season (garden and sports rise, electronics and toys fall): the export lands shifted
   newsletters and the traffic shifts; the candidates' mix drifts and hit rate falls, the
   monitor refreshes the Dataset and retrains; v2 is promoted only if it beats v1 on the newest
   test weeks and the popularity baseline, is rolled out with no failed request, and hit rate
   recovers.
4. A timeline, a summary table and a PNG of hit rate and drift over time.

The machinery (kubectl, export Jobs, waiting, the phases) is cli/loop_common.py's, shared with
the purchase-propensity loop (cli/retail_loop.py).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..data import retail_ranking
from ..resources.serving import MONITOR_PORT
from .loop_common import (REPO, ClientTraffic, Kubectl, LoopDriver, LoopError, LoopResult, cluster_main, fmt,
                          phase_rows, requests_line, table)
from .loop_common import plot as _plot

__all__ = ["LOOP", "MODEL", "K", "Newsletter", "newsletters", "topk_request", "feedback_body", "RecommenderTraffic",
           "RecommenderLoop", "summary_table", "plot", "main", "LoopError"]

LOOP = REPO / "examples" / "recommender" / "loop"
MODEL = "recommender"
TOPK = f"{MODEL}-topk"
K = 5  # items shown per newsletter; the TrainingRun's ranking.k, so the feedback counts hits at 5
ROWS = 48000  # rows of each export: 300 customers x 8 weeks x 20 candidates
SEED = 1  # the shop's catalogue and customers (the same at every shift)
TRAFFIC_ROWS = 4 * ROWS  # the live newsletters: the same catalogue, four times the customers
FEEDBACK_DELAY = 4  # what was bought is known this many requests later
FEEDBACK_BATCH = 8  # lists per feedback request
METRIC = "hit rate@5"


@dataclass
class Newsletter:
    """One (customer, week) newsletter: its rows in the table, its candidates' ids (row order)
    and the item the customer bought (the first purchased candidate in row order, or None)."""

    visit: int
    rows: list[int]
    item_ids: list[str]
    bought: str | None


def newsletters(cols: dict[str, list[Any]]) -> list[Newsletter]:
    """The newsletters of a table's columns (visit_id, item_id, purchased), in the order of
    their first row (the generator orders rows by time, a newsletter's rows together)."""
    by: dict[int, Newsletter] = {}
    for i, (v, item, y) in enumerate(zip(cols["visit_id"], cols["item_id"], cols[retail_ranking.LABEL])):
        n = by.get(v)
        if n is None:
            n = by[v] = Newsletter(int(v), [], [], None)
        n.rows.append(i)
        n.item_ids.append(str(item))
        if y and n.bought is None:
            n.bought = str(item)
    return list(by.values())


def topk_request(inputs: Sequence[dict[str, Any]], cols: dict[str, list[Any]], n: Newsletter, k: int = K
                 ) -> dict[str, Any]:
    """The V2 top-k request of newsletter `n` from the model's metadata `inputs`: a context
    input (shape [1, 1]) gets the customer's value once, a candidate input ([-1, 1]) one value
    per candidate; item_ids the candidates' ids; k as parameters.k."""
    body: list[dict[str, Any]] = []
    for spec in inputs:
        name = spec["name"]
        if name in ("item_ids", "k"):
            continue
        rows = n.rows[:1] if spec["shape"][0] == 1 else n.rows
        if spec["datatype"] == "BYTES":
            data: list[Any] = [str(cols[name][i]) for i in rows]
        else:
            data = [float(cols[name][i]) for i in rows]
        body.append({"name": name, "datatype": spec["datatype"], "shape": [len(rows), 1], "data": data})
    body.append({"name": "item_ids", "datatype": "BYTES", "shape": [len(n.item_ids)], "data": n.item_ids})
    return {"id": f"nl-{n.visit}", "inputs": body, "parameters": {"k": k}}


def feedback_body(served: Sequence[tuple[list[str], str | None]]) -> dict[str, Any]:
    """The ranking feedback of (list shown best first, item bought or None) pairs."""
    return {"served": [list(s) for s, _ in served], "bought": [b for _, b in served]}


def hit(served: Sequence[str], bought: str | None, k: int = K) -> int | None:
    """1 if the bought item is in the first k served, 0 if not, None when nothing was bought
    (left out of hit rate, as the server and the trainer do)."""
    if bought is None:
        return None
    return int(bought in list(served)[:k])


class RecommenderTraffic(ClientTraffic):
    """Newsletters of the current season, one top-k request each; what was bought is fed back
    FEEDBACK_DELAY requests later, FEEDBACK_BATCH lists at a time."""

    def __init__(self, base_url: str, inputs: list[dict[str, Any]], interval: float = 0.02,
                 feedback_url: str | None = None, k: int = K):
        super().__init__(base_url, interval, feedback_url)
        self.inputs, self.k = inputs, k
        self.rounds = 0

    def _newsletters(self) -> Iterator[tuple[dict[str, list[Any]], Newsletter]]:
        while not self.stop.is_set():
            shift = self.shift
            # each round adds a customer: every newsletter is drawn anew (the generator draws per
            # (week, customer)), the catalogue and the customers stay the shop's
            rows = TRAFFIC_ROWS + self.rounds * retail_ranking.WEEKS * retail_ranking.CANDIDATES
            self.rounds += 1
            t = retail_ranking.generate(rows, seed=SEED, shift=shift, start="2026-03-01" if shift else "2026-02-26")
            cols = {name: t.column(name).to_pylist() for name in t.column_names if name != "event_time"}
            for n in newsletters(cols):
                if self.stop.is_set() or self.shift != shift:
                    break
                yield cols, n

    def _run(self) -> None:
        pending: deque[tuple[list[str], str | None]] = deque()
        for cols, n in self._newsletters():
            code, body = self._post(f"/v2/models/{TOPK}/infer", topk_request(self.inputs, cols, n, self.k))
            self.requests += 1
            if code != 200:
                self.failed.append(f"{code}: {body.get('error', body)}"[:300])
            else:
                out = next((o for o in body.get("outputs", []) if o["name"] == "topk_items"), None)
                served = [str(x) for x in (out or {}).get("data", [])]
                h = hit(served, n.bought, self.k)
                if h is not None:
                    self.record(h, 1)
                pending.append((served, n.bought))
            if len(pending) >= FEEDBACK_DELAY + FEEDBACK_BATCH:
                batch = [pending.popleft() for _ in range(FEEDBACK_BATCH)]
                code, body = self._post(f"/v2/models/{TOPK}/feedback", feedback_body(batch), self.feedback_base)
                if code != 200:
                    self.failed.append(f"feedback {code}: {body.get('error', body)}"[:300])
            time.sleep(self.interval)


class RecommenderLoop(LoopDriver):
    model = MODEL
    loop_dir = LOOP
    landing = "recommender-landing"
    metric = METRIC
    export_prefix = "newsletter-export"
    settle_windows = 1  # the first quiet window may hold v1's last requests; the next is v2's alone
    client_bucket = 10.0  # about 200 purchases a point

    def __init__(self, kubectl: Kubectl, base_url: Callable[[int], str], image: str, say: Callable[[str], None] = print,
                 rows: int = ROWS, timeout: float = 600):
        super().__init__(kubectl, base_url, image, say, timeout)
        self.rows = rows

    def export_newsletters(self, n: int, shift: float, start: str) -> None:
        """The shop's export Job: replace newsletters.parquet on the landing volume."""
        self.export(n, ["python", "-m", "mlops_operator.data.retail_ranking", "--rows", str(self.rows),
                        "--seed", str(SEED), "--shift", str(shift), "--start", start,
                        "--out", "/landing/newsletters.parquet"])

    def describe_run(self, st: dict[str, Any]) -> str:
        m, b, p = st.get("metrics") or {}, st.get("baseline") or {}, st.get("promotion") or {}
        key = f"hit_rate@{K}"
        champ = (f", {p['champion']} {fmt(p.get('championScore'))} on the same weeks"
                 if p.get("champion") else "")
        return (f"{key} {fmt(m.get(key))} (popularity baseline {fmt(b.get(key))}{champ}); {st['modelVersion']} "
                f"{p.get('decision')}: {p.get('reason')}")

    def setup(self) -> RecommenderTraffic:
        self.mark(f"export Job lands {self.rows} newsletter rows (customer x week x 20 candidates) of this season")
        self.apply("landing.yaml")
        self.export_newsletters(1, shift=0.0, start="2026-01-01")
        self.apply("dataset.yaml")
        ds = self.wait_dataset("retail-newsletters")
        self.mark(f"Dataset retail-newsletters version {ds['id']} ({ds['rows']} rows) validated")
        self.apply("trainingrun.yaml")
        st = self.wait_run("recommender-initial", "initial training")
        self.r.runs["v1"] = st
        self.mark(f"TrainingRun recommender-initial: {self.describe_run(st)}")
        self.r.versions["v1"] = st["modelVersion"]
        if (st.get("promotion") or {}).get("decision") != "promoted":
            raise LoopError(f"the initial model was not promoted: {(st.get('promotion') or {}).get('reason')}")
        self.apply("inferenceservice.yaml")
        self.wait_serving(self.r.versions["v1"])
        self.mark(f"InferenceService {MODEL} serves {self.r.versions['v1']} (top {K}: /v2/models/{TOPK}) on 2 pods")
        base = self.base_url(80)
        meta = json.loads(urllib.request.urlopen(f"{base}/v2/models/{TOPK}", timeout=10).read())
        # what was bought goes to the servers' monitor port (apart from inference)
        return RecommenderTraffic(base, meta["inputs"], feedback_url=self.base_url(MONITOR_PORT))

    def new_season(self) -> None:
        self.mark("a new season: the export lands shifted newsletters, traffic shifts (garden and sports rise, "
                  "electronics and toys fall)")
        self.export_newsletters(2, shift=1.0, start="2026-03-01")
        assert self.traffic is not None
        self.traffic.shift = 1.0


def summary_table(r: LoopResult) -> str:
    """Hit rate before / during / after, then each version's TrainingRun beside the baseline."""
    key, ndcg = f"hit_rate@{K}", f"ndcg@{K}"
    rows: list[tuple[Any, ...]] = [("version (TrainingRun, its test weeks)", key, f"baseline {key}", ndcg,
                                    f"baseline {ndcg}", "champion there", "promotion")]
    for v in ("v1", "v2"):
        st = r.runs.get(v) or {}
        m, b, p = st.get("metrics") or {}, st.get("baseline") or {}, st.get("promotion") or {}
        champ = f"{p['champion']} {fmt(p.get('championScore'))}" if p.get("champion") else "-"
        rows.append((r.versions.get(v) or "-", fmt(m.get(key)), fmt(b.get(key)), fmt(m.get(ndcg)), fmt(b.get(ndcg)),
                     champ, p.get("decision") or "-"))
    return "\n".join([*table(phase_rows(r, METRIC)), "", *table(rows), requests_line(r)])


def plot(r: LoopResult, path: Path) -> Path:
    return _plot(r, path, title="retail recommender: hit rate@5 and drift, retraining and recovery", metric=METRIC)


def main(argv: list[str] | None = None) -> int:
    """Run the loop against any cluster where the operator is deployed:

        python -m mlops_operator.cli.recommender_loop --context kind-mlops -n recommender --image IMAGE
    """
    return cluster_main(argv, "python -m mlops_operator.cli.recommender_loop", "recommender", MODEL,
                        lambda k, base_url, image: RecommenderLoop(k, base_url, image=image), summary_table, plot,
                        "recommender-loop.png")


if __name__ == "__main__":
    raise SystemExit(main())
