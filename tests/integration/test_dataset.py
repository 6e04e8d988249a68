"""Dataset on the real control plane with the operator running: versions, validation, bad specs,
restart safety, printer columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cluster, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster

SCHEMA = """
  schema:
    columns:
    - {name: customer_id, type: categorical, role: id, nullable: false}
    - {name: age, type: numeric, minimum: 18, maximum: 100}
    - {name: device, type: categorical, domain: [mobile, desktop]}
    - {name: purchased, type: categorical, role: label, nullable: false}
"""


def rows(n: int, start: int = 0) -> str:
    return "".join(f"c{i},{20 + i % 50},{'mobile' if i % 3 else 'desktop'},{i % 2}\n" for i in range(start, start + n))


HEADER = "customer_id,age,device,purchased\n"


def data_volume(c: Cluster, ns: str) -> Path:
    c.apply("""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
""", ns)
    pvc = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Bound" else None)(
        c.get_json("pvc", "data", "-n", ns)), 30, what="data PVC bound")
    return Path(c.get_json("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])


def dataset(name: str, path: str = "sales.csv", extra: str = SCHEMA) -> str:
    return f"""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {{name: {name}}}
spec:
  source:
    type: file
    file: {{path: {path}, claimName: data}}
  validation: {{minRows: 10}}
{extra}
"""


def status(c: Cluster, ns: str, name: str) -> dict:
    return c.get_json("dataset", name, "-n", ns).get("status") or {}


def wait_snapshot(c: Cluster, ns: str, name: str, trigger_changed_from: str | None = None, timeout: float = 120) -> dict:
    def done():
        st = status(c, ns, name)
        if st.get("activeJob") or not st.get("lastSnapshotTrigger"):
            return None
        if trigger_changed_from is not None and st["lastSnapshotTrigger"] == trigger_changed_from:
            return None
        return st
    return wait_for(done, timeout, interval=0.5, what=f"snapshot of {name}")


def cond(st: dict, ctype: str) -> dict:
    return next(x for x in st["conditions"] if x["type"] == ctype)


def events(c: Cluster, ns: str, name: str) -> list[dict]:
    return [e for e in c.get_json("events", "-n", ns)["items"] if e["involvedObject"]["name"] == name]


def refresh(c: Cluster, ns: str, name: str, token: str) -> None:
    c.kubectl("annotate", "dataset", name, "-n", ns, f"mlops.dev/refresh={token}", "--overwrite")


def test_csv_on_a_pvc_becomes_versions(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    vol = data_volume(local_cluster, namespace)
    (vol / "sales.csv").write_text(HEADER + rows(200))
    local_cluster.apply(dataset("sales"), namespace)
    st = wait_snapshot(local_cluster, namespace, "sales")
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Validated")["status"] == "True"
    v1 = st["latestValid"]
    assert v1["rows"] == 200 and v1["validated"] and len(v1["digest"]) == 64
    assert st["profile"]["labelDistribution"] == {"0": 100, "1": 100}

    refresh(local_cluster, namespace, "sales", "again")  # unchanged source: same version
    st = wait_snapshot(local_cluster, namespace, "sales", st["lastSnapshotTrigger"])
    assert [v["digest"] for v in st["versions"]] == [v1["digest"]]
    assert any(e["reason"] == "Unchanged" for e in events(local_cluster, namespace, "sales"))

    (vol / "sales.csv").write_text(HEADER + rows(260))
    refresh(local_cluster, namespace, "sales", "new-data")
    st = wait_snapshot(local_cluster, namespace, "sales", st["lastSnapshotTrigger"])
    assert len(st["versions"]) == 2 and st["latestValid"]["rows"] == 260
    assert st["versions"][1]["digest"] == v1["digest"]
    jobs = local_cluster.get_json("jobs", "-n", namespace, "-l", "mlops.dev/dataset=sales")["items"]
    assert len(jobs) == 3  # one per trigger, never two for the same one
    assert all(j["metadata"]["ownerReferences"][0]["kind"] == "Dataset" for j in jobs)
    assert all(j["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlops-operator" for j in jobs)


@pytest.mark.parametrize("bad, check, fragment", [
    ("c1,old,mobile,1\n", "type", "'age' are not numeric"),
    ("c1,150,mobile,1\n", "range", "above the maximum 100"),
    ("c1,30,fridge,1\n", "domain", "outside its domain"),
])
def test_bad_rows_fail_validation_and_keep_the_last_valid_version(local_cluster: Cluster, operator: OperatorProcess,
                                                                  namespace: str, bad: str, check: str, fragment: str):
    vol = data_volume(local_cluster, namespace)
    (vol / "sales.csv").write_text(HEADER + rows(50))
    local_cluster.apply(dataset("sales"), namespace)
    good = wait_snapshot(local_cluster, namespace, "sales")["latestValid"]
    (vol / "sales.csv").write_text(HEADER + rows(50) + bad)
    refresh(local_cluster, namespace, "sales", "bad")
    st = wait_for(lambda: (lambda s: s if s.get("validation", {}).get("passed") is False else None)(
        status(local_cluster, namespace, "sales")), 120, what="failed validation")
    validated = cond(st, "Validated")
    assert validated["status"] == "False" and validated["reason"] == "ValidationFailed"
    assert fragment in validated["message"]
    assert st["latestValid"]["digest"] == good["digest"]  # the last good version stays in use
    assert cond(st, "Ready")["status"] == "True" and cond(st, "Ready")["reason"] == "PreviousVersionAvailable"
    failure = st["validation"]["failures"][0]
    assert failure["check"] == check and failure["count"] == 1
    warn = [e for e in events(local_cluster, namespace, "sales") if e["reason"] == "ValidationFailed"]
    assert warn and warn[0]["type"] == "Warning"


def test_missing_label_column_fails_validation(local_cluster: Cluster, operator: OperatorProcess, namespace: str):
    vol = data_volume(local_cluster, namespace)
    (vol / "nolabel.csv").write_text("customer_id,age,device\n" + "".join(f"c{i},30,mobile\n" for i in range(20)))
    local_cluster.apply(dataset("nolabel", "nolabel.csv"), namespace)
    st = wait_snapshot(local_cluster, namespace, "nolabel")
    assert cond(st, "Ready")["status"] == "False" and cond(st, "Ready")["reason"] == "NoValidVersion"
    assert "label column 'purchased' is missing from the source" in cond(st, "Validated")["message"]
    assert "latestValid" not in st


def test_a_capture_source_without_captures_says_so_where_the_user_looks(local_cluster: Cluster,
                                                                        operator: OperatorProcess, namespace: str):
    """No InferenceService has captured anything under that name yet: the snapshot Job fails
    with the capture source's own message, in the Dataset's conditions and a Warning Event."""
    local_cluster.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: traffic}
spec:
  source: {type: capture, capture: {inferenceService: nobody-serves-this}}
  labelColumn: purchased
""", namespace)
    st = wait_snapshot(local_cluster, namespace, "traffic", timeout=240)
    assert cond(st, "Ready")["status"] == "False", st
    where = " ".join(c.get("message") or "" for c in st["conditions"])
    assert "no captured traffic at captures/nobody-serves-this" in where, st["conditions"]
    assert any(e["type"] == "Warning" and "no captured traffic" in e.get("message", "")
               for e in events(local_cluster, namespace, "traffic"))


@pytest.mark.parametrize("spec, message", [
    ("  source: {type: ftp}", 'spec.source.type: Unsupported value: "ftp"'),
    ("  source: {type: generator, generator: {rows: 100}}\n  refreshInterval: -5m", "spec.refreshInterval in body should match"),
    ("  source: {type: generator, generator: {rows: 100}}\n  labelColumn: bought\n"
     "  schema: {columns: [{name: purchased, type: boolean, role: label}]}", "labelColumn must name a column of schema.columns"),
    ("  source: {type: file, generator: {rows: 100}}", "source.type file needs source.file"),
    ("  source: {type: generator, generator: {rows: 100}}\n"
     "  schema: {columns: [{name: a, type: numeric}, {name: a, type: numeric}]}", "Duplicate value"),
    ("  source: {type: capture, capture: {inferenceService: svc, since: '2026-06-01T00:00:00Z', "
     "until: '2026-06-01T00:00:00Z'}}", "capture.since must be before capture.until"),
    ("  source: {type: capture, capture: {inferenceService: svc, since: 'yesterday'}}",
     "spec.source.capture.since in body should match"),
])
def test_bad_specs_are_rejected_at_apply_time(local_cluster: Cluster, operator: OperatorProcess, namespace: str,
                                              spec: str, message: str):
    doc = f"apiVersion: mlops.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: bad}}\nspec:\n{spec}\n"
    p = local_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=doc, check=False)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr


def test_operator_killed_during_a_snapshot_resumes_without_a_duplicate_job(local_cluster: Cluster,
                                                                           operator: OperatorProcess, namespace: str):
    local_cluster.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: big}
spec:
  source: {type: generator, generator: {rows: 400000, seed: 3}}
  labelColumn: purchased
""", namespace)
    wait_for(lambda: status(local_cluster, namespace, "big").get("activeJob"), 60, what="snapshot Job started")
    operator.kill()
    try:
        assert status(local_cluster, namespace, "big").get("activeJob")
    finally:
        operator.start()
    st = wait_snapshot(local_cluster, namespace, "big", timeout=240)
    assert st["latestValid"]["rows"] == 400000
    jobs = local_cluster.get_json("jobs", "-n", namespace, "-l", "mlops.dev/dataset=big")["items"]
    assert len(jobs) == 1
    assert [e["reason"] for e in events(local_cluster, namespace, "big")].count("NewVersion") == 1


def test_kubectl_get_mlops_lists_datasets_with_printer_columns(local_cluster: Cluster, operator: OperatorProcess,
                                                               namespace: str):
    local_cluster.apply("""
apiVersion: mlops.dev/v1alpha1
kind: Dataset
metadata: {name: shop}
spec:
  source: {type: generator, generator: {rows: 500, seed: 1}}
  labelColumn: purchased
""", namespace)
    st = wait_snapshot(local_cluster, namespace, "shop")
    out = local_cluster.kubectl("get", "mlops", "-n", namespace).stdout
    header, line = out.splitlines()[0].split(), out.splitlines()[1]
    assert header[:6] == ["NAME", "PHASE", "ROWS", "VERSION", "VALIDATED", "READY"]
    assert "dataset.mlops.dev/shop" in line and "500" in line and st["latestValid"]["id"] in line
    assert local_cluster.kubectl("get", "mlds", "shop", "-n", namespace).returncode == 0
    explain = local_cluster.kubectl("explain", "dataset.spec.source").stdout
    assert "Where to read the data from" in explain
