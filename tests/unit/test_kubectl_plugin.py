"""`kubectl mlops`: the pure parts (tables, compare, lineage, promote patches, export checks)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from mlops_operator.cli import compare as cmp
from mlops_operator.cli import export as exp
from mlops_operator.cli import lineage as lin
from mlops_operator.cli import promote as pro
from mlops_operator.cli import tables as tab
from mlops_operator.cli.kubectl_plugin import build_parser
from mlops_operator.store import FileStore
from mlops_operator.store import bundle_server
from mlops_operator.store.s3config import parse_s3_uri

NOW = dt.datetime(2025, 1, 2, 12, 0, 0, tzinfo=dt.timezone.utc)
D1 = "a" * 64
D2 = "b" * 64
ART1 = "1" * 64
ART2 = "2" * 64


def _ts(seconds_ago: int) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(name, model="retail", est="LogisticRegression", digest=D1, metric="roc_auc", metrics=None, best=None,
        fixed=None, trials=0, phase="Succeeded", version=None, ago=60):
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": "ml", "creationTimestamp": _ts(ago)},
            "spec": {"modelName": model, "dataset": {"name": "retail"},
                     "estimator": {"type": est, **({"params": fixed} if fixed else {})}},
            "status": {"phase": phase, "datasetDigest": digest, "metric": metric,
                       "metrics": metrics or {}, "bestParams": best or {},
                       "trials": [{"number": i, "params": {}} for i in range(trials)],
                       **({"modelVersion": version} if version else {})}}


def mv(name, version, model="retail", aliases=(), metrics=None, params=None, run_name=None, digest=ART1,
       ds_digest=D1, ready="True", ago=30, history=None, rv="7"):
    conds = [] if ready is None else [{"type": "Ready", "status": ready, "reason": "Verified" if ready == "True"
                                       else "IntegrityError", "message": "" if ready == "True" else "digest mismatch",
                                       "lastTransitionTime": _ts(ago)}]
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": "ml", "creationTimestamp": _ts(ago), "resourceVersion": rv,
                         "labels": {"mlops.dev/model": model}},
            "spec": {"model": model, "version": version,
                     "artifact": {"uri": f"file:///store/models/{model}/{digest}/", "digest": digest},
                     "lineage": {"trainingRun": run_name, "dataset": "retail", "datasetDigest": ds_digest,
                                 "estimator": "LogisticRegression", "params": params or {}},
                     "metrics": metrics or {}, "aliases": list(aliases)},
            "status": {"stage": "aliased" if aliases else "candidate", "conditions": conds,
                       "aliasHistory": history or []}}


# ------------------------------------------------------------------------------------ tables

def test_render_aligns_columns_and_marks_missing():
    out = tab.render(["NAME", "X"], [["a", None], ["longer-name", 3]]).splitlines()
    assert out[0] == "NAME          X"
    assert out[1] == "a             -"
    assert out[2] == "longer-name   3"


@pytest.mark.parametrize("secs,want", [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 5, "3h"),
                                       (3 * 3600 + 600, "3h10m"), (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"),
                                       (20 * 86400, "20d"), (800 * 86400, "2y70d")])
def test_human_duration_matches_kubectl(secs, want):
    assert tab.human_duration(secs) == want


def test_fmt_value():
    assert tab.fmt_value(0.812345) == "0.8123"
    assert tab.fmt_value(1.0) == "1.0"
    assert tab.fmt_value(0.5) == "0.5"
    assert tab.fmt_value(True) == "true"
    assert tab.fmt_value(None) == "-"
    assert tab.fmt_value(0.00001234) == "1.234e-05"
    assert tab.fmt_value(100) == "100"


def test_runs_table_sorted_by_creation_with_metric_and_digest():
    runs = [run("new", metrics={"roc_auc": 0.9}, version="retail-v2", trials=4, ago=10),
            run("old", metrics={"roc_auc": 0.8123456}, version="retail-v1", ago=7200),
            run("other", model="churn", ago=5)]
    headers, rows = tab.runs_table(runs, now=NOW)
    assert headers == ["NAME", "MODEL", "PHASE", "ESTIMATOR", "DATASET", "TRIALS", "METRIC", "VERSION", "AGE"]
    assert [r[0] for r in rows] == ["old", "new", "other"]
    assert rows[0] == ["old", "retail", "Succeeded", "LogisticRegression", f"retail@{D1[:12]}", 0,
                       "roc_auc=0.8123", "retail-v1", "120m"]
    assert rows[1][5] == 4 and rows[1][8] == "10s"
    _, only = tab.runs_table(runs, model="churn", now=NOW)
    assert [r[0] for r in only] == ["other"]
    text = tab.render(headers, rows)
    lines = text.splitlines()
    assert len({ln.index(word) for ln, word in zip(lines, ["MODEL", "retail", "retail", "churn"])}) == 1


def test_run_without_status_shows_pending_and_spec_digest():
    r = {"metadata": {"name": "fresh", "creationTimestamp": _ts(1)},
         "spec": {"modelName": "retail", "dataset": {"name": "retail", "digest": D2},
                  "estimator": {"type": "SVC"}, "metric": "f1"}}
    _, rows = tab.runs_table([r], now=NOW)
    assert rows[0][2] == "Pending" and rows[0][4] == f"retail@{D2[:12]}" and rows[0][6] == "f1"
    assert rows[0][7] is None


def test_versions_table_orders_by_model_and_number_and_picks_key_metrics():
    mvs = [mv("retail-v10", 10, metrics={"roc_auc": 0.91, "accuracy": 0.8, "zz": 1.0, "log_loss": 0.3}),
           mv("retail-v2", 2, aliases=["production", "champion"], metrics={"rmse": 1.5}, run_name="r2"),
           mv("churn-v1", 1, model="churn", ready="False")]
    headers, rows = tab.versions_table(mvs, now=NOW)
    assert headers == ["NAME", "MODEL", "VERSION", "ALIASES", "STAGE", "METRICS", "RUN", "READY", "AGE"]
    assert [r[0] for r in rows] == ["churn-v1", "retail-v2", "retail-v10"]
    assert rows[1][3] == "production,champion" and rows[1][4] == "aliased" and rows[1][6] == "r2"
    assert rows[2][5] == "roc_auc=0.91 accuracy=0.8 log_loss=0.3"
    assert rows[0][7] == "False" and rows[0][3] is None
    _, chosen = tab.versions_table(mvs, metrics=["accuracy"], model="retail", now=NOW)
    assert [r[5] for r in chosen] == [None, "accuracy=0.8"]


def test_lower_is_better_is_the_trainers():
    from mlops_operator.training.evaluate import LOWER_IS_BETTER

    assert LOWER_IS_BETTER is tab.LOWER_IS_BETTER


# ------------------------------------------------------------------------------------ compare

def test_parse_ref():
    assert cmp.parse_ref("retail-v1") == (None, "retail-v1")
    assert cmp.parse_ref("mv/retail-v1") == ("ModelVersion", "retail-v1")
    assert cmp.parse_ref("tr/run-a") == ("TrainingRun", "run-a")
    assert cmp.parse_ref("trainingruns.mlops.dev/run-a") == ("TrainingRun", "run-a")
    with pytest.raises(ValueError):
        cmp.parse_ref("pod/x")


def test_compare_union_of_keys_diff_markers_and_best():
    a = run("run-a", fixed={"max_iter": 200}, best={"C": 1.0, "penalty": "l2"},
            metrics={"roc_auc": 0.81, "log_loss": 0.40, "accuracy": 0.7})
    b = mv("retail-v2", 2, params={"C": 0.1, "max_iter": 200, "solver": "lbfgs"}, ds_digest=D2,
           metrics={"roc_auc": 0.85, "log_loss": 0.45, "rmse": 3.0})
    c = cmp.compare([a, b])
    assert [it["ref"] for it in c["items"]] == ["tr/run-a", "mv/retail-v2"]
    assert list(c["params"]) == ["C", "max_iter", "penalty", "solver"]  # union, sorted
    assert c["params"]["C"] == {"values": [1.0, 0.1], "differs": True}
    assert c["params"]["max_iter"]["differs"] is False
    assert c["params"]["penalty"] == {"values": ["l2", None], "differs": True}
    assert c["metrics"]["roc_auc"]["best"] == [1]  # higher is better
    assert c["metrics"]["log_loss"] == {"values": [0.40, 0.45], "lowerIsBetter": True, "best": [0]}
    assert c["metrics"]["rmse"]["best"] == []  # only one has it: nothing to choose
    assert c["fields"]["datasetDigest"]["differs"] is True
    assert c["fields"]["estimator"]["differs"] is False
    text = cmp.render_compare(c)
    lines = text.splitlines()
    assert lines[0].split() == ["tr/run-a", "mv/retail-v2"]
    row = {ln.split()[1] if ln.startswith("*") else ln.split()[0]: ln for ln in lines[1:] if ln.strip()}
    assert row["C"].startswith("* C") and row["max_iter"].startswith("  max_iter")
    assert "0.85 (best)" in row["roc_auc"] and "0.81 (best)" not in row["roc_auc"]
    assert "0.4 (best)" in row["log_loss"] and "(lower is better)" in row["log_loss"]
    assert "(higher is better)" in row["roc_auc"]
    assert row["dataset"].startswith("* dataset digest") or any(
        ln.startswith("* dataset digest") for ln in lines)
    assert D1[:12] in text and D2[:12] in text
    assert "* differs" in lines[-1]


def test_compare_int_and_float_params_are_equal_and_ties_win_together():
    a = mv("m-v1", 1, params={"n_estimators": 100}, metrics={"rmse": 1.0, "mae": 2.0})
    b = mv("m-v2", 2, params={"n_estimators": 100.0}, metrics={"rmse": 1.0, "mae": 1.0})
    c2 = mv("m-v3", 3, params={"n_estimators": True}, metrics={"rmse": 2.0})
    c = cmp.compare([a, b, c2])
    assert c["params"]["n_estimators"]["differs"] is True  # True is not 100
    assert cmp.compare([a, b])["params"]["n_estimators"]["differs"] is False
    assert c["metrics"]["rmse"]["best"] == [0, 1]
    assert c["metrics"]["mae"]["best"] == [1]
    assert cmp.compare([a, a])["metrics"]["rmse"]["best"] == []  # all equal: no winner


# ------------------------------------------------------------------------------------ lineage

def _dataset():
    return {"kind": "Dataset", "metadata": {"name": "retail"},
            "status": {"versions": [{"id": D2[:12], "digest": D2, "rows": 5, "createdAt": "t2", "validated": True},
                                    {"id": D1[:12], "digest": D1, "rows": 10000, "createdAt": "t1",
                                     "validated": True, "uri": "file:///store/datasets/retail/" + D1 + "/"}]}}


def _isvc(name, current=None, previous=None, alias="production"):
    return {"kind": "InferenceService", "metadata": {"name": name},
            "spec": {"model": "retail", "alias": alias},
            "status": {"modelVersion": current, "previousModelVersion": previous, "url": f"http://{name}",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t"}]}}


def test_lineage_assembly():
    history = [{"alias": "production", "action": "assigned", "time": "2025-01-01T00:00:00Z", "by": "alice",
                "reason": "beats v1"}]
    m = mv("retail-v2", 2, aliases=["production"], run_name="run-a", history=history,
           metrics={"roc_auc": 0.85}, params={"C": 0.5})
    r = run("run-a", best={"C": 0.5}, fixed={"max_iter": 100}, metrics={"roc_auc": 0.85}, trials=3)
    services = [_isvc("api", current="retail-v2"), _isvc("canary", previous="retail-v2"),
                _isvc("unrelated", current="retail-v1")]
    got = lin.assemble(m, r, _dataset(), services)
    assert got["dataset"] == {"name": "retail", "found": True, "digest": D1, "versionId": D1[:12], "rows": 10000,
                              "validated": True, "createdAt": "t1",
                              "uri": "file:///store/datasets/retail/" + D1 + "/"}
    assert got["trainingRun"]["name"] == "run-a" and got["trainingRun"]["found"]
    assert got["trainingRun"]["bestParams"] == {"max_iter": 100, "C": 0.5}
    assert got["trainingRun"]["metric"] == "roc_auc" and got["trainingRun"]["metricValue"] == 0.85
    assert got["modelVersion"]["aliases"] == ["production"] and got["modelVersion"]["aliasHistory"] == history
    assert got["modelVersion"]["digest"] == ART1 and got["modelVersion"]["ready"] == "True"
    assert [(s["name"], s["role"]) for s in got["inferenceServices"]] == [("api", "serving"), ("canary", "previous")]
    text = lin.render_lineage(got)
    lines = text.splitlines()
    assert lines[0].startswith("Dataset retail") and "10000 rows" in lines[0]
    assert any(ln.lstrip().startswith("└─ TrainingRun run-a") and "roc_auc=0.85" in ln for ln in lines)
    assert any("best params: C=0.5, max_iter=100" in ln for ln in lines)
    assert any("ModelVersion retail-v2" in ln and "aliases: production" in ln for ln in lines)
    assert any("assigned production by alice: beats v1" in ln for ln in lines)
    assert "├─ InferenceService api  serving it" in text
    assert "└─ InferenceService canary  served it before" in text
    json.dumps(got)  # -o json works


def test_lineage_with_deleted_run_and_dataset_and_no_services():
    m = mv("retail-v1", 1, run_name="gone", params={"C": 2}, ds_digest=D2)
    m["status"]["servedBy"] = ["known-by-operator"]
    got = lin.assemble(m, None, None, [])
    assert got["dataset"]["found"] is False and got["dataset"]["rows"] is None
    assert got["dataset"]["versionId"] == D2[:12]
    assert got["trainingRun"] == {"name": "gone", "found": False, "phase": None, "estimator": "LogisticRegression",
                                  "bestParams": {"C": 2}, "trials": 0, "metric": None, "metricValue": None,
                                  "completionTime": None}
    assert got["inferenceServices"] == [{"name": "known-by-operator", "role": "serving", "ready": "Unknown"}]
    text = lin.render_lineage(got)
    assert "Dataset not found" in text and "TrainingRun not found" in text
    got2 = lin.assemble(mv("x-v1", 1), None, None, [])
    assert "(not served by any InferenceService)" in lin.render_lineage(got2)


def test_lineage_dataset_version_dropped_from_history():
    got = lin.assemble(mv("retail-v1", 1, ds_digest="c" * 64), None, _dataset(), [])
    assert got["dataset"]["found"] and got["dataset"]["rows"] is None
    assert "no longer in the Dataset's history" in lin.render_lineage(got)


# ------------------------------------------------------------------------------------ promote

def test_promote_patch_keeps_other_aliases_and_annotates():
    m = mv("retail-v2", 2, aliases=["champion"], rv="42")
    body = pro.promote_patch(m, "production", "alice", None)
    assert body == {"metadata": {"annotations": {"mlops.dev/alias-changed-by": "alice",
                                                 "mlops.dev/alias-change-reason": "promoted with kubectl mlops"},
                                 "resourceVersion": "42"},
                    "spec": {"aliases": ["champion", "production"]}}
    assert pro.promote_patch(m, "production", "alice", "beats v1")["metadata"]["annotations"][
        "mlops.dev/alias-change-reason"] == "beats v1"
    assert pro.promote_patch(mv("retail-v2", 2, aliases=["production"]), "production", "alice") is None


def test_promote_refuses_unready_unless_forced():
    bad = mv("retail-v3", 3, ready="False")
    with pytest.raises(pro.RefusedError, match=r"not Ready \(Ready=False, IntegrityError: digest mismatch\).*--force"):
        pro.promote_patch(bad, "production", "alice")
    assert pro.promote_patch(bad, "production", "alice", force=True)["spec"]["aliases"] == ["production"]
    with pytest.raises(pro.RefusedError, match="no Ready condition"):
        pro.promote_patch(mv("retail-v4", 4, ready=None), "production", "alice")
    with pytest.raises(pro.RefusedError, match="invalid alias"):
        pro.promote_patch(mv("retail-v2", 2), "Prod!", "alice")


def test_demote_patch_and_current_holder():
    m = mv("retail-v2", 2, aliases=["production", "champion"])
    body = pro.demote_patch(m, "production", "bob", "rollback")
    assert body["spec"] == {"aliases": ["champion"]}
    assert body["metadata"]["annotations"] == {"mlops.dev/alias-changed-by": "bob",
                                               "mlops.dev/alias-change-reason": "rollback"}
    with pytest.raises(pro.RefusedError, match="does not hold alias staging"):
        pro.demote_patch(m, "staging", "bob")
    vs = [mv("retail-v1", 1, aliases=["production"]), m]
    assert pro.current_holder(vs, "production", exclude="retail-v2") == "retail-v1"
    assert pro.current_holder(vs, "staging") is None


# ------------------------------------------------------------------------------------ export

def test_bundle_server_verifies_then_serves_with_the_token(tmp_path, monkeypatch):
    import threading
    import urllib.error
    import urllib.request

    root = tmp_path / "store"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx-bytes" * 1000)
    man = tmp_path / "model.json"
    man.write_bytes(b'{"onnxSha256": "x"}')
    digest, uri = FileStore(root).put_version("models", "retail", onnx, {"model.json": man})
    bundle = bundle_server.prepare(root, uri, ["model.onnx", "model.json"], digest)
    assert bundle["model.onnx"].sha256 == digest and bundle["model.onnx"].size == 10000
    assert bundle["model.json"].sha256 == hashlib.sha256(b'{"onnxSha256": "x"}').hexdigest()
    srv = bundle_server.make_server(bundle, bundle_server.token_sha256("t0ken"), host="127.0.0.1", port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"

    def get(path: str, token: str | None = "t0ken"):  # noqa: ANN202
        head = {bundle_server.TOKEN_HEADER: token} if token is not None else {}
        return urllib.request.urlopen(urllib.request.Request(base + path, headers=head))

    assert get("/healthz", None).read() == b"ok\n"
    # no token, a wrong one, the token's hash (what the pod spec shows), the token in the query
    for path, token in (("/model.onnx", None), ("/model.onnx", "wrong"),
                        ("/model.onnx", bundle_server.token_sha256("t0ken")), ("/model.onnx?token=t0ken", None)):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(path, token)
        assert e.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as e:
        get("/other.bin")
    assert e.value.code == 404
    r = get("/model.onnx")
    assert r.headers[bundle_server.SHA_HEADER] == digest and r.read() == b"onnx-bytes" * 1000
    # an idle client is dropped after the idle timeout, not held forever by a thread
    assert srv.RequestHandlerClass.timeout == bundle_server.IDLE_TIMEOUT_S  # type: ignore[attr-defined]
    assert get("/done").read() == b"bye\n"
    t.join(5)
    assert not t.is_alive() and srv.done.is_set()  # type: ignore[attr-defined]
    srv.server_close()
    with pytest.raises(ValueError, match="token"):
        bundle_server.make_server(bundle, "", port=0)


def test_bundle_server_refuses_a_bad_store_before_listening(tmp_path, capsys):
    root = tmp_path / "store"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx-bytes")
    digest, uri = FileStore(root).put_version("models", "retail", onnx, {})
    term = tmp_path / "termination-log"
    args = ["--file", "model.onnx", "--store-root", str(root), "--termination-log", str(term), "--port", "0"]
    assert bundle_server.main(["--uri", uri, "--digest", "0" * 64, *args]) == 1
    assert "does not match" in term.read_text() and "does not match" in capsys.readouterr().err
    assert bundle_server.main(["--uri", uri, "--digest", digest, "--file", "model.json", *args]) == 1
    assert "model.json is missing" in term.read_text().replace(str(root / "models" / "retail" / digest) + "/", "")
    assert bundle_server.main(["--uri", "file:///elsewhere/x/", "--digest", digest, *args]) == 1
    assert "outside the store root" in term.read_text()


def test_export_pod_is_locked_down():
    pod = exp.export_pod("mlops-export-abc", "ml", "retail-v2", f"file:///store/models/retail/{ART1}/", ART1,
                         "tok", claim="my-store", image="img:1")
    spec = pod["spec"]
    c = spec["containers"][0]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "export"
    assert pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mlops"
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["image"] == "img:1"
    assert c["command"] == ["python", "-m", "mlops_operator.store.bundle_server", "--uri",
                            f"file:///store/models/retail/{ART1}/", "--file", "model.onnx", "--file", "model.json",
                            "--digest", ART1, "--store-root", "/store", "--port", str(exp.PORT)]
    assert {"name": exp.TOKEN_ENV, "value": hashlib.sha256(b"tok").hexdigest()} in c["env"]  # never the token
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": exp.PORT}
    vol = next(v for v in spec["volumes"] if v["name"] == "store")
    assert vol["persistentVolumeClaim"] == {"claimName": "my-store", "readOnly": True}
    assert {"name": "store", "mountPath": "/store", "readOnly": True} in c["volumeMounts"]


def test_export_defaults_and_names(monkeypatch):
    monkeypatch.delenv("MLOPS_RUNTIME_IMAGE", raising=False)
    assert exp.default_image() == "ghcr.io/mlops-dev/mlops-runtime:0.1.0"
    monkeypatch.setenv("MLOPS_RUNTIME_IMAGE", "mine:2")
    assert exp.export_pod("p", "ns", "m", "file:///store/x/", ART1, "t")["spec"]["containers"][0]["image"] == "mine:2"
    a, b = exp.pod_name("retail-v2", ART1), exp.pod_name("retail-v2", ART1)
    assert a.startswith("mlops-export-") and len(a) == len("mlops-export-") + 10 and a != b
    assert exp.pod_name("x", ART1, salt="s") == exp.pod_name("x", ART1, salt="s")
    assert exp.new_token() != exp.new_token() and len(exp.new_token()) >= 32
    mv = {"metadata": {"name": "m"}, "spec": {"artifact": {"uri": "s3://b/k/", "digest": ART1}}}
    assert exp.artifact(mv) == ("s3://b/k/", ART1)
    with pytest.raises(exp.ExportError, match="neither in a file:// nor an s3://"):
        exp.artifact({"metadata": {"name": "m"}, "spec": {"artifact": {"uri": "gs://b/k/", "digest": ART1}}})
    with pytest.raises(exp.ExportError, match="not under /store"):
        exp.artifact({"metadata": {"name": "m"}, "spec": {"artifact": {"uri": "file:///data/x/", "digest": ART1}}})
    with pytest.raises(exp.ExportError, match="nothing to export"):
        exp.artifact({"metadata": {"name": "m"}, "spec": {}})


def test_s3_version_takes_the_endpoint_from_the_store_and_the_prefix_from_the_artifact():
    root = parse_s3_uri("s3://models-bkt/ops?endpoint=http://127.0.0.1:8333&region=eu-west-1")
    cfg, model = exp.s3_version(root, f"s3://models-bkt/ops/team-a/models/retail/{ART1}/", ART1)
    assert model == "retail" and cfg.prefix == "ops/team-a" and cfg.bucket == "models-bkt"
    assert (cfg.endpoint, cfg.region, cfg.path_style) == ("http://127.0.0.1:8333", "eu-west-1", True)
    cfg, _ = exp.s3_version(root, f"s3://models-bkt/models/retail/{ART1}", ART1)
    assert cfg.prefix == ""
    with pytest.raises(exp.ExportError, match="is in bucket 'other'"):
        exp.s3_version(root, f"s3://other/models/retail/{ART1}/", ART1)
    with pytest.raises(exp.ExportError, match="not a model version"):
        exp.s3_version(root, f"s3://models-bkt/datasets/retail/{ART1}/", ART1)
    with pytest.raises(exp.ExportError, match="does not end in its digest"):
        exp.s3_version(root, f"s3://models-bkt/models/retail/{ART2}/", ART1)
    # a ModelVersion anyone may edit must not steer the download out of the local cache directory
    for hostile in (f"s3://models-bkt/../../../../home/u/x/models/retail/{ART1}/",
                    f"s3://models-bkt/ops/./models/retail/{ART1}/", f"s3://models-bkt/ops/models/../{ART1}/"):
        with pytest.raises(exp.ExportError, match="not a store path|not a model version"):
            exp.s3_version(root, hostile, ART1)


def test_receive_checks_length_and_both_digests(tmp_path):
    data = b"the onnx model" * 100
    digest = hashlib.sha256(data).hexdigest()
    chunks = [data[:500], data[500:]]
    assert exp.receive(chunks, tmp_path / "a", "model.onnx", digest, len(data), digest).read_bytes() == data
    cases = [
        ((digest, len(data) + 1, digest), "broke off"),
        (("f" * 64, len(data), None), "the export pod sent"),
        ((None, len(data), None), "sent no X-Mlops-Sha256"),
        ((digest, len(data), "0" * 64), "spec.artifact.digest"),
    ]
    for (sent, size, want), match in cases:
        with pytest.raises(exp.ExportError, match=match):
            exp.receive(chunks, tmp_path / "b", "model.onnx", sent, size, want)
        assert not (tmp_path / "b").exists()  # nothing half-checked stays on disk


def test_install_checks_the_manifest_and_the_bytes_on_disk(tmp_path):
    onnx = b"the onnx model"
    digest = hashlib.sha256(onnx).hexdigest()

    def staged(onnx_bytes: bytes = onnx, manifest: bytes | None = None) -> dict:
        stage = exp.staging_dir(tmp_path / "out" / "deep")
        (stage / "model.onnx").write_bytes(onnx_bytes)
        (stage / "model.json").write_bytes(manifest or json.dumps({"onnxSha256": digest}).encode())
        return {"model.onnx": stage / "model.onnx", "model.json": stage / "model.json"}

    files = staged()
    written = exp.install(files, tmp_path / "out" / "deep", digest)
    exp.remove_staging(files["model.onnx"].parent)
    assert [p.name for p in written] == ["model.onnx", "model.json"]
    assert (tmp_path / "out" / "deep" / "model.onnx").read_bytes() == onnx
    assert [p.name for p in (tmp_path / "out" / "deep").iterdir() if p.name.startswith(".")] == []
    with pytest.raises(exp.ExportError, match="describes model.onnx"):
        exp.install(staged(manifest=b'{"onnxSha256": "ff"}'), tmp_path / "m", digest)
    with pytest.raises(exp.ExportError, match="not JSON"):
        exp.install(staged(manifest=b"{nope"), tmp_path / "m", digest)
    with pytest.raises(exp.ExportError, match="lacks model.json"):
        exp.install({"model.onnx": staged()["model.onnx"]}, tmp_path / "m", digest)
    # bytes that do not hash to the digest never stay on disk
    (tmp_path / "bad").mkdir()
    with pytest.raises(exp.ExportError, match="deleted it"):
        exp.install(staged(onnx_bytes=b"evil"), tmp_path / "bad", digest)
    assert not (tmp_path / "bad" / "model.onnx").exists()


def test_describe_pod_and_termination_message():
    pod = {"status": {"phase": "Pending", "containerStatuses": [
        {"name": "serve", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull failed"}}}],
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/1 nodes"}]}}
    text = exp.describe_pod(pod, [{"type": "Warning", "reason": "Failed", "message": "no such image"}])
    assert "phase Pending" in text and "ImagePullBackOff" in text and "Unschedulable" in text
    assert "no such image" in text
    assert exp.termination_message(pod) == "" and not exp.pod_ready(pod)
    done = {"status": {"phase": "Failed", "containerStatuses": [
        {"name": "serve", "state": {"terminated": {"exitCode": 1, "message": "export refused: x\n"}}}]}}
    assert exp.termination_message(done) == "export refused: x"
    assert exp.pod_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})


def test_parser_accepts_cluster_options_before_and_after_the_command():
    p = build_parser()
    a = p.parse_args(["-n", "ml", "--context", "c1", "runs", "--model", "retail"])
    assert (a.namespace, a.context, a.model, a.output) == ("ml", "c1", "retail", "table")
    a = p.parse_args(["compare", "a", "b", "-n", "ml2", "-o", "json", "--kubeconfig", "/k"])
    assert (a.namespace, a.kubeconfig, a.refs, a.output) == ("ml2", "/k", ["a", "b"], "json")
    a = p.parse_args(["export", "retail-v2", "-o", "out"])
    assert a.output_dir == "out" and a.namespace is None and a.timeout == 180.0
    a = p.parse_args(["promote", "retail-v2"])
    assert a.alias == "production" and a.force is False
