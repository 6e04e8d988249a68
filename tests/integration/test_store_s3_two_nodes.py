"""Training on one node and serving on another, with the store on S3: the multi-node path a
real cluster takes. The local cluster runs both kinds of node (the process node and a real node:
upstream kubelet, containerd, runc and the images built from this checkout) and SeaweedFS in its
network namespace (`mlops up --s3 --nodes process,real`).

Placement is the user's, in the specs: `TrainingRun.spec.job.nodeSelector` (and the Dataset's
`spec.job`) for the Jobs, `InferenceService.spec.pod.nodeSelector` for the serving pods.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mlops_operator.localcluster import realnode
from tests.conftest import Cluster, s3_namespace
from tests.integration.test_inference_service import ISVC, Forward, serving
from tests.integration.test_store_s3_cluster import host_store, predictions
from tests.integration.test_training import retail_dataset, run, wait_mv_ready, wait_phase

pytestmark = pytest.mark.cluster

def _pods_on(c: Cluster, ns: str, selector: str) -> set[str]:
    return {p["spec"].get("nodeName") for p in c.pods(ns, selector)}


def test_training_on_the_process_node_and_serving_on_the_real_node(s3_two_nodes: Cluster, s3_operator_two_nodes,
                                                                   request):
    c = s3_two_nodes
    process_node, real_node = c.cfg.node_name, realnode.node_name(c.cfg)
    ns = s3_namespace(c, request, "s-two-nodes")
    on_process = {"nodeSelector": {"kubernetes.io/hostname": process_node}}
    ds = yaml.safe_load(retail_dataset(rows=2000))
    ds["spec"]["job"] = on_process
    c.apply(yaml.safe_dump(ds), ns)
    tr = yaml.safe_load(run("v1", "  estimator: {type: LogisticRegression}\n  promotion: {policy: always}"))
    tr["spec"]["job"] = on_process
    c.apply(yaml.safe_dump(tr), ns)
    st = wait_phase(c, ns, "v1", timeout=420)
    assert st["phase"] == "Succeeded", st
    assert _pods_on(c, ns, "mlops.dev/training-run=v1") == {process_node}
    mv = wait_mv_ready(c, ns, "propensity-v1", timeout=240)

    isvc = yaml.safe_load(ISVC)
    isvc["spec"]["pod"] = {"nodeSelector": dict([realnode.NODE_KIND_LABEL])}
    c.apply(yaml.safe_dump(isvc), ns)
    serving(c, ns, "propensity-v1", timeout=420)
    assert _pods_on(c, ns, "mlops.dev/inference-service=propensity") == {real_node}
    assert c.get_json("pvc", "-n", ns)["items"] == []
    inputs, want = predictions(host_store(c, ns), mv)
    fwd = Forward(c, ns)
    try:
        code, body = fwd.post("/v2/models/propensity/infer", {"inputs": inputs})
        assert code == 200, body
        outs = {o["name"]: o for o in body["outputs"]}
        np.testing.assert_allclose(np.array(outs["probabilities"]["data"]).reshape(-1, 2), want["probabilities"],
                                   atol=1e-6)
    finally:
        fwd.close()
    assert Path(s3_operator_two_nodes).exists()
