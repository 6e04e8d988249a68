"""The model server against hostile input and faulty clients (issue 16): what a client sends
cannot grow the server's memory or its stats document without bound, cannot get a 5xx, and
cannot hold a connection (or an in-flight slot) open for long."""

from __future__ import annotations

import hashlib
import socket
import struct
import time

import numpy as np
import orjson
import pytest
import requests

from mlops_operator.serving.model import load
from tests.unit.test_serving import ServerThread, assert_error, build_artifact, v2_inputs


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return build_artifact(tmp_path_factory.mktemp("hostile"), params={"n_estimators": 5}, rows=600)


@pytest.fixture(scope="module")
def srv(art):
    with ServerThread(art.cfg()) as s, requests.Session() as h:
        s.http = h
        yield s


def _doc(art, n: int = 2, **data) -> dict:
    """A valid request of n rows, with the data of some features replaced."""
    doc = {"inputs": v2_inputs(art.test.iloc[:n], art.feats)}
    for t in doc["inputs"]:
        if t["name"] in data:
            t["data"] = data[t["name"]]
    return doc


def _token(v: str) -> str:
    return "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# the stats document stays small whatever the categories sent

def test_huge_categories_keep_the_stats_document_small(art):
    """40 requests with a 3 MiB category each used to land whole in the reservoir (a 126 MB
    stats document, before issue 16); the stats keep no value a client sent (issue 17: no
    reservoir), and a huge value is replaced by its digest before it waits to be counted."""
    with ServerThread(art.cfg()) as s, requests.Session() as h:
        u = s.url + "/v2/models/retail/infer"
        big = ["x" * (3 << 20) + str(i) for i in range(40)]
        second = art.test["channel"].iloc[1]
        for v in big:
            r = h.post(u, data=orjson.dumps(_doc(art, 2, channel=[v, second])))
            assert r.status_code == 200, r.text[:200]
        # and a batch of values just over the limit, and at it
        n = 1000
        over = ["y" * 257 + str(i) for i in range(n)]
        frame = art.test.iloc[np.arange(n) % len(art.test)]
        doc = {"inputs": v2_inputs(frame, art.feats)}
        for t in doc["inputs"]:
            if t["name"] == "region":
                t["data"] = over
            if t["name"] == "device":
                t["data"] = ["z" * 256] * n  # exactly the limit: kept as sent
        r = h.post(u, data=orjson.dumps(doc))
        assert r.status_code == 200, r.text[:200]
        r = h.get(s.url + "/mlops/v1/models/retail/stats")
        assert r.status_code == 200
        assert len(r.content) < 1 << 20, len(r.content)  # bounded, whatever the clients sent
        st = r.json()
        assert b"xxxxxxxx" not in r.content and b"yyyyyyyy" not in r.content and b"zzzzzzzz" not in r.content
        # counted as "other", never as categories of their own
        feats = st["features"]
        ref = art.manifest.reference.columns
        for name in ("channel", "region"):
            assert feats[name]["categories"] == [c for c in ref[name].categories if c != ""]
        unknown = sum(v not in ref["channel"].categories for v in [second] * 40 + list(frame["channel"]))
        assert feats["channel"]["other"] == 40 + unknown and feats["region"]["other"] == n


def test_a_category_longer_than_the_limit_waits_to_be_counted_as_its_digest(art):
    """The limit is on the JSON text of the value (escapes and UTF-8 counted), so no value held
    until the batch is counted is longer than max_category_bytes; the model still gets the
    value as sent, and a reference category is counted by name whatever its length."""
    from mlops_operator.serving.monitor import Monitor, category_token

    model = load(art.store_uri, art.uri, art.digest)
    mon = Monitor(model, seed=0, max_category_bytes=64)
    n_num, n_cat = len(model.num_features), len(model.cat_features)
    ref0 = mon.categorical[0].categories[0]
    values = ["a" * 64, "a" * 65, "\x01" * 11, "\x01" * 10, "é" * 32, "é" * 33, '"' * 32, '"' * 33, ref0, ""]
    n = len(values)
    cats = [list(values) for _ in range(n_cat)]
    sent = [list(c) for c in cats]
    x = np.zeros((n_num, n))
    mon.observe(x, cats, {"label": np.zeros(n, dtype=np.int64), "probabilities": np.full((n, 2), 0.5, np.float32)})
    assert cats == sent  # what the batcher gave the model is left alone
    held = mon.pending_cats[0]  # what waits to be counted
    # JSON bytes: 64, 65, 11 x 6 (\u0001), 10 x 6, 32 x 2 (UTF-8), 33 x 2, 32 x 2 (\"), 33 x 2
    want = ["a" * 64, category_token("a" * 65), category_token("\x01" * 11), "\x01" * 10, "é" * 32,
            category_token("é" * 33), '"' * 32, category_token('"' * 33), ref0, ""]
    assert held == want
    for v in held:
        assert len(orjson.dumps(v)) - 2 <= 64
    assert category_token("a" * 65) == _token("a" * 65)
    # a reference category is never replaced, whatever its length (it is counted by name)
    mon.sync()
    c = mon.categorical[0]
    assert int(c.counts[0]) == 1 and int(c.counts[c.other]) == n - 2


def test_a_million_distinct_categories_do_not_grow_the_counts(srv, art):
    """Counts are per reference category plus one "other": a client sending ever new categories
    only adds to "other"."""
    before = srv.http.get(srv.url + "/mlops/v1/models/retail/stats").json()["features"]["device"]
    mon = srv.server.monitor
    sizes = [c.counts.size for c in mon.categorical]
    u = srv.url + "/v2/models/retail/infer"
    for k in range(4):
        vals = [f"d{k}-{i}" for i in range(1000)]
        frame = art.test.iloc[np.arange(1000) % len(art.test)]
        doc = {"inputs": v2_inputs(frame, art.feats)}
        for t in doc["inputs"]:
            if t["name"] == "device":
                t["data"] = vals
        assert srv.http.post(u, data=orjson.dumps(doc)).status_code == 200
    after = srv.http.get(srv.url + "/mlops/v1/models/retail/stats").json()["features"]["device"]
    assert after["categories"] == before["categories"]
    assert after["other"] - before["other"] == 4000
    assert [c.counts.size for c in mon.categorical] == sizes


# ------------------------------------------------------------------------------------------------
# odd JSON: never a 5xx

def test_lone_surrogates_and_deep_parameters_get_a_4xx_never_a_500(srv, art):
    """orjson refuses a lone surrogate escape; the fallback parser (for bare NaN/Infinity, which
    Python's json module writes) used to accept it, and echoing the id then failed (500)."""
    u = srv.url + "/v2/models/retail/infer"
    good = orjson.dumps(_doc(art))
    for prefix in (b'{"id":"\\ud800",', b'{"id":"\\udfff x",', b'{"parameters":{"p":"\\ud800"},',
                   b'{"parameters":{"\\ud800":1},', b'{"id":"a\\ud800","parameters":{"x":NaN},',
                   b'{"parameters":{"x":Infinity,"y":"\\udc00"},'):
        r = srv.http.post(u, data=prefix + good[1:])
        assert 400 <= r.status_code < 500, (prefix, r.status_code, r.text)
        assert r.json()["error"]
    # a category with a lone surrogate, through the fallback parser (a NaN elsewhere)
    body = orjson.dumps(_doc(art, age=[None, 30.0], device=["mobile", "desktop"]))
    assert body.count(b"null") == 1 and body.count(b'"mobile"') == 1
    body = body.replace(b"null", b"NaN").replace(b'"mobile"', b'"\\ud800"')
    r = srv.http.post(u, data=body)
    assert 400 <= r.status_code < 500, r.text
    # V1
    names = [c["name"] for c in art.feats]
    row = b"[" + b",".join(b'"\\ud800"' if c["type"] == "categorical" else b"NaN" for c in art.feats) + b"]"
    r = srv.http.post(srv.url + "/v1/models/retail:predict", data=b'{"instances":[' + row + b"]}")
    assert 400 <= r.status_code < 500, r.text
    assert len(names) == len(art.feats)
    # parameters nested deeper than the response writer goes (orjson: 255 levels)
    deep = b'{"parameters":{"p":' + b"[" * 300 + b"]" * 300 + b"}," + good[1:]
    r = srv.http.post(u, data=deep)
    assert 400 <= r.status_code < 500, r.text
    # a surrogate pair is a character like any other: accepted and echoed, NaN or not
    for body in (b'{"id":"\\ud83d\\ude00",' + good[1:], b'{"id":"\\ud83d\\ude00","parameters":{"x":NaN},' + good[1:]):
        r = srv.http.post(u, data=body)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "\U0001F600"
    assert srv.http.get(srv.url + "/mlops/v1/models/retail/stats").status_code == 200
    assert not [k for k in srv.server.requests.codes if k[1] >= 500]


def test_an_empty_string_is_refused_in_a_non_nullable_categorical(srv, art):
    """"" is how a null category reaches the graph (the encoder ignores it), so it is a null:
    refused where model.json says the feature is not nullable, like null, naming the input."""
    assert not next(f for f in art.manifest.inputs if f.name == "device").nullable
    u = srv.url + "/v2/models/retail/infer"
    assert_error(srv.http.post(u, data=orjson.dumps(_doc(art, device=["", "mobile"]))), 422, "device", "row 0")
    assert_error(srv.http.post(u, data=orjson.dumps(_doc(art, device=["mobile", ""]))), 422, "device", "row 1")
    # the checking path too (a string among numbers sends the batch there)
    assert_error(srv.http.post(u, data=orjson.dumps(_doc(art, device=["", "mobile"], age=["x", 1]))), 422)
    assert_error(srv.http.post(u, data=orjson.dumps(_doc(art, device=["", "mobile"], age=["30", 1]))), 422,
                 "device")
    # one [N, F] BYTES tensor, and V1
    names = [c["name"] for c in art.feats]
    row = ["" if n == "device" else ("mobile" if c["type"] == "categorical" else 1.0)
           for n, c in zip(names, art.feats)]
    doc = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, len(names)], "data": row}]}
    assert_error(srv.http.post(u, data=orjson.dumps(doc)), 422, "device")
    r = srv.http.post(srv.url + "/v1/models/retail:predict", data=orjson.dumps({"instances": [row]}))
    assert_error(r, 422, "device")
    assert srv.http.post(u, data=orjson.dumps(_doc(art))).status_code == 200


def _binary_request(art, elements: dict[str, list[bytes]]) -> tuple[bytes, dict[str, str]]:
    """A valid request with the named categorical features as binary BYTES tensors."""
    inputs, blobs = [], []
    for t in _doc(art)["inputs"]:
        if t["name"] in elements:
            blob = b"".join(struct.pack("<I", len(e)) + e for e in elements[t["name"]])
            blobs.append(blob)
            inputs.append({"name": t["name"], "datatype": "BYTES", "shape": [2],
                           "parameters": {"binary_data_size": len(blob)}})
        else:
            inputs.append(t)
    head = orjson.dumps({"inputs": inputs})
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def test_invalid_utf8_in_binary_bytes_is_a_400(srv, art):
    u = srv.url + "/v2/models/retail/infer"
    body, headers = _binary_request(art, {"device": [b"mobile", b"desktop"]})
    assert srv.http.post(u, data=body, headers=headers).status_code == 200
    for bad in (b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\x80", b"mob\xe9", b"\xf4\x90\x80\x80"):
        body, headers = _binary_request(art, {"device": [b"mobile", bad]})
        assert_error(srv.http.post(u, data=body, headers=headers), 400, "device", "UTF-8")
    # in one [N, F] BYTES tensor
    f = len(art.feats)
    elems = [b"\xff" if c["name"] == "channel" else (b"web" if c["type"] == "categorical" else b"1")
             for c in art.feats]
    blob = b"".join(struct.pack("<I", len(e)) + e for e in elems)
    head = orjson.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, f],
                                     "parameters": {"binary_data_size": len(blob)}}]})
    r = srv.http.post(u, data=head + blob, headers={"Inference-Header-Content-Length": str(len(head))})
    assert_error(r, 400, "UTF-8")


# ------------------------------------------------------------------------------------------------
# feedback sums stay finite

def test_feedback_refuses_values_that_would_overflow_the_error_sums():
    """±1e308 made the error sums inf (null in the stats) until the pod restarted, so MAE/RMSE
    retraining could never fire: values beyond float32 (the model's own output type) are
    refused, which keeps every sum finite for any number of rows."""
    from mlops_operator.serving.feedback import Feedback
    from mlops_operator.serving.protocol import ServingError

    fb = Feedback(False, [], 1024)
    fb.add(orjson.dumps({"predictions": [10.0, 20], "labels": [12, 17.5]}))
    for preds, labels, where in (([1e308], [-1e308], "predictions[0]"), ([1.0, 2.0], [3.0, -1e308], "labels[1]"),
                                 ([3.5e38], [0], "predictions[0]"), ([0], [-3.5e38], "labels[0]")):
        with pytest.raises(ServingError) as e:
            fb.add(orjson.dumps({"predictions": preds, "labels": labels}))
        assert e.value.status == 422 and where in e.value.message and "float32" in e.value.message, e.value.message
    f32 = float(np.finfo(np.float32).max)
    for _ in range(50):  # the largest values allowed, many times
        fb.add(orjson.dumps({"predictions": [f32] * 1024, "labels": [-f32] * 1024}))
    st = fb.stats()
    assert st["count"] == 2 + 50 * 1024
    for k in ("sumAbsError", "sumSquaredError", "sumLabel", "sumSquaredLabel", "sumPrediction"):
        assert np.isfinite(st[k]), (k, st[k])
    assert orjson.loads(orjson.dumps(st))["sumSquaredError"] is not None


# ------------------------------------------------------------------------------------------------
# stalled clients are dropped after a bounded time

def _connect(s) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, bool]:
    """What the server sent until it closed the connection, and whether it did close it (False:
    our own `limit` ran out first, i.e. the server held the connection open)."""
    sock.settimeout(limit)
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return out, True
            out += data
    except ConnectionResetError:
        return out, True
    except socket.timeout:
        return out, False


def test_a_stalled_request_head_or_body_is_dropped_after_the_timeouts(art):
    with ServerThread(art.cfg(idle_timeout_seconds=1.0, read_timeout_seconds=1.0)) as s:
        # a head that never ends
        sock = _connect(s)
        sock.sendall(b"POST /v2/models/retail/infer HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        out, closed = _read_until_closed(sock, 30)
        sock.close()
        assert closed  # by the server's 1 s timeouts, not by our 30 s limit
        # a body that never ends: a JSON 408, the connection closed, nothing left in flight
        sock = _connect(s)
        sock.sendall(b"POST /v2/models/retail/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\": [")
        out, closed = _read_until_closed(sock, 30)
        sock.close()
        assert closed
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), out[:200]
        assert b"1 s" in body and orjson.loads(body)["error"], body
        deadline = time.monotonic() + 5
        while s.server.requests.inflight and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.server.requests.inflight == 0
        assert s.server.requests.codes.get(("infer", 408)) == 1
        # the same for feedback and V1; and a client that is merely slow still gets its answer
        for path in ("/v2/models/retail/feedback", "/v1/models/retail:predict"):
            sock = _connect(s)
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{{".encode())
            out, closed = _read_until_closed(sock, 30)
            sock.close()
            assert out.startswith(b"HTTP/1.1 408") and closed, (path, out[:100])
        body = orjson.dumps(_doc(art))
        sock = _connect(s)
        sock.sendall(b"POST /v2/models/retail/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.3)
        sock.sendall(body[10:])
        out, _ = _read_until_closed(sock, 30)
        sock.close()
        assert out.startswith(b"HTTP/1.1 200"), out[:200]
        with requests.Session() as h:  # and the server goes on
            assert h.post(s.url + "/v2/models/retail/infer", data=body).status_code == 200


def test_timeouts_are_configurable(monkeypatch, art):
    from mlops_operator.serving import config as serve_config

    base = ["--store-uri", art.store_uri, "--model-uri", art.uri, "--digest", art.digest, "--name", "retail"]
    cfg = serve_config.parse(base)
    assert (cfg.read_timeout_seconds, cfg.idle_timeout_seconds, cfg.max_category_bytes) == (30.0, 75.0, 256)
    cfg = serve_config.parse(base + ["--read-timeout-seconds", "5", "--idle-timeout-seconds", "9",
                                     "--max-category-bytes", "64"])
    assert (cfg.read_timeout_seconds, cfg.idle_timeout_seconds, cfg.max_category_bytes) == (5.0, 9.0, 64)
    for flag in ("--read-timeout-seconds", "--idle-timeout-seconds"):
        with pytest.raises(SystemExit):
            serve_config.parse(base + [flag, "0"])


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(srv):
    """Counted as 499 (nginx's "client closed request"), not as a 500 with a traceback: an
    error-rate alert on 5xx must not fire because clients went away."""
    before = dict(srv.server.requests.codes)
    for path in ("/v2/models/retail/infer", "/v1/models/retail:predict", "/v2/models/retail/feedback"):
        sock = _connect(srv)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{\"in".encode())
        time.sleep(0.1)
        sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done = {k: v - before.get(k, 0) for k, v in srv.server.requests.codes.items() if v != before.get(k, 0)}
        if sum(done.values()) == 3:
            break
        time.sleep(0.02)
    assert done == {("infer", 499): 1, ("predict", 499): 1, ("feedback", 499): 1}, done
    assert srv.server.requests.inflight == 0
