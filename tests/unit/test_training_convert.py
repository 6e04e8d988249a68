"""Every allowlisted estimator converts to ONNX with its preprocessing and passes parity."""

from __future__ import annotations

import onnx
import pytest

from mlops_operator.data import retail
from mlops_operator.training import convert, estimators, pipeline

TOL = 1e-5
FAST = {"RandomForestClassifier": {"n_estimators": 20}, "ExtraTreesClassifier": {"n_estimators": 20},
        "GradientBoostingClassifier": {"n_estimators": 30}, "RandomForestRegressor": {"n_estimators": 20},
        "ExtraTreesRegressor": {"n_estimators": 20}, "GradientBoostingRegressor": {"n_estimators": 30},
        "HistGradientBoostingClassifier": {"max_iter": 30}, "HistGradientBoostingRegressor": {"max_iter": 30},
        "LinearSVR": {"max_iter": 5000}}


@pytest.fixture(scope="module")
def data():
    df = retail.generate(3000, seed=11).to_pandas()
    feats = pipeline.feature_columns(retail.RETAIL_SCHEMA, retail.LABEL)
    x = pipeline.prepare_frame(df, feats)
    return df, feats, x


@pytest.mark.parametrize("name", sorted(estimators.ALLOWED))
def test_estimator_converts_and_passes_parity(name, data):
    df, feats, x = data
    classifier = estimators.task_of(name) == "classification"
    y = df[retail.LABEL].astype(int) if classifier else df["cart_value"].astype(float)
    if not classifier:
        feats = [c for c in feats if c["name"] != "cart_value"]
        x = x.drop(columns=["cart_value"])
    model = pipeline.build(feats, estimators.make(name, FAST.get(name), seed=0))
    train, test = slice(0, 2000), slice(2000, 3000)
    model.fit(x.iloc[train], y.iloc[train])
    onnx_bytes = convert.export(model, feats, classifier)
    parity = convert.check_parity(model, onnx_bytes, x.iloc[test], feats, classifier, TOL)
    assert parity.rows == 1000
    assert parity.label_mismatches == 0, parity
    assert parity.max_abs_diff <= TOL, parity
    # one order of operator sets whatever PYTHONHASHSEED (convert.canonical), and nothing of the
    # time or the machine inside the bytes
    onx = onnx.load_from_string(onnx_bytes)
    assert [o.domain for o in onx.opset_import] == ["", "ai.onnx.ml"]
    assert not onx.metadata_props and not onx.doc_string and not onx.graph.doc_string


def test_the_api_allowlist_is_the_trainers():
    from mlops_operator.api.trainingrun import CLASSIFIERS, REGRESSORS

    assert set(CLASSIFIERS) == set(estimators.CLASSIFIERS) and set(REGRESSORS) == set(estimators.REGRESSORS)


def test_protobuf_is_pinned_below_7_for_histgradientboosting():
    import google.protobuf

    assert int(google.protobuf.__version__.split(".")[0]) < 7


def test_estimators_outside_the_allowlist_and_unknown_params_are_refused():
    with pytest.raises(estimators.EstimatorError, match="not on the allowlist"):
        estimators.make("os.system")
    with pytest.raises(estimators.EstimatorError, match="has no parameter"):
        estimators.make("LogisticRegression", {"n_trees": 3})
    assert estimators.make("RandomForestClassifier", seed=7).random_state == 7
