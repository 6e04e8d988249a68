"""How snapshot results change a Dataset's status (pure), and the snapshot trigger."""

from __future__ import annotations

from mlops_operator.api.conditions import get_condition, set_condition
from mlops_operator.controllers.dataset import trigger_of
from mlops_operator.data.versions import record_snapshot


def ok(digest: str, rows: int = 100) -> dict:
    return {"digest": digest * 64, "rows": rows, "columns": 4, "validated": True, "failures": [],
            "uri": "file:///store/x/", "labelDistribution": {"0": 50, "1": 50}}


def bad(digest: str) -> dict:
    return {"digest": digest * 64, "rows": 10, "columns": 4, "validated": False,
            "failures": [{"check": "range", "column": "age", "count": 2, "examples": ["150.0"],
                          "message": "values of 'age' above the maximum 100"}]}


def test_first_valid_snapshot_makes_the_dataset_ready():
    st, events = record_snapshot({}, ok("a"), 1, 10, "t1")
    assert st["latestValid"]["digest"] == "a" * 64 and st["latestValid"]["id"] == "a" * 12
    assert get_condition(st["conditions"], "Ready")["status"] == "True"
    assert get_condition(st["conditions"], "Validated")["reason"] == "ValidationPassed"
    assert st["phase"] == "Ready" and st["lastSnapshotTrigger"] == "t1" and st["activeJob"] is None
    assert [e[1] for e in events] == ["NewVersion"]


def test_same_digest_is_not_a_new_version():
    st, _ = record_snapshot({}, ok("a"), 1, 10, "t1")
    st2, events = record_snapshot(st, ok("a"), 1, 10, "t2")
    assert len(st2["versions"]) == 1
    assert [e[1] for e in events] == ["Unchanged"]


def test_invalid_snapshot_keeps_the_last_valid_version_and_warns():
    st, _ = record_snapshot({}, ok("a"), 1, 10, "t1")
    st2, events = record_snapshot(st, bad("b"), 1, 10, "t2")
    assert st2["latestValid"]["digest"] == "a" * 64
    assert st2["latest"]["digest"] == "b" * 64 and st2["latest"]["failedChecks"] == 1
    ready, validated = get_condition(st2["conditions"], "Ready"), get_condition(st2["conditions"], "Validated")
    assert ready["status"] == "True" and ready["reason"] == "PreviousVersionAvailable"
    assert validated["status"] == "False"
    assert "range(age): values of 'age' above the maximum 100 e.g. 150.0" in validated["message"]
    assert ("Warning", "ValidationFailed") in [(e[0], e[1]) for e in events]


def test_failed_snapshot_without_any_valid_version_is_not_ready():
    st, events = record_snapshot({}, {"error": "SourceError: nope.csv does not exist"}, 1, 10, "t1")
    assert get_condition(st["conditions"], "Ready")["status"] == "False"
    assert st["phase"] == "Failed" and "nope.csv does not exist" in get_condition(st["conditions"], "Ready")["message"]
    assert events[0][:2] == ("Warning", "SnapshotFailed")


def test_history_is_bounded_newest_first():
    st: dict = {}
    for i, d in enumerate("abcdef"):
        st, _ = record_snapshot(st, ok(d), 1, 3, f"t{i}")
    assert [v["digest"][0] for v in st["versions"]] == ["f", "e", "d"]


def test_condition_transition_time_is_kept_when_status_does_not_change():
    conds, changed = set_condition([], "Ready", True, "A", "x", 1)
    t = conds[0]["lastTransitionTime"]
    conds2, changed2 = set_condition([dict(conds[0], lastTransitionTime="2000-01-01T00:00:00Z")], "Ready", True, "B")
    assert changed and not changed2 and conds2[0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert conds2[0]["reason"] == "B" and t


def test_trigger_changes_with_generation_annotation_and_refresh_period():
    ds = {"metadata": {"generation": 1, "annotations": {}},
          "spec": {"source": {"type": "generator", "generator": {"rows": 100}}, "refreshInterval": "1h"}}
    t0 = trigger_of(ds, now=3600 * 10 + 5)
    assert trigger_of(ds, now=3600 * 10 + 3000) == t0
    assert trigger_of(ds, now=3600 * 11 + 1) != t0
    assert trigger_of({**ds, "metadata": {"generation": 2, "annotations": {}}}, now=3600 * 10 + 5) != t0
    annotated = {**ds, "metadata": {"generation": 1, "annotations": {"mlops.dev/refresh": "x"}}}
    assert trigger_of(annotated, now=3600 * 10 + 5) != t0
