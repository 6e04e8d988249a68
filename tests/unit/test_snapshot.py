"""The snapshot pipeline on real files: canonical bytes, versions, profile and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlops_operator.data import snapshot


SCHEMA = [
    {"name": "customer_id", "type": "categorical", "role": "id", "nullable": False},
    {"name": "age", "type": "numeric", "nullable": True, "minimum": 18, "maximum": 100},
    {"name": "device", "type": "categorical", "domain": ["mobile", "desktop"]},
    {"name": "member", "type": "boolean"},
    {"name": "purchased", "type": "categorical", "role": "label", "nullable": False},
]
GOOD = "customer_id,age,device,member,purchased\n" + "".join(
    f"c{i},{20 + i % 50},{'mobile' if i % 3 else 'desktop'},{'true' if i % 2 else 'false'},{i % 2}\n"
    for i in range(300))


def _run(tmp_path: Path, csv_text: str, schema=SCHEMA, **spec_extra):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "data.csv").write_text(csv_text)
    spec = {"source": {"type": "file", "file": {"path": "data.csv"}}, "validation": {"minRows": 10}, **spec_extra}
    if schema is not None:
        spec["schema"] = {"columns": schema}
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return snapshot.run({"name": "shop", "spec": spec}, (tmp_path / "store").as_uri(), src, work)


def test_valid_csv_becomes_a_canonical_version_with_profile(tmp_path):
    s = _run(tmp_path, GOOD)
    assert s["validated"] and s["failures"] == []
    assert s["rows"] == 300 and s["columns"] == 5
    assert s["labelDistribution"] == {"0": 150, "1": 150}
    stored = tmp_path / "store" / "datasets" / "shop" / s["digest"]
    table = pq.read_table(stored / "data.parquet")
    assert [str(t) for t in table.schema.types] == ["string", "double", "string", "bool", "string"]
    profile = json.loads((stored / "profile.json").read_text())
    age = profile["columns"]["age"]
    assert age["min"] == 20 and age["max"] == 69
    assert sum(age["binCounts"]) == 300 and len(age["binCounts"]) == len(age["binEdges"]) + 1
    assert profile["columns"]["device"]["categories"] == {"mobile": 200, "desktop": 100}
    # the drift reference: 50 distinct ages, every one an edge (and the decile edges: the decile
    # counts are sums of histogram bins), counted exactly: 6 of each, all on their edge
    ages = np.array([20 + i % 50 for i in range(300)], dtype=float)
    hist = age["histogram"]
    edges = hist["edges"]
    assert set(edges) == {float(a) for a in range(20, 70)} | set(age["binEdges"])
    assert sum(hist["counts"]) == 300 and {e: n for e, n in zip(edges, hist["atoms"]) if n} == {float(a): 6 for a in range(20, 70)}
    assert hist["sums"] == [0.0] * (len(edges) + 1)
    assert age["std"] == pytest.approx(float(np.std(ages)), rel=1e-12)


def test_same_content_gives_the_same_digest_and_new_content_a_new_one(tmp_path):
    a = _run(tmp_path, GOOD)
    b = _run(tmp_path, GOOD)
    c = _run(tmp_path, GOOD + "c999,30,mobile,true,1\n")
    assert a["digest"] == b["digest"] != c["digest"]
    assert len(list((tmp_path / "store" / "datasets" / "shop").iterdir())) == 2


def test_bad_values_are_reported_per_check_with_examples(tmp_path):
    bad = GOOD.replace("c5,25,", "c5,twenty,").replace("c7,27,mobile", "c7,270,tablet") + "c1,30,mobile,true,1\n"
    s = _run(tmp_path, bad)
    assert not s["validated"]
    by = {(f["check"], f.get("column")): f for f in s["failures"]}
    assert by[("type", "age")]["count"] == 1 and by[("type", "age")]["examples"] == ["twenty"]
    assert by[("range", "age")]["examples"] == ["270.0"]
    assert by[("domain", "device")]["examples"] == ["tablet"]
    assert by[("uniqueIds", "customer_id")]["count"] == 1
    assert "above the maximum 100" in by[("range", "age")]["message"]


def test_missing_label_and_constant_label(tmp_path):
    no_label = "\n".join(",".join(line.split(",")[:4]) for line in GOOD.splitlines()) + "\n"
    s = _run(tmp_path, no_label)
    checks = {(f["check"], f.get("column")) for f in s["failures"]}
    assert ("missingColumn", "purchased") in checks and ("label", "purchased") in checks
    constant = GOOD.replace(",1\n", ",0\n")
    s2 = _run(tmp_path, constant)
    label = next(f for f in s2["failures"] if f["check"] == "label")
    assert "has 1 distinct value(s); at least 2 are needed" in label["message"]


def test_schema_is_inferred_when_not_declared(tmp_path):
    s = _run(tmp_path, GOOD, schema=None, labelColumn="purchased")
    types = {c["name"]: (c["type"], c["role"]) for c in s["schema"]}
    assert types == {"customer_id": ("categorical", "feature"), "age": ("numeric", "feature"),
                     "device": ("categorical", "feature"), "member": ("boolean", "feature"),
                     "purchased": ("numeric", "label")}
    assert s["validated"]


def test_too_few_rows_and_unexpected_columns(tmp_path):
    s = _run(tmp_path, "customer_id,age,device,member,purchased,extra\nc1,30,mobile,true,1,x\n")
    checks = {f["check"] for f in s["failures"]}
    assert {"minRows", "unexpectedColumn"} <= checks


def test_termination_message_fits_the_kubernetes_limit():
    summary = {"digest": "d" * 64, "failures": [{"check": "type", "column": f"c{i}", "count": i,
                                                 "examples": ["x" * 40] * 5, "message": "m" * 80}
                                                for i in range(200)]}
    text = snapshot.compact(summary)
    assert len(text) <= snapshot.TERMINATION_LIMIT
    assert json.loads(text)["truncated"] is True


def test_unreadable_source_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        snapshot.run({"name": "x", "spec": {"source": {"type": "file", "file": {"path": "nope.csv"}}}},
                     (tmp_path / "s").as_uri(), tmp_path, tmp_path)


def test_nulls_in_a_nullable_domain_column_are_not_domain_failures(tmp_path):
    with_null = GOOD.replace("c4,24,mobile,", "c4,24,,")
    s = _run(tmp_path, with_null)
    assert s["validated"], s["failures"]
    schema = [dict(c, nullable=False) if c["name"] == "device" else c for c in SCHEMA]
    s2 = _run(tmp_path, with_null, schema=schema)
    assert [(f["check"], f["column"], f["count"]) for f in s2["failures"]] == [("nulls", "device", 1)]


def test_the_digest_depends_on_content_not_on_how_the_source_was_read(tmp_path, monkeypatch):
    from mlops_operator.data import sources

    big = "customer_id,age,device,member,purchased\n" + "".join(
        f"c{i},{20 + i % 50},{'mobile' if i % 3 else 'desktop'},{'true' if i % 2 else 'false'},{i % 2}\n"
        for i in range(150_000))
    a = _run(tmp_path, big)["digest"]
    monkeypatch.setattr(sources, "CSV_BLOCK", 1 << 16)  # many more, smaller batches
    b = _run(tmp_path, big)["digest"]
    assert a == b
    stored = tmp_path / "store" / "datasets" / "shop" / a / "data.parquet"
    (tmp_path / "src" / "data.parquet").write_bytes(stored.read_bytes())
    (tmp_path / "src" / "data.csv").unlink()
    spec = {"source": {"type": "file", "file": {"path": "data.parquet"}}, "schema": {"columns": SCHEMA},
            "validation": {"minRows": 10}}
    c = snapshot.run({"name": "shop", "spec": spec}, (tmp_path / "store").as_uri(), tmp_path / "src", tmp_path / "work")
    assert c["digest"] == a
    assert pq.ParquetFile(stored).metadata.num_row_groups == 3  # 65536 + 65536 + 18928


def test_duplicate_ids_are_counted_with_examples(tmp_path):
    s = _run(tmp_path, GOOD + "c1,30,mobile,true,1\nc1,31,mobile,true,1\nc2,30,mobile,true,0\n")
    f = next(f for f in s["failures"] if f["check"] == "uniqueIds")
    assert f["count"] == 3 and sorted(f["examples"]) == ["c1", "c2"]


# ------------------------------------------------------------------ deadlines and the http opt-in (issue 16)

def _settings(**kw):
    from mlops_operator.settings import Settings

    return Settings(runtime_image="runtime", store_claim="mlops-store", store_size="1Gi",
                    store_access_mode="ReadWriteOnce", store_storage_class=None, **kw)


def _dataset(**spec):
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "d", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"source": {"type": "http", "http": {"url": "https://example.com/x.csv"}}, **spec}}


def test_the_snapshot_job_has_an_active_deadline():
    from mlops_operator.resources.snapshot_job import snapshot_job

    from mlops_operator.api.dataset import DatasetSpec

    assert DatasetSpec.model_validate(_dataset()["spec"]).snapshot_deadline_seconds == 3600
    job = snapshot_job(_dataset(), "t", None, _settings())
    assert job["spec"]["activeDeadlineSeconds"] == 3600  # the default: a stalled source cannot wedge the Dataset
    job = snapshot_job(_dataset(snapshotDeadlineSeconds=120), "t", None, _settings())
    assert job["spec"]["activeDeadlineSeconds"] == 120


def test_the_private_http_opt_in_is_an_operator_setting_passed_to_the_job(monkeypatch):
    from mlops_operator.resources.snapshot_job import snapshot_job
    from mlops_operator.settings import Settings

    monkeypatch.delenv("MLOPS_HTTP_SOURCE_ALLOW_PRIVATE", raising=False)
    assert Settings.from_env().http_source_allow_private is False
    for value, on in (("true", True), ("1", True), ("false", False), ("", False)):
        monkeypatch.setenv("MLOPS_HTTP_SOURCE_ALLOW_PRIVATE", value)
        assert Settings.from_env().http_source_allow_private is on, value
    # a Dataset cannot ask for it: the flag comes from the operator's settings only
    sneaky = _dataset()
    sneaky["spec"]["source"]["http"]["allowPrivate"] = True
    cmd = snapshot_job(sneaky, "t", None, _settings())["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--allow-private-http" not in cmd
    job = snapshot_job(_dataset(), "t", None, _settings(http_source_allow_private=True))
    assert "--allow-private-http" in job["spec"]["template"]["spec"]["containers"][0]["command"]


def test_the_entrypoint_refuses_internal_http_sources_unless_allowed(tmp_path, monkeypatch):
    import http.server
    import threading
    from functools import partial

    (tmp_path / "data.csv").write_text(GOOD)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        doc = {"name": "shop", "spec": {"source": {"type": "http", "http": {
            "url": f"http://127.0.0.1:{server.server_address[1]}/data.csv"}}, "schema": {"columns": SCHEMA}}}
        monkeypatch.setenv("SPEC", json.dumps(doc))
        log = tmp_path / "termination-log"
        args = ["--spec-env", "SPEC", "--store", (tmp_path / "store").as_uri(), "--termination-log", str(log)]
        assert snapshot.main(args) == 2
        assert "loopback" in json.loads(log.read_text())["error"]
        assert snapshot.main(args + ["--allow-private-http"]) == 0
        assert json.loads(log.read_text())["rows"] == 300
    finally:
        server.shutdown()
        server.server_close()


def _failed_job(reason: str, deadline: int = 120) -> dict:
    return {"metadata": {"name": "d-snap-t"}, "spec": {"activeDeadlineSeconds": deadline},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason,
                                       "message": "Job was active longer than specified deadline"}]}}


def test_a_deadline_exceeded_snapshot_job_gets_a_clear_message():
    from mlops_operator.resources.snapshot_job import deadline_exceeded

    msg = deadline_exceeded(_failed_job("DeadlineExceeded"))
    assert "snapshotDeadlineSeconds=120" in msg and "stopped" in msg
    assert deadline_exceeded(_failed_job("BackoffLimitExceeded")) is None
    assert deadline_exceeded({"metadata": {}, "spec": {}, "status": {}}) is None


def test_the_dataset_reports_a_snapshot_that_ran_past_its_deadline(fake):
    import asyncio

    from mlops_operator.controllers import dataset as dsc

    fake.add("datasets", {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
                          "spec": {"source": {"type": "generator", "generator": {"rows": 100}},
                                   "snapshotDeadlineSeconds": 90}})
    asyncio.run(dsc.reconcile("ns", "d", _settings()))
    name = fake.get("datasets", "d")["status"]["activeJob"]
    job = fake.objects[("Job", "ns", name)]
    assert job["spec"]["activeDeadlineSeconds"] == 90
    job["status"] = _failed_job("DeadlineExceeded", 90)["status"]
    fake.job_messages[name] = (None, "reading the source...\n")  # killed: no termination message
    asyncio.run(dsc.reconcile("ns", "d", _settings()))
    ds = fake.get("datasets", "d")
    ready = next(c for c in ds["status"]["conditions"] if c["type"] == "Ready")
    assert ds["status"]["phase"] == "Failed"
    assert "exceeded snapshotDeadlineSeconds=90" in ready["message"], ready
