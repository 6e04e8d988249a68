"""Command lines of the control-plane components, as a kubeadm control plane would run them.

Everything listens inside the cluster namespace: etcd and the component health ports on its
loopback, the API server on all its addresses (the bridge address is what Services and pods
reach; the host reaches it through the loopback forward).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import (API_PORT, CLUSTER_DOMAIN, NODE_IP, POD_CIDR, SERVICE_CIDR, ClusterConfig)

ETCD_CLIENT = "http://127.0.0.1:2379"


@dataclass
class Component:
    """One supervised process: its argv, and the URL that says it is healthy (inside the netns)."""

    name: str
    argv: list[str]
    health_url: str
    #: components that must be healthy before this one starts
    after: list[str] = field(default_factory=list)
    #: environment variables added to the supervisor's own
    env: dict[str, str] = field(default_factory=dict)
    #: runs once to completion (exit 0 = healthy) instead of being kept running
    oneshot: bool = False


#: The API server records what the operator's ServiceAccount does (metadata only: who, verb,
#: resource; no bodies), so a test can compare what the operator uses with what its
#: ClusterRole grants. Nothing else is audited.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:mlops-system:mlops-operator"]
- level: None
"""


def audit_log(cfg: ClusterConfig) -> Path:
    return cfg.path("audit", "audit.log")


def _audit_args(cfg: ClusterConfig) -> list[str]:
    policy = cfg.path("audit", "policy.yaml")
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(AUDIT_POLICY)
    return ["--audit-policy-file", str(policy), "--audit-log-path", str(audit_log(cfg)),
            "--audit-log-maxsize", "50", "--audit-log-maxbackup", "2", "--audit-log-format", "json"]


def control_plane(cfg: ClusterConfig, bins: dict[str, Path]) -> list[Component]:
    """Every supervised process of the cluster, in start order, for its kinds of node."""
    from . import realnode  # realnode builds Components too

    pki = cfg.path("pki")
    kc = cfg.path("kubeconfigs")
    etcd = Component(
        "etcd",
        [str(bins["etcd"]), "--name", "mlops", "--data-dir", str(cfg.path("etcd")),
         "--listen-client-urls", ETCD_CLIENT, "--advertise-client-urls", ETCD_CLIENT,
         "--listen-peer-urls", "http://127.0.0.1:2380",
         "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
         "--initial-cluster", "mlops=http://127.0.0.1:2380",
         "--listen-metrics-urls", "http://127.0.0.1:2381",
         # A development cluster: trade durability on power loss for much faster writes.
         "--unsafe-no-fsync", "--snapshot-count", "10000", "--quota-backend-bytes", str(2 * 1024**3),
         "--log-level", "warn"],
        "http://127.0.0.1:2381/health",
    )
    apiserver = Component(
        "kube-apiserver",
        [str(bins["kube-apiserver"]),
         "--etcd-servers", ETCD_CLIENT,
         "--advertise-address", NODE_IP, "--bind-address", "0.0.0.0", "--secure-port", str(API_PORT),
         "--service-cluster-ip-range", SERVICE_CIDR,
         "--authorization-mode", "Node,RBAC",
         # PodNodeSelector: a namespace annotated scheduler.alpha.kubernetes.io/node-selector
         # runs all its pods on the matching nodes (e.g. mlops.dev/node-kind=real)
         "--enable-admission-plugins", "NodeRestriction,PodNodeSelector",
         "--allow-privileged=true",
         "--client-ca-file", str(pki / "ca.crt"),
         "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
         "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
         "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
         "--kubelet-certificate-authority", str(pki / "ca.crt"),
         "--kubelet-preferred-address-types", "InternalIP",
         "--service-account-issuer", f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
         "--service-account-key-file", str(pki / "sa.pub"),
         "--service-account-signing-key-file", str(pki / "sa.key"),
         "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
         "--requestheader-allowed-names", "front-proxy-client",
         "--requestheader-username-headers", "X-Remote-User",
         "--requestheader-group-headers", "X-Remote-Group",
         "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
         "--proxy-client-cert-file", str(pki / "front-proxy-client.crt"),
         "--proxy-client-key-file", str(pki / "front-proxy-client.key"),
         *_audit_args(cfg),
         "--profiling=false", "--v", "1"],
        f"https://127.0.0.1:{API_PORT}/readyz",
        after=["etcd"],
    )
    common = ["--leader-elect=true", "--bind-address", "127.0.0.1", "--profiling=false", "--v", "1"]
    cm = Component(
        "kube-controller-manager",
        [str(bins["kube-controller-manager"]),
         "--kubeconfig", str(kc / "controller-manager.conf"),
         "--authentication-kubeconfig", str(kc / "controller-manager.conf"),
         "--authorization-kubeconfig", str(kc / "controller-manager.conf"),
         "--root-ca-file", str(pki / "ca.crt"),
         "--service-account-private-key-file", str(pki / "sa.key"),
         "--use-service-account-credentials=true",
         "--cluster-signing-cert-file", str(pki / "ca.crt"),
         "--cluster-signing-key-file", str(pki / "ca.key"),
         "--allocate-node-cidrs=true", "--cluster-cidr", POD_CIDR, "--node-cidr-mask-size", "24",
         "--service-cluster-ip-range", SERVICE_CIDR,
         "--cert-dir", str(cfg.path("run", "controller-manager")),
         # notice a stopped node agent within ~20s instead of the default 50s
         "--node-monitor-grace-period", "20s", "--node-monitor-period", "2s",
         *common],
        "https://127.0.0.1:10257/healthz",
        after=["kube-apiserver"],
    )
    scheduler = Component(
        "kube-scheduler",
        [str(bins["kube-scheduler"]),
         "--kubeconfig", str(kc / "scheduler.conf"),
         "--authentication-kubeconfig", str(kc / "scheduler.conf"),
         "--authorization-kubeconfig", str(kc / "scheduler.conf"),
         "--cert-dir", str(cfg.path("run", "scheduler")),
         *common],
        "https://127.0.0.1:10259/healthz",
        after=["kube-apiserver"],
    )
    agent = Component(
        "node-agent",
        [sys.executable, "-m", "mlops_operator.localcluster.node.agent", cfg.name],
        "http://127.0.0.1:10248/healthz",
        after=["kube-apiserver"],
    )
    # One kube-proxy serves every node: they share the cluster namespace's routing table.
    proxy_node = cfg.node_name if cfg.has_process_node else realnode.node_name(cfg)
    proxy = Component(
        "kube-proxy",
        [str(bins["kube-proxy"]),
         "--kubeconfig", str(kc / "kube-proxy.conf"),
         "--hostname-override", proxy_node,
         "--proxy-mode", "nftables",
         "--cluster-cidr", POD_CIDR,
         # conntrack limits are machine-wide sysctls a network namespace cannot set: leave them
         "--conntrack-max-per-core", "0",
         "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0",
         "--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
         "--v", "1"],
        "http://127.0.0.1:10256/healthz",
        after=["node-agent" if cfg.has_process_node else "kubelet"],
    )
    storage = Component(
        "local-path-provisioner",
        [sys.executable, "-m", "mlops_operator.localcluster.provisioner", cfg.name],
        "http://127.0.0.1:10260/healthz",
        after=["kube-apiserver"],
    )
    nodes = [agent] if cfg.has_process_node else []
    if cfg.has_real_node:
        nodes += realnode.components(cfg, bins)
    extra: list[Component] = []
    if cfg.s3:
        from . import s3cluster

        extra.append(Component(s3cluster.COMPONENT,
                               [sys.executable, "-m", "mlops_operator.localcluster.s3cluster", cfg.name],
                               f"http://127.0.0.1:{s3cluster.HEALTH_PORT}/healthz"))
    return [etcd, apiserver, cm, scheduler, *nodes, proxy, storage, *extra]

