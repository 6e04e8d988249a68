"""The retail loop with the artifact store on S3 and the work split across two nodes: what a
real multi-node cluster does, where a ReadWriteOnce volume cannot follow a pod to another node.

- the store is `s3://` on SeaweedFS in the cluster's network (`mlops up --s3`), no PVC store;
- the export, snapshot and training Jobs run on the process node (the landing volume's node);
- the model servers run on the real node (upstream kubelet, containerd, runc, the built server
  image): their init container fetches the model from S3 by digest, and they capture their
  traffic into the bucket, which the retraining Dataset then reads back.

The loop must close as on one node: drift on the shifted traffic, a retraining on the captured
traffic, the better model promoted and rolled out, no failed request.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from mlops_operator.cli.retail_loop import LOOP, MODEL, Kubectl, RetailLoop, summary_table
from mlops_operator.localcluster import binaries, realnode
from tests.conftest import S3_PREFIX, Cluster, s3_namespace
from tests.e2e.test_retail_loop import _forwarder
from tests.integration.test_inference_service import Forward
from tests.integration.test_store_s3_cluster import host_store

pytestmark = pytest.mark.cluster

#: the runtime image's default name (the process node runs it as a process, the real node has it)
RUNTIME_IMAGE = "ghcr.io/mlops-dev/mlops-runtime:0.1.0"


def placed_loop(dest, jobs: dict, pods: dict):
    """The loop's manifests with the Jobs (Datasets, TrainingRuns, the DriftMonitor's
    retraining template) pinned by `jobs` and the InferenceService's pods by `pods`: placement
    is the user's, in the specs, as on any cluster."""
    shutil.copytree(LOOP, dest)
    for f in dest.glob("*.yaml"):
        doc = yaml.safe_load(f.read_text())
        kind, spec = doc["kind"], doc.get("spec")
        if kind in ("Dataset", "TrainingRun"):
            spec["job"] = jobs
        elif kind == "DriftMonitor":
            spec["retrain"]["template"]["job"] = jobs
        elif kind == "InferenceService":
            spec["pod"] = pods
        f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def test_the_loop_closes_with_the_store_on_s3_across_two_nodes(s3_two_nodes: Cluster, s3_operator_two_nodes,
                                                                request, tmp_path):
    c = s3_two_nodes
    process_node, real_node = c.cfg.node_name, realnode.node_name(c.cfg)
    ns = s3_namespace(c, request, "s-loop")
    on_process = {"nodeSelector": {"kubernetes.io/hostname": process_node}}
    on_real = {"nodeSelector": dict([realnode.NODE_KIND_LABEL])}
    k = Kubectl(str(binaries.binary_path("kubectl")), c.kubeconfig, ns)
    fwd: list[Forward] = []
    loop = RetailLoop(k, _forwarder(c, ns, fwd), image=RUNTIME_IMAGE, rows=12000, timeout=600)
    loop.loop_dir = placed_loop(tmp_path / "loop", on_process, on_real)
    loop.export_pod = on_process  # the landing volume (the company's own PVC) lives with the Jobs
    try:
        r = loop.run()
    finally:
        for f in fwd:
            f.close()
    print(summary_table(r))
    assert r.requests > 100 and not r.failed, r.failed[:5]
    assert r.versions["v1"] == f"{MODEL}-v1" and r.versions["v2"] == f"{MODEL}-v2"
    assert r.accuracy["after"] > r.accuracy["during"], r.accuracy
    assert r.drift["after"] < r.drift["during"], r.drift
    runs = c.get_json("trainingruns", "-n", ns, "-l", f"mlops.dev/drift-monitor={MODEL}")["items"]
    assert [x["metadata"]["name"] for x in runs] == r.retrain_runs and len(runs) == 1
    # the retraining learned from the captured traffic, which lives in the bucket
    assert runs[0]["spec"]["dataset"]["name"] == "retail-traffic"
    store = host_store(c, ns)
    chunks = store._list(store.config.key("captures", MODEL) + "/")
    assert any(x.endswith(".requests.parquet") for x in chunks) and any(x.endswith(".labels.parquet") for x in chunks)
    # placement: snapshots and training on the process node, every server on the real node (a
    # ModelVersion's verification Job has no placement in the specs: it may run on either), no PVC store
    placed = {p["spec"].get("nodeName") for sel in ("mlops.dev/training-run", "mlops.dev/dataset")
              for p in c.pods(ns, sel)}
    servers = {p["spec"].get("nodeName") for p in c.pods(ns, f"mlops.dev/inference-service={MODEL}")}
    assert placed == {process_node} and servers == {real_node}, (placed, servers)
    claims = [x["metadata"]["name"] for x in c.get_json("pvc", "-n", ns)["items"]]
    assert claims == [loop.landing], claims  # the company's landing volume only
    for mv in c.get_json("modelversions", "-n", ns)["items"]:
        uri = mv["spec"]["artifact"]["uri"]
        assert uri.startswith("s3://") and f"/{S3_PREFIX}/{ns}/models/" in uri, uri
