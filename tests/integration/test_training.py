"""TrainingRun and ModelVersion on the real control plane with the operator running: tuning,
registration, lineage, verification, promotion, bad input and restart safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cluster, OperatorProcess, wait_for
from tests.integration.test_dataset import data_volume

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def retail_dataset(rows: int = 4000, name: str = "retail", shift: float = 0.0, seed: int = 7) -> str:
    import yaml

    ds = yaml.safe_load((REPO / "examples/retail/dataset.yaml").read_text())
    ds["metadata"]["name"] = name
    ds["spec"]["source"]["generator"].update(rows=rows, behaviourShift=shift, seed=seed)
    ds["spec"].pop("refreshInterval", None)
    return yaml.safe_dump(ds)


def run(name: str, body: str, dataset: str = "retail", model: str = "propensity") -> str:
    return f"""
apiVersion: mlops.dev/v1alpha1
kind: TrainingRun
metadata: {{name: {name}}}
spec:
  modelName: {model}
  dataset: {{name: {dataset}}}
{body}
"""


def get(c: Cluster, kind: str, ns: str, name: str) -> dict:
    return c.get_json(kind, name, "-n", ns)


def wait_phase(c: Cluster, ns: str, name: str, phases=("Succeeded", "Failed"), timeout: float = 180) -> dict:
    def done():
        st = get(c, "trainingrun", ns, name).get("status") or {}
        return st if st.get("phase") in phases else None
    return wait_for(done, timeout, interval=0.5, what=f"TrainingRun {name} in {phases}")


def cond(obj: dict, ctype: str) -> dict:
    return next((x for x in (obj.get("status") or {}).get("conditions") or [] if x["type"] == ctype), {})


def wait_mv_ready(c: Cluster, ns: str, name: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (lambda mv: mv if cond(mv, "Ready").get("status") == "True" else None)(
        get(c, "modelversion", ns, name)), timeout, interval=0.5, what=f"ModelVersion {name} Ready")


def events(c: Cluster, ns: str, name: str) -> list[dict]:
    return [e for e in c.get_json("events", "-n", ns)["items"] if e["involvedObject"]["name"] == name]


def production(c: Cluster, ns: str, model: str = "propensity") -> list[str]:
    items = c.get_json("modelversions", "-n", ns, "-l", f"mlops.dev/model={model}")["items"]
    return sorted(i["metadata"]["name"] for i in items if "production" in (i["spec"].get("aliases") or []))


def dataset_ready(c: Cluster, ns: str, name: str = "retail") -> None:
    wait_for(lambda: cond(get(c, "dataset", ns, name), "Ready").get("status") == "True", 120, interval=0.5,
             what=f"Dataset {name} Ready")


TUNED = """
  estimator: {type: RandomForestClassifier, params: {n_estimators: 15}}
  tuning:
    strategy: random
    maxTrials: 8
    cvFolds: 2
    parallelism: 2
    space:
      max_depth: {int: {low: 2, high: 10}}
      min_samples_leaf: {choice: [1, 5, 20]}
  promotion: {policy: ifBetter, metric: roc_auc, margin: 0.0}
"""


def test_train_register_promote_and_refuse_a_worse_model(local_cluster: Cluster, operator: OperatorProcess,
                                                         namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(), ns)
    c.apply(run("tuned", TUNED), ns)
    st = wait_phase(c, ns, "tuned")
    assert st["phase"] == "Succeeded", st
    assert len(st["trials"]) == 8 and st["trialCount"] == 8
    assert len({json.dumps(t["params"], sort_keys=True) for t in st["trials"]}) == 8
    assert st["bestParams"] == max(st["trials"], key=lambda t: t["score"])["params"]
    assert st["metric"] == "roc_auc" and 0.5 < st["metrics"]["roc_auc"] <= 1
    assert {"accuracy", "precision", "recall", "f1", "log_loss"} <= set(st["metrics"])
    assert st["evaluation"]["confusionMatrix"]["labels"] == ["0", "1"]
    assert st["modelVersion"] == "propensity-v1" and st["promotion"]["decision"] == "promoted"
    ds = get(c, "dataset", ns, "retail")
    assert st["datasetDigest"] == ds["status"]["latestValid"]["digest"]
    assert st["reproducible"] is True and "reproducibilityNote" not in st  # kept by the CRD schema

    mv = wait_mv_ready(c, ns, "propensity-v1")
    assert mv["spec"]["version"] == 1 and mv["spec"]["artifact"]["digest"] == st["artifactDigest"]
    lin = mv["spec"]["lineage"]
    assert lin["trainingRun"] == "tuned" and lin["dataset"] == "retail" and lin["datasetDigest"] == st["datasetDigest"]
    assert lin["estimator"] == "RandomForestClassifier" and lin["params"]["n_estimators"] == 15
    assert mv["spec"]["metrics"]["roc_auc"] == pytest.approx(st["metrics"]["roc_auc"])
    assert not mv["metadata"].get("ownerReferences")
    assert wait_for(lambda: production(c, ns) == ["propensity-v1"], 30, what="v1 production")
    mv = wait_for(lambda: (lambda m: m if (m.get("status") or {}).get("aliasHistory") else None)(
        get(c, "modelversion", ns, "propensity-v1")), 30, what="alias history")
    h = mv["status"]["aliasHistory"][-1]
    assert h["alias"] == "production" and h["action"] == "assigned" and h["by"] == "TrainingRun/tuned"
    assert "no version holds production" in h["reason"]
    assert len(c.get_json("jobs", "-n", ns, "-l", "mlops.dev/training-run=tuned")["items"]) == 1

    # a worse model (one weak feature) is registered but not promoted
    c.apply(run("weak", """
  features: [age]
  estimator: {type: LogisticRegression}
  promotion: {policy: ifBetter, metric: roc_auc, margin: 0.01}
"""), ns)
    st2 = wait_phase(c, ns, "weak")
    assert st2["phase"] == "Succeeded" and st2["modelVersion"] == "propensity-v2"
    p = st2["promotion"]
    assert p["decision"] == "kept" and p["champion"] == "propensity-v1"
    assert p["candidateScore"] < p["championScore"], p
    assert any(e["reason"] == "PromotionRefused" for e in events(c, ns, "weak"))
    assert production(c, ns) == ["propensity-v1"]
    wait_for(lambda: (get(c, "modelversion", ns, "propensity-v2").get("status") or {}).get("stage") == "candidate",
             30, what="v2 candidate")

    # a user moves production by hand: the operator takes it off v1 and records who and why
    c.kubectl("patch", "modelversion", "propensity-v2", "-n", ns, "--type=merge", "-p", json.dumps({
        "metadata": {"annotations": {"mlops.dev/alias-changed-by": "alice",
                                     "mlops.dev/alias-change-reason": "manual test"}},
        "spec": {"aliases": ["production"]}}))
    wait_for(lambda: production(c, ns) == ["propensity-v2"], 30, what="production moved to v2")
    v1 = wait_for(lambda: (lambda m: m if (m.get("status") or {}).get("stage") == "archived" else None)(
        get(c, "modelversion", ns, "propensity-v1")), 30, what="v1 archived")
    removed = v1["status"]["aliasHistory"][-1]
    assert removed["action"] == "removed" and removed["by"] == "alice" and "moved to propensity-v2" in removed["reason"]
    assert any(e["reason"] == "AliasRemoved" for e in events(c, ns, "propensity-v1"))

    # immutable: a run's spec and a version's artifact
    p = c.kubectl("patch", "trainingrun", "weak", "-n", ns, "--type=merge", "-p",
                  '{"spec": {"features": ["age", "device"]}}', check=False)
    assert p.returncode != 0 and "immutable" in p.stderr
    p = c.kubectl("patch", "modelversion", "propensity-v1", "-n", ns, "--type=merge", "-p",
                  '{"spec": {"artifact": {"digest": "' + "0" * 64 + '"}}}', check=False)
    assert p.returncode != 0 and "immutable" in p.stderr


@pytest.mark.parametrize("body, message", [
    ("  estimator: {type: PickleLoader}", "Unsupported value"),
    ("  estimator: {type: LogisticRegression}\n  tuning: {strategy: random, space: {}}", "at least one parameter"),
    ("  estimator: {type: LogisticRegression}\n  tuning: {strategy: random, space: {C: {uniform: {low: 2, high: 1}}}}",
     "low must be below high"),
    ("  estimator: {type: LogisticRegression}\n  tuning: {strategy: grid, space: {C: {uniform: {low: 1, high: 2}}}}",
     "grid search needs every parameter as a choice list"),
])
def test_bad_runs_are_rejected_at_apply(local_cluster: Cluster, operator: OperatorProcess, namespace: str,
                                        body: str, message: str):
    p = local_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=run("bad", body), check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_runs_fail_with_a_reason(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=2000), ns)
    # a param value outside scikit-learn's own constraints
    c.apply(run("negative-c", "  estimator: {type: LogisticRegression, params: {C: -1.0}}"), ns)
    # parameter names the estimator does not have: failed before any Job
    c.apply(run("typo", """
  estimator: {type: LogisticRegression, params: {n_trees: 3}}
  tuning: {strategy: random, space: {Cee: {uniform: {low: 0.1, high: 1}}}}
"""), ns)
    # a deadline too short for the work
    c.apply(run("deadline", """
  estimator: {type: GradientBoostingClassifier}
  tuning: {strategy: random, maxTrials: 200, cvFolds: 5, space: {n_estimators: {int: {low: 200, high: 400}}}}
  activeDeadlineSeconds: 3
"""), ns)
    # a Dataset whose only snapshot fails validation
    bad = retail_dataset(rows=2000, name="too-small").replace("minRows: 1000", "minRows: 100000")
    c.apply(bad, ns)
    c.apply(run("invalid-data", "  estimator: {type: LogisticRegression}", dataset="too-small"), ns)

    st = wait_phase(c, ns, "negative-c")
    assert st["phase"] == "Failed" and "'C' parameter" in st["message"], st
    assert cond(get(c, "trainingrun", ns, "negative-c"), "Succeeded")["status"] == "False"
    assert any(e["reason"] == "Failed" and e["type"] == "Warning" for e in events(c, ns, "negative-c"))
    st = wait_phase(c, ns, "typo")
    assert st["phase"] == "Failed" and "LogisticRegression has no parameter(s) Cee, n_trees" in st["message"], st
    assert not c.get_json("jobs", "-n", ns, "-l", "mlops.dev/training-run=typo")["items"]
    st = wait_phase(c, ns, "deadline")
    assert st["phase"] == "Failed" and "activeDeadlineSeconds=3" in st["message"], st
    st = wait_phase(c, ns, "invalid-data")
    assert st["phase"] == "Failed" and "failed validation" in st["message"] and "minRows" in st["message"], st
    assert not c.get_json("modelversions", "-n", ns, "-l", "mlops.dev/training-run=negative-c")["items"]


def test_one_class_label_fails(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    root = data_volume(c, ns)
    (root / "rows.csv").write_text("age,visits,bought\n" + "".join(f"{20 + i % 40},{i % 7},1\n" for i in range(300)))
    c.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: constant}
spec:
  source: {type: file, file: {path: rows.csv, claimName: data}}
  labelColumn: bought
  validation: {minRows: 10, labelMinClasses: 1}
""", ns)
    c.apply(run("constant", "  task: classification\n  estimator: {type: LogisticRegression}", dataset="constant"), ns)
    st = wait_phase(c, ns, "constant")
    assert st["phase"] == "Failed" and "only one class" in st["message"], st


def test_operator_restart_during_training_makes_one_job_and_one_version(local_cluster: Cluster,
                                                                         operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=3000), ns)
    c.apply(run("restart", """
  estimator: {type: GradientBoostingClassifier, params: {n_estimators: 60}}
  tuning: {strategy: random, maxTrials: 4, cvFolds: 2, space: {max_depth: {int: {low: 2, high: 4}}}}
  promotion: {policy: always}
"""), ns)
    wait_for(lambda: c.get_json("jobs", "-n", ns, "-l", "mlops.dev/training-run=restart")["items"], 120,
             interval=0.3, what="training Job")
    operator.kill()
    operator.start()
    st = wait_phase(c, ns, "restart")
    assert st["phase"] == "Succeeded", st
    assert len(c.get_json("jobs", "-n", ns, "-l", "mlops.dev/training-run=restart")["items"]) == 1
    assert [m["metadata"]["name"] for m in c.get_json("modelversions", "-n", ns)["items"]] == ["propensity-v1"]
    # the operator restarted again after the fact: still one version
    operator.kill()
    operator.start()
    wait_mv_ready(c, ns, "propensity-v1")
    assert len(c.get_json("modelversions", "-n", ns)["items"]) == 1


def test_corrupted_artifact_is_degraded(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=2000), ns)
    c.apply(run("small", "  estimator: {type: LogisticRegression}"), ns)
    st = wait_phase(c, ns, "small")
    mv = wait_mv_ready(c, ns, st["modelVersion"])
    pvc = c.get_json("pvc", "mlops-store", "-n", ns)
    root = Path(c.get_json("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])
    uri = mv["spec"]["artifact"]["uri"]
    onnx = root / uri.split("/store/", 1)[1] / "model.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"corrupted!")
    c.kubectl("annotate", "modelversion", mv["metadata"]["name"], "-n", ns, "mlops.dev/verify=1")
    bad = wait_for(lambda: (lambda m: m if cond(m, "Degraded").get("status") == "True" else None)(
        get(c, "modelversion", ns, mv["metadata"]["name"])), 60, interval=0.5, what="Degraded")
    assert cond(bad, "Ready")["status"] == "False" and "does not match" in cond(bad, "Degraded")["message"]
    assert any(e["reason"] == "ArtifactInvalid" for e in events(c, ns, mv["metadata"]["name"]))


def test_kubectl_mlops_plugin(local_cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path, capsys):
    """runs / compare / lineage / promote / export against the real API server and node."""
    import hashlib

    import onnxruntime as ort

    from mlops_operator.cli.kubectl_plugin import main
    from mlops_operator.store.model_manifest import read_manifest

    c, ns = local_cluster, namespace
    kc = ["--kubeconfig", str(c.kubeconfig), "-n", ns]
    c.apply(retail_dataset(rows=2000), ns)
    c.apply(run("lr", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
    assert wait_phase(c, ns, "lr")["phase"] == "Succeeded"
    c.apply(run("tree", "  estimator: {type: DecisionTreeClassifier, params: {max_depth: 4}}"), ns)
    assert wait_phase(c, ns, "tree")["phase"] == "Succeeded"
    wait_mv_ready(c, ns, "propensity-v1")
    wait_mv_ready(c, ns, "propensity-v2")
    capsys.readouterr()

    assert main([*kc, "runs"]) == 0
    out = capsys.readouterr().out
    assert "lr" in out and "tree" in out and "propensity-v2" in out and "roc_auc" in out.lower()
    assert main([*kc, "compare", "propensity-v1", "propensity-v2", "-o", "json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert "LogisticRegression" in json.dumps(cmp) and "DecisionTreeClassifier" in json.dumps(cmp)

    assert main([*kc, "promote", "propensity-v2", "--reason", "integration test"]) == 0
    wait_for(lambda: production(c, ns) == ["propensity-v2"], 30, what="v2 production via the plugin")
    v2 = wait_for(lambda: (lambda m: m if (m.get("status") or {}).get("aliasHistory") else None)(
        get(c, "modelversion", ns, "propensity-v2")), 30, what="v2 history")
    assert v2["status"]["aliasHistory"][-1]["reason"] == "integration test"
    capsys.readouterr()
    assert main([*kc, "lineage", "propensity-v2", "-o", "json"]) == 0
    lin = json.dumps(json.loads(capsys.readouterr().out))
    assert "retail" in lin and '"tree"' in lin and "production" in lin

    digest = v2["spec"]["artifact"]["digest"]
    assert main([*kc, "export", "propensity-v2", "-o", str(tmp_path / "bundle")]) == 0
    onnx = (tmp_path / "bundle" / "model.onnx").read_bytes()
    assert hashlib.sha256(onnx).hexdigest() == digest
    man = read_manifest(tmp_path / "bundle" / "model.json")
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [f.name for f in man.inputs]
    assert not c.pods(ns, "app.kubernetes.io/component=export")

    assert main([*kc, "lineage", "no-such-version"]) == 1
    assert "not found" in capsys.readouterr().err.lower()
