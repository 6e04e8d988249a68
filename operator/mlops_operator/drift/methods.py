"""Method names, default thresholds, decision rules and the automatic choice of a method.

Everything here mirrors Evidently 0.7.23 (``evidently.legacy.calculations.stattests``) so a
decision can be compared one for one with an Evidently report on the same data:

========== ============ ========= =================================================
method     score        default   drift when (exactly Evidently's comparison)
========== ============ ========= =================================================
ks         p-value      0.05      p <= threshold
chisquare  p-value      0.05      p <  threshold
ztest      p-value      0.05      p <  threshold
wasserstein distance    0.1       score >= threshold   (W1 / max(std_ref, 0.001))
psi        distance     0.1       score >= threshold
jensenshannon distance  0.1       score >= threshold   (natural log)
========== ============ ========= =================================================

(The ``<=`` of KS against the ``<`` of the other two tests is Evidently's; kept so that a
p-value landing exactly on the threshold decides the same way.)

Automatic choice (Evidently's ``_get_default_stattest``), with ``n_values`` the number of
distinct non-null values in reference and current together and ``reference_rows`` the
non-null reference size:

* reference_rows <= 1000: numeric with n_values > 5 -> ks; otherwise (categorical, boolean,
  or numeric with n_values <= 5) -> chisquare if n_values > 2 else ztest;
* reference_rows > 1000: numeric with n_values > 5 -> wasserstein; otherwise jensenshannon.

Dataset drift: the share of drifted features >= drift_share (0.5 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["numeric", "categorical", "boolean"]

SMALL_REFERENCE_ROWS = 1000  # Evidently: reference_data.shape[0] <= 1000 -> tests, else distances
DISCRETE_MAX_VALUES = 5      # Evidently: numeric with n_values <= 5 is compared as categories
BINARY_MAX_VALUES = 2        # Evidently: n_values <= 2 -> Z-test (small reference)
NUMERIC_BINNING_MIN_UNIQUE = 21  # Evidently's get_binned_data: Sturges bins when ref nunique > 20
DEFAULT_DRIFT_SHARE = 0.5


@dataclass(frozen=True)
class Method:
    """One statistic: what its score means and how it decides."""

    name: str
    score: Literal["p_value", "distance"]
    default_threshold: float
    strict: bool  # p-values: drift if p < t (strict) or p <= t; distances: always score >= t
    numeric: bool  # allowed on numeric features
    categorical: bool  # allowed on categorical/boolean features
    evidently_name: str  # the method's display name in an Evidently report

    def drifted(self, score: float, threshold: float) -> bool:
        """A Python bool, never numpy's: the decision goes into status, and the Kubernetes
        client cannot serialise a ``numpy.bool`` (the DriftMonitor's status patch failed)."""
        score, threshold = float(score), float(threshold)
        if score != score:  # NaN: no decision, never an alarm
            return False
        if self.score == "p_value":
            return score < threshold if self.strict else score <= threshold
        return score >= threshold


METHODS: dict[str, Method] = {
    "ks": Method("ks", "p_value", 0.05, False, True, False, "K-S p_value"),
    "chisquare": Method("chisquare", "p_value", 0.05, True, True, True, "chi-square p_value"),
    "ztest": Method("ztest", "p_value", 0.05, True, True, True, "Z-test p_value"),
    "wasserstein": Method("wasserstein", "distance", 0.1, False, True, False, "Wasserstein distance (normed)"),
    "psi": Method("psi", "distance", 0.1, False, True, True, "PSI"),
    "jensenshannon": Method("jensenshannon", "distance", 0.1, False, True, True, "Jensen-Shannon distance"),
}
METHOD_NAMES = ("auto", *METHODS)
#: Names users of Evidently write (``method="z"``, ``"chisquare"``...) -> ours.
ALIASES = {"z": "ztest", "chi2": "chisquare", "chi-square": "chisquare", "js": "jensenshannon",
           "kolmogorov-smirnov": "ks", "wasserstein_distance_norm": "wasserstein"}


def default_method(kind: str, reference_rows: int, n_values: int) -> str:
    """Evidently's automatic choice (see the module docstring)."""
    continuous = kind == "numeric" and n_values > DISCRETE_MAX_VALUES
    if reference_rows <= SMALL_REFERENCE_ROWS:
        if continuous:
            return "ks"
        return "chisquare" if n_values > BINARY_MAX_VALUES else "ztest"
    return "wasserstein" if continuous else "jensenshannon"


@dataclass(frozen=True)
class Override:
    """A per-feature choice (the DriftMonitor CRD's ``spec.features[name]``)."""

    method: str = "auto"
    threshold: float | None = None


def as_override(value: Any) -> Override:
    """Accept an Override, the API's FeatureOverride (attributes), a dict or a bare method name."""
    if value is None:
        return Override()
    if isinstance(value, Override):
        return value
    if isinstance(value, str):
        return Override(method=value)
    if isinstance(value, dict):
        return Override(method=value.get("method") or "auto", threshold=value.get("threshold"))
    return Override(method=getattr(value, "method", None) or "auto", threshold=getattr(value, "threshold", None))


def resolve_method(name: str) -> str:
    """Canonical method name, or ValueError naming the accepted ones."""
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key != "auto" and key not in METHODS:
        raise ValueError(f"unknown drift method {name!r}; use one of {', '.join(METHOD_NAMES)}")
    return key


def check_method(method: str, kind: str, n_values: int) -> str | None:
    """Why ``method`` cannot be used on this feature, or None.

    As Evidently: ks and wasserstein need a numeric feature. chisquare, psi and
    jensenshannon work on any buckets (categories, or the reference bins of a numeric
    feature). ztest compares two proportions, so a numeric feature needs at most two values.
    """
    m = METHODS[method]
    if kind == "numeric" and not m.numeric:
        return f"{method} needs a categorical or boolean feature"
    if kind != "numeric" and not m.categorical:
        return f"{method} needs a numeric feature"
    if method == "ztest" and kind == "numeric" and n_values > BINARY_MAX_VALUES:
        return f"ztest needs at most two values, the feature has {n_values}"
    return None
