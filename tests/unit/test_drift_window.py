"""Cumulative counters of several serving pods -> window counts: restarts, resets, new and gone pods."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_operator import drift
from mlops_operator.drift import CurrentData, PodCounters, add_counts, merge_reservoirs, window_delta


def num(*counts, nulls=0):
    return CurrentData(bin_counts=np.array(counts, dtype=np.int64), nulls=nulls)


def cat(other=0, nulls=0, **counts):
    return CurrentData(categories=counts, other_count=other, nulls=nulls)


def pod(start, rows, **features):
    return PodCounters(start_id=start, rows=rows, features=features)


def test_steady_counters_of_two_pods_are_summed():
    prev = {"a": pod("s1", 10, x=num(1, 2, 3), c=cat(u=4)), "b": pod("s2", 5, x=num(0, 1, 1), c=cat(v=2))}
    cur = {"a": pod("s1", 16, x=num(2, 4, 4), c=cat(u=6, w=1)), "b": pod("s2", 9, x=num(1, 2, 1), c=cat(v=3))}
    d = window_delta(prev, cur)
    assert d.rows == 10
    np.testing.assert_array_equal(d.features["x"].bin_counts, [2, 3, 1])
    assert d.features["c"].categories == {"u": 2, "w": 1, "v": 1}
    assert d.new_pods == d.restarted_pods == d.reset == d.gone_pods == []


def test_restarted_pod_contributes_its_new_counters():
    prev = {"a": pod("s1", 100, x=num(50, 50))}
    cur = {"a": pod("s1-restarted", 7, x=num(3, 4))}  # fewer than before: a new process
    d = window_delta(prev, cur)
    assert d.restarted_pods == ["a"] and d.rows == 7
    np.testing.assert_array_equal(d.features["x"].bin_counts, [3, 4])
    # a restart whose new counts already exceed the old ones is still taken whole, not differenced
    d = window_delta(prev, {"a": pod("s2", 300, x=num(150, 150))})
    np.testing.assert_array_equal(d.features["x"].bin_counts, [150, 150])


def test_counter_reset_without_a_new_start_id_is_detected_per_feature():
    prev = {"a": pod("s1", 100, x=num(50, 50), y=num(10, 90), c=cat(u=30, v=70))}
    cur = {"a": pod("s1", 110, x=num(2, 1), y=num(12, 95), c=cat(u=1))}
    d = window_delta(prev, cur)
    assert sorted(d.reset) == ["a/c", "a/x"]
    np.testing.assert_array_equal(d.features["x"].bin_counts, [2, 1])  # taken whole
    np.testing.assert_array_equal(d.features["y"].bin_counts, [2, 5])  # a normal difference
    assert d.features["c"].categories == {"u": 1}
    assert all((v.bin_counts >= 0).all() for v in d.features.values() if v.bin_counts is not None)


def test_new_pod_counts_everything_and_gone_pod_nothing():
    prev = {"a": pod("s1", 10, x=num(5, 5)), "old": pod("s9", 40, x=num(20, 20))}
    cur = {"a": pod("s1", 12, x=num(6, 6)), "new": pod("s3", 8, x=num(3, 5))}
    d = window_delta(prev, cur)
    assert d.new_pods == ["new"] and d.gone_pods == ["old"]
    np.testing.assert_array_equal(d.features["x"].bin_counts, [4, 6])
    assert d.rows == 10
    first = window_delta(None, cur)  # the monitor's first scrape: all counted so far
    assert sorted(first.new_pods) == ["a", "new"] and first.rows == 20


def test_bins_of_another_shape_are_a_reset_and_cannot_be_added():
    d = window_delta({"a": pod("s1", 1, x=num(1, 1))}, {"a": pod("s1", 2, x=num(1, 1, 1))})
    assert d.reset == ["a/x"]
    np.testing.assert_array_equal(d.features["x"].bin_counts, [1, 1, 1])
    with pytest.raises(ValueError, match="different bins"):
        add_counts({"x": num(1, 1)}, {"x": num(1, 1, 1)})


def test_nulls_and_other_counts_follow_the_same_rules():
    prev = {"a": pod("s1", 10, x=num(1, 1, nulls=3), c=cat(other=2, nulls=1, u=1))}
    cur = {"a": pod("s1", 20, x=num(2, 3, nulls=5), c=cat(other=5, nulls=1, u=2))}
    d = window_delta(prev, cur)
    assert d.features["x"].nulls == 2 and d.features["c"].other_count == 3 and d.features["c"].nulls == 0
    d = window_delta(cur, {"a": pod("s1", 21, x=num(2, 3, nulls=0), c=cat(other=5, nulls=1, u=2))})
    assert d.reset == ["a/x"]  # the null counter went down


def test_window_is_the_sum_of_deltas_and_loses_nothing_it_could_see():
    """Simulate pods receiving values, restarting and being scraped: the window equals every
    value counted by a process before its last scrape (what a restart takes with it after the
    last scrape is the only loss) and never goes negative."""
    rng = np.random.default_rng(0)
    pods = {p: {"start": 0, "bins": np.zeros(4, np.int64)} for p in ("a", "b", "c")}
    scraped_total = np.zeros(4, np.int64)  # ground truth: counted and then seen by a scrape
    unscraped = {p: np.zeros(4, np.int64) for p in pods}
    window: dict[str, CurrentData] = {}
    prev = None
    for _ in range(200):
        for p, s in pods.items():
            add = np.bincount(rng.integers(0, 4, rng.integers(0, 20)), minlength=4)
            s["bins"] += add
            unscraped[p] += add
            if rng.random() < 0.05:  # a restart: its unscraped counts are gone for good
                s["start"] += 1
                s["bins"] = np.zeros(4, np.int64)
                unscraped[p] = np.zeros(4, np.int64)
        snapshot = {p: pod(f"{p}-{s['start']}", int(s["bins"].sum()), x=num(*s["bins"])) for p, s in pods.items()}
        d = window_delta(prev, snapshot)
        assert (d.features["x"].bin_counts >= 0).all()
        window = add_counts(window, d.features)
        for p in pods:
            scraped_total += unscraped[p]
            unscraped[p] = np.zeros(4, np.int64)
        prev = snapshot
    np.testing.assert_array_equal(window["x"].bin_counts, scraped_total)


def test_window_counts_feed_evaluate():
    ref = drift.ReferenceData.from_sample(np.random.default_rng(1).normal(0, 1, 5000), "numeric")
    g = np.random.default_rng(2)
    scrape1 = {p: pod("s", 0, x=drift.CurrentData.from_sample(g.normal(0, 1, 300), ref, keep_sample=False))
               for p in ("a", "b")}
    later = {p: pod("s", 0, x=CurrentData(bin_counts=scrape1[p].features["x"].bin_counts +
                                          drift.CurrentData.from_sample(g.normal(1, 1, 300), ref).bin_counts))
             for p in ("a", "b")}
    d = window_delta(scrape1, later)
    res = drift.evaluate({"x": ref}, d.features, min_samples=200)
    assert res.samples == 600 and res.drifted and res.features[0].basis == "binned"


def test_merge_reservoirs_weighs_pods_by_their_traffic():
    busy, quiet = np.zeros(1000), np.ones(1000)
    merged = [merge_reservoirs([(busy, 90_000), (quiet, 10_000)], 1000, seed=s) for s in range(20)]
    share = np.mean([m.mean() for m in merged])
    assert all(m.size == 1000 for m in merged) and 0.07 < share < 0.13
    assert merge_reservoirs([(np.arange(5), 5), (np.arange(3), 3)], 100).size == 8
    assert merge_reservoirs([], 10).size == 0


def test_current_data_from_the_servers_counters_and_reservoir():
    """The model server's documents (serving/monitor.py): feature counters and a reservoir window."""
    stats = {"age": {"type": "numeric", "binEdges": [30.0, 40.0], "counts": [5, 7, 9], "nulls": 2},
             "member": {"type": "boolean", "categories": ["false", "true"], "counts": [6, 4], "other": 0, "nulls": 1},
             "channel": {"type": "categorical", "categories": ["web", "app"], "counts": [8, 3], "other": 2,
                         "nulls": 0}}
    window = {"columns": ["age", "member", "channel"], "seen": 3,
              "rows": [[31.0, "true", "web"], [None, "false", None], [45.5, "true", "shop"]]}
    samples = drift.samples_from_window(window)
    np.testing.assert_array_equal(samples["age"], [31.0, np.nan, 45.5])
    assert list(samples["channel"]) == ["web", None, "shop"]
    cur = {k: CurrentData.from_stats(v, samples.get(k)) for k, v in stats.items()}
    assert cur["age"].count == 21 and cur["age"].nulls == 2
    assert cur["member"].categories == {"false": 6, "true": 4} and cur["member"].count == 10
    assert cur["channel"].other_count == 2 and cur["channel"].count == 13
    ref = drift.references_from_profile({
        "age": {"type": "numeric", "binEdges": [30.0, 40.0], "binCounts": [50, 70, 90]},
        "member": {"type": "boolean", "categories": {"false": 60, "true": 40}},
        "channel": {"type": "categorical", "categories": {"web": 80, "app": 30}}})
    res = drift.evaluate(ref, cur, min_samples=5)
    by = {f.name: f for f in res.features}
    assert by["channel"].drifted and by["channel"].score == 0.0  # "__other__": never seen in training
    assert not by["age"].drifted and by["age"].basis == "binned"  # no reference sample: bins
    assert drift.samples_from_window(None) == {} and drift.samples_from_window({"columns": [], "rows": []}) == {}
