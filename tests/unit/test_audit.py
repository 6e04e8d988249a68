"""The RBAC usage check's pure parts: audit events -> permissions, ClusterRole -> grants."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from mlops_operator.localcluster import audit

USER = "system:serviceaccount:mlops-system:mlops-operator"


def test_used_and_unused(tmp_path):
    events = [
        {"user": {"username": USER}, "verb": "create", "responseStatus": {"code": 201},
         "objectRef": {"apiGroup": "batch", "resource": "jobs"}},
        {"user": {"username": USER}, "verb": "create", "responseStatus": {"code": 409},
         "objectRef": {"apiGroup": "batch", "resource": "jobs"}},
        {"user": {"username": USER}, "verb": "patch", "responseStatus": {"code": 200},
         "objectRef": {"apiGroup": "mlops.dev", "resource": "datasets", "subresource": "status"}},
        {"user": {"username": USER}, "verb": "delete", "responseStatus": {"code": 403},
         "objectRef": {"apiGroup": "", "resource": "pods"}},
        {"user": {"username": "someone-else"}, "verb": "get", "objectRef": {"apiGroup": "", "resource": "pods"}},
    ]
    log = tmp_path / "audit.log"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\nnot json\n")
    seen = audit.used([log, tmp_path / "missing.log"], USER)
    assert seen == {("batch", "jobs", "create"), ("mlops.dev", "datasets/status", "patch")}
    role = {"rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
                      {"apiGroups": ["mlops.dev"], "resources": ["datasets/status"], "verbs": ["patch"]}]}
    assert audit.unused(role, seen) == {("batch", "jobs", "get")}


def test_two_roles_are_measured_together_and_where_they_were_used(tmp_path):
    """The operator's two ClusterRoles (cluster-wide reads, per-namespace writes): their union
    is what must be used, and the audit log says in which namespace each permission was."""
    def ev(verb, resource, ns=None, group=""):
        return {"user": {"username": USER}, "verb": verb, "responseStatus": {"code": 200},
                "objectRef": {"apiGroup": group, "resource": resource, **({"namespace": ns} if ns else {})}}

    log = tmp_path / "audit.log"
    log.write_text("\n".join(json.dumps(e) for e in [
        ev("watch", "jobs", group="batch"), ev("create", "jobs", "team", "batch"), ev("create", "jobs", "other", "batch"),
        ev("get", "configmaps", "team")]))
    where = audit.used_where([log], USER)
    assert where[("batch", "jobs", "create")] == {"team", "other"} and where[("batch", "jobs", "watch")] == {""}
    dated = [dict(ev("create", "jobs", "old", "batch"), requestReceivedTimestamp="2026-01-01T10:00:00.000000Z"),
             dict(ev("create", "jobs", "new", "batch"), requestReceivedTimestamp="2026-01-01T12:00:00.000000Z")]
    log2 = tmp_path / "audit.log.1"
    log2.write_text("\n".join(json.dumps(e) for e in dated))
    since = datetime(2026, 1, 1, 11, tzinfo=timezone.utc)
    assert audit.used_where([log2], USER, since=since) == {("batch", "jobs", "create"): {"new"}}
    wide = {"rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch"]}]}
    per_ns = {"rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
                        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"]}]}
    assert audit.granted(wide, per_ns) == {("batch", "jobs", "list"), ("batch", "jobs", "watch"),
                                           ("batch", "jobs", "create"), ("", "configmaps", "get"),
                                           ("", "configmaps", "update")}
    assert audit.unused([wide, per_ns], set(where)) == {("batch", "jobs", "list"), ("", "configmaps", "update")}
