"""Serving pods' drift counters read through cursors -> window counts: restarts, lost cursors,
new and gone pods, several replicas, operator restarts; never a double count, never a loss the
readings could have avoided."""

from __future__ import annotations

import types

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from mlops_operator import drift
from mlops_operator.drift import CurrentData, Histogram, PodCursor, PodReading, add_counts, window_delta
from mlops_operator.drift.histogram import reference_edges
from mlops_operator.monitoring.windows import Window, accumulate, stats_path
from mlops_operator.serving.monitor import CURSORS, Monitor
from mlops_operator.store.model_manifest import Feature, ModelManifest, Output, Reference, ReferenceColumn

EDGES = np.array([0.0, 1.0, 2.5, 4.0])


def hist(*values: float, nulls: int = 0) -> CurrentData:
    h = Histogram.of(EDGES, list(values) + [float("nan")] * nulls)
    return CurrentData(hist=h, nulls=h.nulls)


def cat(other=0, nulls=0, **counts):
    return CurrentData(categories=counts, other_count=other, nulls=nulls)


def reading(start, rows, cursor=None, since=None, **features):
    return PodReading(start_id=start, features=features, rows=rows, cursor=cursor, since=since)


def test_readings_of_two_pods_since_their_cursors_are_summed():
    prev = {"a": PodCursor("s1", "s1.4"), "b": PodCursor("s2", "s2.9")}
    cur = {"a": reading("s1", 3, "s1.5", "s1.4", x=hist(0.5, 1.0, 3.0), c=cat(u=2)),
           "b": reading("s2", 2, "s2.10", "s2.9", x=hist(1.0, nulls=1), c=cat(v=1, other=1))}
    d = window_delta(prev, cur)
    assert d.rows == 5 and d.new_pods == d.restarted_pods == d.lost_pods == d.gone_pods == []
    h = d.features["x"].hist
    assert h.counts.tolist() == [0, 1, 2, 1, 0] and h.atoms.tolist() == [0, 2, 0, 0] and h.nulls == 1
    np.testing.assert_allclose(h.sums, [0, 0.5, 0, 0.5, 0])  # offsets from each bin's left edge
    assert d.features["c"].categories == {"u": 2, "v": 1} and d.features["c"].other_count == 1
    assert d.cursors == {"a": PodCursor("s1", "s1.5"), "b": PodCursor("s2", "s2.10")}


def test_restarted_new_lost_and_gone_pods():
    prev = {"a": PodCursor("s1", "s1.4"), "b": PodCursor("s2", "s2.9"), "old": PodCursor("s9", "s9.1")}
    cur = {"a": reading("s1-new", 7, "s1-new.1", None, x=hist(0.5) ),    # restarted: all since its start
           "b": reading("s2", 50, "s2.11", None, x=hist(3.0, 3.0)),       # same process, cursor not kept: lost
           "n": reading("s3", 4, "s3.1", None, x=hist(1.0))}              # new: all it counted
    d = window_delta(prev, cur)
    assert d.restarted_pods == ["a"] and d.lost_pods == ["b"] and d.new_pods == ["n"] and d.gone_pods == ["old"]
    assert d.rows == 11 and d.features["x"].hist.count == 2
    assert d.cursors["b"] == PodCursor("s2", "s2.11")  # counted from here on next time
    # an answer from a cursor the monitor does not hold (its state was reset) is never counted
    d = window_delta({"a": PodCursor("s1", "s1.4")}, {"a": reading("s1", 5, "s1.6", "s1.5", x=hist(1.0))})
    assert d.lost_pods == ["a"] and d.rows == 0 and "x" not in d.features
    first = window_delta(None, {"a": reading("s1", 3, "s1.1", None, x=hist(1.0))})
    assert first.new_pods == ["a"] and first.rows == 3


def test_counts_on_other_edges_cannot_be_added():
    other = Histogram.of([0.0, 1.0, 2.0, 3.0], [1.0])
    with pytest.raises(ValueError, match="different bin edges"):
        add_counts({"x": hist(1.0)}, {"x": CurrentData(hist=other)})
    with pytest.raises(ValueError):
        add_counts({"x": hist(1.0)}, {"x": cat(u=1)})


def test_histogram_subtracts_to_what_arrived_and_a_reset_is_refused():
    h0 = Histogram.of(EDGES, [0.5, 1.0, 9.0])
    h1 = h0.copy()
    h1.add(np.array([1.0, 2.0, -3.0, np.nan, np.inf]))
    d = h1.minus(h0)
    assert d is not None and d.counts.tolist() == [1, 0, 2, 0, 0] and d.atoms.tolist() == [0, 1, 0, 0]
    assert d.nulls == 2 and d.sums.tolist() == pytest.approx([3.0, 0.0, 1.0, 0.0, 0.0])
    assert h0.minus(h1) is None  # counters went down: not an earlier reading
    assert (d + h0).counts.tolist() == h1.counts.tolist()
    j = d.to_json()
    assert "edges" not in j and Histogram.from_json(j).on(EDGES).counts.tolist() == d.counts.tolist()
    with pytest.raises(ValueError, match="other bin edges"):
        Histogram.from_json(j).on(EDGES + 1)


# ---------------------------------------------------------------------------------------------
# the servers' own counters (serving/monitor.py) through the operator's window logic

def _model() -> types.SimpleNamespace:
    g = np.random.default_rng(0)
    ref = np.round(g.normal(2.0, 1.0, 3000), 2)
    edges = reference_edges(np.sort(ref))
    coarse = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    edges = np.union1d(edges, coarse)
    h = Histogram.of(edges, ref)
    cols = {"x": ReferenceColumn(type="numeric", bin_edges=coarse.tolist(),
                                 bin_counts=np.bincount(np.searchsorted(coarse, ref, side="right"),
                                                        minlength=coarse.size + 1).tolist(),
                                 std=float(np.std(ref)), histogram=h.to_json(edges=True)),
            "c": ReferenceColumn(type="categorical", categories={"u": 10, "v": 5})}
    inputs = [Feature(name="x", type="numeric", datatype="FP32"), Feature(name="c", type="categorical",
                                                                           datatype="BYTES")]
    man = ModelManifest(model="m", task="classification", estimator="e", target="y", inputs=inputs,
                        outputs=[Output(name="label", datatype="INT64", shape=[-1]),
                                 Output(name="probabilities", datatype="FP32", shape=[-1, 2])],
                        classes=["0", "1"], onnx_sha256="0" * 64, reference=Reference(rows=3000, columns=cols))
    return types.SimpleNamespace(manifest=man, num_features=inputs[:1], cat_features=inputs[1:], features=inputs,
                                 classes=["0", "1"], classifier=True)


MODEL = _model()
REF = drift.references_from_profile(MODEL.manifest.reference.model_dump(by_alias=True)["columns"])


class Pod:
    """A serving process: a real Monitor and the values it counted and nobody has read yet."""

    def __init__(self, start: str):
        self.start, self.mon = start, Monitor(MODEL, seed=0)
        self.unread: list[tuple[float, str]] = []

    def serve(self, g: np.random.Generator, n: int) -> None:
        x = np.round(g.normal(2.0, 1.2, n), 2)
        x[g.random(n) < 0.05] = np.nan
        c = [str(v) for v in g.choice(["u", "v", "w"], n)]
        self.mon.observe(x[None, :], [c], {"label": np.zeros(n, np.int64),
                                           "probabilities": np.full((n, 2), 0.5, np.float32)})
        self.unread += list(zip(x.tolist(), c))

    def stats(self, previous: dict | None) -> dict:
        cursor = stats_path("m", previous).split("cursor=")[1]
        doc = {"startId": self.start, "drift": self.mon.drift_doc(self.start, cursor), "feedback": {}}
        return orjson.loads(orjson.dumps(doc))  # over the wire


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 2 ** 32 - 1), steps=hs.integers(5, 40))
def test_window_is_what_was_read_never_double_never_lost(seed, steps):
    """Pods serve, restart, come and go; the operator reads them, sometimes crashes after a read
    and before saving (the next read reuses the saved cursors), keeps its state as JSON. The
    window is exactly the values counted by processes and read in a saved tick; what is lost is
    only what a process had not been read for when it restarted or went away, or an interval
    whose cursor the pod no longer kept (reported as lost)."""
    g = np.random.default_rng(seed)
    pods = {f"p{i}": Pod(f"p{i}-0") for i in range(int(g.integers(1, 4)))}
    state = {"pods": {}, "window": Window(0.0).to_json()}
    counted: list[tuple[float, str]] = []
    gen = 0
    for _ in range(steps):
        for name, p in list(pods.items()):
            p.serve(g, int(g.integers(0, 40)))
            r = g.random()
            if r < 0.08:  # the process restarts: what nobody read is gone
                gen += 1
                pods[name] = Pod(f"{name}-{gen}")
            elif r < 0.12:
                del pods[name]
        if g.random() < 0.15:
            pods[f"n{gen}"] = Pod(f"n{gen}-0")
            gen += 1
        docs = {name: p.stats(state["pods"].get(name)) for name, p in pods.items()}
        res = accumulate(Window.from_json(state["window"]), state["pods"], docs)
        if g.random() < 0.2:  # the operator dies before saving: the servers answered, nothing kept
            continue
        lost = {n for note in res.notes if note.startswith("not counted") for n in note.split(": ")[1].split(", ")}
        for name, p in pods.items():
            if name not in lost:
                counted += p.unread
            p.unread = []
        state = {"pods": res.pods, "window": orjson.loads(orjson.dumps(res.window.to_json()))}
        assert lost <= set(pods)  # only a cursor evicted by more unsaved reads than a pod keeps
    window = Window.from_json(state["window"])
    want_x = np.array([v for v, _ in counted if v == v])
    if not counted:
        assert window.rows == 0
        return
    assert window.rows == len(counted)
    h = window.features["x"].hist.on(REF["x"].hist.edges)
    expect = Histogram.of(REF["x"].hist.edges, want_x, listing=h.listing)
    assert h.counts.tolist() == expect.counts.tolist() and h.atoms.tolist() == expect.atoms.tolist()
    assert h.nulls == sum(1 for v, _ in counted if v != v)
    np.testing.assert_allclose(h.sums, expect.sums, rtol=1e-9, atol=1e-9)
    c = window.features["c"]
    assert c.categories == {k: sum(1 for _, x in counted if x == k) for k in ("u", "v")}
    assert c.other_count == sum(1 for _, x in counted if x == "w")
    # and the window feeds evaluate
    res = drift.evaluate(REF, window.features, min_samples=1)
    assert {f.name for f in res.features} == {"x", "c"}


def test_an_evicted_cursor_loses_one_interval_and_counts_again_after():
    p = Pod("a-0")
    g = np.random.default_rng(1)
    p.serve(g, 10)
    res = accumulate(Window(0.0), {}, {"a": p.stats(None)})
    assert res.window.rows == 10
    saved = res.pods
    for _ in range(CURSORS):  # other readers (or unsaved reads) push the monitor's cursor out
        p.mon.drift_doc("a-0", "")
    p.serve(g, 5)
    lost = accumulate(res.window, saved, {"a": p.stats(saved["a"])})
    assert lost.window.rows == 10 and any("cursor lost" in n for n in lost.notes)
    p.serve(g, 7)
    after = accumulate(lost.window, lost.pods, {"a": p.stats(lost.pods["a"])})
    assert after.window.rows == 17 and not after.notes


def test_state_per_pod_stays_small():
    p = Pod("a-0")
    p.serve(np.random.default_rng(2), 500)
    res = accumulate(Window(0.0), {}, {"a": p.stats(None)})
    assert len(orjson.dumps(res.pods["a"])) < 300


def test_a_malformed_or_older_stats_document_is_noted_not_counted():
    p = Pod("a-0")
    p.serve(np.random.default_rng(3), 20)
    good = p.stats(None)
    broken = {**good, "drift": {**good["drift"], "histograms": {**good["drift"]["histograms"], "data": "AAAA"}}}
    older = {"startId": "o-0", "features": {}}
    res = accumulate(Window(0.0), {}, {"a": broken, "o": older})
    assert res.window.rows == 0 and res.window.features == {}
    assert any("a: malformed drift counters" in n for n in res.notes)
    assert any("o: no drift counters" in n for n in res.notes)


def test_the_state_of_a_wide_model_with_a_small_reference_fits_a_configmap():
    """A reference of 1000 rows gets up to 1000 edges per numeric feature (every value: exact
    KS); with 30 such features the DriftMonitor's state (the reference as the server gives it,
    the window, cursors of 100 pods) stays well under a ConfigMap's 1 MiB."""
    from mlops_operator.serving.app import packed_reference

    g = np.random.default_rng(7)
    cols, window = {}, {}
    for i in range(30):
        ref = g.normal(size=1000)
        h = Histogram.of(reference_edges(np.sort(ref)), ref)
        cols[f"x{i}"] = ReferenceColumn(type="numeric", std=float(np.std(ref)), histogram=h.to_json(edges=True))
        c = Histogram.of(h.edges, g.normal(0.1, 1, 5000))
        window[f"x{i}"] = CurrentData(hist=c, nulls=0)
    ref_doc = packed_reference(Reference(rows=1000, columns=cols))
    state = {"reference": ref_doc, "window": Window(0.0, 5000, window).to_json(),
             "pods": {f"pod-{i}": {"startId": "0" * 32, "cursor": "0" * 32 + ".12345", "feedback": {}}
                      for i in range(100)}}
    size = len(orjson.dumps(state))
    assert size < 900 << 10, size
    back = drift.references_from_profile(orjson.loads(orjson.dumps(ref_doc))["columns"])
    assert back["x0"].hist.k == 1000 and Window.from_json(state["window"]).features["x3"].hist.count == 5000


def test_a_fast_reader_does_not_push_out_a_slow_readers_cursor():
    """Two DriftMonitors on one service, one reading 50 times as often: each keeps its cursor
    (a read drops the parent of the cursor it gives: the reader saved that one), so both count
    every row once."""
    p = Pod("a-0")
    g = np.random.default_rng(5)
    fast = {"pods": {}, "window": Window(0.0)}
    slow = {"pods": {}, "window": Window(0.0)}
    total = 0

    def read(state):
        res = accumulate(state["window"], state["pods"], {"a": p.stats(state["pods"].get("a"))})
        assert not res.notes, res.notes
        state["pods"], state["window"] = res.pods, res.window

    for i in range(200):
        p.serve(g, 5)
        total += 5
        read(fast)
        if i % 50 == 49:
            read(slow)
    assert fast["window"].rows == total == slow["window"].rows
    assert len(p.mon.readings) <= 4  # two per reader
