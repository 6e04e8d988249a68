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
    stats document); now each is recorded as a fixed-size digest, and the stats stay small."""
    with ServerThread(art.cfg(reservoir_size=1000)) as s, requests.Session() as h:  # the default reservoir
        u = s.url + "/v2/models/retail/infer"
        big = ["x" * (3 << 20) + str(i) for i in range(40)]
        second = art.test["channel"].iloc[1]
        for v in big:
            r = h.post(u, data=orjson.dumps(_doc(art, 2, channel=[v, second])))
            assert r.status_code == 200, r.text[:200]
        # and a batch that fills the reservoir with values just over the limit, and at it
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
        t0 = time.perf_counter()
        r = h.get(s.url + "/v2/models/retail/stats")
        took = time.perf_counter() - t0
        assert r.status_code == 200
        assert len(r.content) < 1 << 20, len(r.content)
        assert took < 1.0, took
        st = r.json()
        cols = st["reservoir"]["current"]["columns"]
        rows = st["reservoir"]["current"]["rows"]
        assert len(rows) == 1000
        ch, reg, dev = cols.index("channel"), cols.index("region"), cols.index("device")
        big_tokens, over_tokens = {_token(v) for v in big}, {_token(v) for v in over}
        sent_channels, sent_regions = set(art.test["channel"]), set(art.test["region"])
        assert {row[ch] for row in rows} <= big_tokens | sent_channels
        assert {row[ch] for row in rows} & big_tokens
        assert {row[reg] for row in rows} <= over_tokens | sent_regions
        assert "z" * 256 in {row[dev] for row in rows}
        # counted as "other", never as categories of their own
        feats = st["features"]
        ref = art.manifest.reference.columns
        for name in ("channel", "region"):
            assert feats[name]["categories"] == [c for c in ref[name].categories if c != ""]
        unknown = sum(v not in ref["channel"].categories for v in [second] * 40 + list(frame["channel"]))
        assert feats["channel"]["other"] == 40 + unknown and feats["region"]["other"] == n


def test_the_stats_record_a_category_longer_than_the_limit_as_its_digest(art):
    """The limit is on the JSON text of the value (escapes and UTF-8 counted), so every value in
    the document is at most max_category_bytes; the model still gets the value as sent."""
    from mlops_operator.serving.monitor import Monitor, category_token

    model = load(art.store_uri, art.uri, art.digest)
    mon = Monitor(model, reservoir_size=10, window_seconds=300, seed=0, max_category_bytes=64)
    n_num, n_cat = len(model.num_features), len(model.cat_features)
    ref0 = mon.categorical[0].categories[0]
    values = ["a" * 64, "a" * 65, "\x01" * 11, "\x01" * 10, "é" * 32, "é" * 33, '"' * 32, '"' * 33, ref0, ""]
    n = len(values)
    cats = [list(values) for _ in range(n_cat)]
    sent = [list(c) for c in cats]
    x = np.zeros((n_num, n))
    mon.observe(x, cats, {"label": np.zeros(n, dtype=np.int64), "probabilities": np.full((n, 2), 0.5, np.float32)})
    assert cats == sent  # what the batcher gave the model is left alone
    got = [row[0] for row in mon.reservoir_doc([(True, 0)])["current"]["rows"]]
    # JSON bytes: 64, 65, 11 x 6 (\u0001), 10 x 6, 32 x 2 (UTF-8), 33 x 2, 32 x 2 (\"), 33 x 2
    want = ["a" * 64, category_token("a" * 65), category_token("\x01" * 11), "\x01" * 10, "é" * 32,
            category_token("é" * 33), '"' * 32, category_token('"' * 33), ref0, None]
    assert got == want
    for v in got:
        if v is not None:
            assert len(orjson.dumps(v)) - 2 <= 64
    assert category_token("a" * 65) == _token("a" * 65)
    # a reference category is never replaced, whatever its length (it is counted by name)
    c = mon.categorical[0]
    assert int(c.counts[0]) == 1 and int(c.counts[c.other]) == n - 2


def test_a_million_distinct_categories_do_not_grow_the_counts(srv, art):
    """Counts are per reference category plus one "other": a client sending ever new categories
    only adds to "other" (and the reservoir holds a fixed number of rows)."""
    before = srv.http.get(srv.url + "/v2/models/retail/stats").json()["features"]["device"]
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
    after = srv.http.get(srv.url + "/v2/models/retail/stats").json()["features"]["device"]
    assert after["categories"] == before["categories"]
    assert after["other"] - before["other"] == 4000
    assert [c.counts.size for c in mon.categorical] == sizes
