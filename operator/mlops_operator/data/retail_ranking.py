"""Built-in synthetic data for the retail recommender: (customer, item) candidate pairs.

The story
---------
Every week the shop sends each customer a newsletter listing ``CANDIDATES`` items picked from
the catalogue (more popular items are picked more often, and the season tilts the pick); a
row is one (customer, item) pair of one newsletter and ``purchased`` says whether the
customer bought that item that week. A recommender ranks a customer's candidates so that the
ones they will buy come first.

* Items have a category (:data:`CATEGORIES`), a price (lognormal around the category's
  level) and an ``item_rating`` (a noisy view of the item's hidden appeal).
* Customers have an age, segment, region, a typical order value (``avg_order_value``, their
  budget) and hidden tastes: an affinity to each category. What the shop has seen of those
  tastes is ``fav_category`` (the category they bought most before) and, per pair,
  ``category_affinity`` (their past share of purchases in the item's category, noisy).
* ``price_ratio`` is the item's price over the customer's typical order value: buying
  something far above one's budget is unlikely.

The purchase is a logistic model of hidden appeal, hidden affinity, the price ratio and the
*season*: each category's popularity moves by ``shift`` times its seasonal direction
(:data:`SEASON`: garden and sports rise, electronics and toys fall, ...). At shift 0 the
season is neutral; at shift 1 rising categories sell about e^1.4 times as well as before
and falling ones e^-1.4 as well, and the newsletter picks shift the same way (so the
``category`` mix drifts too). ``fav_category`` and ``category_affinity`` describe
*past* tastes and do not move: a model that learnt which categories sell before the shift
ranks them wrongly after it, and a model retrained on shifted data wins hit rate back.

The knobs
---------
``rows`` (rounded down to whole customers: customers x WEEKS x CANDIDATES rows, at least one
customer), ``seed``, ``shift`` in [0, 1] and ``start`` (the first day of the
``WEEKS``-week period). Rows are ordered by time. The catalogue (``ITEMS`` items) depends on
the seed only, never on ``rows`` or ``shift``, so datasets made with different shifts share
their items and a model trained on one can rank the other's candidates.

Determinism
-----------
The same arguments give the same table. Each kind of draw has its own random stream derived
from (seed, stream name), and the shift changes parameters only, never which streams are
drawn from: the same customers and catalogue at every shift (common random numbers).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["RANKING_SCHEMA", "ARROW_SCHEMA", "LABEL", "CATEGORIES", "SEASON", "ITEMS", "WEEKS", "CANDIDATES",
           "CUSTOMER_FEATURES", "ITEM_FEATURES", "generate", "batches", "customers_for", "main"]

LABEL = "purchased"
CATEGORIES = ["grocery", "electronics", "fashion", "home", "garden", "sports", "toys", "beauty"]
#: seasonal direction of each category's popularity, times ``shift``: rises (+) or falls (-)
SEASON = np.array([0.0, -1.0, 0.5, -0.5, 1.0, 1.0, -1.0, 0.0])
_SEASON_LOGIT = 1.4        # logit change of a category with direction 1 at shift 1
_EXPOSURE_TILT = 0.8       # how much the season tilts the newsletter's picks (logit)
ITEMS = 120
WEEKS = 8
CANDIDATES = 20
_PRICE_LEVEL = np.array([8.0, 250.0, 45.0, 60.0, 35.0, 55.0, 25.0, 20.0])  # median price per category
SEGMENTS = ["new", "returning", "loyal"]
REGIONS = ["north", "south", "east", "west", "central"]

#: columns describing the customer (the same on all of a customer's rows) and the candidate
#: item (including the pair features the shop computes per candidate); see TrainingRun
#: spec.ranking.itemFeatures
CUSTOMER_FEATURES = ["age", "customer_segment", "region", "fav_category", "avg_order_value"]
ITEM_FEATURES = ["category", "price", "item_rating", "category_affinity", "price_ratio"]


def _num(name: str, minimum: float, maximum: float) -> dict[str, Any]:
    return {"name": name, "type": "numeric", "role": "feature", "nullable": False,
            "minimum": float(minimum), "maximum": float(maximum)}


def _cat(name: str, domain: list[str]) -> dict[str, Any]:
    return {"name": name, "type": "categorical", "role": "feature", "nullable": False, "domain": list(domain)}


#: The declared schema in the shape of the Dataset API's ``schema.columns``. customer_id,
#: item_id and visit_id are keys, not model inputs (role ignore): a model that learnt item ids
#: could not rank an item it never saw, and the ids are what the ranking groups and returns.
RANKING_SCHEMA: list[dict[str, Any]] = [
    {"name": "row_id", "type": "numeric", "role": "id", "nullable": False},
    {"name": "event_time", "type": "timestamp", "role": "timestamp", "nullable": False},
    {"name": "customer_id", "type": "categorical", "role": "ignore", "nullable": False},
    {"name": "visit_id", "type": "numeric", "role": "ignore", "nullable": False},
    {"name": "item_id", "type": "categorical", "role": "ignore", "nullable": False},
    _num("age", 18, 90),
    _cat("customer_segment", SEGMENTS),
    _cat("region", REGIONS),
    _cat("fav_category", CATEGORIES),
    _num("avg_order_value", 1, 5000),
    _cat("category", CATEGORIES),
    _num("price", 0.5, 20000),
    _num("item_rating", 1, 5),
    _num("category_affinity", 0, 1),
    _num("price_ratio", 0, 1000),
    {"name": LABEL, "type": "numeric", "role": "label", "nullable": False, "minimum": 0.0, "maximum": 1.0},
]

_ARROW = {"numeric": pa.float64(), "categorical": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
_INT = {"row_id", "visit_id", "age", LABEL}
ARROW_SCHEMA = pa.schema([pa.field(c["name"], pa.int64() if c["name"] in _INT else _ARROW[c["type"]],
                                   nullable=False) for c in RANKING_SCHEMA])

_TAG = 0x5E7A12  # separates these streams from the propensity generator's with the same seed
# One stream per kind of draw. Append new names; never reorder (that changes the data).
_STREAMS = {n: i for i, n in enumerate([
    "item_category", "item_price", "item_appeal", "item_rating", "cust_segment", "cust_region", "cust_age",
    "cust_budget", "cust_affinity", "fav_noise", "pick", "affinity_noise", "time", "label"])}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_TAG, _STREAMS[stream]))))


def customers_for(rows: int) -> int:
    """Customers in a table of about ``rows`` rows (whole customers, at least one)."""
    return max(1, rows // (WEEKS * CANDIDATES))


def _start_us(start: str | _dt.date | _dt.datetime) -> int:
    if isinstance(start, str):
        start = _dt.datetime.fromisoformat(start)
    elif not isinstance(start, _dt.datetime):
        start = _dt.datetime(start.year, start.month, start.day)
    if start.tzinfo is None:
        start = start.replace(tzinfo=_dt.timezone.utc)
    return int(round(start.timestamp() * 1_000_000))


def _catalogue(seed: int) -> dict[str, np.ndarray]:
    """Items: a function of the seed only (shared across shifts and table sizes)."""
    category = _rng(seed, "item_category").integers(0, len(CATEGORIES), ITEMS)
    price = np.round(_PRICE_LEVEL[category] * _rng(seed, "item_price").lognormal(0.0, 0.45, ITEMS), 2)
    appeal = _rng(seed, "item_appeal").normal(0.0, 0.7, ITEMS)
    rating = np.clip(np.round(3.6 + 0.8 * appeal + _rng(seed, "item_rating").normal(0.0, 0.35, ITEMS), 1), 1.0, 5.0)
    return {"category": category, "price": np.clip(price, 0.5, 20000.0), "appeal": appeal, "rating": rating}


def generate(rows: int, seed: int = 0, shift: float = 0.0, start: str | _dt.date | _dt.datetime = "2026-01-01"
             ) -> pa.Table:
    """The table: customers_for(rows) customers x WEEKS newsletters x CANDIDATES items."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be in [0, 1], got {shift}")
    n_cust = customers_for(rows)
    cat = _catalogue(seed)
    season = shift * SEASON  # per category, in units of _SEASON_LOGIT

    # customers (the first n of an infinite population: a longer table starts with a shorter one's)
    segment = _rng(seed, "cust_segment").choice(3, size=n_cust, p=[0.3, 0.45, 0.25])
    region = _rng(seed, "cust_region").integers(0, len(REGIONS), n_cust)
    age = np.clip(np.rint(_rng(seed, "cust_age").normal(41.0, 13.0, n_cust)), 18, 90).astype(np.int64)
    budget = np.clip(_rng(seed, "cust_budget").lognormal(np.log(60.0), 0.6, n_cust), 1.0, 5000.0)
    affinity = _rng(seed, "cust_affinity").normal(0.0, 1.0, (n_cust, len(CATEGORIES)))
    seen = affinity + _rng(seed, "fav_noise").normal(0.0, 0.5, (n_cust, len(CATEGORIES)))
    fav = np.argmax(seen, axis=1)
    share = np.exp(seen) / np.exp(seen).sum(axis=1, keepdims=True)  # past purchase share per category

    # newsletters: for each (week, customer), CANDIDATES distinct items by the Gumbel top-k trick
    n_vis = WEEKS * n_cust
    weight = 0.6 * cat["appeal"] + _EXPOSURE_TILT * season[cat["category"]]
    keys = weight[None, :] + _rng(seed, "pick").gumbel(0.0, 1.0, (n_vis, ITEMS))
    picks = np.argpartition(-keys, CANDIDATES - 1, axis=1)[:, :CANDIDATES]
    picks = np.sort(picks, axis=1)  # candidate order carries no information
    visit = np.repeat(np.arange(n_vis), CANDIDATES)
    cust = visit % n_cust
    week = visit // n_cust
    item = picks.reshape(-1)
    icat = cat["category"][item]

    aff_seen = np.clip(share[cust, icat] + _rng(seed, "affinity_noise").normal(0.0, 0.03, len(item)), 0.0, 1.0)
    ratio = cat["price"][item] / budget[cust]
    logit = (-3.2 + cat["appeal"][item] + 0.9 * affinity[cust, icat] + _SEASON_LOGIT * season[icat]
             - 0.9 * np.log1p(ratio) + 0.3 * (segment[cust] == 2))
    purchased = (_rng(seed, "label").random(len(item)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    week_us = 7 * 86_400 * 1_000_000
    offset = (_rng(seed, "time").random(n_vis) * week_us).astype(np.int64)  # the newsletter's send time
    t = _start_us(start) + week * week_us + offset[visit]
    order = np.lexsort((item, visit, t))  # by time; a newsletter's rows together

    def cats(domain: list[str], codes: np.ndarray) -> pa.Array:
        return pa.array(domain, type=pa.string()).take(pa.array(codes))

    cols = {
        "row_id": pa.array(np.arange(len(item), dtype=np.int64)),
        "event_time": pa.array(t[order], type=pa.timestamp("us", tz="UTC")),
        "customer_id": pa.array([f"c{c:06d}" for c in cust[order]], type=pa.string()),
        "visit_id": pa.array(visit[order].astype(np.int64)),
        "item_id": pa.array([f"i{i:04d}" for i in item[order]], type=pa.string()),
        "age": pa.array(age[cust[order]]),
        "customer_segment": cats(SEGMENTS, segment[cust[order]]),
        "region": cats(REGIONS, region[cust[order]]),
        "fav_category": cats(CATEGORIES, fav[cust[order]]),
        "avg_order_value": pa.array(np.round(budget[cust[order]], 2)),
        "category": cats(CATEGORIES, icat[order]),
        "price": pa.array(cat["price"][item[order]]),
        "item_rating": pa.array(cat["rating"][item[order]]),
        "category_affinity": pa.array(np.round(aff_seen[order], 4)),
        "price_ratio": pa.array(np.round(np.minimum(ratio[order], 1000.0), 4)),
        LABEL: pa.array(purchased[order]),
    }
    return pa.Table.from_arrays([cols[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def batches(rows: int, seed: int = 0, shift: float = 0.0, batch_rows: int = 100_000,
            start: str | _dt.date | _dt.datetime = "2026-01-01") -> Iterator[pa.RecordBatch]:
    """The table of :func:`generate` in record batches (what a Dataset snapshot reads)."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    yield from generate(rows, seed, shift, start).to_batches(max_chunksize=batch_rows)


def main(argv: list[str] | None = None) -> int:
    """The shop's newsletter export in a demo: write the latest weeks to a landing file.

        python -m mlops_operator.data.retail_ranking --rows 48000 --seed 1 --shift 0 --out /landing/nl.parquet

    Replaced atomically (written next to it, then renamed), so a snapshot never reads half an export.
    """
    import argparse
    import os
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(prog="python -m mlops_operator.data.retail_ranking")
    ap.add_argument("--rows", type=int, required=True, help="about this many rows (whole customers)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shift", type=float, default=0.0, help="how far the season has moved, 0 .. 1")
    ap.add_argument("--start", default="2026-01-01", help="date of the first newsletter week")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(f".{a.out.name}.{os.getpid()}.tmp")
    table = generate(a.rows, a.seed, a.shift, a.start)
    pq.write_table(table, tmp)
    os.replace(tmp, a.out)
    print(f"wrote {table.num_rows} rows (seed {a.seed}, shift {a.shift}, from {a.start}) to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
