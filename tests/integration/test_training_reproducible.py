"""Reproducible training: the same TrainingRun spec on the same Dataset version gives the same
ONNX bytes (the same sha256, i.e. the same artifactDigest) in separate processes, for every
allowlisted estimator and for tuned runs, whatever the process's PYTHONHASHSEED and number of
BLAS/OpenMP threads.

Two trainer processes run the real entrypoint (`job.main`, as the Job's
`python -m mlops_operator.training` does) on the same spec documents. Their hash seeds are
chosen so that, before skl2onnx's `opset_import` order was fixed (convert.canonical), every
estimator's two models differed (seed 11 put the default domain first for all of them, seed 16
put ai.onnx.ml first).

In tests/integration (no cluster needed): 44 trainer processes take about a minute, more than
the unit tier's budget; `make test` (and so CI) runs them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_operator.data import snapshot
from mlops_operator.training import estimators

ROOT = Path(__file__).resolve().parents[2]
HASH_SEEDS = ("11", "16")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

FAST = {"RandomForestClassifier": {"n_estimators": 8}, "ExtraTreesClassifier": {"n_estimators": 8},
        "GradientBoostingClassifier": {"n_estimators": 15, "subsample": 0.8},
        "RandomForestRegressor": {"n_estimators": 8}, "ExtraTreesRegressor": {"n_estimators": 8},
        "GradientBoostingRegressor": {"n_estimators": 15, "subsample": 0.8},
        "HistGradientBoostingClassifier": {"max_iter": 15}, "HistGradientBoostingRegressor": {"max_iter": 15},
        "LinearSVR": {"max_iter": 5000}, "LogisticRegression": {"max_iter": 500}}

# One process trains every case in turn through the real entrypoint and writes what each
# termination message said, plus the sha256 of the model.onnx file it stored.
RUNNER = r"""
import hashlib, json, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore", category=FutureWarning)
from mlops_operator.training import job
cases, store, work, out = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2], Path(sys.argv[3]), {}
for name, doc in cases.items():
    d = work / name
    d.mkdir(parents=True)
    (d / "spec.json").write_text(json.dumps(doc))
    rc = job.main(["--spec", str(d / "spec.json"), "--store", store, "--termination-log", str(d / "term")])
    res = dict(json.loads((d / "term").read_text()), rc=rc)
    if rc == 0:
        onnx = Path(res["uri"].removeprefix("file://")) / "model.onnx"
        res["fileSha256"] = hashlib.sha256(onnx.read_bytes()).hexdigest()
    out[name] = res
Path(sys.argv[4]).write_text(json.dumps(out))
"""


def _cases() -> dict[str, dict]:
    out = {}
    for name in sorted(estimators.ALLOWED):
        spec = {"modelName": "m", "dataset": {"name": "retail"},
                "estimator": {"type": name, "params": FAST.get(name, {})}}
        if estimators.task_of(name) == "regression":
            spec.update(target="cart_value", excludeFeatures=["purchased"])
        out[name] = spec
    # tuned: random search in parallel worker processes (loky), and a grid with early stop
    out["tuned-random"] = {
        "modelName": "m", "dataset": {"name": "retail"},
        "estimator": {"type": "RandomForestClassifier", "params": {"n_estimators": 6}},
        "tuning": {"strategy": "random", "maxTrials": 4, "cvFolds": 2, "parallelism": 2, "seed": 5,
                   "space": {"max_depth": {"int": {"low": 2, "high": 8}},
                             "max_features": {"uniform": {"low": 0.3, "high": 1.0}}}}}
    # on a dataset without a timestamp column: a seeded, stratified random split
    out["tuned-grid"] = {
        "modelName": "m", "dataset": {"name": "retail"}, "split": {"seed": 3},
        "estimator": {"type": "HistGradientBoostingClassifier", "params": {"max_iter": 10}},
        "tuning": {"strategy": "grid", "cvFolds": 2, "earlyStopRounds": 2,
                   "space": {"learning_rate": {"choice": [0.05, 0.1, 0.3]}, "max_leaf_nodes": {"choice": [7, 31]}}}}
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> list[dict[str, dict]]:
    tmp = tmp_path_factory.mktemp("reproducible")
    store_uri = (tmp / "store").as_uri()
    ds = yaml.safe_load((ROOT / "examples/retail/dataset.yaml").read_text())
    ds["spec"]["source"]["generator"].update(rows=1500, behaviourShift=0.0, seed=7)
    (tmp / "snap").mkdir()
    snap = snapshot.run({"name": "retail", "spec": ds["spec"]}, store_uri, tmp, tmp / "snap")
    dataset = {"name": "retail", "digest": snap["digest"], "uri": snap["uri"],
               "schema": ds["spec"]["schema"]["columns"], "label": "purchased"}
    docs = {name: {"name": f"run-{name.lower()}", "modelName": "m", "spec": spec, "dataset": dataset, "champion": None}
            for name, spec in CASES.items()}
    untimed = [dict(c, role="id") if c.get("role") == "timestamp" else c for c in dataset["schema"]]
    docs["tuned-grid"]["dataset"] = dict(dataset, schema=untimed)
    (tmp / "cases.json").write_text(json.dumps(docs))
    procs = []
    for i, seed in enumerate(HASH_SEEDS):
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        env.update(PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")]))
        if i == 0:  # one process single-threaded, the other with the machine's default thread count
            env.update({k: "1" for k in THREAD_VARS})
        # both at once, on one store: a model both write is stored once (FileStore.put_version)
        procs.append((subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp / "cases.json"), store_uri,
                                        str(tmp / f"work-{i}"), str(tmp / f"out-{i}.json")], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), i))
    results = []
    for p, i in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads((tmp / f"out-{i}.json").read_text()))
    return results


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_spec_on_the_same_dataset_version_gives_the_same_onnx_bytes(twice, case):
    a, b = (r[case] for r in twice)
    assert a["rc"] == 0 and b["rc"] == 0, (a, b)
    assert a["digest"] == a["fileSha256"] and b["digest"] == b["fileSha256"]
    assert a["digest"] == b["digest"], f"{case}: {a['digest'][:12]} (PYTHONHASHSEED {HASH_SEEDS[0]}, 1 thread) != " \
                                       f"{b['digest'][:12]} (PYTHONHASHSEED {HASH_SEEDS[1]}, default threads)"
    assert a["params"] == b["params"] and a["metrics"] == b["metrics"]
    assert a["reproducible"] is True and b["reproducible"] is True
    assert "reproducibilityNote" not in a
    if case.startswith("tuned"):
        assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
        assert [t.get("score") for t in a["trials"]] == [t.get("score") for t in b["trials"]]


def test_the_two_processes_differ_in_hash_seed_and_threads():
    """The runs above compare processes that differ in what used to change the bytes."""
    assert len(set(HASH_SEEDS)) == 2
    code = "import sys; print(hash('ai.onnx.ml'))"
    hashes = {subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED=s),
                             capture_output=True, text=True).stdout for s in HASH_SEEDS}
    assert len(hashes) == 2


def test_a_run_that_cannot_promise_the_same_bytes_says_why(tmp_path):
    """random_state: null asks scikit-learn for a fresh seed per fit: the run says so, and the
    TrainingRun status keeps what it says (the CRD schema would prune fields it does not know)."""
    from mlops_operator.api.trainingrun import TrainingRunStatus
    from mlops_operator.training import job

    assert estimators.reproducibility("RandomForestClassifier", {"n_estimators": 5}) == (True, None)
    assert estimators.reproducibility("Ridge", {"random_state": 3}) == (True, None)
    store_uri = (tmp_path / "store").as_uri()
    ds = yaml.safe_load((ROOT / "examples/retail/dataset.yaml").read_text())
    ds["spec"]["source"]["generator"].update(rows=600, seed=7)
    (tmp_path / "snap").mkdir()
    snap = snapshot.run({"name": "retail", "spec": ds["spec"]}, store_uri, tmp_path, tmp_path / "snap")
    dataset = {"name": "retail", "digest": snap["digest"], "uri": snap["uri"],
               "schema": ds["spec"]["schema"]["columns"], "label": "purchased"}
    spec = {"modelName": "m", "dataset": {"name": "retail"},
            "estimator": {"type": "DecisionTreeClassifier", "params": {"max_depth": 4, "random_state": None}}}
    out = job.train({"name": "r", "modelName": "m", "spec": spec, "dataset": dataset, "champion": None}, store_uri)
    assert out["reproducible"] is False and "random_state: null" in out["reproducibilityNote"]
    wire = json.loads(job.compact(out))
    assert wire["reproducible"] is False and wire["reproducibilityNote"] == out["reproducibilityNote"]
    st = TrainingRunStatus.model_validate({"reproducible": False, "reproducibilityNote": wire["reproducibilityNote"]})
    assert st.model_dump(by_alias=True, exclude_none=True) == {
        "conditions": [], "trials": [], "reproducible": False, "reproducibilityNote": wire["reproducibilityNote"]}
    crd = yaml.safe_load((ROOT / "crds/trainingruns.mlops.dev.yaml").read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert props["reproducible"]["type"] == "boolean" and props["reproducibilityNote"]["type"] == "string"
