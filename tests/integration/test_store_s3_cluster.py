"""The operator in s3 mode on the real control plane, with SeaweedFS running in the cluster
(`mlops up --s3`): training and serving through the bucket with no PVC, and the store's faults
(wrong credentials, a corrupted object, the server stopped mid-run) said where the user looks.

The cluster is its own (MLOPS_S3_TEST_CLUSTER, default `pytest-s3`), so the PVC-mode suite keeps
its cluster and operator unchanged. The operator runs as a local process with MLOPS_STORE set
(the in-cluster Deployment reads the same setting from its manifest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from mlops_operator.localcluster import cluster, s3cluster
from mlops_operator.localcluster.forward import free_port
from mlops_operator.store.s3 import S3Store
from mlops_operator.store.s3config import Credentials, parse_s3_uri
from tests.conftest import REPO, S3_PREFIX, Cluster, credentials, wait_for
from tests.integration.test_inference_service import ISVC, Forward, serving
from tests.integration.test_training import cond, get, retail_dataset, run, wait_mv_ready, wait_phase

pytestmark = pytest.mark.cluster

S3_TEST_CLUSTER = os.environ.get("MLOPS_S3_TEST_CLUSTER", "pytest-s3")
#: every namespace's objects live under <PREFIX>/<namespace>/ in the cluster's bucket
PREFIX = S3_PREFIX


@pytest.fixture(scope="session")
def s3_cluster() -> Cluster:
    cfg = cluster.up(S3_TEST_CLUSTER, timeout=300, s3=True)
    yield Cluster(cfg)
    if not os.environ.get("MLOPS_KEEP_TEST_CLUSTER"):
        cluster.down(S3_TEST_CLUSTER, purge=True)


class S3Operator:
    """`mlops operator run` against the s3 cluster, with MLOPS_STORE pointing at its bucket."""

    def __init__(self, c: Cluster, log: Path):
        self.cluster, self.log, self.proc = c, log, None

    def start(self) -> None:
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig), MLOPS_RUNTIME_IMAGE="mlops-runtime:test",
                   MLOPS_SERVER_IMAGE="mlops-server:test", MLOPS_STORE=s3cluster.store_uri(PREFIX))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
             "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--metrics-port", "0"],
            env=env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def s3_operator(s3_cluster: Cluster, tmp_path_factory) -> S3Operator:
    s3_cluster.kubectl("apply", "-k", str(REPO / "crds"))
    for crd in (REPO / "crds").glob("*.mlops.dev.yaml"):
        s3_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd.stem}", "--timeout=60s")
    op = S3Operator(s3_cluster, tmp_path_factory.mktemp("s3-operator") / "operator.log")
    op.start()
    yield op
    op.stop()


def _namespace(c: Cluster, request, secret: dict[str, str] | None = None) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.originalname.lower())[:30].strip("-")
    ns = f"s-{base}-{uuid.uuid4().hex[:6]}"
    c.kubectl("create", "namespace", ns)
    creds = secret if secret is not None else credentials(c)
    c.apply(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlops-store-s3"},
                        "stringData": creds}), ns)
    request.addfinalizer(lambda: c.kubectl("delete", "namespace", ns, "--wait=false", check=False))
    return ns


def host_store(c: Cluster, ns: str) -> S3Store:
    """The namespace's part of the bucket, as this machine reaches it (the loopback forward)."""
    info = cluster.s3_info(c.cfg)
    creds = credentials(c)
    cfg = parse_s3_uri(f"s3://{info['bucket']}/{PREFIX}/{ns}?endpoint={info['hostEndpoint']}")
    return S3Store(cfg, Credentials(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"]),
                   cache_dir=Path(f"/tmp/s3-test-cache-{uuid.uuid4().hex[:6]}"))


def predictions(store: S3Store, mv: dict, n: int = 20):
    """V2 inputs for `n` rows and the stored model's own ONNX outputs for them (read from S3,
    verified by digest)."""
    import onnxruntime as ort

    from mlops_operator.data import retail
    from mlops_operator.store.model_manifest import read_manifest
    from mlops_operator.training import convert, pipeline

    uri, digest = mv["spec"]["artifact"]["uri"], mv["spec"]["artifact"]["digest"]
    man = read_manifest(store.local_path(uri, "model.json"))
    feats = [{"name": f.name, "type": f.type} for f in man.inputs]
    x = pipeline.prepare_frame(retail.generate(n, seed=99).to_pandas(), feats)
    sess = ort.InferenceSession(store.local_path(uri, "model.onnx", digest).read_bytes(),
                                providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, convert.feeds(x, feats))))
    inputs = []
    for f in feats:
        col = x[f["name"]]
        if f["type"] == "categorical":
            inputs.append({"name": f["name"], "datatype": "BYTES", "shape": [len(x), 1], "data": col.tolist()})
        else:
            inputs.append({"name": f["name"], "datatype": "FP32", "shape": [len(x), 1],
                           "data": [None if np.isnan(v) else float(v) for v in col]})
    return inputs, want


def _no_pvc(c: Cluster, ns: str) -> None:
    assert c.get_json("pvc", "-n", ns)["items"] == [], "s3 mode must create no PVC"
    for p in c.pods(ns):
        assert not [v for v in p["spec"].get("volumes") or [] if "persistentVolumeClaim" in v], p["metadata"]["name"]


def test_train_and_serve_through_s3_with_no_pvc(s3_cluster: Cluster, s3_operator: S3Operator, request):
    c = s3_cluster
    ns = _namespace(c, request)
    c.apply(retail_dataset(rows=3000), ns)
    c.apply(run("v1", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
    st = wait_phase(c, ns, "v1", timeout=300)
    assert st["phase"] == "Succeeded", st
    mv = wait_mv_ready(c, ns, "propensity-v1", timeout=120)
    uri = mv["spec"]["artifact"]["uri"]
    assert uri.startswith(f"s3://{s3cluster.BUCKET}/{PREFIX}/{ns}/models/propensity/{mv['spec']['artifact']['digest']}")
    ds = get(c, "dataset", ns, "retail")
    assert ds["status"]["latestValid"]["uri"].startswith(f"s3://{s3cluster.BUCKET}/{PREFIX}/{ns}/datasets/retail/")
    store = host_store(c, ns)
    assert store.exists("models", "propensity", mv["spec"]["artifact"]["digest"])

    c.apply(ISVC, ns)
    serving(c, ns, "propensity-v1", timeout=240)
    dep = c.get_json("deployment", "propensity-predictor", "-n", ns)
    init = dep["spec"]["template"]["spec"]["initContainers"]
    assert [i["name"] for i in init] == ["fetch-model"]
    _no_pvc(c, ns)
    inputs, want = predictions(store, mv)
    fwd = Forward(c, ns)
    try:
        code, body = fwd.post("/v2/models/propensity/infer", {"inputs": inputs})
        assert code == 200, body
        outs = {o["name"]: o for o in body["outputs"]}
        np.testing.assert_allclose(np.array(outs["probabilities"]["data"]).reshape(-1, 2), want["probabilities"],
                                   atol=1e-6)
    finally:
        fwd.close()


def _all_text(c: Cluster, ns: str) -> str:
    """Every status and Event message of the namespace, as a user would read them."""
    out = [json.dumps(c.get_json(k, "-n", ns)) for k in ("datasets", "trainingruns", "modelversions",
                                                         "inferenceservices")]
    out.append(json.dumps([e.get("message") for e in c.get_json("events", "-n", ns)["items"]]))
    return "\n".join(out)


def test_wrong_credentials_give_a_readable_reason_and_leak_nothing(s3_cluster: Cluster, s3_operator: S3Operator,
                                                                   request):
    c = s3_cluster
    good = credentials(c)
    bad = {"AWS_ACCESS_KEY_ID": good["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": "wrong-" + uuid.uuid4().hex}
    ns = _namespace(c, request, secret=bad)
    c.apply(retail_dataset(rows=500), ns)

    def failed():
        ds = get(c, "dataset", ns, "retail")
        ready = cond(ds, "Ready")
        return ds if ready.get("status") == "False" and ready.get("reason") == "StoreAccessDenied" else None
    ds = wait_for(failed, 240, interval=1, what="Dataset Ready=False reason StoreAccessDenied")
    assert "access denied" in cond(ds, "Ready")["message"]
    events = [e for e in c.get_json("events", "-n", ns)["items"] if e["involvedObject"]["name"] == "retail"]
    assert any(e["reason"] == "StoreAccessDenied" and e["type"] == "Warning" for e in events), events
    text = _all_text(c, ns)
    assert bad["AWS_SECRET_ACCESS_KEY"] not in text and good["AWS_SECRET_ACCESS_KEY"] not in text
    assert s3_operator.alive(), "the operator must not crash on a store fault"
    assert good["AWS_SECRET_ACCESS_KEY"] not in s3_operator.log.read_text()
    assert bad["AWS_SECRET_ACCESS_KEY"] not in s3_operator.log.read_text()


def test_a_corrupted_object_is_refused_and_the_serving_version_keeps_serving(s3_cluster: Cluster,
                                                                             s3_operator: S3Operator, request):
    c = s3_cluster
    ns = _namespace(c, request)
    c.apply(retail_dataset(rows=2000), ns)
    c.apply(run("v1", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
    assert wait_phase(c, ns, "v1", timeout=300)["phase"] == "Succeeded"
    mv1 = wait_mv_ready(c, ns, "propensity-v1", timeout=120)
    c.apply(ISVC, ns)
    serving(c, ns, "propensity-v1", timeout=240)
    # v2 registered but not promoted; then its model.onnx is overwritten in the bucket
    c.apply(run("v2", "  estimator: {type: LogisticRegression, params: {C: 0.1}}\n  promotion: {policy: none}"), ns)
    assert wait_phase(c, ns, "v2", timeout=300)["phase"] == "Succeeded"
    mv2 = wait_mv_ready(c, ns, "propensity-v2", timeout=120)
    store = host_store(c, ns)
    digest2 = mv2["spec"]["artifact"]["digest"]
    key = store._key("models", "propensity", digest2, "model.onnx")
    bad = Path(f"/tmp/corrupt-{uuid.uuid4().hex[:6]}.onnx")
    bad.write_bytes(b"not the model" * 100)
    store._client.fput_object(store.config.bucket, key, str(bad))
    bad.unlink()
    # move production to v2, as `kubectl mlops promote` does
    c.kubectl("patch", "modelversion", "propensity-v2", "-n", ns, "--type=merge", "-p",
              json.dumps({"spec": {"aliases": ["production"]}}))
    c.kubectl("patch", "modelversion", "propensity-v1", "-n", ns, "--type=merge", "-p",
              json.dumps({"spec": {"aliases": []}}))

    def refused():
        # the serving pod's fetch refuses it (InferenceService Degraded=DigestMismatch), or a
        # re-verification does first (ModelVersion Ready=False ArtifactInvalid, "does not match")
        isvc = get(c, "inferenceservice", ns, "propensity")
        mv = cond(get(c, "modelversion", ns, "propensity-v2"), "Ready")
        if cond(isvc, "Degraded").get("reason") == "DigestMismatch":
            return "DigestMismatch"
        if mv.get("reason") == "ArtifactInvalid" and "does not match" in mv.get("message", ""):
            return "ArtifactInvalid"
        return None
    why = wait_for(refused, 240, interval=1, what="the corrupted v2 refused by its digest")
    events = c.get_json("events", "-n", ns)["items"]
    assert any(e["reason"] == why and e["type"] == "Warning" for e in events), [e["reason"] for e in events]
    st = get(c, "inferenceservice", ns, "propensity")["status"]
    assert st["modelVersion"] == "propensity-v1"
    inputs, want = predictions(host_store(c, ns), mv1)
    fwd = Forward(c, ns)
    try:
        for _ in range(5):
            code, body = fwd.post("/v2/models/propensity/infer", {"inputs": inputs})
            assert code == 200, body
            assert body.get("model_version") in (None, "1"), body  # v1 answers, never the corrupted v2
    finally:
        fwd.close()


def test_the_store_stopped_mid_run_fails_the_run_naming_the_store_then_recovers(s3_cluster: Cluster,
                                                                               s3_operator: S3Operator, request):
    c = s3_cluster
    ns = _namespace(c, request)
    c.apply(retail_dataset(rows=2000), ns)
    wait_for(lambda: cond(get(c, "dataset", ns, "retail"), "Ready").get("status") == "True", 240, interval=1,
             what="Dataset Ready")
    c.apply(run("v1", "  estimator: {type: LogisticRegression}\n  backoffLimit: 0"), ns)
    wait_for(lambda: (get(c, "trainingrun", ns, "v1").get("status") or {}).get("phase") == "Running", 120,
             interval=0.3, what="TrainingRun v1 Running")
    cluster.hold_component(c.cfg.name, s3cluster.COMPONENT, True)
    try:
        st = wait_phase(c, ns, "v1", timeout=600)
        assert st["phase"] == "Failed", st
        assert cond({"status": st}, "Succeeded")["reason"] == "StoreUnreachable", st
        assert "artifact store" in st["message"] and "unreachable" in st["message"], st["message"]
        assert not c.get_json("modelversions", "-n", ns, "-l", "mlops.dev/training-run=v1")["items"]
        assert s3_operator.alive()
    finally:
        cluster.hold_component(c.cfg.name, s3cluster.COMPONENT, False)
    wait_for(lambda: cluster.status(c.cfg.name)["components"][s3cluster.COMPONENT]["healthy"], 180, interval=1,
             what="seaweedfs healthy again")
    c.apply(run("v2", "  estimator: {type: LogisticRegression}"), ns)
    assert wait_phase(c, ns, "v2", timeout=300)["phase"] == "Succeeded"
    mv = wait_mv_ready(c, ns, "propensity-v1", timeout=120)  # the first version registered is v2's
    assert mv["metadata"]["labels"]["mlops.dev/training-run"] == "v2"
    assert host_store(c, ns).exists("models", "propensity", mv["spec"]["artifact"]["digest"])
