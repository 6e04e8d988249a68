"""The built-in retail generator: deterministic, schema-conformant, learnable, and drifting on demand."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.stats import ks_2samp
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlops_operator.api.dataset import DataSchema
from mlops_operator.data import retail
from mlops_operator.data.retail import BLOCK_ROWS, LABEL, RETAIL_SCHEMA, batches, generate

ROWS = 5000
COLUMNS = {c["name"]: c for c in RETAIL_SCHEMA}
NUMERIC_FEATURES = [c["name"] for c in RETAIL_SCHEMA
                    if c["role"] == "feature" and c["type"] in ("numeric", "boolean")]


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate(ROWS, seed=3)


def _column(t: pa.Table, name: str) -> np.ndarray:
    """A column as float64, nulls as NaN."""
    return t[name].cast(pa.float64()).to_numpy(zero_copy_only=False)


def _features(t: pa.Table) -> np.ndarray:
    return np.column_stack([_column(t, n) for n in NUMERIC_FEATURES])


def _share(t: pa.Table, name: str) -> dict[str, float]:
    values = t[name].to_numpy(zero_copy_only=False)
    return {d: float(np.mean(values == d)) for d in COLUMNS[name]["domain"]}


# -- the declared schema -----------------------------------------------------------------------

def test_schema_declares_about_twenty_columns_with_one_id_timestamp_and_label():
    roles = [c["role"] for c in RETAIL_SCHEMA]
    assert 18 <= len(RETAIL_SCHEMA) <= 24
    assert len(COLUMNS) == len(RETAIL_SCHEMA), "duplicate column names"
    assert roles.count("id") == roles.count("timestamp") == roles.count("label") == 1
    assert COLUMNS["session_id"]["role"] == "id" and COLUMNS["event_time"]["role"] == "timestamp"
    assert COLUMNS[LABEL]["role"] == "label" and LABEL == "purchased"
    types = [c["type"] for c in RETAIL_SCHEMA if c["role"] == "feature"]
    assert types.count("numeric") >= 10 and types.count("categorical") >= 4 and types.count("boolean") >= 1
    assert any(c["nullable"] for c in RETAIL_SCHEMA) and not all(c["nullable"] for c in RETAIL_SCHEMA)


def test_schema_is_a_valid_dataset_schema_including_its_cel_rules():
    schema = DataSchema.model_validate({"columns": RETAIL_SCHEMA})  # extra="forbid": no stray keys
    assert [c.name for c in schema.columns] == list(COLUMNS)
    for c in schema.columns:  # the CRD's CEL rules, which pydantic does not evaluate
        assert c.minimum is None or c.maximum is None or c.minimum <= c.maximum, c.name
        assert c.domain is None or c.type in ("categorical", "boolean"), c.name
        assert (c.minimum is None and c.maximum is None) or c.type == "numeric", c.name
        assert (c.type == "categorical") == (c.domain is not None), c.name
        if c.role == "feature" and c.type == "numeric":
            assert c.minimum is not None and c.maximum is not None, c.name


# -- the generated table conforms to it --------------------------------------------------------

def test_table_has_the_declared_columns_and_arrow_types(table):
    assert table.num_rows == ROWS
    assert table.schema.names == list(COLUMNS)
    for field in table.schema:
        kind = COLUMNS[field.name]["type"]
        if kind == "numeric":
            assert pa.types.is_integer(field.type) or pa.types.is_floating(field.type), field
        elif kind == "categorical":
            assert pa.types.is_string(field.type), field
        elif kind == "boolean":
            assert pa.types.is_boolean(field.type), field
        else:
            assert pa.types.is_timestamp(field.type) and field.type.tz == "UTC", field
    assert table.schema == retail.ARROW_SCHEMA
    assert pa.types.is_integer(table[LABEL].type)


def test_nulls_only_in_nullable_columns_and_realistic_there(table):
    for name, col in COLUMNS.items():
        nulls = table[name].null_count
        if not col["nullable"]:
            assert nulls == 0, name
        else:
            assert 0 < nulls < ROWS / 2, name  # some missing values, not mostly missing
    assert 0.01 < table["age"].null_count / ROWS < 0.035
    # order history is missing exactly for customers who never purchased
    new = pc.equal(table["customer_segment"], "new")
    for name in ("days_since_last_purchase", "avg_order_value"):
        assert pc.all(pc.equal(pc.is_null(table[name]), new)).as_py(), name


def test_values_respect_declared_ranges(table):
    checked = 0
    for name, col in COLUMNS.items():
        if col["type"] != "numeric" or "minimum" not in col:
            continue
        values = table[name].drop_null()
        assert pc.min(values).as_py() >= col["minimum"], name
        assert pc.max(values).as_py() <= col["maximum"], name
        checked += 1
    assert checked >= 13
    assert set(table[LABEL].to_pylist()) == {0, 1}


def test_categorical_values_come_from_the_domain_and_cover_it(table):
    for name, col in COLUMNS.items():
        if col["type"] == "categorical":
            assert set(table[name].to_pylist()) == set(col["domain"]), name


def test_ids_are_unique_and_timestamps_strictly_increase_over_the_period(table):
    ids = table["session_id"].to_numpy()
    assert len(np.unique(ids)) == ROWS and (ids >= 0).all()
    assert not (np.diff(ids) == 1).all(), "ids should not be a row counter"
    # exact in the snapshot's canonical float64 (a lossy cast would raise)
    assert len(np.unique(pc.cast(table["session_id"], pa.float64()).to_numpy())) == ROWS
    times = table["event_time"].cast(pa.int64()).to_numpy()
    assert (np.diff(times) > 0).all()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    first, last = table["event_time"][0].as_py(), table["event_time"][-1].as_py()
    assert start <= first < start + dt.timedelta(hours=6)
    assert start + dt.timedelta(days=retail.PERIOD_DAYS - 1) < last < start + dt.timedelta(days=retail.PERIOD_DAYS)


def test_timestamps_stay_increasing_across_blocks_and_follow_start():
    t = generate(2 * BLOCK_ROWS + 7, seed=1, start="2026-03-01T00:00:00+02:00")
    times = t["event_time"].cast(pa.int64()).to_numpy()
    assert (np.diff(times) > 0).all()
    start = dt.datetime(2026, 2, 28, 22, tzinfo=dt.timezone.utc)
    assert start <= t["event_time"][0].as_py() < start + dt.timedelta(hours=6)
    assert t["event_time"][-1].as_py() < start + dt.timedelta(days=retail.PERIOD_DAYS)


def test_traffic_peaks_in_the_evening_not_at_night(table):
    hours = pc.hour(table["event_time"]).to_numpy()
    assert np.mean((hours >= 19) & (hours < 22)) > 3 * np.mean((hours >= 2) & (hours < 5))


# -- determinism -------------------------------------------------------------------------------

def test_same_arguments_give_identical_tables(table):
    assert generate(ROWS, seed=3).equals(table)
    again = generate(ROWS, seed=3, behaviour_shift=0.7)
    assert generate(ROWS, seed=3, behaviour_shift=0.7).equals(again)


def test_batches_stream_the_rows_of_generate():
    rows = BLOCK_ROWS + 1000
    streamed = list(batches(rows, seed=2, behaviour_shift=0.3, batch_rows=4000))
    assert [b.num_rows for b in streamed] == [4000] * 4 + [rows - 16000]
    assert all(isinstance(b, pa.RecordBatch) for b in streamed)
    assert pa.Table.from_batches(streamed).equals(generate(rows, seed=2, behaviour_shift=0.3))


@pytest.mark.parametrize("batch_rows", [1, 999, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 100_000])
def test_output_does_not_depend_on_batch_rows(batch_rows):
    rows = 2 * BLOCK_ROWS + 123
    if batch_rows == 1:  # one row per batch is slow over 33k rows; still cross a block boundary
        rows = BLOCK_ROWS + 50
    reference = generate(rows, seed=9, behaviour_shift=0.5)
    streamed = list(batches(rows, seed=9, behaviour_shift=0.5, batch_rows=batch_rows))
    assert all(b.num_rows == batch_rows for b in streamed[:-1]) and 0 < streamed[-1].num_rows <= batch_rows
    assert pa.Table.from_batches(streamed).equals(reference)


def test_first_rows_do_not_depend_on_the_row_count_beyond_time():
    """Blocks are the unit of randomness: a longer table only spreads time differently."""
    short, long = generate(1000, seed=4), generate(3 * BLOCK_ROWS, seed=4)
    for name in COLUMNS:
        if name != "event_time":
            assert short[name].equals(long[name].slice(0, 1000)), name


def test_every_block_draws_fresh_customers():
    t = generate(2 * BLOCK_ROWS, seed=0)
    first, second = t.slice(0, 1000), t.slice(BLOCK_ROWS, 1000)
    for name in COLUMNS:
        assert not first[name].equals(second[name]), name


def test_batches_are_lazy_so_memory_stays_bounded():
    started = time.perf_counter()
    stream = batches(50_000_000, seed=0, batch_rows=1000)
    first = next(stream)
    assert first.num_rows == 1000
    assert time.perf_counter() - started < 2.0  # one block, not 50 million rows
    stream.close()


def test_different_seeds_differ_in_every_random_column(table):
    other = generate(ROWS, seed=4)
    for name in COLUMNS:
        assert not other[name].equals(table[name]), name
    assert not generate(ROWS, seed=4, behaviour_shift=1.0).equals(generate(ROWS, seed=5, behaviour_shift=1.0))


# -- shift 0 is the unshifted code path --------------------------------------------------------

def test_shift_zero_is_the_default_whatever_its_spelling(table):
    assert generate(ROWS, seed=3, behaviour_shift=0).equals(table)
    assert generate(ROWS, seed=3, behaviour_shift=0.0).equals(table)


def test_shift_zero_never_reads_the_shifted_parameters(table, monkeypatch):
    pairs = {k: v for k, v in vars(retail).items()
             if k.startswith("_") and isinstance(v, tuple) and len(v) == 2 and k.isupper()}
    assert len(pairs) >= 10, pairs.keys()
    for name, (unshifted, _) in pairs.items():
        monkeypatch.setattr(retail, name, (unshifted, None))  # any use of it at shift 0 would raise
    assert generate(ROWS, seed=3).equals(table)
    with pytest.raises(TypeError):
        generate(10, seed=3, behaviour_shift=0.5)  # the shifted path does read them


def test_a_small_shift_moves_the_same_customers_a_little(table):
    nudged = generate(ROWS, seed=3, behaviour_shift=0.01)
    stable = ["session_id", "event_time", "age", "tenure_days", "region", "customer_segment", "is_member",
              "days_since_last_purchase", "avg_order_value", "email_opens_30d", "returns_90d"]
    for name in stable:
        assert nudged[name].equals(table[name]), name
    for name in ("device", "channel", "discount_pct", LABEL):
        same = np.mean(nudged[name].to_numpy(zero_copy_only=False) == table[name].to_numpy(zero_copy_only=False))
        assert 0.97 < same, name
    assert not nudged.equals(table)


# -- label -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0])
def test_positive_rate_is_plausible(shift):
    rate = float(np.mean(generate(ROWS, seed=11, behaviour_shift=shift)[LABEL].to_numpy()))
    assert 0.10 <= rate <= 0.30


@pytest.fixture(scope="module")
def models():
    """A model trained on original customers, and one retrained on shifted customers."""
    def fit(t: pa.Table):
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=1000))
        return model.fit(_features(t), t[LABEL].to_numpy())

    return fit(generate(100_000, seed=21)), fit(generate(100_000, seed=22, behaviour_shift=1.0))


def _auc(model, t: pa.Table) -> float:
    return float(roc_auc_score(t[LABEL].to_numpy(), model.predict_proba(_features(t))[:, 1]))


def test_label_is_learnable_from_numeric_features(models):
    auc = _auc(models[0], generate(50_000, seed=23))
    assert 0.75 < auc < 0.95  # clearly learnable, not trivially


def test_model_from_original_customers_loses_auc_after_the_shift_and_retraining_wins_it_back(models):
    original, retrained = models
    holdout, shifted = generate(50_000, seed=23), generate(50_000, seed=24, behaviour_shift=1.0)
    before, after = _auc(original, holdout), _auc(original, shifted)
    assert after < before - 0.05
    assert _auc(retrained, shifted) > after + 0.05


# -- covariate drift ---------------------------------------------------------------------------

def test_shift_moves_behaviour_but_not_who_the_customers_are():
    base, shifted = generate(ROWS, seed=31), generate(ROWS, seed=32, behaviour_shift=1.0)
    mean = {n: (np.nanmean(_column(base, n)), np.nanmean(_column(shifted, n))) for n in NUMERIC_FEATURES}
    assert mean["sessions_30d"][1] < 0.75 * mean["sessions_30d"][0]
    assert mean["discount_pct"][1] > 2 * mean["discount_pct"][0]
    assert mean["has_coupon"][1] > mean["has_coupon"][0] + 0.15
    assert _share(shifted, "device")["mobile"] > _share(base, "device")["mobile"] + 0.15
    assert _share(shifted, "channel")["social"] > _share(base, "channel")["social"] + 0.15
    for name in ("region", "customer_segment"):
        a, b = _share(base, name), _share(shifted, name)
        assert max(abs(a[d] - b[d]) for d in a) < 0.03, name
    for name in ("age", "tenure_days", "avg_order_value", "email_opens_30d"):
        assert abs(mean[name][1] - mean[name][0]) < 0.06 * mean[name][0], name


def test_a_drift_detector_sees_several_but_not_all_features_move():
    base, shifted = generate(ROWS, seed=33), generate(ROWS, seed=34, behaviour_shift=1.0)
    moved = {n for n in NUMERIC_FEATURES
             if ks_2samp(base[n].drop_null().cast(pa.float64()).to_numpy(),
                         shifted[n].drop_null().cast(pa.float64()).to_numpy()).pvalue < 1e-3}
    assert {"sessions_30d", "discount_pct", "has_coupon"} <= moved
    assert 4 <= len(moved) <= len(NUMERIC_FEATURES) - 5, moved
    assert not moved & {"age", "tenure_days", "is_member", "returns_90d"}


def test_shift_is_a_continuous_knob():
    discount = [np.mean(_column(generate(ROWS, seed=35, behaviour_shift=s), "discount_pct"))
                for s in (0.0, 0.5, 1.0)]
    assert discount[0] < discount[1] < discount[2]


# -- arguments ---------------------------------------------------------------------------------

def test_zero_rows_give_an_empty_table_with_the_schema():
    empty = generate(0)
    assert empty.num_rows == 0 and empty.schema == retail.ARROW_SCHEMA
    assert list(batches(0)) == []


@pytest.mark.parametrize("kwargs", [{"rows": -1}, {"rows": 10, "seed": -1}, {"rows": 10, "behaviour_shift": 1.5},
                                    {"rows": 10, "behaviour_shift": -0.1},
                                    {"rows": 10, "behaviour_shift": float("nan")}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_bad_batch_rows_is_rejected():
    with pytest.raises(ValueError):
        next(batches(10, batch_rows=0))
