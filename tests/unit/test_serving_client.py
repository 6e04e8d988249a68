"""The model server with real clients: Triton's V2 client library (tritonclient[http]), unchanged,
and the real process (`python -m mlops_operator.serving`) draining on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
import requests

from tests.unit.test_serving import ServerThread, build_artifact, v2_inputs

TOL = 1e-5


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return build_artifact(tmp_path_factory.mktemp("serving-client"))


def _triton_inputs(httpclient, frame, feats, binary: bool):
    inputs = []
    for c in feats:
        if c["type"] == "categorical":
            arr = np.array([str(v) for v in frame[c["name"]]], dtype=object).reshape(-1, 1)
            inp = httpclient.InferInput(c["name"], list(arr.shape), "BYTES")
        else:
            arr = frame[c["name"]].to_numpy(dtype=np.float32).reshape(-1, 1)
            inp = httpclient.InferInput(c["name"], list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    return inputs


def test_tritonclient_works_unchanged(art):
    import tritonclient.http as httpclient
    frame = art.test.iloc[:64]
    want = art.model.predict_proba(frame)
    with ServerThread(art.cfg()) as s:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{s.port}")
        try:
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready("retail") and client.is_model_ready("retail", "3")
            assert not client.is_model_ready("other")
            meta = client.get_model_metadata("retail")
            assert meta["name"] == "retail" and len(meta["inputs"]) == len(art.feats)
            assert client.get_server_metadata()["extensions"]
            for binary in (True, False):
                # default outputs (binary_data_output), then explicitly requested JSON/binary outputs
                res = client.infer("retail", _triton_inputs(httpclient, frame, art.feats, binary), request_id="t-1")
                assert res.get_response()["id"] == "t-1"
                assert np.max(np.abs(res.as_numpy("probabilities") - want)) <= TOL
                assert res.as_numpy("label").shape == (64,)
                outs = [httpclient.InferRequestedOutput("probabilities", binary_data=not binary)]
                res = client.infer("retail", _triton_inputs(httpclient, frame, art.feats, binary), outputs=outs,
                                   model_version="3")
                assert np.max(np.abs(res.as_numpy("probabilities") - want)) <= TOL
                assert res.as_numpy("label") is None
            # errors come back as the client's exception with the server's message
            bad = _triton_inputs(httpclient, frame, art.feats, False)[1:]
            with pytest.raises(Exception, match="missing input"):
                client.infer("retail", bad)
        finally:
            client.close()


def test_tritonclient_asyncio_client(art):
    import tritonclient.http.aio as aio
    import tritonclient.http as httpclient
    import asyncio

    frame = art.test.iloc[:5]
    want = art.model.predict_proba(frame)
    with ServerThread(art.cfg()) as s:
        async def go():
            client = aio.InferenceServerClient(url=f"127.0.0.1:{s.port}")
            try:
                assert await client.is_server_ready()
                res = await client.infer("retail", _triton_inputs(httpclient, frame, art.feats, True))
                return res.as_numpy("probabilities")
            finally:
                await client.close()

        got = asyncio.run(go())
    assert np.max(np.abs(got - want)) <= TOL


def _start(art, *extra: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_operator.serving", "--store-uri", art.store_uri, "--model-uri", art.uri,
         "--digest", art.digest, "--name", "retail", "--version", "3", "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("listening on"):
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line.strip().rsplit(":", 1)[1])


def test_sigterm_drains_in_flight_requests_and_exits_0(art):
    proc, port = _start(art, "--drain-delay-seconds", "1.0", "--grace-seconds", "10")
    try:
        url = f"http://127.0.0.1:{port}"
        assert requests.get(url + "/v2/health/ready").status_code == 200
        body = orjson.dumps({"id": "slow", "inputs": v2_inputs(art.test.iloc[:4], art.feats)})
        # an in-flight request: headers and half the body now, the rest after SIGTERM
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /v2/models/retail/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # while draining: not ready, still answering
        r = requests.get(url + "/v2/health/ready")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert requests.get(url + "/v2/models/retail/ready").status_code == 503
        assert requests.get(url + "/v2/health/live").status_code == 200
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))  # past the drain delay: the listener is closed
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/v2/health/live", timeout=2)
        assert proc.poll() is None  # still waiting for the in-flight request
        sock.sendall(body[len(body) // 2:])
        data = b""
        sock.settimeout(10)
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        head, payload = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), data[:300]
        doc = orjson.loads(payload)
        assert doc["id"] == "slow"
        want = art.model.predict_proba(art.test.iloc[:4])
        got = np.array(doc["outputs"][1]["data"]).reshape(4, 2)
        assert np.max(np.abs(got - want)) <= TOL
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_process_refuses_a_pickle_and_exits_2(tmp_path, art):
    import hashlib
    import pickle

    from mlops_operator.store.store import FileStore

    stage = tmp_path / "s"
    stage.mkdir()
    data = pickle.dumps(art.model)
    (stage / "model.onnx").write_bytes(data)
    m = art.manifest.model_copy(update={"onnx_sha256": hashlib.sha256(data).hexdigest()})
    (stage / "model.json").write_bytes(orjson.dumps(m.dump()))
    digest, uri = FileStore(tmp_path / "store").put_version("models", "retail", stage / "model.onnx",
                                                            {"model.json": stage / "model.json"})
    p = subprocess.run([sys.executable, "-m", "mlops_operator.serving", "--store-uri", (tmp_path / "store").as_uri(),
                        "--model-uri", uri, "--digest", digest, "--name", "retail", "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "pickle" in p.stderr and "ONNX only" in p.stderr
