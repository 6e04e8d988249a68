"""InferenceService on the real control plane: Deployment + Service of the model server, V2
inference through the Service, a rollout under load with no failed request, and a broken
version that never takes traffic."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mlops_operator.localcluster.forward import free_port
from tests.conftest import Cluster, OperatorProcess, wait_for
from tests.integration.test_training import cond, get, production, retail_dataset, run, wait_mv_ready, wait_phase

pytestmark = pytest.mark.cluster

ISVC = """
apiVersion: mlops.dev/v1alpha1
kind: InferenceService
metadata: {name: propensity}
spec:
  model: propensity
  alias: production
  replicas: 2
"""


def isvc_status(c: Cluster, ns: str) -> dict:
    return get(c, "inferenceservice", ns, "propensity").get("status") or {}


def serving(c: Cluster, ns: str, version: str, timeout: float = 180) -> dict:
    def done():
        st = isvc_status(c, ns)
        ok = st.get("modelVersion") == version and cond({"status": st}, "Ready").get("status") == "True"
        return st if ok and st.get("readyReplicas") == 2 else None
    return wait_for(done, timeout, interval=0.5, what=f"InferenceService serving {version}")


class Forward:
    def __init__(self, c: Cluster, ns: str, remote: int = 80, service: str = "propensity"):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "port-forward", "--name",
                                      c.cfg.name, "-n", ns, f"svc/{service}", f"{self.port}:{remote}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "Forwarding from 127.0.0.1" in self.proc.stdout.readline()
        self.base = f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def rows_from_store(c: Cluster, ns: str, mv: dict, n: int = 50):
    """Test rows and the served model's own ONNX predictions on them (the model that passed
    parity with scikit-learn at training time)."""
    import onnxruntime as ort

    from mlops_operator.data import retail
    from mlops_operator.store.model_manifest import read_manifest
    from mlops_operator.training import convert, pipeline

    pvc = c.get_json("pvc", "mlops-store", "-n", ns)
    root = Path(c.get_json("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])
    d = root / mv["spec"]["artifact"]["uri"].split("/store/", 1)[1]
    man = read_manifest(d / "model.json")
    feats = [{"name": f.name, "type": f.type} for f in man.inputs]
    df = retail.generate(n, seed=99).to_pandas()
    x = pipeline.prepare_frame(df, feats)
    sess = ort.InferenceSession((d / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, convert.feeds(x, feats))))
    instances = [{f["name"]: (None if (isinstance(v, float) and np.isnan(v)) else v)
                  for f, v in zip(feats, row)} for row in x.itertuples(index=False)]
    return man, feats, x, instances, out


def _stats_through_the_pod_proxy_with_cursors(c: Cluster, ns: str) -> None:
    """The DriftMonitor's read, as the operator makes it (controllers.kube.pod_proxy_get through
    the real API server's pod proxy to the monitor port): the cursor in the query string must
    reach the pod, so the second read answers counts since the first one's cursor."""
    import asyncio

    from kubernetes import config as kconfig

    from mlops_operator.controllers import kube
    from mlops_operator.monitoring.windows import stats_path
    from mlops_operator.resources.serving import MONITOR_PORT

    kconfig.load_kube_config(str(c.kubeconfig))
    pod = c.pods(ns, "mlops.dev/inference-service=propensity")[0]["metadata"]["name"]
    first = json.loads(asyncio.run(kube.pod_proxy_get(ns, pod, MONITOR_PORT, stats_path("propensity", None))))
    cursor = first["drift"]["cursor"]
    assert cursor and first["drift"]["since"] is None
    second = json.loads(asyncio.run(kube.pod_proxy_get(ns, pod, MONITOR_PORT,
                                                       stats_path("propensity", {"cursor": cursor}))))
    assert second["drift"]["since"] == cursor and second["drift"]["cursor"] != cursor


def test_serve_infer_roll_out_under_load_and_refuse_a_broken_version(local_cluster: Cluster,
                                                                      operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=3000), ns)
    c.apply(run("v1", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
    assert wait_phase(c, ns, "v1")["phase"] == "Succeeded"
    wait_mv_ready(c, ns, "propensity-v1")
    c.apply(ISVC, ns)
    st = serving(c, ns, "propensity-v1")
    assert st["url"].endswith("/v2/models/propensity")
    dep = c.get_json("deployment", "propensity-predictor", "-n", ns)
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    tmpl = dep["spec"]["template"]
    assert tmpl["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert tmpl["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True

    fwd = Forward(c, ns)
    try:
        man, feats, x, instances, want = rows_from_store(c, ns, get(c, "modelversion", ns, "propensity-v1"))
        # V2 with one tensor per feature, as a raw JSON client sends it
        inputs = []
        for f in feats:
            col = x[f["name"]]
            if f["type"] == "categorical":
                inputs.append({"name": f["name"], "datatype": "BYTES", "shape": [len(x), 1], "data": col.tolist()})
            else:
                inputs.append({"name": f["name"], "datatype": "FP32", "shape": [len(x), 1],
                               "data": [None if np.isnan(v) else float(v) for v in col]})
        code, body = fwd.post("/v2/models/propensity/infer", {"id": "req-1", "inputs": inputs})
        assert code == 200, body
        assert body["id"] == "req-1" and body["model_name"] == "propensity"
        outs = {o["name"]: o for o in body["outputs"]}
        assert [str(v) for v in outs["label"]["data"]] == [str(v) for v in want["label"].reshape(-1)]
        np.testing.assert_allclose(np.array(outs["probabilities"]["data"]).reshape(-1, 2), want["probabilities"],
                                   atol=1e-6)
        # Triton's V2 client, unchanged, through the Service
        import tritonclient.http as triton

        tc = triton.InferenceServerClient(url=f"127.0.0.1:{fwd.port}")
        assert tc.is_model_ready("propensity")
        tin = []
        for f in feats:
            col = x[f["name"]]
            if f["type"] == "categorical":
                t = triton.InferInput(f["name"], [len(x), 1], "BYTES")
                t.set_data_from_numpy(col.to_numpy(dtype=object).reshape(-1, 1))
            else:
                t = triton.InferInput(f["name"], [len(x), 1], "FP32")
                t.set_data_from_numpy(col.to_numpy(dtype=np.float32).reshape(-1, 1))
            tin.append(t)
        res = tc.infer("propensity", tin, outputs=[triton.InferRequestedOutput("probabilities")])
        np.testing.assert_allclose(res.as_numpy("probabilities"), want["probabilities"], atol=1e-6)
        tc.close()
        _stats_through_the_pod_proxy_with_cursors(c, ns)
        # bad input: 4xx with a message, never a 5xx
        code, body = fwd.post("/v2/models/propensity/infer", {"inputs": [{"name": "nope", "datatype": "FP32",
                                                                          "shape": [1], "data": [1]}]})
        assert 400 <= code < 500 and body.get("error"), body

        # roll out v2 under steady load: no failed request
        failures: list[str] = []
        done = threading.Event()
        sent = [0]

        def load():
            while not done.is_set():
                code, body = fwd.post("/v2/models/propensity/infer", {"inputs": inputs[:]}, timeout=10)
                sent[0] += 1
                if code != 200:
                    failures.append(f"{code}: {body}")
                time.sleep(0.02)

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            c.apply(run("v2", "  estimator: {type: RandomForestClassifier, params: {n_estimators: 20}}\n"
                              "  promotion: {policy: always}"), ns)
            assert wait_phase(c, ns, "v2")["phase"] == "Succeeded"
            st = serving(c, ns, "propensity-v2")
            time.sleep(2)
        finally:
            done.set()
            for t in threads:
                t.join(15)
        assert sent[0] > 20 and not failures, (sent[0], failures[:5])
        assert st["previousModelVersion"] == "propensity-v1"
        pods = c.pods(ns, "mlops.dev/inference-service=propensity")
        assert {p["metadata"]["labels"]["mlops.dev/model-version"] for p in pods
                if not p["metadata"].get("deletionTimestamp")} == {"propensity-v2"}
    finally:
        fwd.close()

    # a corrupted version gets production: it is never rolled out, v2 keeps serving, status says why
    c.apply(run("v3", "  estimator: {type: LogisticRegression, params: {C: 0.5}}"), ns)
    assert wait_phase(c, ns, "v3")["phase"] == "Succeeded"
    mv3 = wait_mv_ready(c, ns, "propensity-v3")
    pvc = c.get_json("pvc", "mlops-store", "-n", ns)
    root = Path(c.get_json("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])
    onnx = root / mv3["spec"]["artifact"]["uri"].split("/store/", 1)[1] / "model.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(b"not a model")
    c.kubectl("annotate", "modelversion", "propensity-v3", "-n", ns, "mlops.dev/verify=after-corruption")
    wait_for(lambda: cond(get(c, "modelversion", ns, "propensity-v3"), "Degraded").get("status") == "True", 60,
             what="v3 Degraded")
    c.kubectl("patch", "modelversion", "propensity-v3", "-n", ns, "--type=merge", "-p",
              '{"spec": {"aliases": ["production"]}}')
    wait_for(lambda: production(c, ns) == ["propensity-v3"], 30, what="production on v3")
    st = wait_for(lambda: (lambda s: s if cond({"status": s}, "Degraded").get("status") == "True" else None)(
        isvc_status(c, ns)), 60, interval=0.5, what="InferenceService Degraded")
    assert st["modelVersion"] == "propensity-v2"
    assert "propensity-v3 is not Ready" in cond({"status": st}, "Degraded")["message"]
    assert cond({"status": st}, "Ready")["status"] == "True"
    # the served version cannot be deleted
    c.kubectl("delete", "modelversion", "propensity-v2", "-n", ns, "--wait=false")
    time.sleep(3)
    mv2 = get(c, "modelversion", ns, "propensity-v2")
    assert mv2["metadata"].get("deletionTimestamp")
    assert any(e["reason"] == "InUse" for e in c.get_json("events", "-n", ns)["items"]
               if e["involvedObject"]["name"] == "propensity-v2")


CANARY = """
apiVersion: mlops.dev/v1alpha1
kind: InferenceService
metadata: {name: propensity}
spec:
  model: propensity
  alias: production
  replicas: 1
  rollout:
    strategy: canary
    canary: {steps: [50], pauseSeconds: 4, minRequests: 10, maxErrorRate: 0.05, readyTimeoutSeconds: 90}
"""


def test_canary_rolls_back_a_failing_version_and_promotes_a_good_one(local_cluster: Cluster,
                                                                     operator: OperatorProcess, namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=2000), ns)
    two = "  features: [age, tenure_days]\n"
    c.apply(run("v1", two + "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
    assert wait_phase(c, ns, "v1")["phase"] == "Succeeded"
    wait_mv_ready(c, ns, "propensity-v1")
    c.apply(CANARY, ns)
    wait_for(lambda: isvc_status(c, ns).get("modelVersion") == "propensity-v1", 120, what="v1 serving")
    fwd = Forward(c, ns)
    done = threading.Event()
    codes: list[int] = []

    def load():  # clients that know the two features of v1
        body = {"inputs": [{"name": "age", "datatype": "FP32", "shape": [1, 1], "data": [35.0]},
                           {"name": "tenure_days", "datatype": "FP32", "shape": [1, 1], "data": [400.0]}]}
        while not done.is_set():
            codes.append(fwd.post("/v2/models/propensity/infer", body)[0])
            time.sleep(0.05)

    t = threading.Thread(target=load)
    t.start()
    try:
        # v2 needs every feature: a canary the v1 clients cannot use
        c.apply(run("v2", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
        assert wait_phase(c, ns, "v2")["phase"] == "Succeeded"
        st = wait_for(lambda: (lambda s: s if (s.get("lastCanary") or {}).get("result") else None)(isvc_status(c, ns)),
                      180, interval=0.5, what="canary verdict")
        assert st["lastCanary"]["result"] == "rolledBack" and st["lastCanary"]["version"] == "propensity-v2", st
        assert st["modelVersion"] == "propensity-v1" and st["failedModelVersion"] == "propensity-v2"
        deg = cond({"status": st}, "Degraded")
        assert deg["status"] == "True" and "propensity-v2" in deg["message"] and "error rate" in deg["message"]
        wait_for(lambda: not c.get_json("deployments", "-n", ns, "-l", "mlops.dev/track=canary")["items"], 30,
                 what="canary Deployment gone")
        assert any(e["reason"] == "CanaryRolledBack" for e in c.get_json("events", "-n", ns)["items"])

        # a good version passes the canary and becomes the stable one
        c.apply(run("v3", two + "  estimator: {type: DecisionTreeClassifier, params: {max_depth: 3}}\n"
                                "  promotion: {policy: always}"), ns)
        assert wait_phase(c, ns, "v3")["phase"] == "Succeeded"
        st = wait_for(lambda: (lambda s: s if s.get("modelVersion") == "propensity-v3" else None)(isvc_status(c, ns)),
                      240, interval=0.5, what="v3 promoted through the canary")
        assert st["lastCanary"]["result"] == "promoted" and st["previousModelVersion"] == "propensity-v1"
        n = len(codes)
        time.sleep(1)
        assert all(code == 200 for code in codes[n:]), codes[n:]
    finally:
        done.set()
        t.join(10)
        fwd.close()
    assert codes.count(200) > 20


def test_autoscaling_creates_a_horizontal_pod_autoscaler(local_cluster: Cluster, operator: OperatorProcess,
                                                         namespace: str):
    c, ns = local_cluster, namespace
    c.apply(retail_dataset(rows=1500), ns)
    c.apply(run("v1", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"), ns)
    assert wait_phase(c, ns, "v1")["phase"] == "Succeeded"
    c.apply(ISVC.replace("  replicas: 2", "  autoscaling: {minReplicas: 2, maxReplicas: 5}"), ns)
    hpa = wait_for(lambda: (lambda p: json.loads(p.stdout) if p.returncode == 0 else None)(
        c.kubectl("get", "hpa", "propensity", "-n", ns, "-o", "json", check=False)), 90, what="HPA")
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "propensity-predictor"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    p = c.kubectl("apply", "-n", ns, "-f", "-", check=False,
                  input=ISVC.replace("  replicas: 2", "  autoscaling: {minReplicas: 6, maxReplicas: 5}"))
    assert p.returncode != 0 and "minReplicas must not exceed maxReplicas" in p.stderr
