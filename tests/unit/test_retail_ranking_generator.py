"""The recommender's synthetic data: shape, determinism, a catalogue shared across shifts,
and a season that moves category sales the documented way."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_operator.data import retail_ranking as rr


def test_shape_schema_and_keys():
    t = rr.generate(3200, seed=3)
    assert t.schema == rr.ARROW_SCHEMA
    assert t.num_rows == rr.customers_for(3200) * rr.WEEKS * rr.CANDIDATES == 3200
    d = t.to_pandas()
    assert d["row_id"].is_unique
    assert d["event_time"].is_monotonic_increasing
    # one newsletter = one customer, one week, CANDIDATES distinct items
    per_visit = d.groupby("visit_id").agg(c=("customer_id", "nunique"), i=("item_id", "nunique"), n=("item_id", "size"))
    assert (per_visit.c == 1).all() and (per_visit.i == rr.CANDIDATES).all() and (per_visit.n == rr.CANDIDATES).all()
    # customer features are constant per customer: the top-k graph broadcasts them
    assert (d.groupby("customer_id")[rr.CUSTOMER_FEATURES].nunique() == 1).all().all()
    assert set(d["category"]) <= set(rr.CATEGORIES) and set(d[rr.LABEL]) == {0, 1}
    names = [c["name"] for c in rr.RANKING_SCHEMA]
    assert set(rr.CUSTOMER_FEATURES + rr.ITEM_FEATURES) < set(names)


def test_same_arguments_same_table_and_other_seed_differs():
    assert rr.generate(1600, seed=5, shift=0.3).equals(rr.generate(1600, seed=5, shift=0.3))
    assert not rr.generate(1600, seed=5).equals(rr.generate(1600, seed=6))
    assert rr.generate(3200, 1).slice(0, 0).schema == rr.generate(1600, 1).schema


def test_catalogue_is_shared_across_shifts():
    a = rr.generate(4800, seed=2, shift=0.0).to_pandas()
    b = rr.generate(4800, seed=2, shift=1.0).to_pandas()
    ia = a.drop_duplicates("item_id").set_index("item_id")[["category", "price", "item_rating"]]
    ib = b.drop_duplicates("item_id").set_index("item_id")[["category", "price", "item_rating"]]
    common = ia.index.intersection(ib.index)
    assert len(common) > 100
    assert ia.loc[common].equals(ib.loc[common])


def test_season_moves_category_sales_by_its_direction():
    """At shift 1 a rising category (garden, sports) is offered and bought more, a falling one
    (electronics, toys) less, relative to shift 0 on the same customers."""
    a = rr.generate(32000, seed=4, shift=0.0).to_pandas()
    b = rr.generate(32000, seed=4, shift=1.0).to_pandas()
    for cat, direction in zip(rr.CATEGORIES, rr.SEASON):
        if direction == 0:
            continue
        rate_a = a.loc[a.category == cat, rr.LABEL].mean()
        rate_b = b.loc[b.category == cat, rr.LABEL].mean()
        share_a, share_b = (a.category == cat).mean(), (b.category == cat).mean()
        assert np.sign(rate_b - rate_a) == np.sign(direction), cat
        assert np.sign(share_b - share_a) == np.sign(direction), cat


@pytest.mark.parametrize("kw", [{"rows": 0}, {"rows": 100, "seed": -1}, {"rows": 100, "shift": 1.5}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        rr.generate(**kw)


def test_batches_cover_the_table():
    t = rr.generate(4800, seed=1)
    parts = list(rr.batches(4800, seed=1, batch_rows=1000))
    assert [p.num_rows for p in parts] == [1000] * 4 + [800]
    assert sum(p.num_rows for p in parts) == t.num_rows


def test_export_command_writes_the_table(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "landing" / "nl.parquet"
    assert rr.main(["--rows", "1600", "--seed", "2", "--shift", "0.5", "--start", "2026-03-02", "--out", str(out)]) == 0
    assert pq.read_table(out).equals(rr.generate(1600, 2, 0.5, "2026-03-02"))
    assert [p.name for p in out.parent.iterdir()] == ["nl.parquet"]
