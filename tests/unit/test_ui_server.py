"""The web view's HTTP side on a loopback port: routing, namespaces, RBAC refusals (403 -> "no
permission", never another namespace's objects), security headers, read-only, Host check, and
the CLI entries. The API is an in-memory Kube (the browser test runs against a real one)."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from mlops_operator.cli import kubectl_plugin
from mlops_operator.cli import main as mlops_main
from mlops_operator.cli.kubeapi import CliError, Forbidden, Kube
from mlops_operator.cli.ui import server

from ..ui_samples import by_kind

KINDS = {"datasets": "Dataset", "trainingruns": "TrainingRun", "modelversions": "ModelVersion",
         "inferenceservices": "InferenceService", "driftmonitors": "DriftMonitor"}


@dataclass
class MemoryKube(Kube):
    """Kube.list over dicts per namespace; namespaces in `refused` answer as RBAC does (403)."""

    store: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    refused: frozenset[str] = frozenset()
    calls: list[tuple[str, str]] = field(default_factory=list)

    def list(self, plural: str, label_selector: str | None = None, all_namespaces: bool = False) -> list[dict]:
        assert not all_namespaces, "the view reads one namespace at a time"
        self.calls.append((self.namespace, plural))
        if self.namespace == "down":
            raise CliError("cannot reach the Kubernetes API server at https://127.0.0.1:1: Connection refused")
        if self.namespace in self.refused:
            raise Forbidden(f'{KINDS[plural]}s: {plural}.mlops.dev is forbidden: User "{self.user}" cannot list '
                            f'resource "{plural}" in the namespace "{self.namespace}" (HTTP 403)')
        items = self.store.get(self.namespace, {}).get(plural, [])
        if label_selector:  # existence selectors only, as the view uses
            items = [o for o in items if label_selector in ((o.get("metadata") or {}).get("labels") or {})]
        return items


@pytest.fixture
def view():
    demo = {p: by_kind(k) for p, k in KINDS.items()}
    other = {"trainingruns": [{"metadata": {"name": "other-teams-run"}, "spec": {"modelName": "x"}}]}
    kube = MemoryKube(namespace="demo", user="alice", context="local",
                      store={"demo": demo, "other": other}, refused=frozenset({"secret"}))
    srv = server.make_server(kube, "127.0.0.1", 0, log=lambda m: None)
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield kube, srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def get(port: int, path: str, method: str = "GET", host: str | None = None) -> tuple[int, dict[str, str], str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers={"Host": host or f"127.0.0.1:{port}"})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


@pytest.mark.parametrize("path,expect", [
    ("/runs", "propensity-retrain-1"), ("/versions", "propensity-v2"), ("/monitoring", "DriftMonitor propensity"),
    ("/datasets", "Dataset retail"), ("/", "TrainingRuns")])
def test_pages_default_to_the_context_namespace(view, path, expect):
    kube, port = view
    status, headers, body = get(port, path)
    assert status == 200 and expect in body and "in namespace demo" in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script at all
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_the_namespace_comes_from_the_query(view):
    kube, port = view
    status, _, body = get(port, "/runs?ns=other")
    assert status == 200 and "other-teams-run" in body and "propensity" not in body


def test_a_namespace_without_permission_says_so_and_shows_nothing_else(view):
    kube, port = view
    for path in ("/runs", "/versions", "/monitoring", "/datasets"):
        status, _, body = get(port, f"{path}?ns=secret")
        assert status == 403, path
        assert "No permission" in body and "namespace secret" in body
        assert "propensity" not in body and "other-teams-run" not in body  # no other namespace's data
    assert {ns for ns, _ in kube.calls} <= {"secret"}  # it asked about that namespace only, and fell back to none
    status, _, body = get(port, "/?ns=secret")
    assert status == 403 and body.count("no permission") == 5


def test_bad_input_is_a_page_not_a_crash(view):
    _, port = view
    status, _, body = get(port, "/datasets?ns=down")
    assert status == 502 and "cannot reach the Kubernetes API server" in body
    status, _, body = get(port, "/runs?ns=..%2Fkube-system")
    assert status == 400 and "is not a namespace name" in body
    status, _, body = get(port, "/runs?ns=" + "a" * 64)
    assert status == 400
    status, _, body = get(port, "/nope")
    assert status == 404 and "/runs" in body
    status, _, _ = get(port, "/runs", method="POST")
    assert status == 405
    status, _, body = get(port, "/healthz")
    assert status == 200 and body == "ok\n"


def test_requests_for_another_host_name_are_refused(view):
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 must not read the cluster through us."""
    _, port = view
    status, _, body = get(port, "/runs", host=f"evil.example:{port}")
    assert status == 400 and "propensity" not in body
    assert get(port, "/runs", host=f"localhost:{port}")[0] == 200
    assert server.host_name("[::1]:8700") == "[::1]" and server.is_loopback(server.host_name("[::1]:8700"))
    assert not server.is_loopback("10.0.0.1") and server.is_loopback("127.0.0.2")


def test_a_broken_object_gives_a_500_page_and_the_server_keeps_serving(view):
    kube, port = view
    kube.store["broken"] = {"trainingruns": [{"metadata": {"name": "b"}, "spec": {"estimator": "not-a-dict"}}]}
    status, _, body = get(port, "/runs?ns=broken")
    assert status == 500 and "failed to render" in body
    assert get(port, "/runs")[0] == 200


def test_it_refuses_to_listen_beyond_loopback():
    kube = MemoryKube(namespace="demo", user="alice", context=None)
    with pytest.raises(CliError, match="loopback only"):
        server.make_server(kube, "0.0.0.0", 0)


def test_both_commands_have_ui():
    a = mlops_main.build_parser().parse_args(["ui", "--port", "0", "-n", "demo", "--context", "c"])
    assert (a.port, a.namespace, a.context, a.address) == (0, "demo", "c", "127.0.0.1")
    a = kubectl_plugin.build_parser().parse_args(["ui", "--port", "9000", "-n", "demo"])
    assert a.func is kubectl_plugin.cmd_ui and a.port == 9000 and a.namespace == "demo"
