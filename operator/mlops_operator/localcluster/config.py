"""Where a local cluster keeps its state and which versions and address ranges it uses.

Everything a cluster owns lives under one state directory, so `mlops down --purge` (or
`rm -rf`) is the whole clean-up, and two clusters (the user's demo and the test suite) can run
side by side: each has its own network namespace, and only the forwarded loopback port differs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The one Kubernetes release every component comes from.
KUBERNETES_VERSION = "1.36.3"
#: The etcd release that Kubernetes release is tested with (its go.mod requires etcd 3.6.8).
ETCD_VERSION = "3.6.8"

#: Address of the node / control plane on the cluster bridge (API server advertise address).
NODE_IP = "10.240.0.1"
NODE_NETWORK = "10.240.0.0/24"
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
#: First address of the service range: the ClusterIP of the `kubernetes` Service.
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
#: ClusterIP of kube-dns (the tenth address of the service range, as kubeadm picks it)
CLUSTER_DNS_IP = "10.96.0.10"
API_PORT = 6443
BRIDGE = "mlops0"

NODE_KINDS = ("process", "real")

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")


def cache_dir() -> Path:
    """Per-user cache for built or downloaded binaries, shared by every clone and cluster."""
    base = os.environ.get("MLOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlops"
    )
    return Path(base)


def state_root() -> Path:
    """Root under which each named cluster keeps its state directory."""
    base = os.environ.get("MLOPS_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "mlops"
    )
    return Path(base)


@dataclass
class ClusterConfig:
    """Settings of one named local cluster; persisted as `cluster.json` in its state dir."""

    name: str = "local"
    api_host_port: int = 16443
    kubernetes_version: str = KUBERNETES_VERSION
    etcd_version: str = ETCD_VERSION
    node_name: str = ""
    #: which nodes join: "process" (pods as host processes, fast, no images) and/or "real"
    #: (upstream kubelet + containerd running the project's images; see realnode.py)
    node_kinds: list[str] = field(default_factory=lambda: ["process"])
    extra: dict[str, str] = field(default_factory=dict)
    #: run SeaweedFS' S3 gateway in the cluster (`mlops up --s3`, s3cluster.py) on the bridge
    #: address pods reach, and forward `s3_host_port` on the host's loopback to it
    s3: bool = False
    s3_host_port: int = 0

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"cluster name {self.name!r} must be 1-15 lowercase letters, digits or '-' "
                "(it becomes a network namespace name)"
            )
        if not self.node_name:
            self.node_name = f"mlops-{self.name}-node"
        self.set_node_kinds(self.node_kinds)

    def set_node_kinds(self, kinds: list[str]) -> None:
        unknown = set(kinds) - set(NODE_KINDS)
        if unknown or not kinds:
            raise ValueError(f"node kinds {sorted(unknown) or '(none)'}: choose one or both of {', '.join(NODE_KINDS)}")
        self.node_kinds = list(kinds)

    @property
    def has_process_node(self) -> bool:
        return "process" in self.node_kinds

    @property
    def has_real_node(self) -> bool:
        return "real" in self.node_kinds

    @property
    def state_dir(self) -> Path:
        return state_root() / self.name

    @property
    def netns(self) -> str:
        return f"mlops-{self.name}"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.api_host_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path("cluster.json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.path("cluster.json"))

    @classmethod
    def load(cls, name: str) -> "ClusterConfig | None":
        """The saved config of cluster `name`, or None if it was never created."""
        f = state_root() / name / "cluster.json"
        if not f.exists():
            return None
        return cls(**json.loads(f.read_text()))


def daemon_config(argv: list[str]) -> ClusterConfig:
    """The config of the cluster a daemon (supervisor, node agent, provisioner) serves, with
    the log format they share; exits with a message when the cluster does not exist."""
    import logging

    cfg = ClusterConfig.load(argv[0]) if argv else None
    if cfg is None:
        raise SystemExit(f"no cluster named {argv[0] if argv else '(none given)'!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return cfg
