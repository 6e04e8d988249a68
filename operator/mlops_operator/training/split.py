"""Train / validation / test split: seeded and stratified, or by time when a timestamp exists.

A time-based split puts the newest rows in the test set, which is what a model will face in
production (customers' behaviour moves forward in time, never back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    how: str


def split_rows(df: pd.DataFrame, y: pd.Series, test_fraction: float, validation_fraction: float, seed: int,
               time_column: str | None, stratify: bool) -> Split:
    n = len(df)
    idx = np.arange(n)
    if time_column:
        order = np.argsort(df[time_column].to_numpy(), kind="stable")
        n_test = max(1, int(round(n * test_fraction)))
        n_val = int(round(n * validation_fraction))
        return Split(order[: n - n_test - n_val], order[n - n_test - n_val: n - n_test], order[n - n_test:],
                     f"time ({time_column}): newest {n_test} rows are the test set")
    strat = y if stratify and y.value_counts().min() >= 2 else None
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    val = np.array([], dtype=int)
    if validation_fraction > 0:
        share = validation_fraction / (1.0 - test_fraction)
        strat_rest = y.iloc[rest] if strat is not None else None
        rest, val = train_test_split(rest, test_size=share, random_state=seed, stratify=strat_rest)
    return Split(np.sort(rest), np.sort(val), np.sort(test),
                 f"random (seed {seed}{', stratified' if strat is not None else ''})")
