"""The checked-in CRDs are exactly what the models generate, and the schemas are structural."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from mlops_operator.api import base, crd, dataset, driftmonitor, inferenceservice, modelversion, trainingrun
from mlops_operator.api.dataset import DatasetSpec
from mlops_operator.api.estimator_params import PARAMS
from mlops_operator.api.trainingrun import TrainingRunSpec

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_checked_in_crds_match_the_models():
    expected = crd.render_all()
    on_disk = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert set(on_disk) == set(expected), "run `make crds`"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{name} is stale: run `make crds`"


def _walk(node, path="$"):
    yield path, node
    for k, v in node.get("properties", {}).items():
        yield from _walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("k", crd.KINDS, ids=lambda k: k.kind)
def test_schemas_are_structural(k):
    schema = crd.crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, path
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields") or \
            node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "object" and node.get("properties"):
            assert "additionalProperties" not in node, path
        assert not isinstance(node.get("exclusiveMinimum"), (int, float)) or isinstance(node["exclusiveMinimum"], bool)


@pytest.mark.parametrize("k", crd.KINDS, ids=lambda k: k.kind)
def test_every_kind_has_category_short_name_status_and_ready_column(k):
    c = crd.crd(k)
    assert c["spec"]["names"]["categories"] == ["mlops"]
    assert c["spec"]["names"]["shortNames"]
    v = c["spec"]["versions"][0]
    assert v["subresources"] == {"status": {}}
    assert any(col["name"] == "Ready" for col in v["additionalPrinterColumns"])
    status = v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"conditions", "observedGeneration"} <= set(status)


def test_short_names_do_not_clash_with_builtins_or_kserve():
    # built-in short names, DaemonSet's `ds` among them, and KServe's (isvc, tm, ig)
    taken = {"ds", "deploy", "po", "svc", "cm", "sa", "no", "ns", "pv", "pvc", "rs", "sts", "ep", "ev", "ing",
             "cj", "hpa", "pdb", "sc", "isvc", "tm", "ig"}
    names = [n for k in crd.KINDS for n in k.short_names]
    assert len(names) == len(set(names))
    assert not set(names) & taken


def test_field_descriptions_reach_the_schema_for_kubectl_explain():
    spec = crd.crd(crd.kind("Dataset"))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "Where to read the data from" in spec["properties"]["source"]["description"]
    assert spec["properties"]["versionHistoryLimit"]["description"].startswith("Versions kept")


def _descriptions(k):
    """(path, description) of every node of the kind's schema but metadata, which Kubernetes describes."""
    schema = crd.crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return [(path, node.get("description")) for path, node in _walk(schema) if path != "$.metadata"]


@pytest.mark.parametrize("k", crd.KINDS, ids=lambda k: k.kind)
def test_kubectl_explain_describes_every_field(k):
    """The kind, spec, status, apiVersion, kind, every field at every depth, and the items and
    values of every list and map: none shows `<empty>` in `kubectl explain`."""
    missing = [path for path, text in _descriptions(k) if not (text or "").strip()]
    assert not missing, f"{k.kind}: no description at {', '.join(missing)} (Field(description=...), a model " \
                        "docstring, or base.each(...) for the items of a list or the values of a map)"
    schema = crd.crd(k)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert not [path for path, node in _walk(schema) if base.ITEM_DESCRIPTION in node], "must not reach the CRD"


#: names a user may meet in a description although they are snake_case: metric names, and the
#: scikit-learn parameter names users write in estimator.params and tuning.space
USER_SNAKE_CASE = {"roc_auc", "roc_auc_ovr", "f1_macro", "f1_weighted", "log_loss", "hit_rate"} | {
    p for names in PARAMS.values() for p in names}
#: API model classes users never see (a kind's name, or a Kubernetes type's, is fine)
INTERNAL_CLASSES = sorted(
    name for m in (base, dataset, trainingrun, modelversion, inferenceservice, driftmonitor)
    for name, obj in vars(m).items()
    if isinstance(obj, type) and issubclass(obj, base.ApiModel) and len(re.findall(r"[A-Z]", name)) > 1
    and name not in {k.kind for k in crd.KINDS} | {"ResourceRequirements", "LocalObjectReference"})
INTERNAL = re.compile(r"spec_rules|\w+_rules\b|pydantic|kopf|\bTODO\b|\bFIXME\b|\bXXX\b|json_schema|model_config|"
                      r"__\w+|\b(?:%s)\b" % "|".join(INTERNAL_CLASSES))


@pytest.mark.parametrize("k", crd.KINDS, ids=lambda k: k.kind)
def test_descriptions_name_no_internals(k):
    """Descriptions are user documentation: no developer notes (a docstring that names the CRD
    generator's `spec_rules`, a Python class, a library) and no snake_case identifiers but
    the metric and estimator parameter names users write themselves."""
    leaks = []
    for path, text in _descriptions(k):
        words = INTERNAL.findall(text or "") + [w for w in re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", text or "")
                                                if w not in USER_SNAKE_CASE]
        if words:
            leaks.append(f"{path}: {sorted(set(words))}")
    assert not leaks, f"{k.kind}: internal names in descriptions:\n" + "\n".join(leaks)


def test_internal_names_are_caught():
    assert INTERNAL.search("Immutable once created (the CRD's `spec_rules`).")
    assert INTERNAL.search("Parsed by pydantic; see TrainingRunSpec.")
    assert not INTERNAL.search("Spec of the TrainingRun to create, see ResourceRequirements.")


def test_spec_defaults_are_documented_and_status_ones_are_not():
    schema = crd.crd(crd.kind("DriftMonitor"))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["properties"]["interval"]["description"].endswith('Defaults to "1m".')
    # a description that already explains its default is left alone
    assert "Defaults to" not in schema["spec"]["properties"]["driftShare"]["description"]
    isvc = crd.crd(crd.kind("InferenceService"))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert "Defaults to" not in isvc["status"]["properties"]["readyReplicas"]["description"]


def test_models_accept_camel_case_and_reject_unknown_fields():
    spec = DatasetSpec.model_validate({"source": {"type": "generator", "generator": {"rows": 100}},
                                       "labelColumn": "purchased", "refreshInterval": "30m"})
    assert spec.source.generator.rows == 100
    assert spec.to_api()["labelColumn"] == "purchased"
    with pytest.raises(ValidationError):
        DatasetSpec.model_validate({"source": {"type": "generator"}, "bogus": 1})
    with pytest.raises(ValidationError):
        TrainingRunSpec.model_validate({"modelName": "m", "dataset": {"name": "d"},
                                        "estimator": {"type": "os.system"}})
