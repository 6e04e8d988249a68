"""Drift statistics and decisions: pure functions over histograms and counts.

What the DriftMonitor controller calls, in order:

1. :func:`references_from_profile` (or :meth:`ReferenceData.from_column`) once per model
   version: the training reference of each feature from the model manifest (numeric features:
   the reference-anchored histogram of :mod:`.histogram`);
2. every scrape, :func:`window_delta` over the pods' readings (what each counted since the
   monitor's cursor; restarts, lost cursors, new and gone pods handled), summed into a window
   with :func:`add_counts`;
3. :func:`evaluate` on the reference and the window's :class:`CurrentData`: a
   :class:`DatasetDrift` with one :class:`FeatureDrift` per feature, each with the interval
   its score is guaranteed to be in.

Defaults, methods and thresholds are Evidently's (see :mod:`.methods`); :func:`compare` is
the same decision on whole raw datasets, vectorised (see :mod:`.fast`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import CurrentData, DatasetDrift, FeatureDrift, ReferenceData, evaluate, evaluate_feature, \
        references_from_profile
    from .fast import Categorical, PreparedReference, compare, prepare_reference
    from .histogram import Histogram
    from .methods import METHOD_NAMES, METHODS, Method, Override, default_method
    from .window import PodCursor, PodReading, WindowDelta, add_counts, window_delta

#: where each name lives. Imported on first use, so that ``mlops_operator.drift.histogram`` (what
#: the model server counts with) imports neither scipy nor the rest: the server image has no scipy.
_WHERE = {
    **dict.fromkeys(["CurrentData", "DatasetDrift", "FeatureDrift", "ReferenceData", "evaluate", "evaluate_feature",
                     "references_from_profile"], "engine"),
    **dict.fromkeys(["Categorical", "PreparedReference", "compare", "prepare_reference"], "fast"),
    "Histogram": "histogram",
    **dict.fromkeys(["METHOD_NAMES", "METHODS", "Method", "Override", "default_method"], "methods"),
    **dict.fromkeys(["PodCursor", "PodReading", "WindowDelta", "add_counts", "window_delta"], "window"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "METHODS", "METHOD_NAMES", "Categorical", "CurrentData", "DatasetDrift", "FeatureDrift", "Histogram", "Method",
    "Override", "PodCursor", "PodReading", "PreparedReference", "ReferenceData", "WindowDelta", "add_counts",
    "compare", "default_method", "evaluate", "evaluate_feature", "prepare_reference", "references_from_profile",
    "window_delta",
]
