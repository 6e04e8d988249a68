"""Property: whatever a client sends, the model server answers 200 or a 4xx whose JSON body has a
non-empty `error`, never a 5xx, and keeps serving."""

from __future__ import annotations

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_server_still_answers_after_the_fuzzing(server):
    art = server.art
    r = server.http.post(server.url + "/v2/models/retail/infer",
                         data=orjson.dumps({"inputs": v2_inputs(art.test.iloc[:2], art.feats)}))
    assert r.status_code == 200
    codes = server.server.requests.codes
    assert not any(code >= 500 for (_, code) in codes), codes
