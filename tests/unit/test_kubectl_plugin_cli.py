"""`kubectl mlops` end to end against a small fake API server (no cluster): the thin kubernetes-client
layer sends the right requests (merge patch, pod create/delete, the pod proxy) and the commands print
what people and scripts expect. The real control plane is exercised by the integration tests."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from mlops_operator.cli import kubectl_plugin as plugin
from mlops_operator.store import FileStore
from mlops_operator.store import bundle_server
from mlops_operator.store.store import StoreError

GROUP_PATH = re.compile(r"^/apis/mlops\.dev/v1alpha1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
PROXY_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy/(.*)$")


class FakeApi:
    def __init__(self, store_root: Path):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.patches: list[tuple[str, str, dict]] = []
        self.pods: dict[str, dict] = {}
        self.logs: dict[str, str] = {}
        self.deleted: list[str] = []
        self.conflicts = 0  # answer this many patches with 409 first
        self.pod_outcome = "run"  # run | pending | corrupt (the proxy flips a byte) | cut (it drops mid-body)
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.proxied: list[str] = []
        self.secrets: dict[str, str] | None = {}  # base64 data of the store Secret; None: forbidden
        self.store_root = store_root

    def add(self, plural: str, obj: dict, ns: str = "ml") -> None:
        obj["metadata"].setdefault("namespace", ns)
        obj["metadata"].setdefault("resourceVersion", "1")
        self.objects[(ns, plural, obj["metadata"]["name"])] = obj

    def run_pod(self, pod: dict) -> None:
        """Run the export pod's bundle server in this process, on a free loopback port, with the
        store root and token the pod spec names (what the node and the pod proxy do for real)."""
        name = pod["metadata"]["name"]
        c = pod["spec"]["containers"][0]
        args = c["command"][3:]  # python -m mlops_operator.store.bundle_server ...
        args[args.index("--store-root") + 1] = str(self.store_root)
        i = args.index("--uri") + 1
        args[i] = args[i].replace("file:///store/", self.store_root.resolve().as_uri() + "/")
        token_hash = next(e["value"] for e in c["env"] if e["name"] == bundle_server.TOKEN_ENV)
        a = dict(zip(args[::2], args[1::2]))
        files = [args[j + 1] for j, x in enumerate(args) if x == "--file"]
        try:
            bundle = bundle_server.prepare(a["--store-root"], a["--uri"], files, a["--digest"])
        except StoreError as e:
            pod["status"] = {"phase": "Failed", "containerStatuses": [{"name": "serve", "state": {
                "terminated": {"exitCode": 1, "message": f"export refused: {e}"}}}]}
            return
        srv = bundle_server.make_server(bundle, token_hash, host="127.0.0.1", port=0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.servers[name] = srv
        pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


def _serve(api: FakeApi):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int, message: str):
            self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "code": code})

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"null")

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            if m := GROUP_PATH.match(u.path):
                ns, plural, name = m.groups()
                if name:
                    obj = api.objects.get((ns, plural, name))
                    return self._send(200, obj) if obj else self._status(404, f'{plural} "{name}" not found')
                items = [o for (n, p, _), o in api.objects.items() if n == ns and p == plural]
                if "labelSelector" in q:
                    k, _, v = q["labelSelector"][0].partition("=")
                    items = [o for o in items if (o["metadata"].get("labels") or {}).get(k) == v]
                return self._send(200, {"apiVersion": "mlops.dev/v1alpha1", "kind": "List",
                                        "items": [{k: v for k, v in o.items() if k != "kind"} for o in items]})
            if m := PROXY_PATH.match(urllib.parse.unquote(u.path)):  # the client sends name%3Aport
                return self._proxy(m.group(2), m.group(4), u.query)
            if m := POD_PATH.match(u.path):
                ns, name, log = m.groups()
                if name not in api.pods:
                    return self._status(404, f'pods "{name}" not found')
                if log:
                    return self._send(200, api.logs.get(name, "").encode(), "text/plain")
                return self._send(200, api.pods[name])
            if "/secrets/" in u.path:
                if api.secrets is None:
                    return self._status(403, 'secrets "mlops-store-s3" is forbidden: User "alice" cannot get '
                                             'resource "secrets"')
                return self._send(200, {"kind": "Secret", "apiVersion": "v1", "data": api.secrets})
            if u.path.endswith("/events"):
                return self._send(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": [
                    {"metadata": {"name": "e1"}, "involvedObject": {}, "type": "Warning", "reason": "Failed",
                     "message": "Back-off pulling image"}]})
            self._status(404, "the server could not find the requested resource")

        def _proxy(self, pod: str, path: str, query: str):
            srv = api.servers.get(pod)
            if srv is None:
                return self._status(503, f"pod {pod} has no server")
            api.proxied.append(path)
            try:
                fwd = {k: v for k, v in self.headers.items() if k.lower() == bundle_server.TOKEN_HEADER.lower()}
                r = urllib.request.urlopen(urllib.request.Request(  # the proxy passes request headers on
                    f"http://127.0.0.1:{srv.server_address[1]}/{path}?{query}", headers=fwd))
            except urllib.error.HTTPError as e:
                return self._send(e.code, e.read(), "text/plain")
            body = r.read()
            if api.pod_outcome == "corrupt" and path == "model.onnx":
                body = bytes([body[0] ^ 1]) + body[1:]
            self.send_response(200)
            for k in ("Content-Length", bundle_server.SHA_HEADER):
                self.send_header(k, r.headers[k])
            self.end_headers()
            if api.pod_outcome == "cut" and path == "model.onnx":  # the connection drops mid-body
                self.wfile.write(body[:len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_PATCH(self):
            m = GROUP_PATH.match(urllib.parse.urlsplit(self.path).path)
            ns, plural, name = m.groups()
            body = self._body()
            api.patches.append((self.headers.get("Content-Type"), name, body))
            obj = api.objects.get((ns, plural, name))
            if obj is None:
                return self._status(404, f'{plural} "{name}" not found')
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if api.conflicts:
                api.conflicts -= 1
                obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
            if rv and rv != obj["metadata"]["resourceVersion"]:
                return self._status(409, "the object has been modified; please apply your changes to the latest "
                                         "version and try again")
            obj["metadata"].setdefault("annotations", {}).update((body.get("metadata") or {}).get("annotations", {}))
            obj["spec"].update(body.get("spec") or {})
            obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
            self._send(200, obj)

        def do_POST(self):
            m = POD_PATH.match(urllib.parse.urlsplit(self.path).path)
            pod = self._body()
            pod["metadata"]["namespace"] = m.group(1)
            api.pods[pod["metadata"]["name"]] = pod
            if api.pod_outcome == "pending":
                pod["status"] = {"phase": "Pending", "containerStatuses": [
                    {"name": "serve", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
            else:
                api.run_pod(pod)
            self._send(201, pod)

        def do_DELETE(self):
            m = POD_PATH.match(urllib.parse.urlsplit(self.path).path)
            api.deleted.append(m.group(2))
            api.pods.pop(m.group(2), None)
            if (srv := api.servers.pop(m.group(2), None)) is not None:
                srv.shutdown()
                srv.server_close()
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def env(tmp_path, monkeypatch):
    api = FakeApi(tmp_path / "store")
    srv = _serve(api)
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{srv.server_address[1]}"}}],
        "users": [{"name": "alice", "user": {"token": "t"}}, {"name": "bob", "user": {"token": "u"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "fake", "user": "alice", "namespace": "ml"}},
                     {"name": "other", "context": {"cluster": "fake", "user": "bob"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kc))
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    yield api, tmp_path
    srv.shutdown()


def cli(capsys, *args):
    rc = plugin.main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _mv(name, version, aliases=(), ready="True", digest="1" * 64, metrics=None):
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "labels": {"mlops.dev/model": "retail"},
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"model": "retail", "version": version,
                     "artifact": {"uri": f"file:///store/models/retail/{digest}/", "digest": digest},
                     "lineage": {"trainingRun": f"run-{version}", "dataset": "retail", "datasetDigest": "a" * 64,
                                 "estimator": "LogisticRegression", "params": {"C": float(version)}},
                     "metrics": metrics or {"roc_auc": 0.8 + version / 100}, "aliases": list(aliases)},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": "m",
                                       "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}


def _run(name, version):
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "creationTimestamp": f"2025-01-01T00:0{version}:00Z"},
            "spec": {"modelName": "retail", "dataset": {"name": "retail"}, "estimator": {"type": "LogisticRegression"}},
            "status": {"phase": "Succeeded", "metric": "roc_auc", "metrics": {"roc_auc": 0.8 + version / 100},
                       "bestParams": {"C": float(version)}, "modelVersion": f"retail-v{version}",
                       "datasetDigest": "a" * 64}}


def test_not_found_and_bad_context_are_one_line_errors(env, capsys):
    rc, out, err = cli(capsys, "lineage", "nope")
    assert rc == 1 and out == ""
    assert err.strip() == 'error: ModelVersion "nope" not found in namespace ml'
    rc, _, err = cli(capsys, "compare", "x", "y")
    assert rc == 1 and 'no ModelVersion or TrainingRun named "x" in namespace ml' in err
    rc, _, err = cli(capsys, "--context", "missing", "runs")
    assert rc == 1 and "context 'missing' not found" in err and "Traceback" not in err


def test_runs_versions_and_namespaces(env, capsys):
    api, _ = env
    api.add("trainingruns", _run("run-2", 2))
    api.add("trainingruns", _run("run-1", 1))
    api.add("modelversions", _mv("retail-v1", 1))
    api.add("modelversions", _mv("retail-v2", 2, aliases=["production"]))
    rc, out, _ = cli(capsys, "runs")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[:3] == ["NAME", "MODEL", "PHASE"]
    assert [ln.split()[0] for ln in lines[1:]] == ["run-1", "run-2"]
    assert "roc_auc=0.82" in lines[2] and f"retail@{'a' * 12}" in lines[2]
    rc, out, _ = cli(capsys, "versions", "--model", "retail", "-o", "json")
    doc = json.loads(out)
    assert [i["name"] for i in doc["items"]] == ["retail-v1", "retail-v2"]
    assert doc["items"][1]["aliases"] == ["production"]
    rc, out, _ = cli(capsys, "runs", "-n", "empty")
    assert rc == 0 and out.strip() == "No TrainingRuns in namespace empty."
    rc, out, _ = cli(capsys, "--context", "other", "versions")  # context without namespace: default
    assert out.strip() == "No ModelVersions in namespace default."
    rc, out, _ = cli(capsys, "runs", "-o", "yaml")
    assert yaml.safe_load(out)["items"][0]["name"] == "run-1"


def test_compare_resolves_versions_then_runs(env, capsys):
    api, _ = env
    api.add("modelversions", _mv("retail-v1", 1))
    api.add("trainingruns", _run("run-2", 2))
    rc, out, _ = cli(capsys, "compare", "retail-v1", "run-2", "-o", "json")
    doc = json.loads(out)
    assert rc == 0 and [i["ref"] for i in doc["items"]] == ["mv/retail-v1", "tr/run-2"]
    assert doc["metrics"]["roc_auc"]["best"] == [1] and doc["params"]["C"]["differs"] is True
    rc, out, _ = cli(capsys, "compare", "mv/retail-v1", "tr/run-2")
    assert "0.82 (best)" in out and "* C" in out
    rc, _, err = cli(capsys, "compare", "tr/retail-v1", "run-2")
    assert rc == 1 and 'TrainingRun "retail-v1" not found' in err


def test_lineage_through_the_api(env, capsys):
    api, _ = env
    api.add("modelversions", _mv("retail-v2", 2, aliases=["production"]))
    api.add("trainingruns", _run("run-2", 2))
    api.add("datasets", {"kind": "Dataset", "metadata": {"name": "retail"}, "spec": {},
                         "status": {"versions": [{"id": "a" * 12, "digest": "a" * 64, "rows": 500,
                                                  "createdAt": "t", "validated": True}]}})
    api.add("inferenceservices", {"kind": "InferenceService", "metadata": {"name": "api"},
                                  "spec": {"model": "retail", "alias": "production"},
                                  "status": {"modelVersion": "retail-v2"}})
    rc, out, _ = cli(capsys, "lineage", "retail-v2")
    assert rc == 0 and "500 rows" in out and "InferenceService api  serving it" in out
    rc, out, _ = cli(capsys, "lineage", "mv/retail-v2", "-o", "json")
    doc = json.loads(out)
    assert doc["trainingRun"]["name"] == "run-2" and doc["dataset"]["rows"] == 500


def test_promote_sends_a_merge_patch_and_retries_conflicts(env, capsys):
    api, _ = env
    api.add("modelversions", _mv("retail-v1", 1, aliases=["production"]))
    api.add("modelversions", _mv("retail-v2", 2, aliases=["champion"]))
    api.conflicts = 1
    rc, out, err = cli(capsys, "promote", "retail-v2", "--reason", "better auc")
    assert rc == 0, err
    ctype, name, body = api.patches[-1]
    assert ctype == "application/merge-patch+json" and name == "retail-v2"
    assert body["spec"] == {"aliases": ["champion", "production"]}
    assert body["metadata"]["annotations"] == {"mlops.dev/alias-changed-by": "alice",
                                               "mlops.dev/alias-change-reason": "better auc"}
    assert len(api.patches) == 2  # the first got 409 and was rebuilt from a fresh read
    assert "retail-v2 now holds alias production" in out and "takes production off retail-v1" in out
    rc, out, _ = cli(capsys, "promote", "retail-v2")
    assert rc == 0 and "already holds" in out and len(api.patches) == 2
    rc, out, _ = cli(capsys, "demote", "retail-v2", "--alias", "champion", "-o", "json")
    assert json.loads(out)["changed"] is True
    assert api.patches[-1][2]["spec"] == {"aliases": ["production"]}
    assert api.patches[-1][2]["metadata"]["annotations"]["mlops.dev/alias-change-reason"] == \
        "demoted with kubectl mlops"


def test_promote_refuses_unready(env, capsys):
    api, _ = env
    api.add("modelversions", _mv("retail-v3", 3, ready="False"))
    rc, _, err = cli(capsys, "promote", "retail-v3")
    assert rc == 1 and "not Ready" in err and "--force" in err and api.patches == []
    rc, _, _ = cli(capsys, "promote", "retail-v3", "--force", "--alias", "staging")
    assert rc == 0 and api.patches[-1][2]["spec"]["aliases"] == ["staging"]


def _stored_model(api: FakeApi, tmp: Path) -> str:
    onnx = tmp / "src.onnx"
    onnx.write_bytes(b"\x08\x07onnx-model-bytes" * 1000)
    digest = hashlib.sha256(onnx.read_bytes()).hexdigest()
    man = tmp / "model.json"
    man.write_text(json.dumps({"format": "mlops.dev/model/v1", "onnxSha256": digest}))
    got, _ = FileStore(api.store_root).put_version("models", "retail", onnx, {"model.json": man})
    assert got == digest
    api.add("modelversions", _mv("retail-v2", 2, digest=digest))
    return digest


def test_export_through_the_pod_proxy(env, capsys, monkeypatch):
    api, tmp = env
    digest = _stored_model(api, tmp)
    monkeypatch.setenv("MLOPS_RUNTIME_IMAGE", "example/runtime:1")
    rc, out, err = cli(capsys, "export", "retail-v2", "-o", str(tmp / "bundle"), "--store-claim", "claim-x")
    assert rc == 0, err
    assert hashlib.sha256((tmp / "bundle" / "model.onnx").read_bytes()).hexdigest() == digest
    assert json.loads((tmp / "bundle" / "model.json").read_text())["onnxSha256"] == digest
    assert f"model.onnx sha256 {digest} verified" in out
    (pod_name,) = api.deleted
    assert pod_name.startswith("mlops-export-") and api.pods == {} and api.servers == {}
    assert api.proxied == ["model.onnx", "model.json", "done"]
    # the pod as sent: image from the environment, claim from the flag
    result = json.loads(cli(capsys, "export", "retail-v2", "-o", str(tmp / "b2"), "--format", "json")[1])
    assert result["digest"] == digest and set(result["files"]) == {"model.onnx", "model.json"}


def test_export_failures_delete_the_pod_and_keep_no_bad_file(env, capsys):
    api, tmp = env
    _stored_model(api, tmp)
    api.pod_outcome = "corrupt"
    rc, _, err = cli(capsys, "export", "retail-v2", "-o", str(tmp / "bad"))
    assert rc == 1 and "received bytes with sha256" in err and "the export pod sent" in err
    assert not (tmp / "bad" / "model.onnx").exists() and len(api.deleted) == 1
    api.pod_outcome = "cut"
    rc, _, err = cli(capsys, "export", "retail-v2", "-o", str(tmp / "cut"))
    assert rc == 1 and "model.onnx: the transfer from pod" in err and "broke off" in err, err
    assert not (tmp / "cut" / "model.onnx").exists() and len(api.deleted) == 2
    api.deleted.pop()
    api.pod_outcome = "pending"
    rc, _, err = cli(capsys, "export", "retail-v2", "-o", str(tmp / "slow"), "--timeout", "0.5")
    assert rc == 1 and "was not ready within 0.5s" in err and "ImagePullBackOff" in err
    assert "Back-off pulling image" in err and len(api.deleted) == 2
    # the store's bytes do not match the recorded digest: the export pod refuses, the plugin says why
    api.pod_outcome = "run"
    mv = api.objects[("ml", "modelversions", "retail-v2")]
    real = mv["spec"]["artifact"]["digest"]
    fake = "f" * 64
    (api.store_root / "models" / "retail" / real).rename(api.store_root / "models" / "retail" / fake)
    mv["spec"]["artifact"] = {"uri": f"file:///store/models/retail/{fake}/", "digest": fake}
    rc, _, err = cli(capsys, "export", "retail-v2", "-o", str(tmp / "tampered"))
    assert rc == 1 and "ended (Failed) before serving: export refused" in err and "does not match" in err
    assert len(api.deleted) == 3
    assert not (tmp / "tampered" / "model.onnx").exists()


def test_export_from_s3_says_what_is_missing_before_any_transfer(env, capsys, monkeypatch):
    """The s3 way's refusals that need no S3 server (the transfers are in tests/integration/test_export.py)."""
    import base64

    api, tmp = env
    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLOPS_STORE"):
        monkeypatch.delenv(v, raising=False)
    mv = _mv("retail-v7", 7)
    mv["spec"]["artifact"]["uri"] = f"s3://bkt/ops/ml/models/retail/{'1' * 64}/"
    api.add("modelversions", mv)
    rc, _, err = cli(capsys, "export", "retail-v7", "-o", str(tmp / "a"))
    assert rc == 1 and "--store" in err and "$MLOPS_STORE" in err
    store = "s3://bkt?endpoint=http://127.0.0.1:9"
    api.secrets = None
    rc, _, err = cli(capsys, "export", "retail-v7", "-o", str(tmp / "b"), "--store", store)
    assert rc == 1 and "forbidden" in err and "AWS_ACCESS_KEY_ID" in err
    api.secrets = {"AWS_ACCESS_KEY_ID": base64.b64encode(b"AKX").decode()}
    rc, _, err = cli(capsys, "export", "retail-v7", "-o", str(tmp / "c"), "--store", store)
    assert rc == 1 and 'Secret "mlops-store-s3" in ml: S3 credentials incomplete' in err
    assert "AWS_SECRET_ACCESS_KEY" in err
    api.secrets["AWS_SECRET_ACCESS_KEY"] = base64.b64encode(b"s3cr3t-value").decode()
    rc, _, err = cli(capsys, "export", "retail-v7", "-o", str(tmp / "d"), "--store", store)
    # the Secret is read; the endpoint is closed: a reason, and never the secret
    assert rc == 1 and "StoreUnreachable" in err and "s3cr3t-value" not in err
    assert api.pods == {} and not (tmp / "d" / "model.onnx").exists()


def test_unreachable_server_and_missing_credentials(tmp_path, monkeypatch, capsys):
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "x", "user": "u"}}]}))
    rc, out, err = cli(capsys, "--kubeconfig", str(kc), "versions")
    assert rc == 1 and out == ""
    assert err.startswith("error: cannot reach the Kubernetes API server at http://127.0.0.1:9")
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rc, _, err = cli(capsys, "runs")
    assert rc == 1 and err.startswith("error: no cluster credentials")
    empty = tmp_path / "empty"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    rc, _, err = cli(capsys, "--kubeconfig", str(empty), "runs")
    assert rc == 1 and "cluster credentials" in err and "Traceback" not in err


def test_api_errors_are_one_line(env, capsys):
    rc, _, err = cli(capsys, "runs", "-n", "ml")  # fine
    assert rc == 0
    # a kind the fake server does not know answers like a cluster without the CRDs
    from mlops_operator.cli.kubeapi import Kube, NotFound

    kube = Kube.connect()
    with pytest.raises(NotFound, match="CRD installed"):
        kube._call("X", kube._custom().get_cluster_custom_object, "mlops.dev", "v1alpha1", "x", "y")
