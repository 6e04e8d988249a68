"""The model server's gRPC Open Inference Protocol (serving/grpc_service.py), with real clients on
a loopback port: Triton's gRPC client (tritonclient.grpc) unchanged, and raw stubs for what
tritonclient does not send (typed contents, malformed protobuf, too large messages).

KServe's InferenceGRPCClient: kserve 0.21 does not install next to the project's pins (it wants
python-dateutil<3 and kubernetes 37.0.1 where the project has 4.0 and 37.0.2, and brings fastapi,
starlette, cloudevents and psutil), so its test runs the client in a virtualenv of its own
(`make kserve-venv`, which make test and make test-unit run; MLOPS_KSERVE_PYTHON=V/bin/python
points elsewhere, default ~/.cache/mlops/kserve-venv/bin/python); without it the test fails, saying so.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import orjson
import pytest
import requests

from mlops_operator.serving import config as serve_config
from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb
from tests.unit.test_serving import ServerThread, build_artifact, metric, v2_inputs

TOL = 1e-5
SERVICE = "/inference.GRPCInferenceService/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return build_artifact(tmp_path_factory.mktemp("serving-grpc"))


@pytest.fixture(scope="module")
def srv(art):
    with ServerThread(art.cfg(grpc_port=free_port(), max_batch_size=256, max_body_bytes=64 * 1024)) as s:
        yield s


@pytest.fixture(scope="module")
def channel(srv):
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}",
                               options=[("grpc.max_send_message_length", -1)])
    yield ch
    ch.close()


def call(channel, method: str, request, response_cls=None, raw: bytes | None = None):
    """One unary RPC with our own messages (or raw bytes); the decoded answer."""
    fn = channel.unary_unary(SERVICE + method, request_serializer=None,
                             response_deserializer=(response_cls or pb.ModelInferResponse).FromString)
    return fn(raw if raw is not None else request.SerializeToString(), timeout=30)


def typed_request(frame, feats, model="retail", version="", **kw) -> pb.ModelInferRequest:
    """One tensor per feature, values in the typed contents of their datatype."""
    req = pb.ModelInferRequest(model_name=model, model_version=version, **kw)
    n = len(frame)
    for c in feats:
        if c["type"] == "categorical":
            t = req.inputs.add(name=c["name"], datatype="BYTES", shape=[n, 1])
            t.contents.bytes_contents.extend(str(v).encode() for v in frame[c["name"]])
        else:
            t = req.inputs.add(name=c["name"], datatype="FP64", shape=[n])
            t.contents.fp64_contents.extend(frame[c["name"]].to_numpy(dtype=np.float64).tolist())
    return req


def as_numpy(resp, name: str) -> np.ndarray:
    """An output of a response, from raw or typed contents."""
    for i, o in enumerate(resp.outputs):
        if o.name != name:
            continue
        if resp.raw_output_contents:
            dtype = {"FP32": np.float32, "INT64": np.int64}[o.datatype]
            return np.frombuffer(resp.raw_output_contents[i], dtype=dtype).reshape(list(o.shape))
        c = o.contents
        vals = c.fp32_contents if o.datatype == "FP32" else c.int64_contents
        return np.array(list(vals)).reshape(list(o.shape))
    raise KeyError(name)


# ------------------------------------------------------------------------------------------------
# the proto

def test_checked_in_stubs_match_the_proto():
    """`make grpc-stubs` output is what is checked in (the .proto and the _pb2 cannot drift apart)."""
    from mlops_operator.serving.proto.__main__ import main

    assert main(["--check"]) == 0, "run `make grpc-stubs`"


def _fields(desc, prefix=""):
    out = {}
    for f in desc.fields:
        out[prefix + desc.name + "." + f.name] = (f.number, f.type, f.is_repeated,
                                                  f.message_type.full_name if f.message_type else None)
    for n in desc.nested_types:
        out.update(_fields(n, prefix + desc.name + "."))
    return out


def test_the_proto_speaks_tritons_wire_format():
    """Every field we declare has the number and type Triton's grpc_service.proto gives it (so
    any V2 client decodes our messages), except the two metadata `parameters` maps, an extension
    KServe and MLServer have (unknown fields are skipped by a client that lacks them)."""
    from tritonclient.grpc import service_pb2 as triton

    ours, theirs = {}, {}
    for m in pb.DESCRIPTOR.message_types_by_name.values():
        ours.update(_fields(m))
    for m in triton.DESCRIPTOR.message_types_by_name.values():
        theirs.update(_fields(m))
    only_ours = {k for k in ours if k not in theirs}
    assert only_ours <= {"ModelMetadataResponse.parameters", "ModelMetadataResponse.ParametersEntry.key",
                         "ModelMetadataResponse.ParametersEntry.value",
                         "ModelMetadataResponse.TensorMetadata.parameters",
                         "ModelMetadataResponse.TensorMetadata.ParametersEntry.key",
                         "ModelMetadataResponse.TensorMetadata.ParametersEntry.value"}, only_ours
    differ = {k: (ours[k], theirs[k]) for k in ours if k in theirs and ours[k] != theirs[k]}
    assert not differ
    svc = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    tsvc = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert svc.full_name == tsvc.full_name == "inference.GRPCInferenceService"
    for m in svc.methods:
        t = tsvc.methods_by_name[m.name]
        assert (m.input_type.name, m.output_type.name) == (t.input_type.name, t.output_type.name)


# ------------------------------------------------------------------------------------------------
# tritonclient.grpc, unchanged

def _triton_inputs(grpcclient, frame, feats):
    inputs = []
    for c in feats:
        if c["type"] == "categorical":
            arr = np.array([str(v) for v in frame[c["name"]]], dtype=object).reshape(-1, 1)
            inp = grpcclient.InferInput(c["name"], list(arr.shape), "BYTES")
        else:
            arr = frame[c["name"]].to_numpy(dtype=np.float32).reshape(-1, 1)
            inp = grpcclient.InferInput(c["name"], list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return inputs


def test_tritonclient_grpc_works_unchanged(srv, art):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    frame = art.test.iloc[:64]
    want = art.model.predict_proba(frame)
    assert any(c["type"] == "categorical" for c in art.feats)  # BYTES inputs are part of this
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{srv.server.grpc_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("retail") and client.is_model_ready("retail", "3")
        meta = client.get_model_metadata("retail", as_json=True)
        assert meta["name"] == "retail" and meta["versions"] == ["3"] and meta["platform"] == "onnx"
        assert [i["name"] for i in meta["inputs"]] == [f["name"] for f in art.feats]
        assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"label": "INT64", "probabilities": "FP32"}
        smeta = client.get_server_metadata(as_json=True)
        assert smeta["name"] == "mlops-serving" and "binary_tensor_data" in smeta["extensions"]

        res = client.infer("retail", _triton_inputs(grpcclient, frame, art.feats), request_id="g-1")
        assert res.get_response().id == "g-1"
        assert np.max(np.abs(res.as_numpy("probabilities") - want)) <= TOL
        assert (res.as_numpy("label") == art.model.predict(frame)).all()
        # a chosen output and version
        res = client.infer("retail", _triton_inputs(grpcclient, frame, art.feats), model_version="3",
                           outputs=[grpcclient.InferRequestedOutput("probabilities")])
        assert np.max(np.abs(res.as_numpy("probabilities") - want)) <= TOL
        assert res.as_numpy("label") is None

        # errors: the client's exception with the gRPC status and the server's message
        with pytest.raises(InferenceServerException, match="missing input") as e:
            client.infer("retail", _triton_inputs(grpcclient, frame, art.feats)[1:])
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException, match="not served here") as e:
            client.infer("other", _triton_inputs(grpcclient, frame, art.feats))
        assert e.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException, match="no version '9'") as e:
            client.get_model_metadata("retail", "9")
        assert e.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as e:
            client.is_model_ready("other")
        assert e.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as e:  # not declared: UNIMPLEMENTED, not a crash
            client.get_inference_statistics("retail")
        assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    finally:
        client.close()


def test_tritonclient_grpc_asyncio(srv, art):
    import asyncio

    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as aio

    frame = art.test.iloc[:7]
    want = art.model.predict_proba(frame)

    async def go():
        client = aio.InferenceServerClient(url=f"127.0.0.1:{srv.server.grpc_port}")
        try:
            assert await client.is_server_ready()
            results = await asyncio.gather(*[client.infer("retail", _triton_inputs(grpcclient, frame, art.feats))
                                             for _ in range(16)])
            return [r.as_numpy("probabilities") for r in results]
        finally:
            await client.close()

    for got in asyncio.run(go()):
        assert np.max(np.abs(got - want)) <= TOL


# ------------------------------------------------------------------------------------------------
# typed contents and the other forms, with raw stubs

def test_typed_contents_in_and_out(srv, art, channel):
    frame = art.test.iloc[:20]
    want = art.model.predict_proba(frame)
    resp = call(channel, "ModelInfer", typed_request(frame, art.feats, id="t-7", version="3"))
    assert resp.model_name == "retail" and resp.model_version == "3" and resp.id == "t-7"
    assert not resp.raw_output_contents  # typed in, typed out
    assert [o.name for o in resp.outputs] == ["label", "probabilities"]
    assert list(resp.outputs[1].shape) == [20, 2]
    assert np.max(np.abs(as_numpy(resp, "probabilities") - want)) <= TOL
    assert (as_numpy(resp, "label") == art.model.predict(frame)).all()


def test_binary_output_when_asked(srv, art, channel):
    frame = art.test.iloc[:5]
    want = art.model.predict_proba(frame)
    req = typed_request(frame, art.feats)
    req.parameters["binary_data_output"].bool_param = True
    resp = call(channel, "ModelInfer", req)
    assert len(resp.raw_output_contents) == 2
    assert resp.parameters["binary_data_output"].bool_param  # request parameters are echoed
    assert np.max(np.abs(as_numpy(resp, "probabilities") - want)) <= TOL
    # one output asked for in binary: raw contents (gRPC's raw contents are all-or-nothing)
    req = typed_request(frame, art.feats)
    req.outputs.add(name="probabilities").parameters["binary_data"].bool_param = True
    resp = call(channel, "ModelInfer", req)
    assert [o.name for o in resp.outputs] == ["probabilities"] and len(resp.raw_output_contents) == 1


def test_one_bytes_tensor_of_all_features(srv, art, channel):
    """The [N, F] BYTES form (numbers as text) with typed contents."""
    frame = art.test.iloc[:6]
    want = art.model.predict_proba(frame)
    req = pb.ModelInferRequest(model_name="retail")
    t = req.inputs.add(name="rows", datatype="BYTES", shape=[6, len(art.feats)])
    for _, row in frame.iterrows():
        t.contents.bytes_contents.extend(str(row[c["name"]]).encode() for c in art.feats)
    resp = call(channel, "ModelInfer", req)
    assert np.max(np.abs(as_numpy(resp, "probabilities") - want)) <= TOL


def test_raw_contents_with_the_stubs(srv, art, channel):
    """raw_input_contents built by hand: little-endian numbers, length-prefixed BYTES."""
    frame = art.test.iloc[:3]
    want = art.model.predict_proba(frame)
    req = pb.ModelInferRequest(model_name="retail")
    for c in art.feats:
        if c["type"] == "categorical":
            req.inputs.add(name=c["name"], datatype="BYTES", shape=[3])
            req.raw_input_contents.append(b"".join(struct.pack("<I", len(s.encode())) + s.encode()
                                                   for s in map(str, frame[c["name"]])))
        else:
            req.inputs.add(name=c["name"], datatype="FP32", shape=[3, 1])
            req.raw_input_contents.append(frame[c["name"]].to_numpy(dtype="<f4").tobytes())
    resp = call(channel, "ModelInfer", req)
    assert len(resp.raw_output_contents) == 2  # raw in, raw out (as KServe and Triton answer)
    assert np.max(np.abs(as_numpy(resp, "probabilities") - want)) <= TOL


# ------------------------------------------------------------------------------------------------
# errors: the REST message under the right code; the server goes on

def _rpc_error(channel, req=None, raw=None, method="ModelInfer", response_cls=None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call(channel, method, req, response_cls, raw=raw)
    return e.value


def _rest_error(srv, doc) -> tuple[int, str]:
    r = requests.post(srv.url + "/v2/models/retail/infer", data=orjson.dumps(doc), timeout=30)
    return r.status_code, r.json()["error"]


def test_bad_input_gets_the_rest_message_and_code(srv, art, channel):
    frame = art.test.iloc[:4]
    num = next(c["name"] for c in art.feats if c["type"] != "categorical")
    cat = next(c["name"] for c in art.feats if c["type"] == "categorical")
    before = dict(srv.server.requests.by_protocol)

    def edited(edit) -> tuple[pb.ModelInferRequest, dict]:
        """The same bad request as protobuf (typed contents) and as REST JSON."""
        req = typed_request(frame, art.feats)
        doc = {"inputs": v2_inputs(frame, art.feats)}
        for t in doc["inputs"]:  # typed_request sends numbers as FP64
            if t["datatype"] == "FP32":
                t["datatype"] = "FP64"
        edit(req, doc)
        return req, doc

    def wrong_shape(req, doc):
        t = next(t for t in req.inputs if t.name == num)
        del t.shape[:]
        t.shape.extend([4, 3])
        next(d for d in doc["inputs"] if d["name"] == num)["shape"] = [4, 3]

    def wrong_datatype(req, doc):
        t = next(t for t in req.inputs if t.name == cat)
        t.datatype = "FP32"
        t.contents.Clear()
        t.contents.fp32_contents.extend([1.0] * 4)
        d = next(d for d in doc["inputs"] if d["name"] == cat)
        d["datatype"], d["data"] = "FP32", [1.0] * 4

    def wrong_length(req, doc):
        t = next(t for t in req.inputs if t.name == num)
        t.contents.fp64_contents.append(1.0)
        next(d for d in doc["inputs"] if d["name"] == num)["data"].append(1.0)

    def unknown_input(req, doc):
        req.inputs.add(name="colour", datatype="BYTES", shape=[4]).contents.bytes_contents.extend([b"r"] * 4)
        doc["inputs"].append({"name": "colour", "datatype": "BYTES", "shape": [4], "data": ["r"] * 4})

    def non_nullable_text(req, doc):  # a category that is no string: same 422 as REST's
        t = next(t for t in req.inputs if t.name == num)
        t.datatype = "BYTES"
        t.contents.Clear()
        t.contents.bytes_contents.extend([b"x"] * 4)
        d = next(d for d in doc["inputs"] if d["name"] == num)
        d["datatype"], d["data"] = "BYTES", ["x"] * 4

    for edit in (wrong_shape, wrong_datatype, wrong_length, unknown_input, non_nullable_text):
        req, doc = edited(edit)
        err = _rpc_error(channel, req)
        status, message = _rest_error(srv, doc)
        assert status in (400, 422), (edit.__name__, status, message)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, edit.__name__
        assert err.details() == message, edit.__name__

    # counted once each, under the REST status, as gRPC; nothing counted as a 5xx
    after = srv.server.requests.by_protocol
    grpc_new = {k: v - before.get(k, 0) for k, v in after.items() if k[2] == "grpc" and v != before.get(k, 0)}
    assert sum(grpc_new.values()) == 5 and all(k[0] == "infer" and k[1] in (400, 422) for k in grpc_new), grpc_new
    assert not [k for k in after if k[1] >= 500]


def test_protobuf_level_errors(srv, art, channel):
    frame = art.test.iloc[:2]
    # malformed protobuf: INVALID_ARGUMENT naming the message, not gRPC's INTERNAL
    err = _rpc_error(channel, raw=b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "ModelInferRequest" in err.details()
    err = _rpc_error(channel, raw=b"\xff\xff", method="ModelMetadata", response_cls=pb.ModelMetadataResponse)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # raw contents of the wrong size for the shape
    req = pb.ModelInferRequest(model_name="retail")
    for c in art.feats:
        if c["type"] == "categorical":
            req.inputs.add(name=c["name"], datatype="BYTES", shape=[2])
            req.raw_input_contents.append(b"".join(struct.pack("<I", 1) + b"a" for _ in range(2)))
        else:
            req.inputs.add(name=c["name"], datatype="FP32", shape=[2])
            req.raw_input_contents.append(np.zeros(3, "<f4").tobytes())  # 3 values for 2 rows
    err = _rpc_error(channel, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "is not 2 x 4 bytes of FP32" in err.details()
    # fewer raw entries than inputs
    del req.raw_input_contents[-1]
    err = _rpc_error(channel, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents has" in err.details()
    # values in the contents field of another datatype
    req = typed_request(frame, art.feats)
    t = next(t for t in req.inputs if t.datatype == "FP64")
    t.datatype = "FP32"
    err = _rpc_error(channel, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "contents.fp32_contents, got fp64_contents" in err.details()
    # BYTES that are not UTF-8
    req = typed_request(frame, art.feats)
    t = next(t for t in req.inputs if t.datatype == "BYTES")
    t.contents.bytes_contents[0] = b"\xff\xfe"
    err = _rpc_error(channel, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not UTF-8" in err.details()
    # unknown model, unknown version
    err = _rpc_error(channel, typed_request(frame, art.feats, model="other"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "'other' is not served here" in err.details()
    err = _rpc_error(channel, typed_request(frame, art.feats, version="4"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no version '4'" in err.details()


def test_too_large(srv, art, channel):
    """Too many rows (REST's 413) and a message over --max-body-bytes: RESOURCE_EXHAUSTED."""
    big = art.test.sample(300, replace=True, random_state=0)  # max_batch_size 256 here
    err = _rpc_error(channel, typed_request(big, art.feats))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "over the limit of 256 rows" in err.details()
    req = typed_request(art.test.iloc[:2], art.feats)
    req.id = "x" * (80 * 1024)  # the message is over the 64 KiB cap of this server
    err = _rpc_error(channel, req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # and it serves on
    resp = call(channel, "ModelInfer", typed_request(art.test.iloc[:2], art.feats))
    assert len(resp.outputs) == 2


def test_health_and_metadata_stubs(srv, channel):
    assert call(channel, "ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
    assert call(channel, "ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready
    assert call(channel, "ModelReady", pb.ModelReadyRequest(name="retail", version="3"), pb.ModelReadyResponse).ready
    meta = call(channel, "ModelMetadata", pb.ModelMetadataRequest(name="retail"), pb.ModelMetadataResponse)
    assert meta.parameters["task"].string_param == "classification"
    assert orjson.loads(meta.parameters["classes"].string_param) == ["0", "1"]
    first = meta.inputs[0]
    assert list(first.shape) == [-1, 1] and first.parameters["feature_type"].string_param in (
        "numeric", "boolean", "categorical")
    assert first.parameters["nullable"].WhichOneof("parameter_choice") == "bool_param"


# ------------------------------------------------------------------------------------------------
# shared with REST: metrics, drift statistics, batches

def test_grpc_requests_count_in_metrics_and_drift_stats(srv, art, channel):
    before = srv.server.stats_doc()
    runs_before = srv.server.batcher.runs
    frame = art.test.iloc[:11]
    call(channel, "ModelInfer", typed_request(frame, art.feats))
    after = srv.server.stats_doc()
    assert after["rows"] - before["rows"] == 11  # the drift monitor counted the rows
    fb = sum(before["features"][art.feats[0]["name"]]["counts"]) + before["features"][art.feats[0]["name"]]["nulls"]
    fa = sum(after["features"][art.feats[0]["name"]]["counts"]) + after["features"][art.feats[0]["name"]]["nulls"]
    assert fa - fb == 11
    assert srv.server.batcher.runs == runs_before + 1
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert metric(text, "mlops_serving_requests_total", endpoint="infer", code="200", protocol="grpc") >= 1
    assert metric(text, "mlops_serving_request_duration_seconds_count", endpoint="infer", protocol="grpc") >= 1


def test_rest_and_grpc_share_batches(srv, art):
    """Requests arriving together by both protocols are answered by shared model runs."""
    import asyncio

    from tests.unit.test_serving import v2_inputs as rest_inputs

    frame = art.test.iloc[:3]
    want = art.model.predict_proba(frame)
    body = orjson.dumps({"inputs": rest_inputs(frame, art.feats)})
    req = typed_request(frame, art.feats).SerializeToString()

    async def go():
        import aiohttp

        runs0 = srv.server.batcher.runs
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}") as ch, \
                aiohttp.ClientSession() as http:
            infer = ch.unary_unary(SERVICE + "ModelInfer", request_serializer=None,
                                   response_deserializer=pb.ModelInferResponse.FromString)

            async def rest():
                async with http.post(srv.url + "/v2/models/retail/infer", data=body) as r:
                    return orjson.loads(await r.read())

            outs = await asyncio.gather(*[infer(req) for _ in range(24)], *[rest() for _ in range(24)])
        return outs, srv.server.batcher.runs - runs0

    outs, runs = asyncio.run(go())
    for o in outs[:24]:
        assert np.max(np.abs(as_numpy(o, "probabilities") - want)) <= TOL
    for o in outs[24:]:
        probs = np.array(next(x for x in o["outputs"] if x["name"] == "probabilities")["data"]).reshape(3, 2)
        assert np.max(np.abs(probs - want)) <= TOL
    assert runs < 48  # some requests shared a run (typically a handful of runs for all 48)


# ------------------------------------------------------------------------------------------------
# the command line and the process

def test_grpc_port_flag():
    base = ["--store-uri", "file:///s", "--model-uri", "file:///s/m", "--digest", "a" * 64, "--name", "m"]
    assert serve_config.parse(base).grpc_port == 8081
    assert serve_config.parse(base + ["--grpc-port", "0"]).grpc_port == 0
    assert serve_config.ServeConfig(store_uri="", model_uri="", digest="", name="m").grpc_port == 0
    for bad in (["--grpc-port", "8080"], ["--grpc-port", "70000"], ["--monitor-port", "9000", "--grpc-port", "9000"]):
        with pytest.raises(SystemExit):
            serve_config.parse(base + bad)


def _start(art, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_operator.serving", "--store-uri", art.store_uri, "--model-uri", art.uri,
         "--digest", art.digest, "--name", "retail", "--version", "3", "--host", "127.0.0.1", "--port", "0",
         "--drain-delay-seconds", "0.2", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, [proc.stdout.readline(), proc.stdout.readline()]


def test_the_process_serves_grpc_under_uvloop_and_stops_on_sigterm(art):
    """The real entry point (uvloop when installed, as in the image): REST and gRPC both answer,
    and SIGTERM stops both with exit status 0."""
    import signal

    port = free_port()
    proc, lines = _start(art, "--grpc-port", str(port))
    try:
        assert lines[0].startswith("listening on http://"), (lines, proc.stderr.read() if proc.poll() else "")
        assert lines[1].strip() == f"listening on grpc://127.0.0.1:{port}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            resp = call(ch, "ModelInfer", typed_request(art.test.iloc[:4], art.feats))
        assert np.max(np.abs(as_numpy(resp, "probabilities") - art.model.predict_proba(art.test.iloc[:4]))) <= TOL
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_grpc_port_in_use_is_a_clear_failure(art):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc, lines = _start(art, "--grpc-port", str(port))
        try:
            rc = proc.wait(60)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc == 1 and "cannot listen" in err and str(port) in err, (rc, err)


def test_draining_answers_not_ready(srv, channel):
    """While draining (after SIGTERM) ServerReady and ModelReady say false, as Triton's do, so a
    client's is_server_ready() is False rather than an exception."""
    srv.server.ready = False
    try:
        assert not call(channel, "ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready
        assert not call(channel, "ModelReady", pb.ModelReadyRequest(name="retail"), pb.ModelReadyResponse).ready
    finally:
        srv.server.ready = True
    assert call(channel, "ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready


def test_mangled_messages_never_crash_or_fail_internally(srv, art, channel):
    """Valid requests with bytes flipped, cut short or spliced: each is answered OK or with a
    client-side code naming the problem, never INTERNAL/UNKNOWN, and the server goes on."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = [typed_request(art.test.iloc[:3], art.feats).SerializeToString()]
    raw = pb.ModelInferRequest(model_name="retail")
    for c in art.feats:
        t = raw.inputs.add(name=c["name"], datatype="BYTES" if c["type"] == "categorical" else "FP32", shape=[2])
        raw.raw_input_contents.append(b"\x01\x00\x00\x00a" * 2 if t.datatype == "BYTES" else b"\x00" * 8)
    good.append(raw.SerializeToString())
    allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
    seen = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(which=st.integers(0, 1), cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=6)),
                                                  min_size=1, max_size=4))
    def check(which, cuts):
        data = bytearray(good[which])
        for pos, junk in cuts:
            i = pos % (len(data) + 1)
            data[i:i + len(junk)] = junk
        try:
            call(channel, "ModelInfer", None, raw=bytes(data))
            seen.add("OK")
        except grpc.RpcError as e:
            assert e.code() in allowed, (e.code(), e.details())
            assert e.details()
            seen.add(e.code())

    before = srv.server.batcher.runs
    check()
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
    assert call(channel, "ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
    assert srv.server.batcher.runs >= before
    assert not [k for k in srv.server.requests.by_protocol if k[1] >= 500]


KSERVE_PYTHON = Path(os.environ.get("MLOPS_KSERVE_PYTHON",
                                    Path.home() / ".cache" / "mlops" / "kserve-venv" / "bin" / "python"))


def test_kserve_inference_grpc_client_works_unchanged(srv, art, tmp_path):
    assert KSERVE_PYTHON.exists(), (f"no kserve virtualenv at {KSERVE_PYTHON}: `make kserve-venv` makes it (kserve "
                                    "does not install under the project's pins); make test and test-unit do")
    frame = art.test.iloc[:9]
    want = art.model.predict_proba(frame)
    cols = tmp_path / "columns.json"
    cols.write_text(json.dumps([{"name": t["name"], "datatype": t["datatype"], "data": t["data"]}
                                for t in v2_inputs(frame, art.feats)]))
    script = Path(__file__).parent / "clients" / "kserve_grpc.py"
    p = subprocess.run([str(KSERVE_PYTHON), str(script), str(srv.server.grpc_port), str(cols)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    for binary in (False, True):  # typed contents in and out, then raw in and raw out
        got = seen[f"binary={binary}"]
        assert got["id"] == f"k-{binary}"
        assert np.max(np.abs(np.array(got["probabilities"]) - want)) <= TOL
    assert seen["unknown model"][0] == "NOT_FOUND" and "not served here" in seen["unknown model"][1]
    assert seen["missing input"][0] == "INVALID_ARGUMENT" and "missing input" in seen["missing input"][1]
