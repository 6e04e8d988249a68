"""Property: whatever a client sends, the model server answers 200 or a 4xx whose JSON body has a
non-empty `error`, never a 5xx, keeps serving, and its stats document stays small.

Random JSON and bytes exercise the refusals; valid requests with odd JSON text spliced in
(lone surrogate escapes, bare NaN/Infinity, numbers beyond float64), Triton binary-extension
frames (a correct header, binary tensors with a wrong size, datatype or shape, invalid UTF-8
in BYTES) and huge strings reach every parse path down to the model and the counters."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_operator.serving import protocol
from tests.unit.test_serving import ServerThread, build_artifact, v2_inputs

FEATURES = ["age", "tenure_days", "device", "is_member", "channel", "cart_value"]
DATATYPES = ["FP32", "FP64", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "STRING", "", None, 3]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
shapes = st.one_of(st.lists(st.integers(-2, 5), max_size=3), json_values)
datas = st.one_of(st.lists(json_scalars, max_size=6), st.lists(st.lists(json_scalars, max_size=3), max_size=4),
                  json_values)


@st.composite
def tensors(draw):
    t = {}
    if draw(st.booleans()):
        t["name"] = draw(st.one_of(st.sampled_from(FEATURES), st.text(max_size=6), json_scalars))
    if draw(st.booleans()):
        t["datatype"] = draw(st.sampled_from(DATATYPES))
    if draw(st.integers(0, 4)):
        t["shape"] = draw(shapes)
    if draw(st.integers(0, 4)):
        t["data"] = draw(datas)
    if draw(st.integers(0, 5)) == 0:
        t["parameters"] = draw(st.one_of(st.fixed_dictionaries({"binary_data_size": st.integers(-3, 50)}),
                                         json_values))
    return t


@st.composite
def infer_bodies(draw):
    doc = {}
    if draw(st.integers(0, 5)):
        doc["inputs"] = draw(st.one_of(st.lists(tensors(), max_size=5), json_values))
    for key, strat in (("id", json_scalars), ("parameters", json_values),
                       ("outputs", st.one_of(st.lists(st.fixed_dictionaries(
                           {"name": st.sampled_from(["label", "probabilities", "x"])},
                           optional={"parameters": json_values}), max_size=3), json_values))):
        if draw(st.integers(0, 3)) == 0:
            doc[key] = draw(strat)
    return doc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    art = build_artifact(tmp_path_factory.mktemp("fuzz"), params={"n_estimators": 5}, rows=600)
    with ServerThread(art.cfg(max_batch_size=4, max_body_bytes=8192)) as s:
        s.art = art
        with requests.Session() as h:
            s.http = h
            yield s


def _check(resp: requests.Response) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if resp.status_code != 200:
        body = resp.json()
        assert isinstance(body.get("error"), str) and body["error"], resp.text
        assert len(resp.content) < 2048, resp.text[:300]  # an error names the problem, it does not echo the input


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(body=infer_bodies())
def test_random_v2_requests_never_5xx(server, body):
    for path in ("/v2/models/retail/infer", "/v2/models/retail/versions/3/infer"):
        _check(server.http.post(server.url + path, data=orjson.dumps(body)))


@SETTINGS
@given(base=st.integers(0, 10), feature=st.sampled_from(FEATURES), change=st.sampled_from(["datatype", "shape", "data"]),
       value=st.one_of(json_values, st.sampled_from(DATATYPES)))
def test_valid_requests_with_one_field_broken_never_5xx(server, base, feature, change, value):
    art = server.art
    doc = {"inputs": v2_inputs(art.test.iloc[base:base + 2], art.feats)}
    for t in doc["inputs"]:
        if t["name"] == feature:
            t[change] = value
    r = server.http.post(server.url + "/v2/models/retail/infer", data=orjson.dumps(doc))
    _check(r)


# header values a client can send (visible ASCII); a malformed HTTP message itself (control
# characters in a header) is refused by aiohttp's parser with its own plain-text 400
header_values = st.one_of(st.none(), st.integers(-5, 400).map(str),
                          st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=4))


@SETTINGS
@given(raw=st.binary(max_size=300), header=header_values)
def test_random_bytes_and_binary_headers_never_5xx(server, raw, header):
    headers = {} if header is None else {"Inference-Header-Content-Length": header}
    _check(server.http.post(server.url + "/v2/models/retail/infer", data=raw, headers=headers))
    _check(server.http.post(server.url + "/v1/models/retail:predict", data=raw))
    _check(server.http.post(server.url + "/v2/models/retail/feedback", data=raw))


@SETTINGS
@given(body=json_values, instances=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(FEATURES + ["x"]), json_scalars, max_size=6),
    st.lists(json_scalars, max_size=20)), max_size=5))
def test_random_v1_and_feedback_bodies_never_5xx(server, body, instances):
    for b in (body, {"instances": instances}, {"instances": body}):
        _check(server.http.post(server.url + "/v1/models/retail:predict", data=orjson.dumps(b)))
    for b in (body, {"predictions": instances, "labels": instances}, {"predictions": body, "labels": body},
              {"predictions": [0, 1], "labels": ["1", body]}):
        _check(server.http.post(server.url + "/v2/models/retail/feedback", data=orjson.dumps(b)))


@SETTINGS
@given(data=st.data())
def test_single_tensor_fuzz_never_5xx(server, data):
    n = data.draw(st.integers(0, 3))
    f = data.draw(st.sampled_from([18, 17, 1]))
    doc = {"inputs": [{"name": data.draw(st.sampled_from(["input", "x", "age"])),
                       "datatype": data.draw(st.sampled_from(DATATYPES)),
                       "shape": [n, f],
                       "data": data.draw(st.one_of(st.lists(json_scalars, min_size=n * f, max_size=n * f),
                                                   st.lists(st.lists(json_scalars, min_size=f, max_size=f),
                                                            min_size=n, max_size=n), datas))}]}
    _check(server.http.post(server.url + "/v2/models/retail/infer", data=orjson.dumps(doc)))


# ------------------------------------------------------------------------------------------------
# every parse path: valid requests with odd JSON text spliced in, binary-extension frames, huge
# strings (issue 16)

#: what JSON text can hold in a string that a parser may take or refuse: lone and paired
#: surrogate escapes, escaped controls, quotes
STRING_ESCAPES = [rb"\ud800", rb"\udfff", rb"\udc00\ud800", rb"\ud83d", rb"\ud83d\ude00", rb"\u0000", rb"\u001f",
                  rb"\\", rb"\"", rb"\u00e9", "\u00e9\u6771".encode()]
#: what may stand where a number is: bare words Python's json writes, and numbers beyond float64
NUMBER_WORDS = [b"NaN", b"Infinity", b"-Infinity", b"-NaN", b"nan", b"inf", b"1e999", b"-1e999", b"1e-999", b"-0",
                b"123456789012345678901234567890", b"-9223372036854775809", b"18446744073709551616", b"0x10"]


def _marker(k: int) -> str:
    return f"\x01M{k}\x01"


@st.composite
def odd_json_bodies(draw, art):
    """A valid V2 request (the common path or, with an id/parameters/outputs, the others) in which
    one to three strings or numbers are replaced by odd JSON text, spliced into its bytes."""
    n = draw(st.integers(1, 3))
    start = draw(st.integers(0, 20))
    doc = {"inputs": v2_inputs(art.test.iloc[start:start + n], art.feats)}
    if draw(st.booleans()):
        doc["id"] = "id"
    if draw(st.booleans()):
        doc["parameters"] = {"key": "value", "n": 1.5}
    if draw(st.integers(0, 3)) == 0:
        doc["outputs"] = [{"name": draw(st.sampled_from(["label", "probabilities"]))}]
    # the places a splice can go: (kind, path to the value)
    places: list[tuple[str, tuple]] = []
    if "id" in doc:
        places.append(("str", ("id",)))
    if "parameters" in doc:
        places += [("str", ("parameters", "key")), ("num", ("parameters", "n"))]
    for k, t in enumerate(doc["inputs"]):
        places.append(("str", ("inputs", k, "name")))
        kind = "str" if t["datatype"] == "BYTES" else "num"
        places += [(kind, ("inputs", k, "data", i)) for i in range(n)]
    chosen = draw(st.lists(st.sampled_from(places), min_size=1, max_size=3, unique=True))
    for m, (_, path) in enumerate(chosen):
        obj = doc
        for key in path[:-1]:
            obj = obj[key]
        if path[-1] == "key":  # the key itself
            obj[_marker(m)] = obj.pop("key")
        else:
            obj[path[-1]] = _marker(m)
    body = orjson.dumps(doc)
    for m, (kind, _) in enumerate(chosen):
        quoted = orjson.dumps(_marker(m))
        if kind == "num":
            body = body.replace(quoted, draw(st.sampled_from(NUMBER_WORDS)), 1)
        else:
            text = b"".join(draw(st.lists(st.one_of(st.sampled_from(STRING_ESCAPES),
                                                    st.text(max_size=3).map(lambda x: orjson.dumps(x)[1:-1])),
                                          min_size=1, max_size=4)))
            body = body.replace(quoted, b'"' + text + b'"', 1)
    return body


@SETTINGS
@given(data=st.data())
def test_odd_json_text_in_valid_requests_never_5xx(server, data):
    body = data.draw(odd_json_bodies(server.art))
    _check(server.http.post(server.url + "/v2/models/retail/infer", data=body))
    # the same text as V1 instances (one tensor's data as the rows) and as feedback
    _check(server.http.post(server.url + "/v1/models/retail:predict", data=b'{"instances":' + body + b"}"))
    _check(server.http.post(server.url + "/v2/models/retail/feedback",
                            data=body.replace(b'"inputs"', b'"predictions"', 1)))


BINARY_DATATYPES = ["BYTES", "FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT64", "BOOL"]


def _bytes_elements(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


MUTATIONS = ["datatype", "bits", "utf8", "payload-short", "payload-long", "size+1", "size-1", "size0", "shape"]


@st.composite
def binary_frames(draw, art):
    """A request in Triton's binary extension: a correct JSON header (Inference-Header-Content-Length)
    and binary tensors after it, well formed about half the time, else with up to three faults: a
    wrong datatype, size or shape, invalid UTF-8 in BYTES, any bit pattern (NaN, Inf, 2 in a BOOL)."""
    n = draw(st.integers(1, 3))
    frame = art.test.iloc[:n]
    faults = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    if draw(st.integers(0, 4)) == 0:  # all features in one [N, F] BYTES tensor
        elems = []
        for _, row in frame.iterrows():
            for c in art.feats:
                v = row[c["name"]]
                elems.append(str(v).encode() if c["type"] == "categorical" else repr(float(v)).encode())
        for _ in range(faults):
            elems[draw(st.integers(0, len(elems) - 1))] = draw(st.one_of(
                st.binary(max_size=6), st.sampled_from([b"\xff", b"\xed\xa0\x80", b"nan", b"inf", b"1e999", b""])))
        blob = _bytes_elements(elems)
        inputs = [{"name": "input", "datatype": "BYTES" if faults < 3 else "FP32", "shape": [n, len(art.feats)],
                   "parameters": {"binary_data_size": len(blob)}}]
        blobs = [blob]
    else:
        inputs, blobs, binary = [], [], []
        for c in art.feats:
            col = frame[c["name"]]
            cat = c["type"] == "categorical"
            if draw(st.integers(0, 2)) == 0:  # this one as JSON
                data = [str(v) for v in col] if cat else [None if v != v else float(v) for v in col.to_numpy(dtype=float)]
                inputs.append({"name": c["name"], "datatype": "BYTES" if cat else "FP32", "shape": [n], "data": data})
                blobs.append(b"")
                continue
            if cat:
                dt, blob = "BYTES", _bytes_elements([str(v).encode() for v in col])
            else:
                dt = draw(st.sampled_from(["FP32", "FP32", "FP64", "INT64", "FP16"]))
                blob = np.nan_to_num(col.to_numpy(dtype=float)).astype(protocol._LE[dt]).tobytes()
            binary.append(len(inputs))
            inputs.append({"name": c["name"], "datatype": dt, "shape": [n], "parameters": {"binary_data_size": len(blob)}})
            blobs.append(blob)
        for _ in range(faults if binary else 0):
            k = draw(st.sampled_from(binary))
            t, blob = inputs[k], blobs[k]
            how = draw(st.sampled_from(MUTATIONS))
            if how == "datatype":
                t["datatype"] = draw(st.sampled_from(BINARY_DATATYPES))
                size = 4 if t["datatype"] == "BYTES" else np.dtype(protocol._LE[t["datatype"]]).itemsize
                blob = draw(st.binary(min_size=n * size, max_size=n * size))
            elif how == "bits" and t["datatype"] != "BYTES":
                blob = draw(st.binary(min_size=len(blob), max_size=len(blob)))
            elif how in ("bits", "utf8"):
                blob = _bytes_elements([draw(st.one_of(st.binary(max_size=8), st.sampled_from(
                    [b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\x80", b"", b"\x00", "\u00e9".encode()]))) for _ in range(n)])
            elif how == "payload-short":
                blob = blob[:-1]
            elif how == "payload-long":
                blob = blob + b"\x00"
            elif how == "shape":
                t["shape"] = draw(st.sampled_from([[n + 1], [n, 2], [0], [n, 1], [-1], [n * 1000]]))
            size = len(blob) + {"size+1": 1, "size-1": -1}.get(how, 0)
            t["parameters"]["binary_data_size"] = 0 if how == "size0" else size
            blobs[k] = blob
    doc = {"inputs": inputs}
    if draw(st.booleans()):
        doc["parameters"] = {"binary_data_output": draw(st.booleans())}
    head = orjson.dumps(doc)
    hl = len(head) + (0 if draw(st.integers(0, 8)) else draw(st.integers(-3, 3)))
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(hl)}


@SETTINGS
@given(data=st.data())
def test_binary_extension_frames_never_5xx(server, data):
    body, headers = data.draw(binary_frames(server.art))
    _check(server.http.post(server.url + "/v2/models/retail/infer", data=body, headers=headers))


@pytest.fixture(scope="module")
def big_server(server):
    """The same model with a 1 MiB body limit, for huge values."""
    with ServerThread(server.art.cfg(max_body_bytes=1 << 20)) as s:
        s.art = server.art
        with requests.Session() as h:
            s.http = h
            yield s


huge_strings = st.tuples(st.text(min_size=1, max_size=3), st.integers(100, 300_000),
                         st.text(max_size=3)).map(lambda t: t[0] * t[1] + t[2])


@settings(SETTINGS, max_examples=25)
@given(value=huge_strings, where=st.sampled_from(["category", "id", "parameters", "feedback", "v1", "input-name",
                                                  "tensor-name", "output"]),
       n=st.integers(1, 3))
def test_huge_strings_never_5xx(big_server, value, where, n):
    s, art = big_server, big_server.art
    doc = {"inputs": v2_inputs(art.test.iloc[:n], art.feats)}
    if where == "category":
        for t in doc["inputs"]:
            if t["datatype"] == "BYTES":
                t["data"] = [value] * n
                break
    elif where == "id":
        doc["id"] = value
    elif where == "parameters":
        doc["parameters"] = {value[:1000]: value}
    elif where == "input-name":
        doc["inputs"][0]["name"] = value
    elif where == "tensor-name":  # one [N, F] tensor under a name of its own, but the wrong F
        doc = {"inputs": [{"name": value, "datatype": "BYTES", "shape": [1, 3], "data": ["a", "b", "c"]}]}
    elif where == "output":
        doc["outputs"] = [{"name": value}]
    if where == "feedback":
        _check(s.http.post(s.url + "/v2/models/retail/feedback",
                           data=orjson.dumps({"predictions": [value], "labels": ["1"]})))
    elif where == "v1":
        names = [c["name"] for c in art.feats]
        inst = [{k: (value if c["type"] == "categorical" else 1.0) for k, c in zip(names, art.feats)}] * n
        _check(s.http.post(s.url + "/v1/models/retail:predict", data=orjson.dumps({"instances": inst})))
    else:
        _check(s.http.post(s.url + "/v2/models/retail/infer", data=orjson.dumps(doc)))


def _assert_stats_small(s, limit: int) -> None:
    r = s.http.get(s.url + "/mlops/v1/models/retail/stats")
    assert r.status_code == 200, r.text[:300]
    assert len(r.content) < limit, len(r.content)  # bounded whatever the clients sent (so is its cost)
    doc = r.json()
    # no value a client sent is in the document: only the reference's categories, and numbers
    ref = s.art.manifest.reference.columns
    for name, f in doc["drift"]["features"].items():
        if f["type"] == "categorical":
            assert f["categories"] == [c for c in ref[name].categories if c != ""]
    for listed in (doc["drift"]["histograms"].get("listed") or {}).values():
        assert all(isinstance(v, float) for v, _ in listed["values"]) and len(listed["values"]) <= 32


def test_the_stats_stay_small_and_answer_after_the_fuzzing(server, big_server):
    # bounded by the model (its features' histograms and categories), not by the traffic
    _assert_stats_small(server, 96 << 10)
    _assert_stats_small(big_server, 96 << 10)
    for s in (server, big_server):
        assert not any(code >= 500 for (_, code) in s.server.requests.codes), s.server.requests.codes


def test_server_still_answers_after_the_fuzzing(server):
    art = server.art
    r = server.http.post(server.url + "/v2/models/retail/infer",
                         data=orjson.dumps({"inputs": v2_inputs(art.test.iloc[:2], art.feats)}))
    assert r.status_code == 200
    codes = server.server.requests.codes
    assert not any(code >= 500 for (_, code) in codes), codes
