"""The binaries of a real node: kubelet, containerd, runc, CNI plugins, crictl, CoreDNS.

Each comes from its published Go module, built once per version into `~/.cache/mlops/node/`
(the same way `binaries.py` builds the control plane; our machines reach the Go module proxy
but no release download site). Versions are pinned here, next to the reason for each:

- kubelet from the same `k8s.io/kubernetes` build module as the control plane, so node and
  API server are one release.
- containerd 2.x with CGO off (no btrfs/devmapper snapshotters; overlayfs is what we use).
- runc from its module with CGO and `-tags seccomp` (libseccomp): Debian's runc 1.1.5 runs a
  plain `runc run` here but fails every CRI sandbox, and without seccomp support the runtime
  could not enforce `seccompProfile: RuntimeDefault`.
- CNI plugins: `ptp` (a routed veth per pod, the same model as the process node, so
  kube-proxy's nftables rules see both directions of a Service connection without
  br_netfilter), `host-local` IPAM over the node's podCIDR, `loopback` and `portmap`.
- crictl to look inside the node (`mlops crictl`), CoreDNS for cluster DNS.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import binaries
from .binaries import BinaryError, Progress
from .config import KUBERNETES_VERSION, cache_dir

CONTAINERD_VERSION = "2.4.2"
RUNC_VERSION = "1.5.3"
CNI_PLUGINS_VERSION = "1.10.0"
CRICTL_VERSION = "1.37.0"
COREDNS_VERSION = "1.15.0"


def _say(msg: str) -> None:
    print(f"[mlops] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GoBuild:
    """One published Go module built into one or more binaries."""

    name: str
    module: str
    version: str
    #: package path (relative to the module, "" for its root) -> output binary name
    packages: dict[str, str]
    cgo: bool = False
    tags: tuple[str, ...] = ()
    ldflags: str = "-s -w"
    #: Debian packages the build needs (named in the error when the build fails)
    needs: tuple[str, ...] = field(default=())
    #: `replace` directives the module's own go.mod carries: `go install mod@version` refuses a
    #: module with replaces, and a requiring module must repeat them to build the same code
    replaces: tuple[tuple[str, str], ...] = ()
    #: directory under the cache (the real node's binaries under node/, others beside it)
    cache_subdir: str = "node"

    @property
    def bin_dir(self) -> Path:
        return cache_dir() / self.cache_subdir / f"{self.name}-v{self.version}" / "bin"

    def paths(self) -> dict[str, Path]:
        return {out: self.bin_dir / out for out in self.packages.values()}


def _containerd() -> GoBuild:
    mod = "github.com/containerd/containerd/v2"
    return GoBuild(
        "containerd", mod, CONTAINERD_VERSION,
        {"cmd/containerd": "containerd", "cmd/containerd-shim-runc-v2": "containerd-shim-runc-v2",
         "cmd/ctr": "ctr"},
        tags=("no_btrfs", "no_devmapper", "no_zfs"),
        ldflags=f"-s -w -X {mod}/version.Version=v{CONTAINERD_VERSION} -X {mod}/version.Revision=go-module-build",
    )


BUILDS: dict[str, GoBuild] = {
    "containerd": _containerd(),
    "runc": GoBuild(
        "runc", "github.com/opencontainers/runc", RUNC_VERSION, {"": "runc"},
        cgo=True, tags=("seccomp", "urfave_cli_no_docs"),
        ldflags=f"-s -w -X main.version={RUNC_VERSION} -X main.gitCommit=go-module-build",
        needs=("gcc", "libseccomp-dev", "pkg-config"),
    ),
    "cni-plugins": GoBuild(
        "cni-plugins", "github.com/containernetworking/plugins", CNI_PLUGINS_VERSION,
        {"plugins/main/ptp": "ptp", "plugins/main/loopback": "loopback",
         "plugins/ipam/host-local": "host-local", "plugins/meta/portmap": "portmap"},
    ),
    "crictl": GoBuild(
        "crictl", "sigs.k8s.io/cri-tools", CRICTL_VERSION, {"cmd/crictl": "crictl"},
        ldflags=f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v{CRICTL_VERSION}",
    ),
    "coredns": GoBuild(
        "coredns", "github.com/coredns/coredns", COREDNS_VERSION, {"": "coredns"},
        ldflags=f"-s -w -X github.com/coredns/coredns/coremain.GitCommit=v{COREDNS_VERSION}",
    ),
}


def build_gomod(spec: GoBuild) -> str:
    """The go.mod of the build module: require the release, repeat the module's own replaces."""
    text = f"module mlops.dev/{spec.name}build\n\ngo 1.26.0\n\nrequire {spec.module} v{spec.version}\n"
    if spec.replaces:
        text += "\nreplace (\n" + "".join(f"\t{old} => {new}\n" for old, new in spec.replaces) + ")\n"
    return text


def build_module(spec: GoBuild, progress: Progress = _say) -> None:
    """Build `spec`'s binaries into its cache directory (atomically: a half-built cache never shows)."""
    _build_module(spec, progress)


def _build_module(spec: GoBuild, progress: Progress) -> None:
    work = cache_dir() / "build" / f"{spec.name}-v{spec.version}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(build_gomod(spec))
    out = work / "bin"
    out.mkdir(exist_ok=True)
    started = time.monotonic()
    env = {"CGO_ENABLED": "1" if spec.cgo else "0"}
    tags = ["-tags", ",".join(spec.tags)] if spec.tags else []
    for pkg, binary in spec.packages.items():
        full = f"{spec.module}/{pkg}" if pkg else spec.module
        try:
            binaries.run_go_build(work, [*tags, "-ldflags", spec.ldflags, "-o", str(out / binary)], [full],
                                  progress, f"{binary} v{spec.version}", env=env)
        except BinaryError as e:
            missing = [p for p in spec.needs if not _have_debian_tool(p)]
            hint = f" (missing: {', '.join(missing)}; `apt-get install {' '.join(missing)}`)" if missing else ""
            raise BinaryError(f"{e}{hint}") from e
    binaries.record_build(spec.bin_dir, spec.name, spec.version, started)
    for binary in spec.packages.values():
        shutil.copy2(out / binary, spec.bin_dir / f"{binary}.part")
        (spec.bin_dir / f"{binary}.part").replace(spec.bin_dir / binary)


def _have_debian_tool(pkg: str) -> bool:
    if pkg == "libseccomp-dev":
        return Path("/usr/include/seccomp.h").exists()
    return shutil.which(pkg) is not None


def ensure_kubelet(progress: Progress = _say) -> Path:
    """The kubelet of the control plane's release, built in the same module (one build cache)."""
    path = binaries.kube_bin_dir() / "kubelet"
    if not os.access(path, os.X_OK):
        binaries.build_kubernetes(binaries.kube_bin_dir(), progress, components=("kubelet",),
                                  version=KUBERNETES_VERSION)
    return path


def ensure_node_binaries(progress: Progress = _say) -> dict[str, Path]:
    """Paths of every real-node binary, building what the cache lacks."""
    paths: dict[str, Path] = {"kubelet": ensure_kubelet(progress)}
    for spec in BUILDS.values():
        if not all(os.access(p, os.X_OK) for p in spec.paths().values()):
            _build_module(spec, progress)
        paths.update(spec.paths())
    return paths


def node_binary_paths() -> dict[str, Path]:
    """Where the real-node binaries are (or will be) cached; nothing is built."""
    paths = {"kubelet": binaries.kube_bin_dir() / "kubelet"}
    for spec in BUILDS.values():
        paths.update(spec.paths())
    return paths


def cni_bin_dir() -> Path:
    return BUILDS["cni-plugins"].bin_dir
