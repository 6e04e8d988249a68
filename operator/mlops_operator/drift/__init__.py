"""Drift statistics and decisions: pure functions over histograms and samples.

What the DriftMonitor controller calls, in order:

1. :func:`references_from_profile` (or :meth:`ReferenceData.from_column`) once per model
   version: the training reference of each feature from the model manifest;
2. every scrape, :func:`window_delta` over the pods' cumulative counters (restarts, resets,
   new and gone pods handled), summed into a window with :func:`add_counts`; the window's
   reservoir samples combined with :func:`merge_reservoirs`;
3. :func:`evaluate` on the reference and the window's :class:`CurrentData`: a
   :class:`DatasetDrift` with one :class:`FeatureDrift` per feature.

Defaults, methods and thresholds are Evidently's (see :mod:`.methods`); :func:`compare` is
the same decision on whole raw datasets, vectorised (see :mod:`.fast`).
"""

from .engine import CurrentData, DatasetDrift, FeatureDrift, ReferenceData, evaluate, evaluate_feature, \
    references_from_profile, samples_from_window
from .fast import Categorical, PreparedReference, compare, prepare_reference
from .methods import METHOD_NAMES, METHODS, Method, Override, default_method
from .window import PodCounters, WindowDelta, add_counts, merge_reservoirs, window_delta

__all__ = [
    "METHODS", "METHOD_NAMES", "Categorical", "CurrentData", "DatasetDrift", "FeatureDrift", "Method", "Override",
    "PodCounters", "PreparedReference", "ReferenceData", "WindowDelta", "add_counts", "compare", "default_method",
    "evaluate", "evaluate_feature", "merge_reservoirs", "prepare_reference", "references_from_profile",
    "samples_from_window", "window_delta",
]
