"""`mlops prometheus-config`: write a prometheus.yml (and its rule file, CA and token) that scrapes
the local cluster as the PodMonitors of manifests/monitoring describe, for a plain Prometheus on
this machine. `mlops prometheus`: that, run with Debian's `prometheus` package.

Debian's Prometheus (2.42+ds) has no Kubernetes service discovery, so `mlops prometheus` serves
HTTP SD on loopback: the pods, read from the API server, with the meta labels Kubernetes SD would
give them (promconfig.pod_targets), so the PodMonitors' relabelling applies unchanged.

Prometheus authenticates as a ServiceAccount that may only discover pods and read them through the
API server's pod proxy (least privilege; its token expires), not as the cluster admin. Targets are
reached through that proxy because the host cannot route to pod IPs (they live in the cluster's
network namespace); `--direct` scrapes pod IPs, for a Prometheus that runs where they route.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import promconfig
from .kubeapi import CliError

NAMESPACE = "mlops-monitoring"
ACCOUNT = "prometheus"
ROLE = "mlops-prometheus"
MANIFESTS = Path(__file__).resolve().parents[3] / "manifests" / "monitoring"


def rbac_objects() -> list[dict[str, Any]]:
    """The namespace, ServiceAccount, ClusterRole and binding Prometheus' token belongs to."""
    labels = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/part-of": "mlops"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": NAMESPACE,
                                                                    "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ROLE, "labels": labels},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ROLE, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]},
    ]


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600 if private else 0o644)
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _token(kubeconfig: Path, seconds: int) -> str:
    """Create (or keep) the RBAC objects and request a token for the ServiceAccount."""
    from kubernetes import client, config, utils
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=str(kubeconfig))
    for obj in rbac_objects():
        try:
            utils.create_from_dict(api, obj)
        except utils.FailToCreateError as e:
            if not all(getattr(x, "status", None) == 409 for x in e.api_exceptions):
                raise CliError(f"creating {obj['kind']} {obj['metadata']['name']}: {e}") from None
    try:
        # no audiences: the API server's own, which is who reads the token
        body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[],
                                                                                  expiration_seconds=seconds))
        tr = client.CoreV1Api(api).create_namespaced_service_account_token(ACCOUNT, NAMESPACE, body)
    except ApiException as e:
        raise CliError(f"requesting a token for {NAMESPACE}/{ACCOUNT}: HTTP {e.status} {e.reason}") from None
    if tr.status is None or not tr.status.token:
        raise CliError(f"the API server returned no token for {NAMESPACE}/{ACCOUNT}")
    return str(tr.status.token)


def write_config(cluster_name: str, out: Path | None = None, manifests: Path = MANIFESTS, direct: bool = False,
                 token_seconds: int = 86400, http_sd: str | None = None, scrape_interval: str | None = None,
                 max_for: str | None = None) -> Path:
    """Write prometheus.yml, rules.yml, ca.crt and token under `out` (default: the cluster's state
    directory); returns the prometheus.yml path. `http_sd`: discovery from that HTTP SD URL
    (serve_sd) instead of Kubernetes SD. `scrape_interval` replaces the PodMonitors' intervals and
    `max_for` caps the alerts' `for:` (promconfig.prometheus_config, promconfig.rule_groups): for the
    demo's loop, whose seasons change in minutes."""
    from ..localcluster.config import ClusterConfig

    cfg = ClusterConfig.load(cluster_name)
    if cfg is None:
        raise CliError(f"no cluster named {cluster_name}; run `mlops up` first")
    if not (manifests / "kustomization.yaml").exists():
        raise CliError(f"no kustomization.yaml in {manifests} (pass --manifests DIR)")
    out = (out or cfg.path("prometheus")).resolve()
    kc = yaml.safe_load(cfg.kubeconfig_path.read_text())
    cluster = kc["clusters"][0]["cluster"]
    ca = _write(out / "ca.crt", base64.b64decode(cluster["certificate-authority-data"]))
    token = _write(out / "token", _token(cfg.kubeconfig_path, token_seconds).encode(), private=True)
    access = promconfig.ApiAccess(server=cluster["server"], ca_file=str(ca), token_file=str(token))
    monitors, rules = promconfig.load_kustomization(manifests)
    try:
        doc = promconfig.prometheus_config(monitors, access, via_proxy=not direct, rule_files=["rules.yml"],
                                           http_sd=http_sd, scrape_interval=scrape_interval)
        groups = promconfig.rule_groups(rules, max_for=max_for)
    except promconfig.PodMonitorError as e:
        raise CliError(str(e)) from None
    _write(out / "rules.yml", promconfig.dump(groups).encode())
    return _write(out / "prometheus.yml", promconfig.dump(doc).encode())


def _pods_client(out: Path, server: str) -> Any:
    """A kubernetes ApiClient authenticated with the token and CA that write_config left in `out`."""
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server
    cfg.ssl_ca_cert = str(out / "ca.crt")
    cfg.api_key = {"authorization": "Bearer " + (out / "token").read_text().strip()}
    return client.ApiClient(cfg)


def serve_sd(api: Any, port: int) -> ThreadingHTTPServer:
    """HTTP SD on 127.0.0.1:`port`: GET /pods[?namespace=N...] lists those namespaces' pods (all
    namespaces without one) as target groups. Started in a daemon thread; returns the server."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def pods(namespaces: list[str]) -> list[dict[str, Any]]:
        # raw JSON: the typed models drop nothing we need, but cost a copy of every pod
        items: list[dict[str, Any]] = []
        for ns in list[str | None](namespaces) or [None]:
            resp: Any = (core.list_namespaced_pod(ns, _preload_content=False) if ns
                         else core.list_pod_for_all_namespaces(_preload_content=False))
            try:
                items += json.loads(resp.data).get("items") or []
            finally:
                resp.release_conn()
        return items

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            if url.path != "/pods":
                self.send_error(404)
                return
            try:
                body = json.dumps(promconfig.pod_targets(pods(parse_qs(url.query).get("namespace") or []))).encode()
            except Exception as e:  # noqa: BLE001 - Prometheus keeps the last targets on an error answer
                self.send_error(502, f"listing pods: {e}")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="mlops-prometheus-sd", daemon=True).start()
    return srv


def run_prometheus(cluster_name: str, port: int = 9090, sd_port: int = 9091, out: Path | None = None,
                   manifests: Path = MANIFESTS, scrape_interval: str | None = None, max_for: str | None = None) -> int:
    """Write the configuration (HTTP SD), serve the SD, and run Debian's prometheus on 127.0.0.1:`port`
    until it exits or Ctrl-C; its data lives beside the configuration."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise CliError("prometheus is not installed (Debian: apt-get install prometheus)")
    path = write_config(cluster_name, out, manifests, http_sd=f"http://127.0.0.1:{sd_port}/pods",
                        scrape_interval=scrape_interval, max_for=max_for)
    from ..localcluster.config import ClusterConfig

    cfg = ClusterConfig.load(cluster_name)
    assert cfg is not None  # write_config checked it
    try:
        sd = serve_sd(_pods_client(path.parent, cfg.server_url), sd_port)
    except OSError as e:
        raise CliError(f"cannot serve service discovery on 127.0.0.1:{sd_port}: {e.strerror or e}") from None
    print(f"mlops prometheus: http://127.0.0.1:{port} (config {path}, discovery on 127.0.0.1:{sd_port}); "
          "Ctrl-C stops it", flush=True)
    proc = subprocess.Popen([binary, f"--config.file={path}", f"--storage.tsdb.path={path.parent / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                            stdout=sys.stdout, stderr=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait(30)
    finally:
        sd.shutdown()
        sd.server_close()
