"""Obtain the upstream binaries: from the cache, the official release, or a Go-module build.

Our machines have no route to dl.k8s.io, but they reach the Go module proxy, and every
Kubernetes component is a `main` package of the published `k8s.io/kubernetes` module. Its
go.mod points each `k8s.io/<staging>` module at `./staging/...`, which does not exist outside
the monorepo, so we generate a tiny go.mod that requires `k8s.io/kubernetes` at the release and
replaces each staging module with its published `v0.<minor>.<patch>` tag. The version variables
are set with -ldflags exactly as the upstream build does, so `kubectl version` and `/version`
report the release (the API server also derives its emulation version from it).

Binaries are cached per version under `~/.cache/mlops/`, so only the first run pays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from .config import ETCD_VERSION, KUBERNETES_VERSION, cache_dir

KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl")

# Staging modules of k8s.io/kubernetes that are not needed by any component we build and are
# not published as tagged modules (the go command must not try to resolve them).
_UNPUBLISHED_STAGING = {"k8s.io/sample-cli-plugin"}

Progress = Callable[[str], None]


def _say(msg: str) -> None:
    print(f"[mlops] {msg}", file=sys.stderr, flush=True)


class BinaryError(RuntimeError):
    """The binaries could not be obtained; the message says what failed and how to fix it."""


def kube_bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    return cache_dir() / "k8s" / f"v{version}" / "bin"


def etcd_bin_dir(version: str = ETCD_VERSION) -> Path:
    return cache_dir() / "etcd" / f"v{version}" / "bin"


def binary_path(name: str) -> Path:
    """Path of a cached binary (etcd or a Kubernetes component)."""
    if name == "etcd":
        return etcd_bin_dir() / "etcd"
    return kube_bin_dir() / name


def _complete(bin_dir: Path, names: Iterable[str]) -> bool:
    return all(os.access(bin_dir / n, os.X_OK) for n in names)


def ensure_binaries(progress: Progress = _say, allow_download: bool = True) -> dict[str, Path]:
    """Return paths of etcd and every Kubernetes component, obtaining what is missing."""
    kdir, edir = kube_bin_dir(), etcd_bin_dir()
    if not _complete(kdir, KUBE_COMPONENTS):
        if not (allow_download and _download_kubernetes(kdir, progress)):
            build_kubernetes(kdir, progress)
    if not _complete(edir, ["etcd"]):
        if not (allow_download and _download_etcd(edir, progress)):
            build_etcd(edir, progress)
    paths = {n: kdir / n for n in KUBE_COMPONENTS}
    paths["etcd"] = edir / "etcd"
    return paths


# --- download ---------------------------------------------------------------------------------

def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (https only)
        return r.read()


def _reachable(url: str, timeout: float = 3.0) -> bool:
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310
            return True
    except Exception:
        return False


def _install_atomically(data: bytes, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(dest)


def _download_kubernetes(bin_dir: Path, progress: Progress) -> bool:
    base = f"https://dl.k8s.io/release/v{KUBERNETES_VERSION}/bin/linux/amd64"
    if not _reachable(f"{base}/kubectl.sha256"):
        progress(f"dl.k8s.io is not reachable; building Kubernetes v{KUBERNETES_VERSION} from Go modules")
        return False
    for name in KUBE_COMPONENTS:
        progress(f"downloading {name} v{KUBERNETES_VERSION}")
        want = _fetch(f"{base}/{name}.sha256", 30).decode().split()[0]
        data = _fetch(f"{base}/{name}", 600)
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise BinaryError(f"{name}: sha256 {got} does not match the published {want}")
        _install_atomically(data, bin_dir / name)
    return True


def _download_etcd(bin_dir: Path, progress: Progress) -> bool:
    tag = f"v{ETCD_VERSION}"
    base = f"https://github.com/etcd-io/etcd/releases/download/{tag}"
    tarname = f"etcd-{tag}-linux-amd64.tar.gz"
    if not _reachable(f"{base}/SHA256SUMS"):
        progress(f"github.com is not reachable; building etcd {tag} from Go modules")
        return False
    progress(f"downloading etcd {tag}")
    sums = _fetch(f"{base}/SHA256SUMS", 30).decode()
    want = next((ln.split()[0] for ln in sums.splitlines() if ln.endswith(tarname)), None)
    data = _fetch(f"{base}/{tarname}", 600)
    if want is None or hashlib.sha256(data).hexdigest() != want:
        raise BinaryError(f"{tarname}: sha256 does not match the published SHA256SUMS")
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / tarname
        tar.write_bytes(data)
        with tarfile.open(tar) as tf:
            member = tf.getmember(f"etcd-{tag}-linux-amd64/etcd")
            f = tf.extractfile(member)
            assert f is not None
            _install_atomically(f.read(), bin_dir / "etcd")
    return True


# --- build from Go modules ----------------------------------------------------------------------

def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise BinaryError(
            "the Kubernetes binaries are not cached, the release download is unreachable, and "
            "there is no `go` on PATH to build them from the published Go modules "
            "(install Go >= 1.26, or put the binaries under " + str(kube_bin_dir()) + ")"
        )
    return go


def _proxy_get(path: str) -> bytes:
    """Fetch a file from the first Go module proxy in GOPROXY (e.g. a module's go.mod)."""
    proxy = subprocess.run([_go(), "env", "GOPROXY"], capture_output=True, text=True, check=True).stdout
    base = next((p for p in proxy.strip().split(",") if p.startswith("http")), "https://proxy.golang.org")
    return _fetch(f"{base.rstrip('/')}/{path}", 60)


def staging_replacements(kubernetes_gomod: str, version: str) -> list[str]:
    """Modules that k8s.io/kubernetes' go.mod maps to ./staging, each to be replaced by its tag."""
    mods = []
    for line in kubernetes_gomod.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            if parts[0] not in _UNPUBLISHED_STAGING:
                mods.append(parts[0])
    if not mods:
        raise BinaryError("k8s.io/kubernetes go.mod lists no staging modules; unexpected layout")
    return mods


def generate_gomod(kubernetes_gomod: str, version: str, go_version: str = "1.26.0") -> str:
    """The go.mod of the build module: require the release, replace staging with published tags."""
    minor_patch = version.split(".", 1)[1]
    lines = [
        "module mlops.dev/k8sbuild", "", f"go {go_version}", "",
        f"require k8s.io/kubernetes v{version}", "", "replace (",
    ]
    lines += [f"\t{m} => {m} v0.{minor_patch}" for m in staging_replacements(kubernetes_gomod, version)]
    lines += [")", ""]
    return "\n".join(lines)


def version_ldflags(version: str) -> str:
    """-ldflags that stamp the release into the binaries, as hack/lib/version.sh does."""
    major, minor, _ = version.split(".")
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            # the module zip carries no commit hash; say where the binary came from instead
            f"-X {pkg}.gitCommit=go-module-build",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def run_go_build(workdir: Path, flags: list[str], pkgs: list[str], progress: Progress, label: str,
                 env: dict[str, str] | None = None) -> None:
    """Run `go build -v`, turning its package lines into a counted progress report."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod",
           "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"), **(env or {})}
    total = 0
    try:
        out = subprocess.run(
            [_go(), "list", "-deps", *pkgs],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=1800,
        )
        total = len(out.stdout.split()) if out.returncode == 0 else 0
    except subprocess.TimeoutExpired:
        total = 0
    cmd = [_go(), "build", "-v", "-trimpath", *flags, *pkgs]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    done, last = 0, 0.0
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if not line.startswith("go: "):
            done += 1
        now = time.monotonic()
        if now - last > 10:
            last = now
            frac = f"{done}/{total} packages" if total else f"{done} packages"
            progress(f"building {label}: {frac}, {int(now - started)}s (first build only; cached afterwards)")
    if proc.wait() != 0:
        raise BinaryError(f"go build of {label} failed:\n" + "\n".join(tail))
    progress(f"built {label} in {int(time.monotonic() - started)}s")


def record_build(bin_dir: Path, what: str, version: str, started: float) -> None:
    """Keep how long the one-time build took (benchmarks/cluster_start reports it)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    info = {"what": what, "version": version, "seconds": round(time.monotonic() - started, 1),
            "go": subprocess.run([_go(), "version"], capture_output=True, text=True).stdout.strip(),
            "cpus": os.cpu_count(), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (bin_dir / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")


def build_kubernetes(bin_dir: Path, progress: Progress = _say, version: str = KUBERNETES_VERSION,
                     components: Iterable[str] = KUBE_COMPONENTS) -> None:
    """Build Kubernetes components (default: the control plane and kubectl) of `version` from
    the published Go modules; the kubelet of a real node is built here too, on demand."""
    components = tuple(components)
    work = cache_dir() / "build" / f"k8s-v{version}"
    work.mkdir(parents=True, exist_ok=True)
    gomod = _proxy_get(f"k8s.io/kubernetes/@v/v{version}.mod").decode()
    (work / "go.mod").write_text(generate_gomod(gomod, version))
    tmp_bin = work / "bin"
    tmp_bin.mkdir(exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in components]
    started = time.monotonic()
    run_go_build(work, ["-ldflags", version_ldflags(version), "-o", str(tmp_bin) + "/"], pkgs,
                 progress, f"Kubernetes v{version}")
    if components == KUBE_COMPONENTS:  # build-info.json is the one-time control-plane build
        record_build(bin_dir, "kubernetes", version, started)
    for c in components:
        shutil.copy2(tmp_bin / c, bin_dir / f"{c}.part")
        (bin_dir / f"{c}.part").replace(bin_dir / c)


def build_etcd(bin_dir: Path, progress: Progress = _say, version: str = ETCD_VERSION) -> None:
    """Build etcd from go.etcd.io/etcd/server/v3 (its module root is the etcd main package)."""
    work = cache_dir() / "build" / f"etcd-v{version}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(
        f"module mlops.dev/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 v{version}\n"
    )
    out = work / "bin" / "etcd"
    out.parent.mkdir(exist_ok=True)
    started = time.monotonic()
    run_go_build(work, ["-ldflags", "-s -w", "-o", str(out)], ["go.etcd.io/etcd/server/v3"],
                 progress, f"etcd v{version}")
    record_build(bin_dir, "etcd", version, started)
    shutil.copy2(out, bin_dir / "etcd.part")
    (bin_dir / "etcd.part").replace(bin_dir / "etcd")
