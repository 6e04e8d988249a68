"""A real node: the upstream kubelet with containerd, runc and CNI, in the cluster namespace.

The process node runs pods as host processes; this node runs the project's images the way a
user's cluster does (cgroups, seccomp, read-only root filesystems, image layers, cluster DNS,
`kubectl exec` and `port-forward`). Both kinds can join one cluster.

Layout (everything belongs to the cluster, so `mlops down` removes it all):
- The node has its own address on the cluster bridge (`10.240.0.2`), so it keeps the standard
  kubelet ports and the API server reaches each node's kubelet at the node's InternalIP.
- containerd and the kubelet run in the cluster network namespace via `nsenter --net=` (not
  `ip netns exec`, which remounts /sys and hides the cgroup mounts), with their roots under
  the cluster state directory and their sockets and pod network namespaces under
  `/run/mlops/<cluster>/`.
- Pod cgroups live under `/mlops-<cluster>` in every cgroup hierarchy (kubelet `cgroupRoot`),
  so teardown finds every container process there even after a shim escaped.
- CNI: the `ptp` plugin gives each pod a routed veth with a /32 host route in the cluster
  namespace (the process node's model), over the node's podCIDR that the controller-manager
  allocates and the kubelet hands to containerd (containerd's `conf_template`).
- Images reach containerd without a registry: `ctr images import` of the OCI archives that
  `mlops images` writes (what `kind load image-archive` does inside a kind node).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable

from .components import Component
from .config import API_PORT, CLUSTER_DNS_IP, CLUSTER_DOMAIN, ClusterConfig

REAL_NODE_IP = "10.240.0.2"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
CONTAINERD_METRICS = "127.0.0.1:1338"
PAUSE_IMAGE = "localhost/mlops-pause:3.10"
CGROUP_ROOT_PREFIX = "mlops-"
CGROUP_FS = Path("/sys/fs/cgroup")
CRI_NAMESPACE = "k8s.io"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
#: the real node's label, and the namespace annotation (PodNodeSelector admission) that runs
#: every pod of a namespace on it
NODE_KIND_LABEL = ("mlops.dev/node-kind", "real")
PIN_ANNOTATION = ("scheduler.alpha.kubernetes.io/node-selector", "=".join(NODE_KIND_LABEL))


def node_name(cfg: ClusterConfig) -> str:
    return f"mlops-{cfg.name}-real"


def run_dir(cfg: ClusterConfig) -> Path:
    """Sockets and pod network namespaces: short paths (unix sockets allow 107 bytes)."""
    return Path("/run/mlops") / cfg.name


def containerd_socket(cfg: ClusterConfig) -> Path:
    return run_dir(cfg) / "containerd" / "containerd.sock"


def cgroup_root(cfg: ClusterConfig) -> str:
    return f"/{CGROUP_ROOT_PREFIX}{cfg.name}"


def cgroup_v1() -> bool:
    """True on a cgroup v1 (or hybrid) host: the unified hierarchy is not mounted at the root."""
    return not (CGROUP_FS / "cgroup.controllers").exists()


def cgroup_dirs(cfg: ClusterConfig) -> list[Path]:
    """The pod cgroup root in every mounted hierarchy (v1: one per controller; v2: one)."""
    root = cgroup_root(cfg).lstrip("/")
    if not cgroup_v1():
        return [CGROUP_FS / root]
    return [d / root for d in sorted(CGROUP_FS.iterdir()) if (d / "cgroup.procs").exists()]


# --- configuration files --------------------------------------------------------------------

def containerd_config(cfg: ClusterConfig, bins: dict[str, Path]) -> str:
    """containerd 2.x config (version 3) for a CRI node owned by this cluster."""
    state = cfg.path("realnode", "containerd")
    run = run_dir(cfg) / "containerd"
    cni = cfg.path("realnode", "cni")
    return f"""version = 3
root = "{state / 'root'}"
state = "{run / 'state'}"
# nothing may write to /opt on the host; only the overlayfs snapshotter is used
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.image-verifier.v1.bindir",
                    "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.blockfile",
                    "io.containerd.snapshotter.v1.erofs"]

[grpc]
  address = "{run / 'containerd.sock'}"

[ttrpc]
  address = "{run / 'containerd.sock.ttrpc'}"

[metrics]
  address = "{CONTAINERD_METRICS}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # root on these machines lacks CAP_SYS_RESOURCE: never lower a container's oom_score_adj
  # below containerd's own, or runc fails every sandbox
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{bins['runc']}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{bins['ptp'].parent}"]
    conf_dir = "{cni / 'net.d'}"
    conf_template = "{cni / 'template.conflist'}"

[plugins.'io.containerd.grpc.v1.cri']
  # exec, attach and port-forward streams: the kubelet proxies them here (same namespace)
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_template(cfg: ClusterConfig) -> str:
    """The CNI config containerd renders once the kubelet tells it the node's podCIDR."""
    doc = {
        "cniVersion": "1.0.0",
        "name": "mlops",
        "plugins": [
            {"type": "ptp", "mtu": 1500, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(cfg.path("realnode", "cni", "ipam"))}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def kubelet_config(cfg: ClusterConfig) -> dict:
    """KubeletConfiguration: authenticated API, cgroupfs under the cluster's root, cluster DNS."""
    pki = cfg.path("pki")
    cfg_ = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": REAL_NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": REAL_NODE_IP,
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / "kubelet-real.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-real.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{containerd_socket(cfg)}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(cfg),
        "cgroupsPerQOS": True,
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(cfg.path("realnode", "resolv.conf")),
        "podLogsDir": str(cfg.path("realnode", "pod-logs")),
        "failSwapOn": False,
        # Disk on a laptop or CI machine is shared with everything else: evict only when
        # nearly full, so a busy disk does not take the node's pods away.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        # status reported every 4 s: the node goes NotReady within the controller-manager's
        # 20 s grace period when the kubelet stops
        "nodeStatusUpdateFrequency": "4s",
        "shutdownGracePeriod": "0s",
        "maxPods": 110,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }
    if cgroup_v1():
        # Since 1.35 the kubelet refuses cgroup v1 unless told otherwise; upstream keeps v1
        # working until at least 2029 (containerd too). `mlops status` says so.
        cfg_["failCgroupV1"] = False
    return cfg_


def prepare(cfg: ClusterConfig, bins: dict[str, Path]) -> None:
    """Write containerd's and the kubelet's configuration and credentials (idempotent)."""
    from . import kubeconfig, pki

    base = cfg.path("realnode")
    for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (run_dir(cfg) / "containerd").mkdir(parents=True, exist_ok=True)
    (base / "containerd" / "config.toml").write_text(containerd_config(cfg, bins))
    (base / "cni" / "template.conflist").write_text(cni_template(cfg))
    (base / "kubelet" / "config.yaml").write_text(json.dumps(kubelet_config(cfg), indent=2) + "\n")
    # Pods with dnsPolicy Default (CoreDNS itself) get no upstream: the machine's resolver is
    # not reachable from the cluster namespace, and names outside the cluster fail fast.
    (base / "resolv.conf").write_text("# pods of the mlops real node: no upstream resolver\n")
    name = node_name(cfg)
    p = cfg.path("pki")
    pki.ensure_node_identity(p, "node-real", name)
    pki.ensure_kubelet_serving(p, name, REAL_NODE_IP, stem="kubelet-real")
    kubeconfig.write(cfg.path("kubeconfigs", "node-real.conf"), f"https://127.0.0.1:{API_PORT}", p, "node-real",
                     f"mlops-{cfg.name}", f"system:node:{name}")
    for cg in cgroup_dirs(cfg):
        cg.mkdir(exist_ok=True)


def components(cfg: ClusterConfig, bins: dict[str, Path]) -> list[Component]:
    """containerd, then the kubelet (after the API server and containerd are healthy)."""
    base = cfg.path("realnode")
    containerd = Component(
        "containerd",
        [str(bins["containerd"]), "--config", str(base / "containerd" / "config.toml"), "--log-level", "warn"],
        f"http://{CONTAINERD_METRICS}/v1/metrics",
        env={"PATH": f"{bins['containerd'].parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
    )
    kubelet = Component(
        "kubelet",
        [str(bins["kubelet"]),
         "--config", str(base / "kubelet" / "config.yaml"),
         "--kubeconfig", str(cfg.path("kubeconfigs", "node-real.conf")),
         "--root-dir", str(base / "kubelet"),
         "--hostname-override", node_name(cfg),
         "--node-ip", REAL_NODE_IP,
         "--node-labels", "=".join(NODE_KIND_LABEL),
         "--v", "1"],
        f"http://{REAL_NODE_IP}:{KUBELET_HEALTHZ_PORT}/healthz",
        after=["kube-apiserver", "containerd", "node-images"],
    )
    images = Component(
        "node-images",
        [sys.executable, "-m", "mlops_operator.localcluster.realnode", "import-images", cfg.name],
        "", after=["containerd"], oneshot=True,
    )
    return [containerd, images, kubelet]


# --- images -------------------------------------------------------------------------------------

def ctr(cfg: ClusterConfig, bins: dict[str, Path], *args: str,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bins["ctr"]), "--address", str(containerd_socket(cfg)), "-n", CRI_NAMESPACE, *args],
                          capture_output=True, text=True, timeout=timeout)


def image_refs(cfg: ClusterConfig, bins: dict[str, Path]) -> set[str]:
    p = ctr(cfg, bins, "images", "list", "-q")
    return set(p.stdout.split()) if p.returncode == 0 else set()


def archive_refs(archive: Path) -> list[str]:
    """Image references an OCI archive carries (`org.opencontainers.image.ref.name`)."""
    with tarfile.open(archive) as tf:
        f = tf.extractfile("index.json")
        index = json.load(f) if f else {}
    return [m["annotations"][REF_ANNOTATION] for m in index.get("manifests", [])
            if REF_ANNOTATION in (m.get("annotations") or {})]


def image_archives(cache: Path) -> list[Path]:
    """The OCI archives `mlops images` wrote."""
    return sorted((cache / "images").glob("*.tar"))


def import_archive(cfg: ClusterConfig, bins: dict[str, Path], archive: Path) -> None:
    """Import an OCI archive into the node's image store (like `kind load image-archive`)."""
    p = ctr(cfg, bins, "images", "import", "--snapshotter", "overlayfs", str(archive), timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"importing {archive} into the real node failed: {p.stderr.strip()}")


def import_images(cfg: ClusterConfig, bins: dict[str, Path], archives: list[Path],
                  say: Callable[[str], None] = print) -> list[str]:
    """Import the archives whose images the node lacks or that changed since their import."""
    record_file = cfg.path("realnode", "imported.json")
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        record = {}
    have = image_refs(cfg, bins)
    done = []
    for archive in archives:
        st = archive.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}"
        refs = archive_refs(archive)
        if record.get(str(archive)) == key and refs and all(r in have for r in refs):
            continue
        started = time.monotonic()
        import_archive(cfg, bins, archive)
        record[str(archive)] = key
        done += refs
        say(f"imported {', '.join(refs) or archive.name} into the real node in {time.monotonic() - started:.1f}s")
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return done


def describe(cfg: ClusterConfig) -> dict:
    """What `mlops status` says about the real node."""
    return {
        "name": node_name(cfg),
        "internalIP": REAL_NODE_IP,
        "containerdSocket": str(containerd_socket(cfg)),
        "cgroupRoot": cgroup_root(cfg),
        "cgroups": ("v1 (hybrid): the kubelet runs with failCgroupV1=false; upstream supports v1 "
                    "until at least 2029") if cgroup_v1() else "v2",
    }


# --- teardown -----------------------------------------------------------------------------------

def _cgroup_pids(cfg: ClusterConfig) -> set[int]:
    pids: set[int] = set()
    for d in cgroup_dirs(cfg):
        if not d.exists():
            continue
        for procs in d.rglob("cgroup.procs"):
            try:
                pids.update(int(x) for x in procs.read_text().split())
            except (OSError, ValueError):
                pass
    return pids


def _shim_pids(cfg: ClusterConfig) -> set[int]:
    """containerd shims of this cluster: they re-parent to init and leave the supervisor's session."""
    sock = str(containerd_socket(cfg)).encode()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmd and sock in cmd:
            pids.add(int(entry))
    return pids


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp.startswith(prefix):
            out.append(mp)
    return out


def teardown(cfg: ClusterConfig) -> list[str]:
    """Kill every container and shim of this node, unmount its volumes and netns, remove its
    cgroups. Returns what it had to clean (empty when the node was already gone)."""
    did: list[str] = []
    # SIGKILL at once: the cluster is going away, and the pods' grace periods were the
    # kubelet's to honour while it ran
    victims = _cgroup_pids(cfg) | _shim_pids(cfg)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if victims:
        did.append(f"killed {len(victims)} container and shim processes")
    deadline = time.monotonic() + 10
    while (_cgroup_pids(cfg) or _shim_pids(cfg)) and time.monotonic() < deadline:
        time.sleep(0.1)
    mounts = []
    for root in (cfg.path("realnode"), run_dir(cfg)):
        if root.exists():
            mounts += _mounts_under(root)
    for mp in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if mounts:
        did.append(f"unmounted {len(set(mounts))} mounts")
    shutil.rmtree(run_dir(cfg), ignore_errors=True)
    for d in cgroup_dirs(cfg):
        if d.exists():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                pass
    return did


def main(argv: list[str] | None = None) -> None:
    """`python -m mlops_operator.localcluster.realnode import-images <cluster>`: the supervisor's
    one-shot step between containerd and the kubelet."""
    from . import nodebins
    from .config import cache_dir, daemon_config

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "import-images":
        raise SystemExit("usage: python -m mlops_operator.localcluster.realnode import-images <cluster>")
    cfg = daemon_config(args[1:])
    archives = image_archives(cache_dir())
    if not any(PAUSE_IMAGE in archive_refs(a) for a in archives):
        raise SystemExit(f"no archive of the pause image {PAUSE_IMAGE} under {cache_dir() / 'images'}: "
                         "run `mlops images` first")
    import_images(cfg, nodebins.node_binary_paths(), archives)


if __name__ == "__main__":
    main()
