"""The cluster's network namespace: a bridge holding the node / control-plane address.

The control plane, the node agent and kube-proxy live in `mlops-<cluster>`; pods get their own
namespaces with a veth into the bridge. Our machines only pass traffic to non-loopback
addresses inside namespaces the project made, and the API server refuses loopback addresses
in Endpoints, so the API server advertises the bridge address and the host reaches it only
through the loopback forward in `forward.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Iterator

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace or interface operation failed; the message has the command's stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {p.stderr.strip()}")
    return p


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def require_root() -> None:
    if os.geteuid() != 0:
        raise NetnsError(
            "the embedded local cluster needs root to create its network namespaces "
            "(run as root, or use `make demo CLUSTER=kind` with Docker)"
        )


def create_cluster_netns(name: str, bridge: str, node_cidr_address: str, service_cidr: str) -> None:
    """Create the namespace with loopback up and a bridge holding the node address (idempotent)."""
    require_root()
    if not exists(name):
        ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    if ip("-n", name, "link", "show", bridge, check=False).returncode != 0:
        ip("-n", name, "link", "add", bridge, "type", "bridge")
    ip("-n", name, "link", "set", bridge, "up")
    addrs = ip("-n", name, "-o", "addr", "show", "dev", bridge).stdout
    if node_cidr_address not in addrs:
        ip("-n", name, "addr", "add", node_cidr_address, "dev", bridge)
    # pods reach Services and each other through this namespace: it must route
    subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    # Locally started connections to a ClusterIP need a route before kube-proxy's DNAT
    # (output hook) can rewrite them; pods' packets arrive via their default route instead.
    node_ip = node_cidr_address.split("/")[0]
    ip("-n", name, "route", "replace", service_cidr, "dev", bridge, "src", node_ip)


def delete_netns(name: str) -> None:
    """Delete the namespace; its bridge and any veth ends inside it go with it."""
    if exists(name):
        ip("netns", "delete", name, check=False)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with this thread inside namespace `name` (sockets made here stay there)."""
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(host)
    finally:
        os.close(target)
        os.close(host)


def socket_in(name: str, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace `name`, usable from a process in the host namespace."""
    with entered(name):
        return socket.socket(family, type_)


def exec_prefix(name: str) -> list[str]:
    """Command prefix that runs a program inside the namespace.

    nsenter switches only the network namespace; `ip netns exec` would also give the program
    a private mount namespace, hiding the pod namespaces the node agent mounts under /run/netns.
    """
    return ["nsenter", f"--net={NETNS_DIR / name}", "--"]


def pod_namespaces(cluster_ns: str) -> list[str]:
    """Pod namespaces of a cluster: `<cluster_ns>-p<12 hex>` (see node.podnet.netns_name)."""
    pat = re.compile(re.escape(cluster_ns) + r"-p[0-9a-f]{12}$")
    return sorted(p.name for p in NETNS_DIR.glob(f"{cluster_ns}-p*") if pat.match(p.name)) if NETNS_DIR.exists() else []


def delete_cluster_namespaces(cluster_ns: str) -> None:
    """The cluster namespace and every pod namespace it made."""
    for ns in pod_namespaces(cluster_ns):
        delete_netns(ns)
    delete_netns(cluster_ns)
