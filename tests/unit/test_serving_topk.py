"""Top-k serving of a recommender (serving/topk.py) on a real server on a loopback port: a
ranking bundle trained here (training/ranking_job via job.train), its ranking graph served as
the V2 model `<name>-topk` next to the pointwise scorer, called with raw JSON and with
tritonclient (binary tensors), and the bad requests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from mlops_operator.serving import config as serve_config
from mlops_operator.serving.model import ModelLoadError, load
from mlops_operator.store.model_manifest import read_manifest
from mlops_operator.store.store import FileStore
from mlops_operator.training import job

from .test_serving import ServerThread
from .test_trainer_ranking import _doc, _snapshot


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("topk")
    store_uri = (tmp / "store").as_uri()
    ds = _snapshot(tmp, store_uri, 6000, 0.0, 11)
    out = job.train(_doc(ds), store_uri)
    store = FileStore(tmp / "store")
    man = read_manifest(store.local_path(out["uri"], "model.json"))
    data = pq.read_table(store.local_path(ds["uri"], "data.parquet", ds["digest"])).to_pandas()
    return {"tmp": tmp, "store_uri": store_uri, "out": out, "man": man, "data": data, "store": store}


def _cfg(b: dict[str, Any], **kw: Any) -> serve_config.ServeConfig:
    base = dict(store_uri=b["store_uri"], model_uri=b["out"]["uri"], digest=b["out"]["digest"], name="recommender",
                version="1", host="127.0.0.1", port=0, reservoir_size=50, window_seconds=300,
                drain_delay_seconds=0.0, grace_seconds=5.0, instance="test-pod", uvloop=False)
    base.update(kw)
    return serve_config.ServeConfig(**base)


@pytest.fixture(scope="module")
def srv(bundle):
    with ServerThread(_cfg(bundle)) as s:
        yield s


def _customer(b: dict[str, Any], n: int = 12):
    """One customer's candidates (distinct items) from the data."""
    d = b["data"]
    cust = d[d.customer_id == d.customer_id.iloc[0]].drop_duplicates("item_id").head(n).reset_index(drop=True)
    assert len(cust) >= 5
    return cust


def _request(b: dict[str, Any], cust, k: int | None = 3) -> dict[str, Any]:
    man = b["man"]
    ctx = set(man.ranking.context_features)
    inputs = []
    for f in man.inputs:
        vals = cust[f.name].tolist()
        if f.name in ctx:
            vals = vals[:1]
        dt = "BYTES" if f.type == "categorical" else "FP32"
        inputs.append({"name": f.name, "datatype": dt, "shape": [len(vals), 1],
                       "data": [str(v) if dt == "BYTES" else float(v) for v in vals]})
    inputs.append({"name": "item_ids", "datatype": "BYTES", "shape": [len(cust)], "data": cust.item_id.tolist()})
    doc: dict[str, Any] = {"id": "r-1", "inputs": inputs}
    if k is not None:
        doc["parameters"] = {"k": k}
    return doc


def _scorer_ranking(srv, b, cust) -> list[str]:
    """The pointwise scorer's ranking of the same candidates (the model `<name>`, one row per
    pair with the customer's features repeated): what the top-k graph must agree with."""
    man = b["man"]
    inputs = []
    for f in man.inputs:
        vals = cust[f.name].tolist() if f.name not in man.ranking.context_features else [cust[f.name].iloc[0]] * len(cust)
        dt = "BYTES" if f.type == "categorical" else "FP32"
        inputs.append({"name": f.name, "datatype": dt, "shape": [len(vals), 1],
                       "data": [str(v) if dt == "BYTES" else float(v) for v in vals]})
    r = requests.post(srv.url + "/v2/models/recommender/infer", json={"inputs": inputs}, timeout=10)
    assert r.status_code == 200, r.text
    probs = np.array(next(o for o in r.json()["outputs"] if o["name"] == "probabilities")["data"]).reshape(-1, 2)
    order = np.lexsort((np.arange(len(cust)), -probs[:, 1]))
    return cust.item_id.to_numpy()[order].tolist()


def test_topk_model_answers_v2_with_the_scorers_ranking(srv, bundle):
    cust = _customer(bundle)
    meta = requests.get(srv.url + "/v2/models/recommender-topk", timeout=10).json()
    assert meta["name"] == "recommender-topk" and meta["parameters"]["k"] == 10
    shapes = {i["name"]: i["shape"] for i in meta["inputs"]}
    assert shapes["age"] == [1, 1] and shapes["price"] == [-1, 1] and shapes["item_ids"] == [-1]
    assert requests.get(srv.url + "/v2/models/recommender-topk/ready", timeout=10).json()["ready"] is True
    r = requests.post(srv.url + "/v2/models/recommender-topk/infer", json=_request(bundle, cust, k=4), timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "r-1" and body["model_name"] == "recommender-topk"
    outs = {o["name"]: o for o in body["outputs"]}
    want = _scorer_ranking(srv, bundle, cust)
    assert outs["topk_items"]["data"] == want[:4]
    scores = outs["topk_scores"]["data"]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    assert [cust.item_id[i] for i in outs["topk_indices"]["data"]] == want[:4]
    # k from the run (ranking.k = 10) when the request names none; more than the candidates: all, ranked
    r = requests.post(srv.url + "/v2/models/recommender-topk/infer", json=_request(bundle, cust, k=None), timeout=10)
    assert [o for o in r.json()["outputs"] if o["name"] == "topk_items"][0]["data"] == want[:10]
    r = requests.post(srv.url + "/v2/models/recommender-topk/infer", json=_request(bundle, cust, k=500), timeout=10)
    assert [o for o in r.json()["outputs"] if o["name"] == "topk_items"][0]["data"] == want
    # the scorer is still served as before, and top-k requests are counted apart
    stats = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'endpoint="topk"' in stats


def _triton_inputs(triton: Any, b: dict[str, Any], cust, k: int) -> list[Any]:
    """One customer's candidates as tritonclient InferInputs (`triton`: its http or grpc module,
    whose InferInput is the same shape): the customer's features once, the candidates', item_ids, k."""
    man = b["man"]
    ctx = set(man.ranking.context_features)
    ins = []
    for f in man.inputs:
        col = cust[f.name].to_numpy()[:1] if f.name in ctx else cust[f.name].to_numpy()
        if f.type == "categorical":
            t = triton.InferInput(f.name, [len(col), 1], "BYTES")
            t.set_data_from_numpy(col.astype(object).reshape(-1, 1))
        else:
            t = triton.InferInput(f.name, [len(col), 1], "FP32")
            t.set_data_from_numpy(col.astype(np.float32).reshape(-1, 1))
        ins.append(t)
    ids = triton.InferInput("item_ids", [len(cust)], "BYTES")
    ids.set_data_from_numpy(cust.item_id.to_numpy().astype(object))
    kk = triton.InferInput("k", [1], "INT64")
    kk.set_data_from_numpy(np.array([k], dtype=np.int64))
    return [*ins, ids, kk]


def test_tritonclient_calls_topk_with_binary_tensors(srv, bundle):
    import tritonclient.http as triton

    cust = _customer(bundle)
    tc = triton.InferenceServerClient(url=srv.url.removeprefix("http://"))
    try:
        assert tc.is_model_ready("recommender-topk")
        res = tc.infer("recommender-topk", _triton_inputs(triton, bundle, cust, k=3))
        got = [x.decode() if isinstance(x, bytes) else str(x) for x in res.as_numpy("topk_items")]
        assert got == _scorer_ranking(srv, bundle, cust)[:3]
    finally:
        tc.close()


def _mutate(doc: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    out = {**doc, "inputs": [dict(t) for t in doc["inputs"]]}
    for t in out["inputs"]:
        if t["name"] == name:
            t.update(changes)
    return out


@pytest.mark.parametrize("how, message", [
    ("no candidates", "no candidates"),
    ("duplicates", "duplicate candidate ids"),
    ("k zero", "k must be an integer of at least 1"),
    ("k text", "k must be an integer of at least 1"),
    ("k bool", "k must be an integer of at least 1"),
    ("two customers", "describes the customer"),
    ("short column", "values for"),
    ("unknown input", "unknown inputs: colour"),
    ("missing input", "missing inputs: price"),
    ("text price", "is not a number"),
    ("huge price", "out of float32's range"),
    ("not json", "not valid JSON"),
])
def test_bad_topk_requests_get_a_clear_400(srv, bundle, how, message):
    cust = _customer(bundle)
    doc = _request(bundle, cust)
    ids = cust.item_id.tolist()
    if how == "no candidates":
        doc = _mutate(doc, "item_ids", shape=[0], data=[])
    elif how == "duplicates":
        doc = _mutate(doc, "item_ids", data=[ids[0]] + ids[:-1])
    elif how == "k zero":
        doc["parameters"] = {"k": 0}
    elif how == "k text":
        doc["parameters"] = {"k": "3"}
    elif how == "k bool":
        doc["parameters"] = {"k": True}
    elif how == "two customers":
        doc = _mutate(doc, "age", shape=[2, 1], data=[30.0, 40.0])
    elif how == "short column":
        doc = _mutate(doc, "price", shape=[2, 1], data=[1.0, 2.0])
    elif how == "unknown input":
        doc["inputs"].append({"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["red"]})
    elif how == "missing input":
        doc["inputs"] = [t for t in doc["inputs"] if t["name"] != "price"]
    elif how == "huge price":
        doc = _mutate(doc, "price", data=[1e39] * len(cust))
    elif how == "text price":
        doc = _mutate(doc, "price", datatype="BYTES", data=["cheap"] * len(cust))
    url = srv.url + "/v2/models/recommender-topk/infer"
    r = (requests.post(url, data=b"{not json", timeout=10) if how == "not json"
         else requests.post(url, json=doc, timeout=10))
    assert r.status_code == 400 and message in r.json()["error"], (how, r.status_code, r.text)
    # the server keeps answering
    assert requests.post(url, json=_request(bundle, cust), timeout=10).status_code == 200


def test_a_tampered_ranking_graph_is_refused_at_load(bundle, tmp_path):
    """topk.onnx is loaded only if its bytes hash to model.json's ranking.topkSha256."""
    src = Path(bundle["store"].local_path(bundle["out"]["uri"], "model.json")).parent
    store_root = tmp_path / "store"
    rel = src.relative_to(Path(bundle["tmp"]) / "store")
    dst = store_root / rel
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    graph = dst / bundle["man"].ranking.topk_file
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match model.json's"):
        load(store_root.as_uri(), dst.as_uri(), bundle["out"]["digest"])



def test_ranking_feedback_reaches_the_stats_document_on_the_monitor_port(bundle):
    """What was bought after a top-k answer: posted to `<name>-topk/feedback` on the monitor
    port (never the inference port), counted in the stats document's feedback section."""
    from mlops_operator.localcluster.forward import free_port

    mport = free_port()
    with ServerThread(_cfg(bundle, monitor_port=mport)) as s:
        mon = f"http://127.0.0.1:{mport}"
        fb = {"served": [["a", "b", "c"], ["d", "e"], ["f"]], "bought": ["b", "zz", None]}
        assert requests.post(s.url + "/v2/models/recommender-topk/feedback", json=fb, timeout=10).status_code == 404
        r = requests.post(mon + "/v2/models/recommender-topk/feedback", json=fb, timeout=10)
        assert r.status_code == 200 and r.json() == {"rows": 3, "purchases": 2, "hits": 1}
        bad = requests.post(mon + "/v2/models/recommender-topk/feedback", json={"served": [["a"]]}, timeout=10)
        assert bad.status_code == 422 and "bought" in bad.json()["error"]
        doc = requests.get(mon + "/mlops/v1/models/recommender/stats", timeout=10).json()["feedback"]
        assert (doc["rankCount"], doc["hits"], doc["rankNoPurchase"], doc["rankK"]) == (2, 1, 1, 10)
        assert doc["ndcgSum"] > 0


def test_topk_pairs_are_counted_for_drift(bundle):
    """The DriftMonitor watches a recommender through its top-k traffic: each request's
    (customer, candidate) pairs land in the drift histograms, the customer's values once per
    candidate."""
    cust = _customer(bundle)
    with ServerThread(_cfg(bundle)) as s:
        before = requests.get(s.url + "/mlops/v1/models/recommender/stats", timeout=10).json()
        r = requests.post(s.url + "/v2/models/recommender-topk/infer", json=_request(bundle, cust), timeout=10)
        assert r.status_code == 200
        after = requests.get(s.url + "/mlops/v1/models/recommender/stats", timeout=10).json()
    n = len(cust)
    assert after["rows"] - before["rows"] == n
    seg = after["features"]["customer_segment"]
    assert sum(seg["counts"]) + seg["other"] - sum(before["features"]["customer_segment"]["counts"]) == n
    i = seg["categories"].index(str(cust.customer_segment.iloc[0]))
    assert seg["counts"][i] - before["features"]["customer_segment"]["counts"][i] == n  # the customer, n times
    cat = after["features"]["category"]
    assert sum(cat["counts"]) + cat["other"] == n


# ------------------------------------------------------------------------------------------------
# the same model over gRPC (serving/grpc_service.py)

@pytest.fixture(scope="module")
def grpc_srv(bundle):
    from .test_serving_grpc import free_port

    with ServerThread(_cfg(bundle, grpc_port=free_port())) as s:
        yield s


def _typed(b: dict[str, Any], cust, k: int | None) -> Any:
    """The JSON request of _request as a ModelInferRequest with typed contents."""
    from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb

    doc = _request(b, cust, k)
    req = pb.ModelInferRequest(model_name="recommender-topk", id="g-7")
    for t in doc["inputs"]:
        inp = req.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        if t["datatype"] == "BYTES":
            inp.contents.bytes_contents.extend(v.encode() for v in t["data"])
        else:
            inp.contents.fp32_contents.extend(t["data"])
    if k is not None:
        req.parameters["k"].int64_param = k
    return req


def test_topk_over_grpc_typed_and_with_tritonclient(grpc_srv, bundle):
    """`<name>-topk` over gRPC: typed contents (kserve's default) and tritonclient's raw tensors
    give the REST answer; metadata and readiness answer for it; its requests count as `topk`."""
    import grpc
    import tritonclient.grpc as tg

    from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb

    from .test_serving_grpc import call

    cust = _customer(bundle)
    want = _scorer_ranking(grpc_srv, bundle, cust)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_srv.server.grpc_port}") as ch:
        res = call(ch, "ModelInfer", _typed(bundle, cust, 4))
        assert res.model_name == "recommender-topk" and res.id == "g-7"
        outs = {o.name: o for o in res.outputs}
        assert [x.decode() for x in outs["topk_items"].contents.bytes_contents] == want[:4]
        assert list(outs["topk_indices"].contents.int64_contents) == [cust.item_id.tolist().index(i)
                                                                       for i in want[:4]]
        meta = call(ch, "ModelMetadata", pb.ModelMetadataRequest(name="recommender-topk"), pb.ModelMetadataResponse)
        assert {i.name: list(i.shape) for i in meta.inputs}["item_ids"] == [-1]
        assert call(ch, "ModelReady", pb.ModelReadyRequest(name="recommender-topk"), pb.ModelReadyResponse).ready
        # a bad request: the REST message under INVALID_ARGUMENT, and the server goes on
        bad = _typed(bundle, cust, 4)
        bad.inputs[-1].contents.bytes_contents[1] = bad.inputs[-1].contents.bytes_contents[0]
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "ModelInfer", bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "duplicate candidate ids" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "ModelReady", pb.ModelReadyRequest(name="recommender-topk", version="9"), pb.ModelReadyResponse)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

    client = tg.InferenceServerClient(url=f"127.0.0.1:{grpc_srv.server.grpc_port}")
    try:
        res = client.infer("recommender-topk", _triton_inputs(tg, bundle, cust, k=3))
        assert [x.decode() for x in res.as_numpy("topk_items")] == want[:3]
        scores = res.as_numpy("topk_scores")
        assert scores.dtype == np.float32 and list(scores) == sorted(scores, reverse=True)
    finally:
        client.close()
    metrics = requests.get(grpc_srv.url + "/metrics", timeout=10).text
    assert any('endpoint="topk"' in line and 'protocol="grpc"' in line and 'code="200"' in line
               for line in metrics.splitlines())
    assert any('endpoint="topk"' in line and 'protocol="grpc"' in line and 'code="400"' in line
               for line in metrics.splitlines())
