"""The YAML users apply from examples/ is valid against the API models and in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_operator.api.crd import KINDS
from mlops_operator.data.retail import RETAIL_SCHEMA
from mlops_operator.data.retail_ranking import ITEM_FEATURES, RANKING_SCHEMA

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = {k.kind: k.spec for k in KINDS}


def _docs():
    for f in sorted(EXAMPLES.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(f.read_text())):
            if doc and doc.get("apiVersion", "").startswith("mlops.dev/"):
                yield pytest.param(doc, id=f"{f.relative_to(EXAMPLES)}#{i}")


@pytest.mark.parametrize("doc", list(_docs()))
def test_example_specs_validate_against_the_models(doc):
    SPECS[doc["kind"]].model_validate(doc["spec"])


def test_retail_example_declares_the_generator_schema():
    doc = yaml.safe_load((EXAMPLES / "retail" / "dataset.yaml").read_text())
    assert doc["spec"]["schema"]["columns"] == RETAIL_SCHEMA


def test_recommender_example_declares_the_generator_schema_and_its_item_features():
    doc = yaml.safe_load((EXAMPLES / "recommender" / "dataset.yaml").read_text())
    assert doc["spec"]["schema"]["columns"] == RANKING_SCHEMA
    run = yaml.safe_load((EXAMPLES / "recommender" / "trainingrun.yaml").read_text())
    assert run["spec"]["ranking"]["itemFeatures"] == ITEM_FEATURES


def test_images_keep_the_entrypoints_the_local_node_assumes():
    from mlops_operator.localcluster.node.podspec import IMAGE_ENTRYPOINTS

    images = EXAMPLES.parent / "images"
    for name, dockerfile in (("mlops-runtime", "runtime.Dockerfile"), ("mlops-operator", "operator.Dockerfile"),
                             ("mlops-server", "server.Dockerfile")):
        text = (images / dockerfile).read_text()
        entry = next(line for line in text.splitlines() if line.startswith("ENTRYPOINT"))
        assert entry == "ENTRYPOINT " + str(IMAGE_ENTRYPOINTS[name]).replace("'", '"')
        assert "USER 1000" in text
