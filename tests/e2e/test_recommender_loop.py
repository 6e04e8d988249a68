"""The recommender's loop on the real control plane, unattended (issue 20): a ranking model
serves the top 5 of each newsletter, the season changes, hit rate falls and the candidates
drift, the DriftMonitor retrains once, the new version is promoted only because it beats the
old one and the popularity baseline, is rolled out with no failed request, and hit rate
recovers. The demo (`make demo-recommender`) runs the same driver (cli/recommender_loop.py)."""

from __future__ import annotations

import pytest

from mlops_operator.cli.recommender_loop import K, MODEL, RecommenderLoop, plot, summary_table
from mlops_operator.cli.retail_loop import Kubectl
from mlops_operator.localcluster import binaries
from tests.conftest import Cluster, OperatorProcess
from tests.e2e.test_retail_loop import _forwarder
from tests.integration.test_inference_service import Forward

pytestmark = pytest.mark.cluster


def test_the_recommender_loop_closes_by_itself(local_cluster: Cluster, operator: OperatorProcess, namespace: str,
                                               tmp_path):
    c, ns = local_cluster, namespace
    k = Kubectl(str(binaries.binary_path("kubectl")), c.kubeconfig, ns)
    fwd: list[Forward] = []
    loop = RecommenderLoop(k, _forwarder(c, ns, fwd, MODEL), image="mlops-runtime:test", timeout=420)
    try:
        r = loop.run()
    finally:
        for f in fwd:
            f.close()
    print("\n".join(f"{t:6.1f}s  {what}" for t, what in r.timeline))
    print(summary_table(r))
    hr = f"hit_rate@{K}"

    assert r.requests > 300 and not r.failed, r.failed[:5]
    assert r.versions == {"v1": "recommender-v1", "v2": "recommender-v2"}, r.versions
    # exactly one retraining, and it is the one the loop followed
    runs = [x["metadata"]["name"] for x in c.get_json("trainingruns", "-n", ns, "-l",
                                                        "mlops.dev/drift-monitor=recommender")["items"]]
    assert runs == r.retrain_runs and len(runs) == 1, runs
    # v1 was promoted because it beat the popularity baseline
    v1 = r.runs["v1"]
    assert v1["metrics"][hr] > v1["baseline"][hr], v1
    # v2 beat v1 on the newest test weeks and the baseline there, in its TrainingRun's status
    st = c.get_json("trainingrun", runs[0], "-n", ns)["status"]
    p = st["promotion"]
    assert p["decision"] == "promoted" and p["champion"] == "recommender-v1", p
    assert p["candidateScore"] == pytest.approx(st["metrics"][hr]) and p["candidateScore"] > p["championScore"], p
    assert st["metrics"][hr] > st["baseline"][hr], (st["metrics"], st["baseline"])
    mvs = c.get_json("modelversions", "-n", ns)["items"]
    assert [m["metadata"]["name"] for m in mvs if "production" in m["spec"]["aliases"]] == ["recommender-v2"]
    # hit rate fell with the season and recovered with v2: the DriftMonitor's windows and the client's count
    a = r.accuracy
    assert a["before"] is not None and a["during"] is not None and a["after"] is not None, a
    assert a["after"] > a["during"], a
    assert a["client_after"] > a["client_during"], a
    assert r.drift["after"] < r.drift["during"], r.drift
    events = {e["reason"] for e in c.get_json("events", "-n", ns)["items"]}
    assert {"RetrainingStarted", "RetrainingSucceeded", "Promoted", "RolledOut"} <= events, events
    png = plot(r, tmp_path / "recommender-loop.png")
    assert png.stat().st_size > 10_000
