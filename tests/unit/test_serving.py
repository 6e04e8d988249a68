"""The model server (mlops_operator.serving): loading, the V2/V1 protocol, validation, metrics,
stats and feedback, against a real server on a loopback port.

The artifacts are made here: a scikit-learn pipeline on the retail data, exported to ONNX,
with a small hand-written model.json (reference bins from the training split) in a file://
store. `build_artifact` and `ServerThread` are shared with the other test_serving_* modules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import pickle
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import requests

from mlops_operator.data import retail
from mlops_operator.drift.histogram import unpack
from mlops_operator.monitoring.windows import pod_reading
from mlops_operator.serving import config as serve_config
from mlops_operator.serving.app import ModelServer
from mlops_operator.serving.model import ModelLoadError, load
from mlops_operator.serving.run import serve
from mlops_operator.store.model_manifest import Feature, ModelManifest, Output, Reference, ReferenceColumn
from mlops_operator.store.store import FileStore
from mlops_operator.training import convert, estimators, pipeline

TOL = 1e-5


# ------------------------------------------------------------------------------------------------
# artifacts

@dataclasses.dataclass
class Artifact:
    root: Path
    store_uri: str
    uri: str
    digest: str
    manifest: ModelManifest
    model: Any  # the fitted scikit-learn pipeline
    feats: list[dict[str, Any]]
    test: pd.DataFrame  # prepared test split (what the graph sees)
    raw_test: pd.DataFrame

    def cfg(self, **kw: Any) -> serve_config.ServeConfig:
        base = dict(store_uri=self.store_uri, model_uri=self.uri, digest=self.digest, name=self.manifest.model,
                    version="3", host="127.0.0.1", port=0, reservoir_size=50, window_seconds=300,
                    drain_delay_seconds=0.0, grace_seconds=5.0, instance="test-pod", uvloop=False)
        base.update(kw)
        return serve_config.ServeConfig(**base)


def reference_of(x: pd.DataFrame, feats: list[dict[str, Any]], bins: int = 10,
                 histograms: bool = True) -> dict[str, ReferenceColumn]:
    """As the data profile writes it: decile bins, the drift histogram (unless `histograms` is
    False: a model trained before issue 17), the standard deviation."""
    from mlops_operator.drift.histogram import Histogram, reference_edges

    cols = {}
    for c in feats:
        v = x[c["name"]]
        if c["type"] == "numeric":
            a = v.to_numpy(dtype=np.float64)
            a = a[~np.isnan(a)]
            edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1]))
            counts = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1)
            hist = Histogram.of(reference_edges(np.sort(a), extra=edges), a).to_json(edges=True) if histograms else None
            cols[c["name"]] = ReferenceColumn(type="numeric", bin_edges=edges.tolist(), bin_counts=counts.tolist(),
                                              nulls=int(v.isna().sum()), std=float(np.std(a)), histogram=hist)
        elif c["type"] == "boolean":
            a = v.to_numpy(dtype=np.float64)
            cols[c["name"]] = ReferenceColumn(type="boolean", categories={"false": int((a == 0).sum()),
                                                                          "true": int((a == 1).sum())})
        else:
            vc = v[v != ""].value_counts()
            cols[c["name"]] = ReferenceColumn(type="categorical", categories={str(k): int(n) for k, n in vc.items()},
                                              nulls=int((v == "").sum()))
    return cols


def build_artifact(root: Path, estimator: str = "GradientBoostingClassifier", params: dict | None = None,
                   rows: int = 3000, seed: int = 11, task: str = "classification", name: str = "retail") -> Artifact:
    df = retail.generate(rows, seed=seed).to_pandas()
    feats = pipeline.feature_columns(retail.RETAIL_SCHEMA, retail.LABEL)
    if task == "regression":
        target = "cart_value"
        feats = [c for c in feats if c["name"] != target]
        y = df[target].astype(float)
    else:
        target = retail.LABEL
        y = df[target].astype(int)
    x = pipeline.prepare_frame(df, feats)
    train, test = slice(0, rows * 2 // 3), slice(rows * 2 // 3, rows)
    est = estimators.make(estimator, params if params is not None else {"n_estimators": 30}, seed=0)
    model = pipeline.build(feats, est)
    model.fit(x.iloc[train], y.iloc[train])
    onnx_bytes = convert.export(model, feats, task == "classification")
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if task == "classification":
        outputs = [Output(name="label", datatype="INT64", shape=[-1]),
                   Output(name="probabilities", datatype="FP32", shape=[-1, 2])]
        classes = [str(c) for c in model.classes_]
        pred_ref = None
    else:
        outputs = [Output(name="variable", datatype="FP32", shape=[-1, 1])]
        classes = None
        p = model.predict(x.iloc[test])
        edges = np.unique(np.quantile(p, np.linspace(0, 1, 11)[1:-1]))
        pred_ref = ReferenceColumn(type="numeric", bin_edges=edges.tolist(),
                                   bin_counts=np.bincount(np.searchsorted(edges, p, side="right"),
                                                          minlength=len(edges) + 1).tolist())
    manifest = ModelManifest(
        model=name, task=task, estimator=estimator, target=target,
        inputs=[Feature(name=c["name"], type=c["type"], datatype="BYTES" if c["type"] == "categorical" else "FP32",
                        nullable=bool(c.get("nullable", True))) for c in feats],
        outputs=outputs, classes=classes, onnx_sha256=digest,
        reference=Reference(rows=len(x.iloc[train]), columns=reference_of(x.iloc[train], feats), prediction=pred_ref),
    )
    stage = root / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    (stage / "model.onnx").write_bytes(onnx_bytes)
    (stage / "model.json").write_bytes(orjson.dumps(manifest.dump()))
    store = FileStore(root / "store")
    got, uri = store.put_version("models", name, stage / "model.onnx", {"model.json": stage / "model.json"})
    assert got == digest
    return Artifact(root, (root / "store").resolve().as_uri(), uri, digest, manifest, model, feats,
                    x.iloc[test].reset_index(drop=True), df.iloc[test].reset_index(drop=True))


# ------------------------------------------------------------------------------------------------
# a real server on a loopback port, in a thread

class ServerThread:
    def __init__(self, cfg: serve_config.ServeConfig, seed: int | None = 0):
        self.cfg = cfg
        self.server = ModelServer(load(cfg.store_uri, cfg.model_uri, cfg.digest, cfg.threads), cfg, seed=seed)
        self.port: int | None = None
        self._started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def go() -> int:
            self.loop = asyncio.get_running_loop()
            return await serve(self.server, self.cfg, started=self._on_start)

        self.rc = asyncio.run(go())

    def _on_start(self, port: int) -> None:
        self.port = port
        self._started.set()

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        assert self._started.wait(30), "server did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.server.stop_event.set)
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def v2_inputs(frame: pd.DataFrame, feats: list[dict[str, Any]], nested: bool = False) -> list[dict[str, Any]]:
    out = []
    n = len(frame)
    for c in feats:
        v = frame[c["name"]]
        if c["type"] == "categorical":
            data, dt = [str(s) for s in v], "BYTES"
        else:
            data, dt = [None if x != x else float(x) for x in v.to_numpy(dtype=np.float64)], "FP32"
        out.append({"name": c["name"], "datatype": dt, "shape": [n, 1] if nested else [n],
                    "data": [[d] for d in data] if nested else data})
    return out


# ------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Artifact:
    return build_artifact(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def srv(art):
    with ServerThread(art.cfg()) as s:
        yield s


@pytest.fixture(scope="module")
def http():
    with requests.Session() as s:
        yield s


def post(http, srv, path: str, doc: Any = None, data: bytes | None = None, **kw) -> requests.Response:
    body = data if data is not None else orjson.dumps(doc)
    return http.post(srv.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30, **kw)


def infer(http, srv, doc: Any, path: str = "/v2/models/retail/infer") -> requests.Response:
    return post(http, srv, path, doc)


def outputs(resp: requests.Response) -> dict[str, np.ndarray]:
    doc = resp.json()
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in doc["outputs"]}


def assert_error(resp: requests.Response, status: int, *words: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    msg = resp.json()["error"]
    assert msg
    for w in words:
        assert w in msg, msg
    return msg


# ------------------------------------------------------------------------------------------------
# health, metadata

def test_health_and_metadata(srv, http, art):
    assert http.get(srv.url + "/v2/health/live").json() == {"live": True}
    r = http.get(srv.url + "/v2/health/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    meta = http.get(srv.url + "/v2").json()
    assert meta["name"] and "binary_tensor_data" in meta["extensions"]
    for path in ("/v2/models/retail", "/v2/models/retail/versions/3"):
        m = http.get(srv.url + path).json()
        assert m["name"] == "retail" and m["versions"] == ["3"] and m["platform"] == "onnx"
        assert [i["name"] for i in m["inputs"]] == [c["name"] for c in art.feats]
        assert {i["datatype"] for i in m["inputs"]} == {"FP32", "BYTES"}
        assert all(i["shape"] == [-1, 1] for i in m["inputs"])
        assert [(o["name"], o["datatype"]) for o in m["outputs"]] == [("label", "INT64"), ("probabilities", "FP32")]
        assert m["outputs"][1]["shape"] == [-1, 2]
        assert m["parameters"]["classes"] == ["0", "1"]
    assert http.get(srv.url + "/v2/models/retail/ready").json() == {"name": "retail", "ready": True}
    assert http.get(srv.url + "/v2/models/retail/versions/3/ready").status_code == 200
    assert http.get(srv.url + "/v1/models/retail").json()["ready"] is True
    assert_error(http.get(srv.url + "/v2/models/other"), 404, "other", "retail")
    assert_error(http.get(srv.url + "/v2/models/retail/versions/9"), 404, "version", "'9'")
    assert_error(http.get(srv.url + "/v2/models/other/ready"), 404, "other")
    assert_error(http.get(srv.url + "/nowhere"), 404, "/nowhere")
    assert_error(http.get(srv.url + "/v2/models/retail/infer"), 405, "GET")


# ------------------------------------------------------------------------------------------------
# inference

def test_infer_per_feature_tensors_equal_scikit_learn(srv, http, art):
    frame = art.test
    want_p = art.model.predict_proba(frame)
    want_label = art.model.predict(frame)
    for nested in (False, True):
        r = infer(http, srv, {"id": "req-1", "parameters": {"trace": "x", "n": 3},
                              "inputs": v2_inputs(frame, art.feats, nested)})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["id"] == "req-1" and doc["model_name"] == "retail" and doc["model_version"] == "3"
        assert doc["parameters"] == {"trace": "x", "n": 3}
        out = outputs(r)
        assert out["probabilities"].shape == (len(frame), 2)
        assert np.max(np.abs(out["probabilities"] - want_p)) <= TOL
        # labels equal except where scikit-learn's own probabilities tie (see convert.check_parity)
        differ = out["label"].astype(str) != want_label.astype(str)
        assert not np.any(differ & (np.abs(want_p[:, 1] - 0.5) > TOL))
    # versioned route, one row
    r = infer(http, srv, {"inputs": v2_inputs(frame.iloc[:1], art.feats)}, "/v2/models/retail/versions/3/infer")
    assert r.status_code == 200 and "id" not in r.json()
    assert np.max(np.abs(outputs(r)["probabilities"] - want_p[:1])) <= TOL


def test_infer_single_tensor_forms(srv, http, art):
    frame = art.test.iloc[:40]
    want_p = art.model.predict_proba(frame)
    names = [c["name"] for c in art.feats]
    rows = []
    for _, row in frame.iterrows():
        rows.append([row[n] if isinstance(row[n], str) else float(row[n]) for n in names])
    rows = [[None if (isinstance(v, float) and v != v) else v for v in r] for r in rows]
    f = len(names)
    # BYTES [N, F], nested rows
    r = infer(http, srv, {"inputs": [{"name": "input-0", "datatype": "BYTES", "shape": [40, f], "data": rows}]})
    assert r.status_code == 200, r.text
    assert np.max(np.abs(outputs(r)["probabilities"] - want_p)) <= TOL
    # BYTES [N, F], flat, numbers given as strings
    flat = [str(v) if isinstance(v, float) else v for row in rows for v in row]
    flat = [v if v != "None" else None for v in flat]
    r = infer(http, srv, {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [40, f], "data": flat}]})
    assert r.status_code == 200, r.text
    assert np.max(np.abs(outputs(r)["probabilities"] - want_p)) <= TOL
    # a numeric [N, F] tensor cannot carry categorical features: a clear 422
    r = infer(http, srv, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, f], "data": [0.0] * f}]})
    assert_error(r, 422, "categorical", "BYTES")


def test_infer_numeric_single_tensor_on_a_numeric_model(tmp_path):
    art = build_artifact(tmp_path, "LogisticRegression", {"max_iter": 500}, rows=1500, name="numeric")
    # a model of numeric features only
    feats = [c for c in art.feats if c["type"] != "categorical"]
    df = retail.generate(1500, seed=11).to_pandas()
    x = pipeline.prepare_frame(df, feats)
    y = df[retail.LABEL].astype(int)
    model = pipeline.build(feats, estimators.make("LogisticRegression", {"max_iter": 500}))
    model.fit(x.iloc[:1000], y.iloc[:1000])
    onnx_bytes = convert.export(model, feats, True)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    m = art.manifest.model_copy(update={"inputs": [i for i in art.manifest.inputs if i.type != "categorical"],
                                        "onnx_sha256": digest})
    stage = tmp_path / "stage2"
    stage.mkdir()
    (stage / "model.onnx").write_bytes(onnx_bytes)
    (stage / "model.json").write_bytes(orjson.dumps(m.dump()))
    _, uri = FileStore(tmp_path / "store").put_version("models", "numeric", stage / "model.onnx",
                                                       {"model.json": stage / "model.json"})
    cfg = dataclasses.replace(art.cfg(), model_uri=uri, digest=digest, name="numeric")
    test = x.iloc[1000:1100]
    want = model.predict_proba(test)
    data = np.nan_to_num(test.to_numpy(dtype=np.float64), nan=np.nan)
    with ServerThread(cfg) as s, requests.Session() as h:
        for dt in ("FP32", "FP64"):
            doc = {"inputs": [{"name": "input", "datatype": dt, "shape": [100, len(feats)],
                               "data": [[None if v != v else float(v) for v in row] for row in data]}]}
            r = h.post(s.url + "/v2/models/numeric/infer", data=orjson.dumps(doc))
            assert r.status_code == 200, r.text
            assert np.max(np.abs(outputs(r)["probabilities"] - want)) <= TOL
        # INT64, flat
        ints = np.nan_to_num(np.round(data), nan=0).astype(np.int64)
        doc = {"inputs": [{"name": "input", "datatype": "INT64", "shape": [100, len(feats)],
                           "data": ints.ravel().tolist()}]}
        r = h.post(s.url + "/v2/models/numeric/infer", data=orjson.dumps(doc))
        assert r.status_code == 200, r.text
        want_i = model.predict_proba(pd.DataFrame(ints.astype(np.float32), columns=test.columns))
        assert np.max(np.abs(outputs(r)["probabilities"] - want_i)) <= TOL


def test_nulls_are_imputed_like_scikit_learn(srv, http, art):
    frame = art.test.iloc[:20].copy()
    nullable = [c["name"] for c in art.feats if c["type"] == "numeric" and c.get("nullable")]
    assert nullable
    for n in nullable:
        frame.loc[::2, n] = np.nan
    r = infer(http, srv, {"inputs": v2_inputs(frame, art.feats)})
    assert r.status_code == 200, r.text
    assert np.max(np.abs(outputs(r)["probabilities"] - art.model.predict_proba(frame))) <= TOL


def test_requested_outputs(srv, http, art):
    inputs = v2_inputs(art.test.iloc[:3], art.feats)
    r = infer(http, srv, {"inputs": inputs, "outputs": [{"name": "probabilities"}]})
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"]
    assert_error(infer(http, srv, {"inputs": inputs, "outputs": [{"name": "nope"}]}), 422, "nope")


def test_v1_predict(srv, http, art):
    frame = art.raw_test.iloc[:10]
    names = [c["name"] for c in art.feats]
    instances = []
    for _, row in frame.iterrows():
        inst = {}
        for c in art.feats:
            v = row[c["name"]]
            inst[c["name"]] = v if c["type"] == "categorical" else (None if pd.isna(v) else float(v))
        instances.append(inst)
    r = post(http, srv, "/v1/models/retail:predict", {"instances": instances})
    assert r.status_code == 200, r.text
    doc = r.json()
    prepared = art.test.iloc[:10]
    assert doc["classes"] == ["0", "1"]
    assert np.max(np.abs(np.array(doc["probabilities"]) - art.model.predict_proba(prepared))) <= TOL
    assert len(doc["predictions"]) == 10
    # rows as arrays in model.json order
    rows = [[inst[n] for n in names] for inst in instances]
    r2 = post(http, srv, "/v1/models/retail:predict", {"instances": rows})
    assert r2.json()["probabilities"] == doc["probabilities"]
    assert_error(post(http, srv, "/v1/models/retail:predict", {"instances": [{**instances[0], "zzz": 1}]}), 422,
                 "zzz")
    missing = dict(instances[0])
    missing.pop("age")
    assert_error(post(http, srv, "/v1/models/retail:predict", {"instances": [missing]}), 422, "missing", "age")
    assert_error(post(http, srv, "/v1/models/other:predict", {"instances": instances}), 404, "other")
    assert_error(post(http, srv, "/v1/models/retail:predict", {"rows": []}), 400, "instances")


# ------------------------------------------------------------------------------------------------
# bad input: the right 4xx, a JSON error that names the problem

def _good(art, n: int = 2) -> dict[str, Any]:
    return {"inputs": v2_inputs(art.test.iloc[:n], art.feats)}


def _with(doc: dict, name: str, **changes: Any) -> dict:
    doc = orjson.loads(orjson.dumps(doc))
    for t in doc["inputs"]:
        if t["name"] == name:
            t.update(changes)
    return doc


def test_bad_requests_get_clear_4xx(srv, http, art):
    good = _good(art)
    u = "/v2/models/retail/infer"
    assert_error(post(http, srv, u, data=b"{not json"), 400, "JSON")
    assert_error(post(http, srv, u, data=b""), 400, "JSON")
    assert_error(post(http, srv, u, [1, 2]), 400, "object")
    assert_error(post(http, srv, u, {"inputs": []}), 400, "inputs")
    assert_error(post(http, srv, u, {"inputs": [1]}), 400, "object")
    # unknown and missing features
    unknown = orjson.loads(orjson.dumps(good))
    unknown["inputs"].append({"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]})
    assert_error(infer(http, srv, unknown), 422, "colour")
    missing = orjson.loads(orjson.dumps(good))
    missing["inputs"] = [t for t in missing["inputs"] if t["name"] not in ("age", "device")]
    assert_error(infer(http, srv, missing), 422, "missing", "age", "device")
    dup = orjson.loads(orjson.dumps(good))
    dup["inputs"][1] = dict(dup["inputs"][0])
    assert_error(infer(http, srv, dup), 422, "twice")
    # wrong datatypes
    assert_error(infer(http, srv, _with(good, "device", datatype="FP32")), 422, "device", "BYTES")
    assert_error(infer(http, srv, _with(good, "age", datatype="BYTES")), 422, "age", "FP32")
    assert_error(infer(http, srv, _with(good, "age", datatype="FLOAT")), 422, "age")
    # wrong values
    assert_error(infer(http, srv, _with(good, "age", data=["old", 3])), 422, "age", "number")
    assert_error(infer(http, srv, _with(good, "age", data=[{"a": 1}, 3])), 422, "age")
    assert_error(infer(http, srv, _with(good, "device", data=[1, 2])), 422, "device", "string")
    assert_error(infer(http, srv, _with(good, "is_member", data=[0.5, 1])), 422, "is_member", "boolean")
    assert_error(infer(http, srv, _with(good, "age", data=[1e39, 3])), 422, "age", "float32")
    # nulls where the feature is not nullable (tenure_days, device); nullable ones pass
    assert_error(infer(http, srv, _with(good, "tenure_days", data=[None, 3])), 422, "tenure_days", "nullable")
    assert_error(infer(http, srv, _with(good, "device", data=[None, "mobile"])), 422, "device", "nullable")
    assert infer(http, srv, _with(good, "age", data=[None, None])).status_code == 200
    # shapes and lengths
    assert_error(infer(http, srv, _with(good, "age", shape=[3])), 422, "age", "3 values", "has 2")
    assert_error(infer(http, srv, _with(good, "age", shape=[3], data=[1.0, 2.0, 3.0])), 422, "age", "batch size")
    assert_error(infer(http, srv, _with(good, "age", shape=[2, 2])), 422, "age", "shape")
    assert_error(infer(http, srv, _with(good, "age", shape="2")), 422, "age", "shape")
    assert_error(infer(http, srv, _with(good, "age", data=[1.0])), 422, "age", "data has 1")
    assert_error(infer(http, srv, _with(good, "age", data=5)), 422, "age", "array")
    assert_error(infer(http, srv, _with(good, "age", data=None)), 422, "age", "no data")
    # model and version
    assert_error(infer(http, srv, good, "/v2/models/other/infer"), 404, "other")
    assert_error(infer(http, srv, good, "/v2/models/retail/versions/4/infer"), 404, "version")
    # other fields
    assert_error(infer(http, srv, {**good, "id": 5}), 400, "id")
    assert_error(infer(http, srv, {**good, "parameters": [1]}), 400, "parameters")
    assert_error(infer(http, srv, {**good, "outputs": "label"}), 400, "outputs")


def test_size_limits(tmp_path, art):
    cfg = art.cfg(max_batch_size=8, max_body_bytes=20_000)
    with ServerThread(cfg) as s, requests.Session() as h:
        ok = {"inputs": v2_inputs(art.test.iloc[:8], art.feats)}
        assert h.post(s.url + "/v2/models/retail/infer", data=orjson.dumps(ok)).status_code == 200
        r = h.post(s.url + "/v2/models/retail/infer", data=orjson.dumps({"inputs": v2_inputs(art.test.iloc[:9],
                                                                                              art.feats)}))
        assert_error(r, 413, "9 rows", "8")
        r = h.post(s.url + "/v2/models/retail/infer", data=b"[" + b" " * 30_000 + b"]")
        assert_error(r, 413, "bytes")

        def chunks():
            for _ in range(30):
                yield b" " * 1000

        r = h.post(s.url + "/v2/models/retail/infer", data=chunks())  # chunked: no Content-Length
        assert_error(r, 413, "limit")
        r = h.post(s.url + "/v1/models/retail:predict",
                   data=orjson.dumps({"instances": [[0] * len(art.feats)] * 9}))
        assert_error(r, 413, "9 rows")
        # the server is still fine
        assert h.post(s.url + "/v2/models/retail/infer", data=orjson.dumps(ok)).status_code == 200


def test_one_bad_request_among_concurrent_good_ones_fails_alone(srv, art):
    import concurrent.futures as cf

    good = orjson.dumps(_good(art, 3))
    bad = orjson.dumps(_with(_good(art, 3), "age", data=["x", 1, 2]))
    want = art.model.predict_proba(art.test.iloc[:3])

    def send(body):
        with requests.Session() as h:
            return [h.post(srv.url + "/v2/models/retail/infer", data=body) for _ in range(20)]

    with cf.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(send, [good, bad] * 4))
    for i, rs in enumerate(results):
        for r in rs:
            if i % 2 == 0:
                assert r.status_code == 200, r.text
                assert np.max(np.abs(outputs(r)["probabilities"] - want)) <= TOL
            else:
                assert_error(r, 422, "age")
    assert srv.server.batcher.runs > 0


# ------------------------------------------------------------------------------------------------
# loading

def test_load_refuses_wrong_digest_and_non_onnx(tmp_path, art):
    with pytest.raises(ModelLoadError, match="does not match the expected"):
        load(art.store_uri, art.uri, "0" * 64)
    # a pickle (what a joblib/sklearn user might put there) in a store of its own, with its true digest
    store = FileStore(tmp_path / "store")
    stage = tmp_path / "s"
    stage.mkdir()
    for what, data in (("pickle", pickle.dumps(art.model)),
                       ("zip", b"PK\x03\x04" + b"\0" * 100),
                       ("garbage", b"\x08\x07garbage-that-is-not-a-model" * 3)):
        (stage / "model.onnx").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        m = art.manifest.model_copy(update={"onnx_sha256": digest})
        (stage / "model.json").write_bytes(orjson.dumps(m.dump()))
        _, uri = store.put_version("models", "bad", stage / "model.onnx", {"model.json": stage / "model.json"})
        with pytest.raises(ModelLoadError) as ei:
            load((tmp_path / "store").as_uri(), uri, digest)
        msg = str(ei.value)
        assert "ONNX" in msg, msg
        if what == "pickle":
            assert "pickle" in msg
    # a manifest that describes another model
    (stage / "model.onnx").write_bytes((Path(art.uri.removeprefix("file://")) / "model.onnx").read_bytes())
    m = art.manifest.model_copy(update={"onnx_sha256": "f" * 64})
    (stage / "model.json").write_bytes(orjson.dumps(m.dump()))
    digest, uri = FileStore(tmp_path / "store2").put_version("models", "x", stage / "model.onnx",
                                                             {"model.json": stage / "model.json"})
    with pytest.raises(ModelLoadError, match="manifest of another model"):
        load((tmp_path / "store2").as_uri(), uri, digest)


def test_cli_exits_2_with_a_clear_error_on_a_bad_digest(art, capsys):
    from mlops_operator.serving import main

    rc = main(["--store-uri", art.store_uri, "--model-uri", art.uri, "--digest", "a" * 64, "--name", "retail",
               "--port", "0"])
    assert rc == 2
    assert "does not match" in capsys.readouterr().err


def test_config_from_environment(monkeypatch, art):
    monkeypatch.setenv("MLOPS_SERVE_STORE_URI", art.store_uri)
    monkeypatch.setenv("MLOPS_SERVE_MODEL_URI", art.uri)
    monkeypatch.setenv("MLOPS_SERVE_DIGEST", art.digest)
    monkeypatch.setenv("MLOPS_SERVE_NAME", "retail")
    monkeypatch.setenv("MLOPS_SERVE_THREADS", "2")
    monkeypatch.setenv("MLOPS_SERVE_WINDOW_SECONDS", "60")
    cfg = serve_config.parse([])
    assert (cfg.name, cfg.threads, cfg.window_seconds, cfg.port) == ("retail", 2, 60, 8080)
    cfg = serve_config.parse(["--threads", "3", "--max-batch-size", "7"])
    assert cfg.threads == 3 and cfg.max_batch_size == 7
    monkeypatch.setenv("MLOPS_SERVE_DIGEST", "nothex")
    with pytest.raises(SystemExit):
        serve_config.parse([])


# ------------------------------------------------------------------------------------------------
# metrics and stats

def metric(text: str, name: str, **labels: str) -> float:
    """The value of the one sample `name` whose labels include `labels` (model/version implied)."""
    from prometheus_client.parser import text_string_to_metric_families

    want = {"model": "retail", "version": "3", **labels}
    found = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in want.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _expected_counts(art: Artifact, frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Independently: what the server must have counted for these rows."""
    ref = art.manifest.reference.columns
    out = {}
    for c in art.feats:
        v = frame[c["name"]]
        col = ref[c["name"]]
        if c["type"] == "numeric":
            a = v.to_numpy(dtype=np.float64)
            ok = a[~np.isnan(a)]
            counts = np.zeros(len(col.bin_edges) + 1, dtype=int)
            for x in ok:  # one by one, on purpose: not the server's vectorised code
                counts[sum(1 for e in col.bin_edges if e <= x)] += 1
            out[c["name"]] = {"counts": counts.tolist(), "nulls": int(np.isnan(a).sum())}
        elif c["type"] == "boolean":
            a = v.to_numpy(dtype=np.float64)
            out[c["name"]] = {"counts": [int((a == 0).sum()), int((a == 1).sum())], "nulls": 0}
        else:
            cats = list(col.categories)
            cnt = Counter(v)
            out[c["name"]] = {"counts": [cnt.get(k, 0) for k in cats],
                              "other": sum(n for k, n in cnt.items() if k not in cats and k != ""),
                              "nulls": cnt.get("", 0)}
    return out


def test_feature_counts_equal_what_was_sent(art):
    frame = art.test.iloc[:300].copy()
    frame.loc[5:40, "age"] = np.nan
    frame.loc[7, "device"] = "smart_tv"  # not in the reference: other
    frame.loc[9:11, "channel"] = "carrier_pigeon"
    # thread_rows: the 199-row request runs on the inference thread, the others in the event loop
    with ServerThread(art.cfg(thread_rows=64)) as s, requests.Session() as h:
        # in several requests of different sizes, some concurrent
        import concurrent.futures as cf

        parts = [frame.iloc[i:j] for i, j in ((0, 1), (1, 33), (33, 100), (100, 101), (101, 300))]

        def send(p):
            with requests.Session() as hh:
                return hh.post(s.url + "/v2/models/retail/infer", data=orjson.dumps({"inputs": v2_inputs(p, art.feats)}))

        with cf.ThreadPoolExecutor(5) as ex:
            assert all(r.status_code == 200 for r in ex.map(send, parts))
        # bad requests count nothing
        h.post(s.url + "/v2/models/retail/infer", data=orjson.dumps(_with(_good(art), "age", data=["x", 1])))
        stats = h.get(s.url + "/mlops/v1/models/retail/stats").json()
        metrics = h.get(s.url + "/metrics").text
    want = _expected_counts(art, frame)
    assert stats["rows"] == 300
    for name, w in want.items():
        got = stats["features"][name]
        assert got["counts"] == w["counts"], name
        assert got["nulls"] == w["nulls"], name
        if "other" in w:
            assert got["other"] == w["other"], name
    assert stats["features"]["age"]["nulls"] == int(frame["age"].isna().sum()) > 0
    assert stats["features"]["device"]["other"] == 1
    # the prediction histogram: positive-class scores on 0.1 .. 0.9
    p = art.model.predict_proba(frame)[:, 1]
    want_p = np.bincount(np.searchsorted(np.round(np.arange(1, 10) * 0.1, 1), p, side="right"), minlength=10)
    assert stats["prediction"]["type"] == "score" and stats["prediction"]["count"] == 300
    assert sum(stats["prediction"]["counts"]) == 300
    assert np.abs(np.array(stats["prediction"]["counts"]) - want_p).sum() <= 2  # float32 vs float64 at an edge
    # the drift section (no cursor asked for: cumulative): every numeric histogram counts what
    # was sent on the reference histogram's edges, independently recounted here
    assert stats["drift"]["cursor"] is None and stats["drift"]["since"] is None and stats["drift"]["rows"] == 300
    hists = unpack(stats["drift"]["histograms"])
    assert sorted(hists) == sorted(c["name"] for c in art.feats if c["type"] == "numeric")
    for c in art.feats:
        if c["type"] == "numeric":
            h = hists[c["name"]]
            got = {"counts": h.counts.tolist(), "atoms": h.atoms.tolist(), "sums": h.sums.tolist(), "nulls": h.nulls}
            edges = np.asarray(art.manifest.reference.columns[c["name"]].histogram.edges)
            a = frame[c["name"]].to_numpy(dtype=np.float64)
            ok = a[~np.isnan(a)]
            bins = np.array([sum(1 for e in edges if e <= x) for x in ok])
            assert got["counts"] == np.bincount(bins, minlength=edges.size + 1).tolist(), c["name"]
            on_edge = Counter(int(np.flatnonzero(edges == x)[0]) for x in ok if x in edges)
            assert got["atoms"] == [on_edge.get(i, 0) for i in range(edges.size)], c["name"]
            left = np.r_[edges[0], edges][bins]
            want_sums = np.bincount(bins, weights=np.abs(ok - left), minlength=edges.size + 1)
            np.testing.assert_allclose(got["sums"], want_sums, rtol=1e-9, atol=1e-9)
            assert got["nulls"] == int(np.isnan(a).sum())
        else:
            got = stats["drift"]["features"][c["name"]]
            assert got == {**stats["features"][c["name"]], "type": got["type"]}, c["name"]
    # the same counts in Prometheus
    assert metric(metrics, "mlops_serving_requests_total", endpoint="infer", code="200") == 5
    assert metric(metrics, "mlops_serving_requests_total", endpoint="infer", code="422") == 1
    for name in ("age", "tenure_days", "device", "is_member"):
        doc = stats["features"][name]
        if "binEdges" in doc:
            for i, (u, n) in enumerate(zip([repr(e) for e in doc["binEdges"]] + ["+Inf"], doc["counts"])):
                assert metric(metrics, "mlops_serving_feature_values_total", feature=name, bin=str(i), upper=u) == n
        else:
            for c, n in zip(doc["categories"], doc["counts"]):
                assert metric(metrics, "mlops_serving_feature_values_total", feature=name, bin=c, upper="") == n
            assert metric(metrics, "mlops_serving_feature_values_total", feature=name, bin="__other__") == doc["other"]
        assert metric(metrics, "mlops_serving_feature_values_total", feature=name, bin="__null__") == doc["nulls"]
    assert metric(metrics, "mlops_serving_feature_values_total", feature="device", bin="__other__") == 1
    assert metric(metrics, "mlops_serving_request_duration_seconds_count", endpoint="infer") == 6
    assert metric(metrics, "mlops_serving_request_rows_bucket", endpoint="infer", le="+Inf") == 6
    assert metric(metrics, "mlops_serving_rows_total") == 300
    assert sum(metric(metrics, "mlops_serving_predictions_total", bin=str(i)) for i in range(10)) == 300
    assert stats["startId"] and stats["instance"] == "test-pod" and stats["format"] == "mlops.dev/serving-stats/v1"


def test_drift_counters_through_a_cursor(art):
    """A reader with a cursor gets what was counted since its last read; a cursor the server no
    longer keeps, or one of another process, gets everything since the start ("since": null)."""
    from mlops_operator.serving.monitor import CURSORS

    frame = art.test.iloc[:90]
    with ServerThread(art.cfg()) as s, requests.Session() as h:
        def send(rows):
            assert h.post(s.url + "/v2/models/retail/infer",
                          data=orjson.dumps({"inputs": v2_inputs(rows, art.feats)})).status_code == 200

        def read(cursor):
            return h.get(s.url + "/mlops/v1/models/retail/stats", params={"cursor": cursor}).json()

        send(frame.iloc[:30])
        first = read("")
        d = first["drift"]
        assert d["since"] is None and d["rows"] == 30 and d["cursor"] == f"{first['startId']}.1"
        send(frame.iloc[30:70])
        second = read(d["cursor"])["drift"]
        assert second["since"] == d["cursor"] and second["rows"] == 40
        age = unpack(second["histograms"])["age"]
        assert age.count + age.nulls == 40
        # the same cursor again (a monitor that read and did not save): the same span and more
        send(frame.iloc[70:90])
        again = read(d["cursor"])["drift"]
        assert again["since"] == d["cursor"] and again["rows"] == 60
        # another process's cursor, or one evicted: since the start
        assert read("0123.1")["drift"]["since"] is None
        for _ in range(CURSORS):
            read("")
        evicted = read(d["cursor"])["drift"]
        assert evicted["since"] is None and evicted["rows"] == 90
        # no cursor asked for: cumulative, nothing kept
        plain = h.get(s.url + "/mlops/v1/models/retail/stats").json()["drift"]
        assert plain["cursor"] is None and plain["rows"] == 90
        assert len(s.server.monitor.readings) == CURSORS


def test_a_model_without_reference_histograms_is_counted_on_its_decile_edges(tmp_path):
    """A model trained before issue 17: its numeric features are counted on the decile edges,
    and the drift engine compares those counts with the reference's (approximately: "binned")."""
    from mlops_operator import drift
    from mlops_operator.serving.monitor import Monitor

    a = build_artifact(tmp_path, rows=1500)
    cols = reference_of(a.test, a.feats, histograms=False)
    manifest = a.manifest.model_copy(update={"reference": a.manifest.reference.model_copy(update={"columns": cols})})
    model = load(a.store_uri, a.uri, a.digest)
    model.manifest = manifest
    mon = Monitor(model, seed=0)
    n = len(a.test)
    x = np.stack([a.test[f.name].to_numpy(dtype=np.float64) for f in model.num_features])
    cats = [[str(v) for v in a.test[f.name]] for f in model.cat_features]
    mon.observe(x, cats, {"label": np.zeros(n, np.int64), "probabilities": np.full((n, 2), 0.5, np.float32)})
    doc = mon.drift_doc("s", "")
    refs = drift.references_from_profile(manifest.reference.model_dump(by_alias=True)["columns"])
    reading = pod_reading({"startId": "s", "drift": orjson.loads(orjson.dumps(doc))})
    assert reading is not None
    res = drift.evaluate(refs, reading.all_features(), min_samples=10)
    by = {f.name: f for f in res.features}
    assert by["age"].status == "ok" and by["age"].basis == "binned" and not by["age"].drifted
    assert mon.features_doc()["age"]["counts"] == unpack(doc["histograms"])["age"].counts.tolist()


# ------------------------------------------------------------------------------------------------
# feedback

def test_feedback_classification(srv, http, art):
    before = http.get(srv.url + "/mlops/v1/models/retail/stats").json()["feedback"]
    r = post(http, srv, "/v2/models/retail/feedback",
             {"id": "req-1", "predictions": ["1", 0, "0", 1], "labels": [1, 0, "1", "1"], "scores": [0.9, 0.2, 0.3, 0.7]})
    assert r.status_code == 200, r.text
    assert r.json() == {"rows": 4, "correct": 3, "id": "req-1"}
    fb = http.get(srv.url + "/mlops/v1/models/retail/stats").json()["feedback"]
    assert fb["count"] - before["count"] == 4 and fb["correct"] - before["correct"] == 3
    conf = np.array(fb["confusion"]) - np.array(before["confusion"])
    assert conf.tolist() == [[1, 0], [1, 2]]
    assert sum(fb["scoreCountsByLabel"]["1"]) - sum(before["scoreCountsByLabel"]["1"]) == 3
    u = "/v2/models/retail/feedback"
    assert_error(post(http, srv, u, {"predictions": [1, 0], "labels": [1]}), 422, "2", "1")
    assert_error(post(http, srv, u, {"predictions": [1], "labels": ["cat"]}), 422, "unknown class", "cat")
    assert_error(post(http, srv, u, {"predictions": [1], "labels": [0.5]}), 422, "labels[0]")
    assert_error(post(http, srv, u, {"labels": [1]}), 422, "predictions")
    assert_error(post(http, srv, u, data=b"nope"), 400, "JSON")
    assert_error(post(http, srv, u, {"predictions": [1], "labels": [1], "scores": [2]}), 422, "scores")
    assert_error(post(http, srv, "/v2/models/x/feedback", {"predictions": [1], "labels": [1]}), 404, "x")
    metrics = http.get(srv.url + "/metrics").text
    assert metric(metrics, "mlops_serving_feedback_correct_total") == fb["correct"]
    assert metric(metrics, "mlops_serving_feedback_rows_total") == fb["count"]
    assert metric(metrics, "mlops_serving_feedback_confusion_total", label="1", predicted="0") == fb["confusion"][1][0]


def test_regression_model_feedback_and_v1(tmp_path):
    art = build_artifact(tmp_path, "Ridge", {}, rows=1500, task="regression", name="basket")
    with ServerThread(art.cfg()) as s, requests.Session() as h:
        frame = art.test.iloc[:25]
        r = h.post(s.url + "/v2/models/basket/infer", data=orjson.dumps({"inputs": v2_inputs(frame, art.feats)}))
        assert r.status_code == 200, r.text
        out = outputs(r)["variable"].reshape(-1)
        want = art.model.predict(frame)
        assert np.max(np.abs(out - want)) / max(1.0, np.abs(want).max()) <= TOL
        inst = [{c["name"]: (row[c["name"]] if c["type"] == "categorical" else
                             (None if pd.isna(row[c["name"]]) else float(row[c["name"]]))) for c in art.feats}
                for _, row in frame.iterrows()]
        v1 = h.post(s.url + "/v1/models/basket:predict", data=orjson.dumps({"instances": inst})).json()
        assert np.allclose(v1["predictions"], out)
        r = h.post(s.url + "/v2/models/basket/feedback", data=orjson.dumps({"predictions": [10.0, 20], "labels": [12, 17.5]}))
        assert r.status_code == 200, r.text
        assert_error(h.post(s.url + "/v2/models/basket/feedback",
                            data=orjson.dumps({"predictions": [1], "labels": ["a"]})), 422, "labels[0]")
        st = h.get(s.url + "/mlops/v1/models/basket/stats").json()
        assert st["feedback"]["count"] == 2
        assert st["feedback"]["sumAbsError"] == pytest.approx(4.5)
        assert st["feedback"]["sumSquaredError"] == pytest.approx(4 + 6.25)
        assert st["prediction"]["type"] == "value" and st["prediction"]["count"] == 50
        assert len(st["prediction"]["counts"]) == len(st["prediction"]["binEdges"]) + 1
        assert "mlops_serving_feedback_abs_error_sum" in h.get(s.url + "/metrics").text


def test_one_connection_is_answered_in_its_own_turn_and_two_are_batched(art):
    """With one client connection nothing can join a request's batch, so it is run at once
    (Batcher.answer_now); with another connection open, requests go through the batcher. Both
    answer the same, errors included, and both are counted."""
    frame = art.test.iloc[:4]
    want = art.model.predict_proba(frame)
    doc = {"inputs": v2_inputs(frame, art.feats)}
    num = next(i for i, t in enumerate(doc["inputs"]) if t["datatype"] == "FP32")
    # parses, then fails where the batch is converted: beyond float32's range
    bad = {"inputs": [dict(t, data=[1e39] + t["data"][1:]) if i == num else t for i, t in enumerate(doc["inputs"])]}
    with ServerThread(art.cfg()) as s:
        b = s.server.batcher
        submitted = []
        submit = b.submit
        b.submit = lambda req: submitted.append(req.n) or submit(req)  # type: ignore[method-assign]
        url = s.url + "/v2/models/retail/infer"
        with requests.Session() as one:
            for _ in range(3):
                r = one.post(url, data=orjson.dumps(doc))
                assert r.status_code == 200, r.text
                assert np.max(np.abs(outputs(r)["probabilities"] - want)) <= TOL
            alone_bad = one.post(url, data=orjson.dumps(bad))
            v1 = one.post(s.url + "/v1/models/retail:predict",
                          data=orjson.dumps({"instances": art.test.iloc[:2].to_dict("records")}))
            assert submitted == [] and b.runs == 4  # the bad one never reached the model
            with requests.Session() as two:
                assert two.get(s.url + "/v2/health/live").status_code == 200  # a second connection, kept open
                r = one.post(url, data=orjson.dumps(doc))
                assert np.max(np.abs(outputs(r)["probabilities"] - want)) <= TOL
                batched_bad = one.post(url, data=orjson.dumps(bad))
            assert submitted == [4, 4] and b.runs == 5
        assert alone_bad.status_code == batched_bad.status_code and alone_bad.json() == batched_bad.json()
        assert 400 <= alone_bad.status_code < 500
        assert v1.status_code == 200, v1.text
        assert s.server.requests.by_code()["infer"] == {"200": 4, str(alone_bad.status_code): 2}
        assert s.server.monitor.rows == 3 * 4 + 2 + 4


def test_counts_do_not_depend_on_how_the_rows_arrived(art, monkeypatch):
    """The buffers are counted when full, when a run does not fit and at once for a run as big as
    them: whatever the run sizes, every count equals that of the same rows counted in one go."""
    from mlops_operator.serving import monitor as monitor_mod
    from mlops_operator.serving.monitor import Monitor

    monkeypatch.setattr(monitor_mod, "FLUSH_ROWS", 16)
    model = load(art.store_uri, art.uri, art.digest)
    rng = np.random.default_rng(3)
    n = 200
    x = rng.normal(40, 20, size=(len(model.num_features), n))
    x[rng.random(x.shape) < 0.1] = np.nan
    mon_ref = Monitor(model, seed=0)
    cats = [[rng.choice([*mon_ref.categorical[j].categories, "brand-new", ""]) for _ in range(n)]
            for j in range(len(model.cat_features))]
    proba = rng.random(n).astype(np.float32)
    result = {"label": (proba > 0.5).astype(np.int64), "probabilities": np.stack([1 - proba, proba], axis=1)}
    mon_ref.observe(x, cats, result)  # 200 rows >= 16: counted at once

    mon = Monitor(model, seed=0)
    start = 0
    for size in [1, 3, 12, 1, 16, 5, 40, 2, 15, 1] * 3:  # fills exactly, overflows, bigger than the buffer
        end = min(n, start + size)
        if end > start:
            mon.observe(x[:, start:end], [c[start:end] for c in cats],
                        {k: v[start:end] for k, v in result.items()})
        start = end
    assert start == n and mon.rows == n
    assert mon.pending_rows < 16  # what is left waits in the buffer
    assert mon.features_doc() == mon_ref.features_doc()
    got, want = mon.drift_doc("s"), mon_ref.drift_doc("s")
    assert got["features"] == want["features"] and got["rows"] == want["rows"] == n
    hg, hw = unpack(got["histograms"]), unpack(want["histograms"])
    assert hg.keys() == hw.keys() and len(hg) == len(model.num_features) - 2  # the booleans are in features
    for name, h in hg.items():
        assert np.array_equal(h.counts, hw[name].counts) and np.array_equal(h.atoms, hw[name].atoms)
        assert h.nulls == hw[name].nulls
        # which 32 values a few-valued feature lists depends on the order they came in; not their total
        assert sum(h.values.values()) + h.unlisted == sum(hw[name].values.values()) + hw[name].unlisted
        assert np.allclose(h.sums, hw[name].sums)  # offsets summed in another order
    assert mon.prediction.stats() == mon_ref.prediction.stats()
    assert all(not buf for buf in mon.pending_cats)  # nothing a client sent is held once counted


def test_freeze_heap_takes_the_startup_objects_out_of_the_collections():
    import gc

    from mlops_operator.serving.run import freeze_heap

    try:
        frozen = freeze_heap()
        # what the collections traverse (the generations; the frozen objects are apart): next to
        # nothing. Not counted exactly: the server threads of other tests allocate meanwhile
        assert frozen > 1000 and len(gc.get_objects()) < frozen / 10
    finally:
        gc.unfreeze()  # the test process's objects back under the collector


def test_buffered_counts_are_counted_when_read(art):
    from mlops_operator.serving.monitor import Monitor

    model = load(art.store_uri, art.uri, art.digest)
    mon = Monitor(model, seed=0)
    n_num, n_cat = len(model.num_features), len(model.cat_features)

    def batch(rows: int):
        x = np.zeros((n_num, rows))
        cats = [["mobile"] * rows for _ in range(n_cat)]
        return x, cats, {"label": np.zeros(rows, dtype=np.int64), "probabilities": np.full((rows, 2), 0.5, np.float32)}

    mon.observe(*batch(3))
    assert mon.pending_rows == 3 and mon.rows == 3  # buffered, not yet counted
    mon.observe(*batch(4))
    doc = mon.drift_doc("s")
    assert doc["rows"] == 7 and mon.pending_rows == 0
    assert sum(mon.prediction.counts) == 7


def test_a_reference_from_another_dataset_is_projected_onto_the_counting_edges(art, tmp_path):
    """DriftMonitor spec.reference: another Dataset version's profile, its histograms on its own
    edges; the server gives them projected onto the edges it counts on, so the window can be
    judged on them (approximately: "binned", no bound)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_operator import drift
    from mlops_operator.data.profile import Profiler
    from mlops_operator.store.store import FileStore

    other = retail.generate(2500, seed=99).to_pandas()
    x = pipeline.prepare_frame(other, art.feats)
    numeric = [c["name"] for c in art.feats if c["type"] == "numeric"]
    table = pa.table({n: pa.array(x[n].to_numpy(float), from_pandas=True) for n in numeric})
    pq.write_table(table, tmp_path / "data.parquet")
    prof = Profiler([{"name": n, "type": "numeric", "role": "feature"} for n in numeric], None)
    for b in table.to_batches():
        prof.add(b)
    (tmp_path / "profile.json").write_bytes(orjson.dumps(prof.finish(tmp_path / "data.parquet")))
    store = FileStore(Path(art.store_uri.removeprefix("file://")))
    digest, _ = store.put_version("datasets", "other", tmp_path / "data.parquet",
                                  {"profile.json": tmp_path / "profile.json"})
    with ServerThread(art.cfg()) as s, requests.Session() as h:
        r = h.get(s.url + "/v2/models/retail/reference", params={"dataset": "other", "digest": digest}, timeout=30)
        assert r.status_code == 200, r.text
        cols = r.json()["reference"]["columns"]
        frame = art.test.iloc[:400]
        assert h.post(s.url + "/v2/models/retail/infer",
                      data=orjson.dumps({"inputs": v2_inputs(frame, art.feats)})).status_code == 200
        doc = h.get(s.url + "/mlops/v1/models/retail/stats").json()["drift"]
    own = art.manifest.reference.columns["age"].histogram
    refs = drift.references_from_profile(cols)
    age = refs["age"].hist
    assert age.edges.tolist() == own.edges and age.projected and age.count == int(x["age"].notna().sum())
    reading = pod_reading({"startId": "s", "drift": doc})
    assert reading is not None
    res = drift.evaluate(refs, reading.all_features(), min_samples=10)
    for f in res.features:
        if f.name in numeric:
            assert f.status == "ok" and f.basis == "binned" and "projected" in f.message, f
            exact = drift.compare({"v": x[f.name].to_numpy(float)}, {"v": frame[f.name].to_numpy(float)},
                                  overrides={"v": f.method}).features[0]
            if f.method == "wasserstein":
                assert abs(f.score - exact.score) < 0.02, (f, exact)


def test_reference_endpoint_gives_the_manifests_reference(http, srv, art):
    from mlops_operator.drift.engine import references_from_profile
    from mlops_operator.store.model_manifest import read_manifest

    r = http.get(srv.url + "/v2/models/retail/reference", timeout=10)
    assert r.status_code == 200
    ref = r.json()["reference"]
    want = read_manifest(Path(art.cfg().model_uri.removeprefix("file://")) / "model.json").reference
    plain = want.model_dump(by_alias=True, exclude_none=True, mode="json")
    # as model.json has it, the histograms packed (edges included): what the drift monitor keeps
    assert {k: v for k, v in ref.items() if k != "columns"} == {k: v for k, v in plain.items() if k != "columns"}
    got, mine = references_from_profile(ref["columns"]), references_from_profile(plain["columns"])
    assert sorted(got) == sorted(mine)
    for name, r_ in mine.items():
        g = got[name]
        assert (g.kind, g.rows, g.categories, g.std) == (r_.kind, r_.rows, r_.categories, r_.std)
        if r_.hist is not None:
            assert g.hist.edges.tolist() == r_.hist.edges.tolist() and g.hist.counts.tolist() == r_.hist.counts.tolist()
            assert g.hist.atoms.tolist() == r_.hist.atoms.tolist() and g.hist.sums.tolist() == r_.hist.sums.tolist()
    r = http.get(srv.url + "/v2/models/other/reference", timeout=10)
    assert r.status_code == 404 and r.json()["error"]


def test_reference_from_another_dataset_version(http, srv, art, tmp_path):
    """DriftMonitor spec.reference: a Dataset version's profile from the store, on the model's features."""
    from mlops_operator.data import snapshot

    ds = {"source": {"type": "generator", "generator": {"kind": "retail", "rows": 1500, "seed": 3,
                                                         "behaviourShift": 1.0}},
          "labelColumn": "purchased", "schema": {"columns": retail.RETAIL_SCHEMA}}
    work = tmp_path / "snap"
    work.mkdir()
    out = snapshot.run({"name": "season2", "spec": ds}, art.store_uri, tmp_path, work)
    r = http.get(srv.url + "/v2/models/retail/reference", params={"dataset": "season2", "digest": out["digest"]},
                 timeout=10)
    assert r.status_code == 200, r.text
    ref = r.json()["reference"]
    assert ref["dataset"] == "season2" and ref["datasetDigest"] == out["digest"] and ref["rows"] == 1500
    assert set(ref["columns"]) == {f.name for f in art.manifest.inputs}
    assert sum(ref["columns"]["age"]["binCounts"]) + ref["columns"]["age"]["nulls"] == 1500
    for bad in ({"dataset": "season2", "digest": "0" * 64}, {"dataset": "../x", "digest": out["digest"]},
                {"dataset": "season2", "digest": "nothex"}):
        r = http.get(srv.url + "/v2/models/retail/reference", params=bad, timeout=10)
        assert r.status_code == 404 and r.json()["error"], bad


# ------------------------------------------------------------------------------------------------
# the common-request fast path (protocol._common_v2, tensors.Layout.fast) against the checking path

def _spec_and_layout(art):
    from mlops_operator.serving.protocol import Spec
    from mlops_operator.serving.tensors import Layout

    model = load(art.store_uri, art.uri, art.digest)
    spec = Spec(model, "retail", "3", 1024)
    return spec, Layout(spec)


def test_fast_path_equals_the_checking_path_for_any_mix_of_requests(art):
    """Requests of different sizes, input orders and forms, converted together by the fast path,
    give exactly the arrays the per-request checking path gives (the model sees the same rows)."""
    from mlops_operator.serving.protocol import parse_v2

    spec, layout = _spec_and_layout(art)
    rng = np.random.default_rng(3)
    bodies = []
    for i, n in enumerate((1, 3, 1, 5, 2)):
        inputs = v2_inputs(art.test.iloc[i * 5: i * 5 + n], art.feats, nested=(i == 3))
        if i % 2:
            inputs = [inputs[j] for j in rng.permutation(len(inputs))]  # another arrangement
        bodies.append(orjson.dumps({"id": f"r{i}", "inputs": inputs}))
    reqs = [parse_v2(b, spec) for b in bodies]
    assert [r.n for r in reqs] == [1, 3, 1, 5, 2]
    assert [r.id for r in reqs] == [f"r{i}" for i in range(5)]
    assert len(spec.arrangements) == 3  # the fast path remembered the three arrangements (the nested one is not)
    fast = layout.fast(reqs)
    assert fast is not None
    x, x32, cats = fast
    careful = [layout.careful(r) for r in reqs]
    np.testing.assert_array_equal(x, np.concatenate([c[0] for c in careful], axis=1))
    np.testing.assert_array_equal(x32, np.concatenate([c[1] for c in careful], axis=1))
    assert cats == [sum((c[2][j] for c in careful), []) for j in range(len(spec.cat))]
    # one request alone, and requests of one size, take the reshape-only branches
    for group in ([reqs[0]], [reqs[0], reqs[2]]):
        x, _, cats = layout.fast(group)
        np.testing.assert_array_equal(x, np.concatenate([layout.careful(r)[0] for r in group], axis=1))


def test_fast_path_gives_up_on_what_it_does_not_check(art):
    """Every value the fast path cannot vouch for sends the batch to the checking path (None)."""
    from mlops_operator.serving.protocol import ServingError, parse_v2

    spec, layout = _spec_and_layout(art)
    good = {"inputs": v2_inputs(art.test.iloc[:2], art.feats)}
    assert layout.fast([parse_v2(orjson.dumps(good), spec)]) is not None
    for name, data in [("is_member", [2, 1]), ("is_member", [{"a": 1}, 0]), ("is_member", ["true", 1]),
                       ("tenure_days", [None, 1]), ("age", [1e39, 1]), ("age", ["x", 1]), ("age", [1, [2]]),
                       ("device", [1, "mobile"]), ("device", [None, "mobile"])]:
        req = parse_v2(orjson.dumps(_with(good, name, data=data)), spec)
        assert layout.fast([req]) is None, (name, data)
        with pytest.raises(ServingError) as e:  # the checking path names the feature
            layout.careful(req)
        assert name in e.value.message and e.value.status == 422, (name, data, e.value.message)
    # the same values the checking path accepts, the fast path accepts too
    # ("age", [3e38, 3e38]): each within float32, their sum is not (the one-reduction check sums
    # in float64, so it is not mistaken for an out-of-range value)
    for name, data in [("is_member", [True, False]), ("is_member", [1.0, 0]), ("age", [None, 3]),
                       ("age", ["3.5", 2]), ("age", [3e38, 3e38])]:
        req = parse_v2(orjson.dumps(_with(good, name, data=data)), spec)
        got = layout.fast([req])
        assert got is not None, (name, data)
        np.testing.assert_array_equal(got[0], layout.careful(req)[0])


def test_fast_parse_leaves_odd_requests_to_the_checking_path(art):
    """Shapes that disagree, a missing field, a feature twice: the same 4xx as without the fast path."""
    from mlops_operator.serving.protocol import ServingError, parse_v2

    spec, _ = _spec_and_layout(art)
    good = {"inputs": v2_inputs(art.test.iloc[:2], art.feats)}
    cases = [
        (_with(good, "age", shape=[2, 1]), None),  # [N] and [N, 1] mixed: still fine
        (_with(good, "age", shape=[3]), "3 values"),
        ({"inputs": [{k: v for k, v in t.items() if k != "datatype"} if t["name"] == "age" else t
                     for t in good["inputs"]]}, "age"),
        ({"inputs": good["inputs"][:-1] + [good["inputs"][0]]}, "twice"),
        ({"inputs": good["inputs"][:-1] + [{**good["inputs"][0], "name": ["age"]}]}, "name"),
    ]
    for doc, words in cases:
        if words is None:
            assert parse_v2(orjson.dumps(doc), spec).n == 2
            continue
        with pytest.raises(ServingError) as e:
            parse_v2(orjson.dumps(doc), spec)
        assert words in e.value.message and 400 <= e.value.status < 500, e.value.message
    # arrangements are remembered up to a bound, then computed each time
    from mlops_operator.serving import protocol

    feats = good["inputs"]
    for i in range(protocol._ARRANGEMENTS + 5):
        order = np.random.default_rng(i).permutation(len(feats))
        assert parse_v2(orjson.dumps({"inputs": [feats[j] for j in order]}), spec).n == 2
    assert len(spec.arrangements) == protocol._ARRANGEMENTS


def test_feedback_stats_and_reference_are_on_the_monitor_port_only(art):
    """They shared the inference port: any inference client could read every client's sampled
    rows (/stats) and write ground truth (/feedback). With --monitor-port they are served there
    and nowhere else, so a NetworkPolicy can keep inference clients off them."""
    from mlops_operator.localcluster.forward import free_port

    mport = free_port()
    with ServerThread(art.cfg(monitor_port=mport)) as s, requests.Session() as h:
        mon = f"http://127.0.0.1:{mport}"
        doc = {"inputs": v2_inputs(art.test.head(2), art.feats)}
        assert h.post(s.url + "/v2/models/retail/infer", json=doc, timeout=10).status_code == 200
        for path in ("/mlops/v1/models/retail/stats", "/v2/models/retail/reference"):
            assert h.get(s.url + path, timeout=10).status_code == 404, path
            assert h.get(mon + path, timeout=10).status_code == 200, path
        fb = {"predictions": [0], "labels": [1]}
        assert h.post(s.url + "/v2/models/retail/feedback", json=fb, timeout=10).status_code == 404
        assert h.post(mon + "/v2/models/retail/feedback", json=fb, timeout=10).status_code == 200
        assert h.post(mon + "/v2/models/retail/infer", json={"inputs": []}, timeout=10).status_code == 404
        assert h.get(mon + "/v2/health/live", timeout=10).status_code == 200
        assert h.get(s.url + "/metrics", timeout=10).status_code == 200


def test_the_monitor_port_must_differ_from_the_inference_port(art):
    with pytest.raises(SystemExit):
        serve_config.parse(["--store-uri", art.store_uri, "--model-uri", art.uri, "--digest", art.digest,
                            "--name", "retail", "--port", "8080", "--monitor-port", "8080"])


def test_the_network_policy_opens_inference_and_guards_the_monitor_port():
    """manifests/networkpolicy selects the pods the operator makes and matches their ports."""
    import yaml

    from mlops_operator.resources.serving import GRPC_PORT, MONITOR_PORT, PORT, deployment, service
    from mlops_operator.settings import Settings

    repo = Path(__file__).resolve().parents[2]
    pol = yaml.safe_load((repo / "manifests/networkpolicy/model-servers.yaml").read_text())
    isvc = {"apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "svc", "namespace": "ns", "uid": "u"}, "spec": {"model": "m", "alias": "production"}}
    mv = {"metadata": {"name": "m-v1"}, "spec": {"model": "m", "version": 1,
                                                   "artifact": {"uri": "file:///store/m", "digest": "a" * 64}}}
    s = Settings(runtime_image="r", store_claim="c", store_size="1Gi", store_access_mode="ReadWriteOnce",
                 store_storage_class=None)
    dep = deployment(isvc, mv, s)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"http": PORT, "grpc": GRPC_PORT, "monitor": MONITOR_PORT}
    args = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args[args.index("--grpc-port") + 1] == str(GRPC_PORT)
    svc_ports = {p["name"]: p for p in service(isvc)["spec"]["ports"]}
    assert svc_ports["grpc"]["targetPort"] == GRPC_PORT and svc_ports["grpc"]["appProtocol"] == "grpc"
    rules = pol["spec"]["ingress"]
    open_rules = [r for r in rules if not r.get("from")]
    # only inference is open: REST and gRPC
    assert sorted(p["port"] for r in open_rules for p in r["ports"]) == sorted([PORT, GRPC_PORT])
    guarded = [p["port"] for r in rules if r.get("from") for p in r["ports"]]
    assert set(guarded) == {MONITOR_PORT}


def test_kserve_v1_liveness_model_list_and_explain(srv, http):
    """KServe's client found 404 on `GET /` (is_server_live) and `GET /v1/models`; `:explain`
    answered 405, then 404 for a model named `retail:explain`."""
    r = http.get(srv.url + "/", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    r = http.get(srv.url + "/v1/models", timeout=10)
    assert r.status_code == 200 and r.json() == {"models": ["retail"]}
    for method in ("post", "get"):
        r = getattr(http, method)(srv.url + "/v1/models/retail:explain", timeout=10)
        assert r.status_code == 501 and "no explainer" in r.json()["error"], (method, r.text)
    r = http.post(srv.url + "/v1/models/other:explain", timeout=10)
    assert r.status_code == 404 and "not served" in r.json()["error"]


def test_triton_statistics_at_tritons_path_and_the_projects_own_at_theirs(art):
    """tritonclient's get_inference_statistics read /v2/models/<m>/stats and silently got the
    project's drift document; now it gets Triton's shape, counting what was served, and the
    drift document lives at /mlops/v1/models/<m>/stats."""
    import tritonclient.http as triton

    with ServerThread(art.cfg()) as s, requests.Session() as h:
        doc = {"inputs": v2_inputs(art.test.head(3), art.feats)}
        for _ in range(2):
            assert h.post(s.url + "/v2/models/retail/infer", json=doc, timeout=10).status_code == 200
        bad = {"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [1]}]}
        assert h.post(s.url + "/v2/models/retail/infer", json=bad, timeout=10).status_code == 422
        tc = triton.InferenceServerClient(url=s.url.removeprefix("http://"))
        try:
            for stats in (tc.get_inference_statistics("retail"), tc.get_inference_statistics(),
                          tc.get_inference_statistics("retail", "3")):
                (m,) = stats["model_stats"]
                assert m["name"] == "retail" and m["version"] == "3"
                inf = m["inference_stats"]
                assert inf["success"]["count"] == 2 and inf["success"]["ns"] > 0
                assert inf["fail"]["count"] == 1
                assert m["inference_count"] == 6 and m["execution_count"] == inf["compute_infer"]["count"] == 2
                assert 0 < inf["compute_infer"]["ns"] <= inf["success"]["ns"]
                assert m["last_inference"] > 0
            with pytest.raises(Exception, match="not served"):
                tc.get_inference_statistics("other")
        finally:
            tc.close()
        own = h.get(s.url + "/mlops/v1/models/retail/stats", timeout=10).json()
        assert own["format"] == "mlops.dev/serving-stats/v1" and own["rows"] == 6
