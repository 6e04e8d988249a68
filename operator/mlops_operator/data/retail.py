"""Built-in synthetic data for the running example: a retail purchase-propensity model.

The story
---------
A retail web shop scores every session with the probability that it ends in a purchase
(``purchased``), to decide whom to show an offer. Each row is one session: who the customer
is (age, tenure, segment, membership, region, order history), how they arrived (device,
channel), and what they did (sessions in the last 30 days, pages viewed, time on site, cart
contents, discount and coupon shown). The label follows a logistic model of these features
plus an unobserved purchase *intent* that the behavioural features only partly reveal, so a
classifier can learn it well but never perfectly: a logistic regression on the numeric and
boolean features reaches a ROC AUC of about 0.81 on unshifted data; about 25% of sessions
end in a purchase.

Then the customers change. ``behaviour_shift`` (0 = the original customers, 1 = strongly
shifted) moves them continuously:

* covariate drift: traffic moves to mobile and social media, customers come back less often
  (fewer ``sessions_30d``), and the shop answers with more coupons and bigger discounts, so
  ``device``, ``channel``, ``sessions_30d``, ``discount_pct``, ``has_coupon`` and, through the
  device mix, ``pages_viewed``/``time_on_site_s``/``items_in_cart``/``cart_value`` move;
  who the customers are (age, tenure, segment, region, membership, order history, e-mail
  engagement, returns) does not, so a drift detector sees several features move, not all;
* concept drift: discount fatigue and carts used as wish lists. A big discount or a full
  cart used to signal a purchase; after the shift a discount barely helps and a full cart
  says little, mobile checkout loses more buyers, while recency and membership matter more.
  A model trained on unshifted data therefore loses ROC AUC on shifted data (about 0.81 to
  0.72 at shift 1), and a model retrained on the shifted data wins it back (about 0.84): the
  loop the operator automates. The purchase rate falls to about 12%.

The knobs
---------
``rows``, ``seed`` and ``behaviour_shift`` (the fields of the Dataset's ``generator``
source) and ``start``, the first day of the 28-day period the sessions span. ``event_time``
increases strictly over the rows, with more traffic at lunchtime and in the evening.

Determinism
-----------
The same (rows, seed, behaviour_shift, start) give the same table, whatever ``batch_rows``:
rows are generated in fixed blocks of :data:`BLOCK_ROWS`, and every column of every block
draws from its own random stream derived from (seed, block index, column), so batching only
changes how blocks are grouped, and a column whose parameters depend on the shift never
perturbs the draws of another. The shift only changes parameters (probabilities, rates,
weights), never which streams are drawn from, and at shift 0 every parameter is exactly its
unshifted value (the shifted one is never used), so shift 0 is the unshifted code path;
a small shift moves the same customers a little (common random numbers) instead of drawing
different ones. Each stream draws one value per row in row order, so a longer table starts
with the rows of a shorter one (only ``event_time`` differs: it spans the same period).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["RETAIL_SCHEMA", "ARROW_SCHEMA", "LABEL", "BLOCK_ROWS", "PERIOD_DAYS", "generate", "batches"]

LABEL = "purchased"

#: Rows per generation block. Part of the data's definition: changing it changes the output.
BLOCK_ROWS = 16_384

#: Length of the period the event times span, from ``start``.
PERIOD_DAYS = 28

DEVICES = ["mobile", "desktop", "tablet"]
CHANNELS = ["organic", "paid_search", "social", "email", "direct"]
REGIONS = ["north", "south", "east", "west", "central"]
SEGMENTS = ["new", "returning", "loyal"]


def _num(name: str, minimum: float, maximum: float, nullable: bool = False) -> dict[str, Any]:
    return {"name": name, "type": "numeric", "role": "feature", "nullable": nullable,
            "minimum": float(minimum), "maximum": float(maximum)}


def _cat(name: str, domain: list[str]) -> dict[str, Any]:
    return {"name": name, "type": "categorical", "role": "feature", "nullable": False, "domain": list(domain)}


#: The declared schema, in the shape of the Dataset API's ``schema.columns`` (snake_case keys).
#: The label is int64 0/1, declared numeric with bounds [0, 1]: that is what scikit-learn,
#: ROC AUC (positive class 1) and the ONNX converters take without any mapping; the schema has
#: no integer-class type, and role ``label`` (with label_min_classes) marks it as a class target.
RETAIL_SCHEMA: list[dict[str, Any]] = [
    {"name": "session_id", "type": "numeric", "role": "id", "nullable": False},
    {"name": "event_time", "type": "timestamp", "role": "timestamp", "nullable": False},
    _num("age", 18, 90, nullable=True),                          # not given by ~2% of customers
    _num("tenure_days", 0, 3650),
    _num("sessions_30d", 1, 200),
    _num("pages_viewed", 1, 300),
    _num("time_on_site_s", 1, 14_400),
    _num("items_in_cart", 0, 50),
    _num("cart_value", 0, 25_000),
    _num("discount_pct", 0, 70),
    _num("days_since_last_purchase", 0, 3650, nullable=True),    # null: never purchased (new)
    _num("avg_order_value", 1, 5_000, nullable=True),            # null: never purchased (new)
    _num("email_opens_30d", 0, 60),
    _num("returns_90d", 0, 20),
    _cat("device", DEVICES),
    _cat("channel", CHANNELS),
    _cat("region", REGIONS),
    _cat("customer_segment", SEGMENTS),
    {"name": "is_member", "type": "boolean", "role": "feature", "nullable": False},
    {"name": "has_coupon", "type": "boolean", "role": "feature", "nullable": False},
    {"name": LABEL, "type": "numeric", "role": "label", "nullable": False, "minimum": 0.0, "maximum": 1.0},
]

_INT = {"session_id", "age", "tenure_days", "sessions_30d", "pages_viewed", "items_in_cart",
        "days_since_last_purchase", "email_opens_30d", "returns_90d", LABEL}
_ARROW_TYPES = {"numeric": pa.float64(), "categorical": pa.string(), "boolean": pa.bool_(),
                "timestamp": pa.timestamp("us", tz="UTC")}

#: The Arrow schema of the generated tables (counts and ids int64, amounts float64).
ARROW_SCHEMA = pa.schema([
    pa.field(c["name"], pa.int64() if c["name"] in _INT else _ARROW_TYPES[c["type"]], nullable=c["nullable"])
    for c in RETAIL_SCHEMA
])

# One random stream per column and block. Append new names; never reorder (that changes data).
_STREAMS = {name: i for i, name in enumerate([
    "event_time", "segment", "region", "age", "age_missing", "tenure", "is_member", "device", "channel",
    "intent", "sessions", "pages", "time_on_site", "items", "cart_value", "coupon", "discount",
    "recency", "order_value", "email", "returns", "label", "promo", "wishlist", "promo_pct",
])}
_GENERATOR_TAG = 0x5E7A11  # separates these streams from any other generator's with the same seed

# Shift-dependent parameters: each is (value at shift 0, value at shift 1), interpolated
# linearly. At shift 0 the interpolation returns the first value exactly.
_DEVICE_P = (np.array([0.50, 0.38, 0.12]), np.array([0.74, 0.19, 0.07]))
_CHANNEL_P = (np.array([0.30, 0.25, 0.13, 0.14, 0.18]), np.array([0.20, 0.20, 0.38, 0.10, 0.12]))
_SESSION_RATE = (1.0, 0.55)        # multiplies each segment's rate of visits
_COUPON_P = (0.15, 0.45)           # chance a session has a coupon
_PROMO_P = (0.10, 0.40)            # chance of a site-wide promotion discount on top
_WISHLIST = (0.0, 2.0)             # items parked in mobile carts without intent to buy
_W_BASE = (-3.10, -2.60)           # intercept: campaigns win back part of the lost conversions
_W_DISCOUNT = (0.07, -0.02)        # logit weight per discount point: discount fatigue, deal hunters
_W_ITEMS = (0.85, 0.15)            # logit weight per log(1 + items in cart): carts as wish lists
_W_MOBILE = (-0.15, -0.75)         # mobile checkout friction
_W_MEMBER = (0.60, 1.30)           # members keep buying
_W_RECENCY = (-0.012, -0.03)       # per day since the last purchase
_W_SOCIAL = (-0.35, -0.10)         # social traffic converts a little better once it is the norm


def _lerp(pair: tuple[Any, Any], s: float) -> Any:
    """The parameter at shift ``s``; at 0 exactly the unshifted value, without arithmetic on it."""
    a, b = pair
    return a + s * (b - a) if s else a


def _rng(seed: int, block: int, stream: str) -> np.random.Generator:
    """Independent stream per (seed, block, column): batching and other columns cannot disturb it."""
    ss = np.random.SeedSequence(seed, spawn_key=(_GENERATOR_TAG, block, _STREAMS[stream]))
    return np.random.Generator(np.random.PCG64(ss))


def _choice(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Category indices from uniforms by inverse CDF (one uniform per row, whatever ``p``)."""
    cdf = np.cumsum(p / p.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(p) - 1).astype(np.int8)


def _counts(rng: np.random.Generator, mean: np.ndarray, sigma: float) -> np.ndarray:
    """Overdispersed counts around ``mean``: a rounded-down lognormal, one normal draw per row.

    Unlike ``Generator.poisson``, whose rejection sampling consumes a varying number of draws
    that depends on the mean, this uses exactly one draw per row whatever the mean, so a
    shifted mean moves each customer's count instead of reshuffling every later row's.
    """
    z = rng.normal(0.0, 1.0, len(mean))
    return np.floor(mean * np.exp(sigma * z - sigma * sigma / 2.0) + 0.5).astype(np.int64)


def _day_profile() -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of a day's sessions by time of day: quiet nights, lunch and evening peaks."""
    h = np.linspace(0.0, 24.0, 24 * 60 + 1)
    rate = (0.15 + 0.55 * np.exp(-((h - 12.5) / 2.0) ** 2) + 1.0 * np.exp(-((h - 20.5) / 2.2) ** 2)
            + 0.35 * np.exp(-((h - 9.0) / 2.5) ** 2))
    cum = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2)])
    return cum / cum[-1], h / 24.0


_PROFILE_CDF, _PROFILE_DAY = _day_profile()


def _start_us(start: str | _dt.datetime | _dt.date) -> int:
    """Microseconds since the epoch of ``start`` (an ISO date/time; naive means UTC)."""
    if isinstance(start, str):
        start = _dt.datetime.fromisoformat(start)
    elif not isinstance(start, _dt.datetime):
        start = _dt.datetime(start.year, start.month, start.day)
    if start.tzinfo is None:
        start = start.replace(tzinfo=_dt.timezone.utc)
    delta = start - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _session_ids(seed: int, index: np.ndarray) -> np.ndarray:
    """Unique, non-sequential positive int64 ids: a bijection of the row index on [0, 2**53).

    Multiplying by an odd constant, xor-ing a key and an xorshift are each invertible modulo
    2**53, so ids never collide within a table, yet they reveal neither the row order nor the
    row count (a model or a join cannot lean on them by accident). 53 bits, because the
    snapshot's canonical numeric type is float64, which holds such integers exactly.
    """
    bits = 53
    mask = np.uint64((1 << bits) - 1)
    key = np.random.SeedSequence(seed, spawn_key=(_GENERATOR_TAG,)).generate_state(1, np.uint64)[0] & mask
    with np.errstate(over="ignore"):
        x = (index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & mask
        x ^= key
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & mask
        x ^= x >> np.uint64(27)
    return x.astype(np.int64)


def _block(seed: int, block: int, rows: int, shift: float, t0_us: int) -> pa.RecordBatch:
    """Generate block number ``block`` of a ``rows``-row table: a pure function of its arguments."""
    first = block * BLOCK_ROWS
    n = min(BLOCK_ROWS, rows - first)
    index = np.arange(first, first + n, dtype=np.int64)

    def rng(stream: str) -> np.random.Generator:
        return _rng(seed, block, stream)

    # event time: a jittered grid over the period (strictly increasing: the jitter stays inside
    # each row's slot with a gap between slots), warped within each day by the traffic profile
    x = (index + 0.1 + 0.8 * rng("event_time").random(n)) * (PERIOD_DAYS / rows)
    day = np.floor(x)
    offset_us = (day + np.interp(x - day, _PROFILE_CDF, _PROFILE_DAY)) * 86_400e6
    event_time = t0_us + np.floor(offset_us).astype(np.int64)

    # who the customer is: unaffected by the shift
    segment = _choice(rng("segment").random(n), np.array([0.30, 0.45, 0.25]))
    new, loyal = segment == 0, segment == 2
    region = _choice(rng("region").random(n), np.array([0.22, 0.20, 0.20, 0.23, 0.15]))
    age = np.clip(np.rint(rng("age").normal(41.0, 13.0, n) + 3.0 * loyal), 18, 90).astype(np.int64)
    age_missing = rng("age_missing").random(n) < 0.02
    tenure = np.exp(np.array([np.log(8.0), np.log(180.0), np.log(900.0)])[segment]
                    + np.array([0.9, 0.7, 0.45])[segment] * rng("tenure").normal(0.0, 1.0, n))
    tenure = np.rint(np.where(new, np.minimum(tenure, 30.0), np.clip(tenure, 31.0, 3650.0))).astype(np.int64)
    is_member = rng("is_member").random(n) < np.array([0.04, 0.30, 0.70])[segment]
    recency = rng("recency").exponential(1.0, n) * np.where(loyal, 18.0, 60.0)
    recency = np.minimum(np.rint(recency), tenure).astype(np.int64)  # null for new customers below
    avg_order = np.clip(rng("order_value").lognormal(np.log(55.0), 0.55, n) * np.where(loyal, 1.25, 1.0), 1, 5000)
    email_opens = np.minimum(rng("email").poisson(np.array([0.8, 2.5, 5.0])[segment] * (1 + 1.5 * is_member)), 60)
    returns = np.minimum(rng("returns").poisson(np.where(new, 0.0, np.where(loyal, 0.6, 0.25))), 20)

    # how they arrive and behave: the shift moves these
    device = _choice(rng("device").random(n), _lerp(_DEVICE_P, shift))
    mobile, desktop = device == 0, device == 1
    channel = _choice(rng("channel").random(n), _lerp(_CHANNEL_P, shift))
    intent = rng("intent").normal(0.0, 1.0, n)  # unobserved purchase intent, partly shown by behaviour
    visits = np.array([1.5, 5.5, 9.5])[segment] * _lerp(_SESSION_RATE, shift)
    sessions = np.minimum(1 + _counts(rng("sessions"), visits, 0.6), 200)
    pages = np.minimum(1 + _counts(rng("pages"), np.exp(1.35 + 0.45 * intent + 0.3 * desktop - 0.15 * mobile), 0.5),
                       300)
    dwell = rng("time_on_site").lognormal(np.log(np.where(mobile, 28.0, 45.0)) + 0.15 * intent, 0.5, n)
    time_on_site = np.clip(np.round(pages * dwell, 1), 1.0, 14_400.0)
    items = _counts(rng("items"), np.exp(-0.1 + 0.7 * intent + 0.2 * desktop + 0.2 * loyal), 0.6)
    # after the shift, mobile customers also park items in the cart with no intent to buy
    wishlist = np.floor(rng("wishlist").exponential(1.0, n) * (_lerp(_WISHLIST, shift) * mobile)).astype(np.int64)
    items = np.minimum(items + wishlist, 50)
    price = rng("cart_value").lognormal(np.log(38.0), 0.5, n)  # average price of the items in the cart
    cart_value = np.clip(np.round(items * price, 2), 0.0, 25_000.0)
    u_coupon = rng("coupon").random(n)
    has_coupon = u_coupon < _lerp(_COUPON_P, shift)
    tiers = np.array([5.0, 10.0, 15.0, 20.0, 25.0, 30.0])
    coupon_pct = tiers[rng("discount").integers(0, len(tiers), n)]
    promo = rng("promo").random(n) < _lerp(_PROMO_P, shift)
    promo_pct = np.rint(rng("promo_pct").uniform(5.0, 20.0, n))
    discount = np.clip(np.where(has_coupon, coupon_pct, 0.0) + np.where(promo, promo_pct, 0.0), 0.0, 70.0)

    # the label: a logistic model of the features and the hidden intent; the shift changes weights
    logit = (_lerp(_W_BASE, shift) + 0.5 * intent
             + _lerp(_W_ITEMS, shift) * np.log1p(items)
             + _lerp(_W_DISCOUNT, shift) * discount
             + 0.03 * np.minimum(sessions, 30)
             + 0.2 * np.log1p(pages)
             + _lerp(_W_MEMBER, shift) * is_member
             + np.where(new, -0.4, _lerp(_W_RECENCY, shift) * recency + 0.3 * loyal)
             + 0.10 * np.minimum(email_opens, 15)
             - 0.35 * returns
             + _lerp(_W_MOBILE, shift) * mobile
             + np.array([0.0, 0.30, _lerp(_W_SOCIAL, shift), 0.45, 0.20])[channel])
    purchased = (rng("label").random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    def cat(domain: list[str], codes: np.ndarray) -> pa.Array:
        return pa.array(domain, type=pa.string()).take(pa.array(codes))

    columns = {
        "session_id": pa.array(_session_ids(seed, index)),
        "event_time": pa.array(event_time, type=pa.timestamp("us", tz="UTC")),
        "age": pa.array(age, mask=age_missing),
        "tenure_days": pa.array(tenure),
        "sessions_30d": pa.array(sessions.astype(np.int64)),
        "pages_viewed": pa.array(pages.astype(np.int64)),
        "time_on_site_s": pa.array(time_on_site),
        "items_in_cart": pa.array(items.astype(np.int64)),
        "cart_value": pa.array(cart_value),
        "discount_pct": pa.array(discount),
        "days_since_last_purchase": pa.array(recency, mask=new),
        "avg_order_value": pa.array(np.round(avg_order, 2), mask=new),
        "email_opens_30d": pa.array(email_opens.astype(np.int64)),
        "returns_90d": pa.array(returns.astype(np.int64)),
        "device": cat(DEVICES, device),
        "channel": cat(CHANNELS, channel),
        "region": cat(REGIONS, region),
        "customer_segment": cat(SEGMENTS, segment),
        "is_member": pa.array(is_member),
        "has_coupon": pa.array(has_coupon),
        LABEL: pa.array(purchased),
    }
    return pa.RecordBatch.from_arrays([columns[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def _check(rows: int, seed: int, behaviour_shift: float, batch_rows: int) -> None:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= behaviour_shift <= 1.0:
        raise ValueError(f"behaviour_shift must be in [0, 1], got {behaviour_shift}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")


def batches(rows: int, seed: int = 0, behaviour_shift: float = 0.0, batch_rows: int = 100_000,
            start: str | _dt.datetime | _dt.date = "2026-01-01") -> Iterator[pa.RecordBatch]:
    """Stream the table in batches of ``batch_rows`` rows (the last may be shorter).

    Memory stays bounded by about one batch plus one block, so a snapshot Job can write
    millions of rows to Parquet without holding them; the rows are those of :func:`generate`.
    """
    _check(rows, seed, float(behaviour_shift), batch_rows)
    shift, t0 = float(behaviour_shift), _start_us(start)
    pending: list[pa.RecordBatch] = []  # generated rows not yet yielded: under one batch plus one block
    held = 0
    for block in range(-(-rows // BLOCK_ROWS)):
        pending.append(_block(seed, block, rows, shift, t0))
        held += pending[-1].num_rows
        if held < batch_rows:
            continue
        table, pos = pa.Table.from_batches(pending, schema=ARROW_SCHEMA), 0
        while held - pos >= batch_rows:
            yield _one_batch(table.slice(pos, batch_rows))
            pos += batch_rows
        pending, held = table.slice(pos).to_batches(), held - pos
    if held:
        yield _one_batch(pa.Table.from_batches(pending, schema=ARROW_SCHEMA))


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    """The rows of a non-empty table as one batch; copies only when they span two blocks."""
    parts = table.to_batches()
    return parts[0] if len(parts) == 1 else table.combine_chunks().to_batches()[0]


def generate(rows: int, seed: int = 0, behaviour_shift: float = 0.0,
             start: str | _dt.datetime | _dt.date = "2026-01-01") -> pa.Table:
    """The whole table: ``rows`` sessions from ``seed``, with customers shifted by ``behaviour_shift``."""
    # block-sized batches are the blocks themselves: no copies, one chunk per block
    return pa.Table.from_batches(
        list(batches(rows, seed, behaviour_shift, batch_rows=BLOCK_ROWS, start=start)), schema=ARROW_SCHEMA)


def main(argv: list[str] | None = None) -> int:
    """The retail company's export job in the demo: write the latest sessions to a landing file.

        python -m mlops_operator.data.retail --rows 20000 --seed 1 --shift 0 --out /landing/sessions.parquet

    The file is replaced atomically (written next to it, then renamed), so a snapshot never
    reads half an export.
    """
    import argparse
    import os
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(prog="python -m mlops_operator.data.retail")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shift", type=float, default=0.0, help="behaviour shift, 0 (none) .. 1 (strong)")
    ap.add_argument("--start", default="2026-01-01", help="date of the first session")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(f".{a.out.name}.{os.getpid()}.tmp")
    pq.write_table(generate(a.rows, a.seed, a.shift, a.start), tmp)
    os.replace(tmp, a.out)
    print(f"wrote {a.rows} sessions (seed {a.seed}, shift {a.shift}, from {a.start}) to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
