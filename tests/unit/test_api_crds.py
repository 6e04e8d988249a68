"""The checked-in CRDs are exactly what the models generate, and the schemas are structural."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlops_operator.api import crd
from mlops_operator.api.dataset import DatasetSpec
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
