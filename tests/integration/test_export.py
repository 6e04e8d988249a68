"""`kubectl mlops export` of a model larger than a kubelet keeps of a pod's log (10 MiB), both ways:

- PVC store: the export pod serves the verified files and the plugin reads them through the real
  API server's pod proxy (the process node runs the pod);
- s3 store: the plugin reads straight from a real SeaweedFS on loopback, with the credentials of the
  namespace's store Secret read through the real API server (or the environment).

No operator runs: the test writes the version into the store as a Job would (FileStore/S3Store
put_version) and creates the ModelVersion object the operator would have made.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlops_operator.cli.kubectl_plugin import main
from mlops_operator.localcluster.seaweedfs import S3Identity, SeaweedServer, ensure_weed
from mlops_operator.store import FileStore
from mlops_operator.store.s3 import S3Store
from mlops_operator.store.s3config import Credentials, parse_s3_uri

from tests.conftest import REPO, Cluster, wait_for

MiB = 1 << 20
ADMIN = S3Identity("admin", "AKEXPORTTEST001", "export-secret-Lq3vB7nM2xK9")
BUCKET = "mlops-export"


def big_model(d: Path, inputs: int = 1800, outputs: int = 1600) -> tuple[Path, Path, str]:
    """A real ONNX model (one MatMul with random float32 weights: incompressible) of about 11.5 MB,
    and its model.json."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((inputs, outputs)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, inputs])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, outputs])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = d / "model.onnx"
    onnx.save(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    man = d / "model.json"
    man.write_text(json.dumps({"format": "mlops.dev/model/v1", "onnxSha256": digest,
                               "inputs": [{"name": "x", "shape": [None, inputs]}]}))
    assert path.stat().st_size > 10 * MiB
    return path, man, digest


def model_version(ns: str, name: str, uri: str, digest: str) -> str:
    return json.dumps({"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
                       "metadata": {"name": name, "namespace": ns, "labels": {"mlops.dev/model": "big"}},
                       "spec": {"model": "big", "version": int(name.rsplit("v", 1)[1]),
                                "artifact": {"uri": uri, "digest": digest}}})


@pytest.fixture(scope="module")
def crds(local_cluster: Cluster) -> Cluster:
    local_cluster.kubectl("apply", "-k", str(REPO / "crds"))
    local_cluster.kubectl("wait", "--for=condition=Established", "crd/modelversions.mlops.dev", "--timeout=60s")
    return local_cluster


def _check_exported(out: Path, digest: str, x_dim: int = 1800) -> None:
    data = (out / "model.onnx").read_bytes()
    assert len(data) > 10 * MiB and hashlib.sha256(data).hexdigest() == digest
    assert json.loads((out / "model.json").read_text())["onnxSha256"] == digest
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.ones((1, x_dim), np.float32)})
    assert y.shape == (1, 1600)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left behind


# ------------------------------------------------------------------------------------ PVC store

def _pvc_store(c: Cluster, ns: str) -> Path:
    """The namespace's mlops-store claim (as the operator makes it), bound; its host directory."""
    c.apply(json.dumps({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "mlops-store", "namespace": ns},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    pvc = wait_for(lambda: (lambda p: p if p.get("status", {}).get("phase") == "Bound" else None)(
        c.get_json("pvc", "mlops-store", "-n", ns)), 60, what="mlops-store bound")
    return Path(c.get_json("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])


def test_export_from_a_pvc_store_through_the_pod_proxy(crds: Cluster, namespace: str, tmp_path, capsys,
                                                      monkeypatch):
    c, ns = crds, namespace
    monkeypatch.setenv("MLOPS_RUNTIME_IMAGE", "mlops-runtime:test")
    root = _pvc_store(c, ns)
    onnx_path, man, digest = big_model(tmp_path)
    got, uri = FileStore(root).put_version("models", "big", onnx_path, {"model.json": man})
    assert got == digest
    store_uri = f"file:///store/models/big/{digest}/"  # what a Job in a pod records
    c.apply(model_version(ns, "big-v1", store_uri, digest), ns)
    kc = ["--kubeconfig", str(c.kubeconfig), "-n", ns]

    assert main([*kc, "export", "big-v1", "-o", str(tmp_path / "out"), "--format", "json"]) == 0, \
        capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["via"] == "pod" and result["files"]["model.onnx"]["bytes"] > 10 * MiB
    _check_exported(tmp_path / "out", digest)
    assert not c.pods(ns, "app.kubernetes.io/component=export")  # the pod is gone

    # a missing version: the pod refuses before serving and the plugin says which file is missing
    c.apply(model_version(ns, "big-v2", f"file:///store/models/big/{'0' * 64}/", "0" * 64), ns)
    assert main([*kc, "export", "big-v2", "-o", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "ended (Failed) before serving" in err and "is missing from the store" in err, err
    assert not (tmp_path / "missing" / "model.onnx").exists()

    # the store's bytes do not match the digest: refused in the pod, nothing written here
    bad = root / "models" / "big" / digest
    (bad / "model.onnx").chmod(0o644)
    with open(bad / "model.onnx", "r+b") as f:
        f.seek(5 * MiB)
        f.write(b"corrupted!")
    assert main([*kc, "export", "big-v1", "-o", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "does not match" in err and digest in err, err
    assert not (tmp_path / "bad" / "model.onnx").exists()
    assert not c.pods(ns, "app.kubernetes.io/component=export")

    # an unknown ModelVersion: one line, no pod
    assert main([*kc, "export", "big-v9", "-o", str(tmp_path / "none")]) == 1
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ s3 store

@pytest.fixture(scope="module")
def seaweed(tmp_path_factory) -> SeaweedServer:
    if os.environ.get("MLOPS_TEST_S3", "1").strip().lower() in ("0", "false", "no"):
        pytest.skip("MLOPS_TEST_S3=0: the SeaweedFS tests were disabled on purpose")
    srv = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), [ADMIN], binary=ensure_weed()).start()
    srv.create_bucket(BUCKET)
    yield srv
    srv.stop()


def test_export_from_an_s3_store_with_the_namespace_secret(crds: Cluster, namespace: str, seaweed: SeaweedServer,
                                                          tmp_path, capsys, monkeypatch):
    c, ns = crds, namespace
    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MLOPS_STORE"):
        monkeypatch.delenv(v, raising=False)
    prefix = f"p{uuid.uuid4().hex[:8]}/{ns}"  # the operator's prefix, then a per-namespace one
    root_uri = f"s3://{BUCKET}?endpoint={seaweed.endpoint}"
    writer = S3Store(parse_s3_uri(f"s3://{BUCKET}/{prefix}?endpoint={seaweed.endpoint}"),
                     Credentials(ADMIN.access_key, ADMIN.secret_key), cache_dir=tmp_path / "cache")
    onnx_path, man, digest = big_model(tmp_path)
    got, uri = writer.put_version("models", "big", onnx_path, {"model.json": man})
    assert got == digest and uri == f"s3://{BUCKET}/{prefix}/models/big/{digest}/"
    c.apply(model_version(ns, "big-v1", uri, digest), ns)
    kc = ["--kubeconfig", str(c.kubeconfig), "-n", ns]

    # no store given: a clear instruction, nothing written
    assert main([*kc, "export", "big-v1", "-o", str(tmp_path / "nostore")]) == 1
    assert "--store" in capsys.readouterr().err

    # no Secret and no AWS_* variables: anonymous, which SeaweedFS refuses
    assert main([*kc, "export", "big-v1", "-o", str(tmp_path / "anon"), "--store", root_uri]) == 1
    err = capsys.readouterr().err
    assert "StoreAccessDenied" in err and "access denied" in err and "anonymous" in err, err

    # the namespace's store Secret, read through the API server with the user's RBAC
    c.kubectl("create", "secret", "generic", "mlops-store-s3", "-n", ns,
              f"--from-literal=AWS_ACCESS_KEY_ID={ADMIN.access_key}",
              f"--from-literal=AWS_SECRET_ACCESS_KEY={ADMIN.secret_key}")
    assert main([*kc, "export", "mv/big-v1", "-o", str(tmp_path / "out"), "--store", root_uri]) == 0, \
        capsys.readouterr().err
    cap = capsys.readouterr()
    assert f"model.onnx sha256 {digest} verified" in cap.out
    assert 'credentials from Secret "mlops-store-s3"' in cap.err and ADMIN.secret_key not in cap.out + cap.err
    _check_exported(tmp_path / "out", digest)

    # the environment's credentials win (and $MLOPS_STORE replaces --store)
    monkeypatch.setenv("MLOPS_STORE", root_uri)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN.secret_key)
    assert main([*kc, "export", "big-v1", "-o", str(tmp_path / "env"), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["via"] == "s3" and "environment" in result["credentials"]
    _check_exported(tmp_path / "env", digest)

    # a missing version
    c.apply(model_version(ns, "big-v2", f"s3://{BUCKET}/{prefix}/models/big/{'1' * 64}/", "1" * 64), ns)
    assert main([*kc, "export", "big-v2", "-o", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "ArtifactMissing" in err and "is missing from the store" in err, err
    assert not (tmp_path / "missing" / "model.onnx").exists()

    # the object's bytes do not match its digest (overwritten behind the store's back): refused
    fake = "2" * 64
    bad = S3Store(parse_s3_uri(f"s3://{BUCKET}/{prefix}?endpoint={seaweed.endpoint}"),
                  Credentials(ADMIN.access_key, ADMIN.secret_key), cache_dir=tmp_path / "cache2")
    key = f"{prefix}/models/big/{fake}"
    bad._client.fput_object(BUCKET, f"{key}/model.onnx", str(onnx_path))
    bad._client.fput_object(BUCKET, f"{key}/model.json", str(man))
    c.apply(model_version(ns, "big-v3", f"s3://{BUCKET}/{key}/", fake), ns)
    assert main([*kc, "export", "big-v3", "-o", str(tmp_path / "tampered")]) == 1
    err = capsys.readouterr().err
    assert "DigestMismatch" in err and "does not match" in err, err
    assert not (tmp_path / "tampered" / "model.onnx").exists()
    assert [p.name for p in (tmp_path / "tampered").iterdir()] == []

    # a store in another bucket than the artifact
    assert main([*kc, "export", "big-v1", "-o", str(tmp_path / "other"),
                 "--store", f"s3://other-bucket?endpoint={seaweed.endpoint}"]) == 1
    assert "is in bucket 'mlops-export'" in capsys.readouterr().err
