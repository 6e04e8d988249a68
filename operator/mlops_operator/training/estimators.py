"""The estimator allowlist: names a TrainingRun may use, mapped to scikit-learn classes.

Never an import path from user input: only these classes can be instantiated, with params
checked against each estimator's own `get_params()` so a typo fails before any training.
"""

from __future__ import annotations

from typing import Any

from sklearn import ensemble, linear_model, neighbors, svm, tree

# LinearSVC is left out: skl2onnx 1.20 fails on it inside a Pipeline (NameError: option
# 'zipmap' not in [...] for class 'LinearSVC', raised from get_label_classes); SVC with
# kernel=linear covers the same model and converts.
CLASSIFIERS: dict[str, type] = {
    "LogisticRegression": linear_model.LogisticRegression,
    "RandomForestClassifier": ensemble.RandomForestClassifier,
    "GradientBoostingClassifier": ensemble.GradientBoostingClassifier,
    "HistGradientBoostingClassifier": ensemble.HistGradientBoostingClassifier,
    "ExtraTreesClassifier": ensemble.ExtraTreesClassifier,
    "DecisionTreeClassifier": tree.DecisionTreeClassifier,
    "SVC": svm.SVC,
    "KNeighborsClassifier": neighbors.KNeighborsClassifier,
}
REGRESSORS: dict[str, type] = {
    "LinearRegression": linear_model.LinearRegression,
    "Ridge": linear_model.Ridge,
    "Lasso": linear_model.Lasso,
    "ElasticNet": linear_model.ElasticNet,
    "RandomForestRegressor": ensemble.RandomForestRegressor,
    "GradientBoostingRegressor": ensemble.GradientBoostingRegressor,
    "HistGradientBoostingRegressor": ensemble.HistGradientBoostingRegressor,
    "ExtraTreesRegressor": ensemble.ExtraTreesRegressor,
    "DecisionTreeRegressor": tree.DecisionTreeRegressor,
    "LinearSVR": svm.LinearSVR,
    "SVR": svm.SVR,
    "KNeighborsRegressor": neighbors.KNeighborsRegressor,
}
ALLOWED = {**CLASSIFIERS, **REGRESSORS}


class EstimatorError(ValueError):
    pass


def task_of(name: str) -> str:
    if name in CLASSIFIERS:
        return "classification"
    if name in REGRESSORS:
        return "regression"
    raise EstimatorError(f"estimator {name!r} is not on the allowlist: {', '.join(sorted(ALLOWED))}")


def reproducibility(name: str, params: dict[str, Any]) -> tuple[bool, str | None]:
    """(reproducible, why not): whether a run with these final params gives the same ONNX bytes
    again on the same dataset version and trainerVersion. Every allowlisted estimator does when
    seeded: its random_state is the spec's split.seed unless the params set it (measured across
    processes, hash seeds and thread counts: tests/unit/test_training_reproducible.py)."""
    if "random_state" in params and params["random_state"] is None:
        return False, (f"{name} was given random_state: null, so every fit draws a fresh seed from the "
                       "operating system; leave random_state out to seed it with spec.split.seed")
    return True, None


def make(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """An unfitted estimator of an allowlisted class with checked params."""
    task_of(name)
    cls = ALLOWED[name]
    known = cls().get_params()
    params = dict(params or {})
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise EstimatorError(f"{name} has no parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "random_state" in known and "random_state" not in params:
        params["random_state"] = seed
    if name == "SVC" and "probability" not in params:
        params["probability"] = True  # probabilities are what serving and ROC AUC need
    try:
        return cls(**params)
    except (TypeError, ValueError) as e:
        raise EstimatorError(f"{name}: {e}") from e
