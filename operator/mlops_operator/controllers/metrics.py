"""Operator Prometheus metrics: reconciles, errors and durations by kind."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from prometheus_client import Counter, Histogram

RECONCILES = Counter("mlops_operator_reconcile_total", "Reconciles by kind and result", ["kind", "result"])
#: finished TrainingRuns by outcome: what the "training failed" alert counts
TRAINING_RUNS = Counter("mlops_training_runs_total", "Finished TrainingRuns by namespace, model and result",
                        ["namespace", "model", "result"])
DURATION = Histogram("mlops_operator_reconcile_duration_seconds", "Reconcile duration by kind", ["kind"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


@contextlib.contextmanager
def measured(kind: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
        RECONCILES.labels(kind, "success").inc()
    except Exception:
        RECONCILES.labels(kind, "error").inc()
        raise
    finally:
        DURATION.labels(kind).observe(time.perf_counter() - t)
