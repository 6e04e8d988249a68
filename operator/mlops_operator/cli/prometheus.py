"""`mlops prometheus-config`: write a prometheus.yml (and its rule file, CA and token) that scrapes
the local cluster as the PodMonitors of manifests/monitoring describe, for a plain Prometheus on
this machine (Debian's `prometheus` package): `prometheus --config.file=DIR/prometheus.yml`.

Prometheus authenticates as a ServiceAccount that may only discover pods and read them through the
API server's pod proxy (least privilege; its token expires), not as the cluster admin. Targets are
reached through that proxy because the host cannot route to pod IPs (they live in the cluster's
network namespace); `--direct` scrapes pod IPs, for a Prometheus that runs where they route.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

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
                 token_seconds: int = 86400) -> Path:
    """Write prometheus.yml, rules.yml, ca.crt and token under `out` (default: the cluster's state
    directory); returns the prometheus.yml path."""
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
        doc = promconfig.prometheus_config(monitors, access, via_proxy=not direct, rule_files=["rules.yml"])
    except promconfig.PodMonitorError as e:
        raise CliError(str(e)) from None
    _write(out / "rules.yml", promconfig.dump(promconfig.rule_groups(rules)).encode())
    return _write(out / "prometheus.yml", promconfig.dump(doc).encode())
