"""The RBAC usage check's pure parts: audit events -> permissions, ClusterRole -> grants."""

from __future__ import annotations

import json

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
