"""Pod networking: a network namespace per pod with a routed veth (no bridge between pods).

Each pod gets `eth0` with a /32 address from the node's podCIDR and a default route to the
gateway address, which lives on the cluster namespace's bridge; the cluster side of the veth
gets a /32 host route. All pod traffic is therefore routed (never bridged) through the
cluster namespace, so kube-proxy's nftables DNAT sees both directions of every Service
connection without br_netfilter, as with Calico's routed model.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

from .. import netns


class PodNetError(RuntimeError):
    pass


def _run(args: list[str], stdin: str | None = None) -> None:
    p = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise PodNetError(f"`{' '.join(args)}` failed: {p.stderr.strip()} {p.stdout.strip()}")


class IPAM:
    """Addresses from the node's podCIDR, one file per address (O_EXCL makes allocation atomic)."""

    def __init__(self, directory: Path, pod_cidr: str):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.net = ipaddress.ip_network(pod_cidr)

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    def owner_of(self, ip: str) -> str | None:
        try:
            return (self.dir / ip).read_text()
        except OSError:
            return None

    def allocate(self, owner: str, prefer: str | None = None) -> str:
        """An address for `owner`: the one it holds, else `prefer` (the pod's reported podIP,
        which the API server will not let change), else the lowest free one."""
        for existing in self.dir.iterdir():
            if existing.read_text() == owner:
                return existing.name
        if prefer and ipaddress.ip_address(prefer) in self.net:
            holder = self.owner_of(prefer)
            if holder is None:
                (self.dir / prefer).write_text(owner)
                return prefer
            raise PodNetError(f"pod IP {prefer} is held by another pod ({holder}); cannot restore it")
        hosts = self.net.hosts()
        next(hosts)  # the gateway
        for addr in hosts:
            try:
                fd = os.open(self.dir / str(addr), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            return str(addr)
        raise PodNetError(f"no free address left in {self.net}")

    def release(self, owner: str) -> None:
        for existing in self.dir.iterdir():
            try:
                if existing.read_text() == owner:
                    existing.unlink()
            except OSError:
                pass


def netns_name(cluster: str, uid: str) -> str:
    return f"mlops-{cluster}-p{uid.replace('-', '')[:12]}"


def veth_name(uid: str) -> str:
    return "mv" + uid.replace("-", "")[:12]  # interface names are at most 15 characters


def setup(ns: str, veth: str, ip: str, gateway: str) -> None:
    """Create the pod namespace and its routed veth (idempotent; run from the cluster netns)."""
    if not netns.exists(ns):
        _run(["ip", "netns", "add", ns])
    if subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0:
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    _run(["ip", "-batch", "-"], stdin="\n".join([
        f"link set {veth} up",
        f"route replace {ip}/32 dev {veth} scope link",
    ]) + "\n")
    _run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join([
        "link set lo up",
        f"addr replace {ip}/32 dev eth0",
        "link set eth0 up",
        f"route replace {gateway} dev eth0 scope link",
        f"route replace default via {gateway} dev eth0",
    ]) + "\n")


def teardown(ns: str, veth: str) -> None:
    """Remove the pod's namespace (its eth0 and thus the veth pair go with it)."""
    subprocess.run(["ip", "link", "delete", veth], capture_output=True)
    netns.delete_netns(ns)


def prepare_node_network(bridge: str, gateway: str) -> None:
    """Cluster-namespace settings pods need: forwarding on, the gateway address on the bridge."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    addrs = subprocess.run(["ip", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True).stdout
    if f" {gateway}/32 " not in addrs:
        _run(["ip", "addr", "add", f"{gateway}/32", "dev", bridge])
