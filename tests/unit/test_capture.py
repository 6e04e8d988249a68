"""Payload capture (serving/capture.py) on a real server on a loopback port, and the Dataset
source that reads it back (data/capture.py): sampled requests and their labels land in the
store as complete chunks, excluded columns never do, a slow or failing store costs rows (counted),
never a request, and a Dataset version is snapshotted from the labelled traffic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import requests

from mlops_operator.data import capture as dcap
from mlops_operator.serving import capture as scap

from .test_serving import ServerThread, art, v2_inputs  # noqa: F401 - art is a fixture

CAPTURE = dict(capture_rate=1.0, capture_flush_seconds=0.2, capture_chunk_rows=10_000)


def _infer(s, a, rows, rid: str | None):
    doc: dict[str, Any] = {"inputs": v2_inputs(rows, a.feats)}
    if rid is not None:
        doc["id"] = rid
    r = requests.post(s.url + "/v2/models/retail/infer", json=doc, timeout=10)
    assert r.status_code == 200, r.text
    return [str(v) for v in next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]]


def _wait(pred, timeout=10.0):
    t = time.time() + timeout
    while time.time() < t:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_captured_requests_join_their_labels_into_dataset_rows(art, tmp_path):  # noqa: F811
    cap = tmp_path / "captures" / "svc"
    head = art.test.head(9)
    with ServerThread(art.cfg(**CAPTURE, capture_dir=str(cap), capture_exclude="device")) as s:
        preds = {rid: _infer(s, art, head.iloc[i * 3:(i + 1) * 3], rid) for i, rid in enumerate(["a", "b", "c"])}
        _infer(s, art, head.head(2), None)  # no id: captured, never labelled
        for rid, truth in (("a", [1, 0, 1]), ("c", [0, 0, 1])):
            r = requests.post(s.url + "/v2/models/retail/feedback",
                              json={"id": rid, "predictions": preds[rid], "labels": truth}, timeout=10)
            assert r.status_code == 200, r.text
        assert _wait(lambda: requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()
                     ["capture"]["labels"] == 6)
        stats = requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()["capture"]
        assert stats["rows"] == 11 and stats["dropped"] == 0 and stats["failed"] == 0
        assert 'mlops_serving_capture_rows_total{' in requests.get(s.url + "/metrics", timeout=5).text
    assert not list(cap.glob(".*.tmp"))  # only complete chunks
    table = pa.Table.from_batches(list(dcap.capture_batches(cap)))
    assert table.num_rows == 6  # a and c: labelled
    assert "device" not in table.column_names  # excluded: never written
    assert table.column("purchased").to_pylist() == [1, 0, 1, 0, 0, 1]
    want = head.iloc[[0, 1, 2, 6, 7, 8]]
    got_age = np.array(table.column("age").to_pylist(), dtype=float)
    np.testing.assert_allclose(got_age, want["age"].to_numpy(dtype=float), rtol=1e-6)
    assert pa.types.is_timestamp(table.schema.field(dcap.TIME_COLUMN).type)
    every = pa.Table.from_batches(list(dcap.capture_batches(cap, labelled_only=False)))
    assert every.num_rows == 11 and every.column("purchased").null_count == 5
    # time bounds
    with pytest.raises(dcap.CaptureSourceError, match="no captured rows in captures/svc between 2999"):
        list(dcap.capture_batches(cap, since="2999-01-01T00:00:00Z"))


def test_a_failing_store_costs_rows_never_requests(art, tmp_path):  # noqa: F811
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the capture directory should be")
    with ServerThread(art.cfg(**CAPTURE, capture_dir=str(blocker / "svc"))) as s:
        for i in range(5):
            _infer(s, art, art.test.head(4), f"r{i}")
        assert _wait(lambda: requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()
                     ["capture"]["failed"] == 20)
        st = requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()["capture"]
        assert st["rows"] == 0 and st["lastError"]


def test_a_slow_store_drops_rows_past_the_buffer_and_serving_never_waits(art, tmp_path, monkeypatch):  # noqa: F811
    """The store hangs (the writer is blocked until the end of the test): every request is still
    answered, the rows past the buffer are dropped and counted, and once the store answers again
    what was buffered is written."""
    import threading

    release = threading.Event()
    real_put = scap.DirectorySink.put

    def put(self, name, data):
        release.wait(60)
        real_put(self, name, data)

    monkeypatch.setattr(scap.DirectorySink, "put", put)
    cfg = art.cfg(capture_rate=1.0, capture_flush_seconds=0.05, capture_chunk_rows=8, capture_max_rows=8,
                  capture_dir=str(tmp_path / "c"))
    with ServerThread(cfg) as s:
        for i in range(30):
            _infer(s, art, art.test.head(4), f"r{i}")  # each answered (200) while the store hangs
        st = requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()["capture"]
        assert st["sampledRequests"] == 30 and st["rows"] == 0
        assert st["dropped"] >= 30 * 4 - 2 * 8  # at most the buffer and the chunk being written were kept
        release.set()
        assert _wait(lambda: requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()
                     ["capture"]["rows"] > 0)


def test_capture_is_off_by_default(art):  # noqa: F811
    with ServerThread(art.cfg()) as s:
        _infer(s, art, art.test.head(2), "x")
        doc = requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()
    assert "capture" not in doc and s.server.capture is None


def test_capture_flags_are_checked():
    from mlops_operator.serving import config as serve_config

    base = ["--store-uri", "file:///s", "--model-uri", "file:///s/m", "--digest", "0" * 64, "--name", "m"]
    with pytest.raises(SystemExit):
        serve_config.parse(base + ["--capture-rate", "0.5"])  # no directory
    with pytest.raises(SystemExit):
        serve_config.parse(base + ["--capture-rate", "1.5", "--capture-dir", "/x"])
    assert serve_config.parse(base + ["--capture-rate", "0.5", "--capture-dir", "/x"]).capture_rate == 0.5


def test_the_deployment_captures_into_the_store_only_when_asked():
    from mlops_operator.resources.serving import deployment
    from mlops_operator.settings import Settings

    s = Settings(runtime_image="r", store_claim="c", store_size="1Gi", store_access_mode="ReadWriteOnce",
                 store_storage_class=None)
    mv = {"metadata": {"name": "m-v1"}, "spec": {"model": "m", "version": 1,
                                                   "artifact": {"uri": "file:///store/m", "digest": "a" * 64}}}

    def dep(spec: dict[str, Any]) -> dict[str, Any]:
        isvc = {"apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService",
                "metadata": {"name": "svc", "namespace": "ns", "uid": "u"}, "spec": spec}
        return deployment(isvc, mv, s)["spec"]["template"]["spec"]["containers"][0]

    plain = dep({"model": "m"})
    assert "--capture-rate" not in plain["command"] and plain["volumeMounts"][0]["readOnly"] is True
    c = dep({"model": "m", "capture": {"sampleRate": 0.25, "excludeColumns": ["email", "age"]}})
    cmd = c["command"]
    assert cmd[cmd.index("--capture-rate") + 1] == "0.25"
    assert cmd[cmd.index("--capture-dir") + 1] == "/store/captures/svc"
    assert cmd[cmd.index("--capture-exclude") + 1] == "email,age"
    assert c["volumeMounts"][0]["readOnly"] is False


def test_a_dataset_version_from_captured_traffic(art, tmp_path):  # noqa: F811
    """The snapshot Job's path: source.type capture -> validated, profiled Parquet version."""
    from mlops_operator.data import snapshot

    store = tmp_path / "store"
    cap = store / "captures" / "svc"
    with ServerThread(art.cfg(**CAPTURE, capture_dir=str(cap))) as s:
        rows = art.test.head(60)
        for i in range(6):
            preds = _infer(s, art, rows.iloc[i * 10:(i + 1) * 10], f"q{i}")
            labels = [int(v) for v in art.test["purchased"].iloc[i * 10:(i + 1) * 10]] \
                if "purchased" in art.test else [int(p) for p in preds]
            requests.post(s.url + "/v2/models/retail/feedback", json={"id": f"q{i}", "predictions": preds,
                                                                      "labels": labels}, timeout=10)
        assert _wait(lambda: requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()
                     ["capture"]["labels"] == 60)
    spec = {"source": {"type": "capture", "capture": {"inferenceService": "svc"}}, "labelColumn": "purchased"}
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "work2").mkdir()
    out = snapshot.run({"name": "captured", "spec": spec}, store.as_uri(), store, work)
    assert out["rows"] == 60 and out["validated"], out
    assert {"age", "device", "purchased", dcap.TIME_COLUMN} <= {c["name"] for c in out["schema"]}
    roles = {c["name"]: c["role"] for c in out["schema"]}
    assert roles["purchased"] == "label" and roles[dcap.TIME_COLUMN] == "timestamp"  # a time split
    # profiled like any source: the profile sits next to the version, with the label's distribution
    import json

    profile = json.loads(next(store.rglob("profile.json")).read_text())
    assert profile["rows"] == 60 and "age" in json.dumps(profile)
    assert sum((out["labelDistribution"] or {}).values()) == 60, out["labelDistribution"]
    again = snapshot.run({"name": "captured", "spec": spec}, store.as_uri(), store, tmp_path / "work2")
    assert again["digest"] == out["digest"]  # the same captures, the same version


def test_an_empty_capture_fails_the_snapshot_clearly(tmp_path):
    from mlops_operator.data.sources import SourceError, open_source

    with pytest.raises(SourceError, match="no captured traffic"):
        list(open_source({"type": "capture", "capture": {"inferenceService": "svc"}}, tmp_path, tmp_path))
    (tmp_path / "captures" / "svc").mkdir(parents=True)
    with pytest.raises(SourceError, match="no captured traffic"):  # the directory, but no chunk yet
        list(open_source({"type": "capture", "capture": {"inferenceService": "svc"}}, tmp_path, tmp_path))


def test_capture_writes_complete_chunks_only(tmp_path):
    """A chunk is written under a temporary name and renamed: a reader lists complete files."""
    sink = scap.DirectorySink(tmp_path / "d")
    sink.put("x.requests.parquet", b"PAR1")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["x.requests.parquet"]


# -- the writer and the reader without a server --------------------------------------------------

class _Req:
    def __init__(self, n: int, rid: str | None):
        self.n, self.id = n, rid


def _capture(sink, **kw):
    base: dict[str, Any] = dict(rate=1.0, instance="pod-a", start_id="0123456789abcdef", version="3",
                                target="bought", numeric=["age", "member"], categorical=["device"],
                                boolean={"member"}, classes=["0", "1"], flush_seconds=3600, seed=1)
    base.update(kw)
    return scap.Capture(sink, **base)


def _run(c, reqs):
    """One model run of `reqs` [(n, id)] with made-up arrays, as the batcher offers it."""
    n = sum(k for k, _ in reqs)
    x = np.vstack([np.arange(n, dtype=np.float64), np.arange(n) % 2]).astype(np.float64)
    x[0, 0] = np.nan
    cats = [[f"d{i}" for i in range(n)]]
    probs = np.column_stack([np.linspace(0, 1, n), 1 - np.linspace(0, 1, n)]).astype(np.float32)
    result = {"label": np.array([i % 2 for i in range(n)], dtype=np.int64), "probabilities": probs}
    c.offer([(_Req(k, rid), None) for k, rid in reqs], x, cats, result)
    return x, result


class _MemorySink:
    def __init__(self):
        self.chunks: dict[str, bytes] = {}

    def put(self, name, data):
        self.chunks[name] = data


def test_requests_chunk_holds_inputs_outputs_version_and_request_id():
    sink = _MemorySink()
    c = _capture(sink)
    try:
        x, result = _run(c, [(2, "a"), (3, "b"), (1, None)])
        c.offer_labels("a", [1, "0"])
    finally:
        c.close()
    import io

    import pyarrow.parquet as pq

    names = sorted(sink.chunks)
    assert names == ["pod-a-01234567-000001.labels.parquet", "pod-a-01234567-000001.requests.parquet"]
    t = pq.read_table(io.BytesIO(sink.chunks[names[1]]))
    assert t.column("request_id").to_pylist() == ["a", "a", "b", "b", "b", None]
    assert t.column("row").to_pylist() == [0, 1, 0, 1, 2, 0]
    assert t.column("model_version").to_pylist() == ["3"] * 6
    assert t.column("age").to_pylist() == [None, 1.0, 2.0, 3.0, 4.0, 5.0]  # NaN (missing) as null
    assert t.column("member").to_pylist() == [False, True, False, True, False, True]
    assert t.column("device").to_pylist() == [f"d{i}" for i in range(6)]
    assert t.column("output_label").to_pylist() == ["0", "1", "0", "1", "0", "1"]
    np.testing.assert_allclose(t.column("output_score").to_numpy(), result["probabilities"][:, 1], rtol=1e-6)
    assert pa.types.is_timestamp(t.schema.field("captured_at").type)
    assert t.schema.metadata[b"mlops.target"] == b"bought"
    lab = pq.read_table(io.BytesIO(sink.chunks[names[0]]))
    assert lab.column("label").to_pylist() == ["1", "0"] and lab.column("row").to_pylist() == [0, 1]


def test_excluded_columns_are_never_written():
    sink = _MemorySink()
    c = _capture(sink, exclude={"device", "age"})
    try:
        _run(c, [(2, "a")])
    finally:
        c.close()
    import io

    import pyarrow.parquet as pq

    t = pq.read_table(io.BytesIO(next(iter(sink.chunks.values()))))
    assert "device" not in t.column_names and "age" not in t.column_names and "member" in t.column_names


def test_an_input_named_like_a_capture_column_is_refused_clearly():
    with pytest.raises(ValueError, match="request_id.*excludeColumns"):
        _capture(_MemorySink(), numeric=["request_id"])
    _capture(_MemorySink(), numeric=["request_id"], exclude={"request_id"}).close()  # the way out


def test_sampling_keeps_the_share_asked_for_and_skips_runs_cheaply():
    """A countdown drawn from the geometric distribution samples each request with probability
    `rate`: over 20,000 one-request runs (seeded), the share is the rate within sampling error."""
    c = _capture(_MemorySink(), rate=0.1, max_rows=10**9, chunk_rows=10**9)
    try:
        x = np.zeros((2, 1))
        res = {"label": np.zeros(1, dtype=np.int64)}
        for _ in range(20_000):
            c.offer([(_Req(1, "r"), None)], x, [["d"]], res)
        share = c.sampled / 20_000
        assert abs(share - 0.1) < 0.01, share  # 4.7 standard errors
        assert c.pending_rows == c.sampled
    finally:
        c.close()


def test_a_small_sample_of_a_big_run_does_not_pin_the_run():
    c = _capture(_MemorySink())
    try:
        x, _ = _run(c, [(1, "a"), (99, "b")])
        kept = c.requests[0][2]
        assert kept.base is None or kept.base is not x  # copied: the run's arrays can be freed
        assert c.requests[1][2].base is x  # 99 of 100 rows: a view
    finally:
        c.close()


def _write_capture(directory: Path, runs, labels, **kw):
    c = _capture(scap.DirectorySink(directory), **kw)
    try:
        for reqs in runs:
            _run(c, reqs)
        for rid, vals in labels:
            c.offer_labels(rid, vals)
    finally:
        c.close()


def test_dataset_rows_join_labels_by_request_id_and_row_latest_label_wins(tmp_path):
    d = tmp_path / "svc"
    _write_capture(d, [[(2, "a"), (2, "b"), (1, None)]], [("a", [1, 0]), ("b", [1, 1])])
    _write_capture(d, [], [("b", [0, 0])], start_id="fedcba9876543210")  # a later correction, another pod
    t = pa.Table.from_batches(list(dcap.capture_batches(d)))
    assert t.column_names == ["age", "member", "device", "bought", dcap.TIME_COLUMN]
    assert t.column("bought").to_pylist() == [1, 0, 0, 0] and pa.types.is_integer(t.schema.field("bought").type)
    assert t.column("age").to_pylist() == [None, 1.0, 2.0, 3.0]
    every = pa.Table.from_batches(list(dcap.capture_batches(d, labelled_only=False)))
    assert every.num_rows == 5 and every.column("bought").null_count == 1
    # the same captures give the same rows in the same order (a stable content-addressed version)
    assert pa.Table.from_batches(list(dcap.capture_batches(d))).equals(t)


def test_dataset_over_a_time_range(tmp_path):
    d = tmp_path / "svc"
    _write_capture(d, [[(2, "a")]], [("a", [1, 0])])
    with pytest.raises(dcap.CaptureSourceError, match="no captured rows in captures/svc between 2999"):
        list(dcap.capture_batches(d, since="2999-01-01T00:00:00Z"))
    with pytest.raises(dcap.CaptureSourceError, match="no captured rows in captures/svc between the start and 2000"):
        list(dcap.capture_batches(d, until="2000-01-01T00:00:00Z"))
    t = pa.Table.from_batches(list(dcap.capture_batches(d, since="2000-01-01T00:00:00Z",
                                                        until="2999-01-01T00:00:00+00:00")))
    assert t.num_rows == 2
    with pytest.raises(dcap.CaptureSourceError, match="since .* must be before until"):
        list(dcap.capture_batches(d, since="2026-02-01T00:00:00Z", until="2026-01-01T00:00:00Z"))


def test_unlabelled_captures_say_how_labels_join(tmp_path):
    d = tmp_path / "svc"
    _write_capture(d, [[(2, "a"), (1, None)]], [("zzz", [1])])  # a label for a request never captured
    with pytest.raises(dcap.CaptureSourceError, match="none of the 3 captured rows .* has a label yet.*\"id\""):
        list(dcap.capture_batches(d))


def test_a_corrupt_chunk_is_named(tmp_path):
    d = tmp_path / "svc"
    _write_capture(d, [[(2, "a")]], [("a", [1, 0])])
    (d / "pod-z-00000000-000001.requests.parquet").write_bytes(b"not parquet")
    with pytest.raises(dcap.CaptureSourceError, match="pod-z-00000000-000001.requests.parquet cannot be read"):
        list(dcap.capture_batches(d))


def test_chunks_of_models_with_other_inputs_make_one_schema(tmp_path):
    d = tmp_path / "svc"
    _write_capture(d, [[(2, "a")]], [("a", [1, 0])])
    _write_capture(d, [[(1, "b")]], [("b", [1])], exclude={"age"}, start_id="ffff0000")  # a model without age
    t = pa.Table.from_batches(list(dcap.capture_batches(d)))
    assert t.num_rows == 3 and sorted(t.column("age").to_pylist(), key=lambda v: (v is None, v)) == [1.0, None, None]
