"""The project's container images, built on this machine with no Docker daemon and no registry.

`mlops images` (what `make images` runs):

1. a base image from Debian packages: `mmdebstrap --variant=minbase` of bookworm with python3,
   from the machine's own apt sources, imported into buildah's local storage as
   ``localhost/mlops-base:bookworm`` (rebuilt only when its recipe changes, or with --force);
2. ``images/*.Dockerfile`` built with ``buildah build --network host --build-arg BASE=...``;
   a CA bundle the host needs to reach the package index (a proxy's) is given to the RUN steps
   as the build secret ``ca`` and never written to a layer;
3. ``pause`` (images/pause/pause.c, static) and ``coredns`` (the binary nodebins builds), each in
   a FROM-scratch image made with buildah directly;
4. one OCI archive per image under ``<cache>/images/`` with the image's reference inside, so
   ``ctr -n k8s.io images import`` and ``kind load image-archive`` take it, and ``images.json``:
   reference, archive, sizes, build seconds and the hash of the inputs. An image is rebuilt only
   when that hash changes (its Dockerfile, pyproject.toml, constraints.txt, the operator/ tree,
   the base image's id) or with --force.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import cache_dir

Progress = Callable[[str], None]

#: the repository root (images/, operator/, pyproject.toml): the build context
REPO_ROOT = Path(__file__).resolve().parents[3]
VERSION = "0.1.0"
SUITE = "bookworm"
BASE_REF = f"localhost/mlops-base:{SUITE}"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: paths dpkg leaves out of the base (documentation, manuals, translations, iconv modules)
BASE_PATH_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
                      "/usr/share/lintian/*", "/usr/lib/x86_64-linux-gnu/gconv/*")
BASE_PATH_INCLUDES = ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias",
                      "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules*")
#: when there is no usable apt source on the host
DEFAULT_SOURCES = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
INSTALL_HINT = "apt-get install buildah mmdebstrap"
#: how buildah runs RUN steps: chroot needs no OCI runtime and no cgroups (Debian's crun refuses
#: this host's hybrid cgroup v1/v2 mounts); MLOPS_BUILDAH_ISOLATION=oci to use crun/runc instead
ISOLATION = os.environ.get("MLOPS_BUILDAH_ISOLATION", "chroot")
#: environment variables that may name the host's CA bundle, in order of preference
CA_ENV = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")
#: build output lines that mean pip could not reach (or trust) the package index
_PIP_NETWORK = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|SSLError|NewConnectionError|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Name or service not known|ProxyError|"
    r"No matching distribution found|Could not find a version that satisfies|ConnectTimeout|ReadTimeout")
_APT_NETWORK = re.compile(r"Temporary failure resolving|Could not resolve|Failed to fetch|Unable to fetch|"
                          r"Could not connect|Connection failed")


class ImageBuildError(RuntimeError):
    """An image cannot be built; the message says which tool, package or network is missing."""


@dataclass(frozen=True)
class Image:
    name: str
    ref: str
    #: "dockerfile" (images/<file>, FROM the base), "pause" or "coredns" (FROM scratch)
    kind: str = "dockerfile"
    dockerfile: str | None = None

    @property
    def needs_base(self) -> bool:
        return self.kind == "dockerfile"


IMAGES: tuple[Image, ...] = (
    Image("pause", "localhost/mlops-pause:3.10", "pause"),
    Image("coredns", "localhost/mlops-coredns:1.15.0", "coredns"),
    Image("mlops-server", f"ghcr.io/mlops-dev/mlops-server:{VERSION}", dockerfile="images/server.Dockerfile"),
    Image("mlops-operator", f"ghcr.io/mlops-dev/mlops-operator:{VERSION}", dockerfile="images/operator.Dockerfile"),
    Image("mlops-runtime", f"ghcr.io/mlops-dev/mlops-runtime:{VERSION}", dockerfile="images/runtime.Dockerfile"),
)
BY_NAME = {i.name: i for i in IMAGES}


def images_dir() -> Path:
    return cache_dir() / "images"


def archive_path(img: Image, root: Path | None = None) -> Path:
    return (root or images_dir()) / f"{img.name}.oci.tar"


def select(only: Sequence[str] | None) -> list[Image]:
    if not only:
        return list(IMAGES)
    unknown = [n for n in only if n not in BY_NAME]
    if unknown:
        raise ImageBuildError(f"unknown image {', '.join(unknown)}; the images are: {', '.join(BY_NAME)}")
    return [i for i in IMAGES if i.name in only]


# --- tools and inputs --------------------------------------------------------------------------

def missing_tools(images: Iterable[Image], base_needed: bool,
                  which: Callable[[str], str | None] | None = None) -> list[str]:
    """One message per missing tool or package, saying how to get it."""
    images = list(images)
    which = which or shutil.which
    out = []
    if which("buildah") is None:
        out.append(f"buildah is not installed (it builds the images without a Docker daemon): {INSTALL_HINT}")
    if base_needed and which("mmdebstrap") is None:
        out.append(f"mmdebstrap is not installed (it makes the Debian base image): {INSTALL_HINT}")
    if any(i.kind == "pause" for i in images):
        if which("gcc") is None:
            out.append("gcc is not installed (it compiles the static pause binary): apt-get install gcc libc6-dev")
        elif not _static_libc():
            out.append("the static C library is missing (gcc -static needs libc.a): apt-get install libc6-dev")
    return out


def _static_libc() -> bool:
    p = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True)
    return p.returncode == 0 and os.path.isabs(p.stdout.strip()) and os.path.exists(p.stdout.strip())


def ca_bundle(env: Mapping[str, str] | None = None) -> Path | None:
    """The host's CA bundle named by SSL_CERT_FILE / PIP_CERT / REQUESTS_CA_BUNDLE, if one exists."""
    env = os.environ if env is None else env
    for var in CA_ENV:
        v = env.get(var)
        if v and os.path.isfile(v):
            return Path(v)
    return None


def apt_sources(etc: Path = Path("/etc/apt")) -> list[str]:
    """The machine's own Debian apt sources, as mmdebstrap mirror arguments.

    Files of /etc/apt/sources.list.d (deb822 `.sources` or one-line `.list`) and sources.list
    that point at a Debian archive are passed by path (mmdebstrap reads both formats), so the
    base comes from the same mirror and through the same proxy as the host's packages; other
    repositories (a vendor's, with keys the chroot does not have) are left out. With none, the
    public deb.debian.org lines.
    """
    found: list[str] = []
    candidates = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*"))
    for f in candidates:
        if f.suffix not in (".list", ".sources") or not f.is_file():
            continue
        text = "\n".join(line for line in f.read_text(errors="replace").splitlines()
                         if line.strip() and not line.lstrip().startswith("#"))
        if re.search(r"/debian(-security)?/?(\s|$)", text) and re.search(r"\bdeb\b", text):
            found.append(str(f))
    return found or list(DEFAULT_SOURCES)


def apt_options(dump: str | None = None) -> list[str]:
    """apt options of the host that the base build needs too (a snapshot mirror's Valid-Until)."""
    if dump is None:
        try:
            dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            dump = ""
    opts = []
    for key in ("Acquire::Check-Valid-Until", "Acquire::http::Proxy", "Acquire::https::Proxy"):
        m = re.search(rf'^{re.escape(key)} "([^"]*)";$', dump, re.M | re.I)
        if m:
            opts.append(f'{key} "{m.group(1)}"')
    return opts


def base_argv(out: Path, sources: Sequence[str], aptopts: Sequence[str] = ()) -> list[str]:
    """The mmdebstrap command that makes the base rootfs tarball `out`."""
    argv = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr", "--skip=output/dev"]
    argv += [f"--aptopt={o}" for o in aptopts]
    argv += [f"--dpkgopt=path-exclude={p}" for p in BASE_PATH_EXCLUDES]
    argv += [f"--dpkgopt=path-include={p}" for p in BASE_PATH_INCLUDES]
    return argv + [SUITE, str(out), *sources]


def base_recipe_hash(argv: Sequence[str], sources: Sequence[str]) -> str:
    """Hash of the base's recipe: the mmdebstrap command (output path aside) and the sources' text."""
    h = hashlib.sha256()
    for a in argv:
        h.update(b"<out>" if a.endswith(".tar") else a.encode())
        h.update(b"\0")
    for s in sources:
        h.update(Path(s).read_bytes() if os.path.isfile(s) else s.encode())
        h.update(b"\0")
    return h.hexdigest()


def _tree_files(root: Path) -> list[Path]:
    skip_dirs = {"__pycache__", ".pytest_cache", ".mypy_cache"}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.endswith(".egg-info"))
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".pyo"))]
    return out


def input_files(img: Image, repo: Path = REPO_ROOT) -> list[Path]:
    """Every file whose content goes into the image (besides the base)."""
    if img.kind == "pause":
        return [repo / "images" / "pause" / "pause.c"]
    if img.kind == "coredns":
        return []
    assert img.dockerfile
    files = [repo / img.dockerfile, repo / "pyproject.toml", repo / "constraints.txt", repo / "README.md"]
    files += sorted((repo / "images").glob("*.sh"))  # slim-venv.sh, prune-pyarrow.sh (the server's)
    files += sorted((repo / "images").glob("*-requirements.txt"))
    return files + _tree_files(repo / "operator")


def input_hash(img: Image, base_id: str | None, repo: Path = REPO_ROOT, extra: Sequence[str] = ()) -> str:
    """Hash of an image's inputs: file paths and contents, the base image id, anything extra."""
    h = hashlib.sha256(f"{img.name}\0{img.ref}\0{img.kind}\0{base_id or ''}\0".encode())
    for e in extra:
        h.update(e.encode() + b"\0")
    for f in input_files(img, repo):
        h.update(str(f.relative_to(repo)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def needs_build(entry: Mapping[str, Any] | None, want_hash: str, archive_exists: bool, image_exists: bool,
                force: bool) -> tuple[bool, str]:
    """Whether to build an image, and why (or why not)."""
    if force:
        return True, "--force"
    if not entry:
        return True, "never built"
    if entry.get("input_hash") != want_hash:
        return True, "inputs changed"
    if not archive_exists:
        return True, "archive missing"
    if not image_exists:
        return True, "not in buildah's storage"
    return False, "up to date"


# --- commands ----------------------------------------------------------------------------------

def build_argv(img: Image, base_ref: str, secret: Path, repo: Path = REPO_ROOT) -> list[str]:
    """`buildah build` of a Dockerfile image, FROM the base, the CA bundle as the `ca` secret."""
    assert img.dockerfile
    return ["buildah", "build", "--isolation", ISOLATION, "--network", "host", "--layers", "--pull-never",
            "--build-arg", f"BASE={base_ref}", "--secret", f"id=ca,src={secret}",
            "-f", str(repo / img.dockerfile), "-t", img.ref, str(repo)]


def push_argv(img: Image, archive: Path) -> list[str]:
    """`buildah push` to an OCI archive holding the image's reference (for ctr import / kind load)."""
    return ["buildah", "push", "--quiet", img.ref, f"oci-archive:{archive}:{img.ref}"]


def pause_compile_argv(src: Path, out: Path) -> list[str]:
    return ["gcc", "-static", "-Os", "-Wall", "-DVERSION=mlops-3.10", "-o", str(out), str(src)]


def scratch_config_argv(container: str, entrypoint: str, user: str, title: str,
                        ports: Sequence[str] = ()) -> list[str]:
    argv = ["buildah", "config", "--entrypoint", json.dumps([entrypoint]), "--cmd", "", "--user", user,
            "--label", f"org.opencontainers.image.title={title}",
            "--label", "org.opencontainers.image.source=https://github.com/mlops-dev/mlops-operator"]
    for p in ports:
        argv += ["--port", p]
    return argv + [container]


def explain_failure(what: str, output: str) -> str:
    """A failed build's message: the network cause when the output shows one, else its tail."""
    tail = "\n".join(output.strip().splitlines()[-25:])
    if _PIP_NETWORK.search(output):
        return (f"{what}: pip could not reach the package index (no network, or a proxy whose CA is not "
                f"trusted). Check the network; behind a TLS-intercepting proxy set SSL_CERT_FILE or PIP_CERT "
                f"to its CA bundle (it is mounted for the build's RUN steps only).\n{tail}")
    if _APT_NETWORK.search(output):
        return (f"{what}: apt could not reach the Debian mirror (no network, or no proxy configured for "
                f"apt); the base uses the machine's own apt sources (/etc/apt/sources.list*).\n{tail}")
    return f"{what} failed:\n{tail}"


# --- running -----------------------------------------------------------------------------------

class _Clock:
    def __init__(self, say: Progress):
        self.t0 = time.monotonic()
        self.say = say

    def __call__(self, msg: str) -> None:
        self.say(f"[images {time.monotonic() - self.t0:6.1f}s] {msg}")


def _run(argv: Sequence[str], what: str, say: Progress, echo: re.Pattern[str] | None = None,
         timeout: float = 3600) -> str:
    """Run a command, echo the lines matching `echo` as progress, raise with an explanation."""
    try:
        p = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", cwd=REPO_ROOT)
    except FileNotFoundError as e:
        raise ImageBuildError(f"{what}: {argv[0]} is not installed: {INSTALL_HINT}") from e
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    for line in p.stdout:
        lines.append(line)
        if echo is not None and echo.search(line):
            say("  " + line.rstrip()[:160])
        if time.monotonic() > deadline:
            p.kill()
            raise ImageBuildError(f"{what}: timed out after {timeout:.0f}s")
    rc = p.wait()
    out = "".join(lines)
    if rc != 0:
        raise ImageBuildError(explain_failure(what, out))
    return out


def image_id(ref: str) -> str | None:
    """The id of an image in buildah's local storage, or None."""
    p = subprocess.run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
                       capture_output=True, text=True)
    return p.stdout.strip() or None if p.returncode == 0 else None


def archive_sizes(archive: Path) -> tuple[int, int]:
    """(uncompressed, compressed) bytes of an OCI archive's image: its layers, plus config and manifest."""
    with tarfile.open(archive) as t:
        def blob(desc: Mapping[str, Any]) -> Any:
            algo, digest = desc["digest"].split(":", 1)
            f = t.extractfile(f"blobs/{algo}/{digest}")
            assert f is not None
            return f

        index = json.load(t.extractfile("index.json"))  # type: ignore[arg-type]
        mdesc = index["manifests"][0]
        manifest = json.load(blob(mdesc))
        meta = mdesc["size"] + manifest["config"]["size"]
        compressed = meta + sum(layer["size"] for layer in manifest["layers"])
        uncompressed = meta
        for layer in manifest["layers"]:
            f = blob(layer)
            stream = gzip.GzipFile(fileobj=f) if "gzip" in layer["mediaType"] else f
            while chunk := stream.read(1 << 20):
                uncompressed += len(chunk)
    return uncompressed, compressed


def load_state(root: Path | None = None) -> dict[str, Any]:
    f = (root or images_dir()) / "images.json"
    try:
        state = json.loads(f.read_text())
    except (OSError, ValueError):
        state = {}
    state.setdefault("images", {})
    return state


def save_state(state: Mapping[str, Any], root: Path | None = None) -> None:
    root = root or images_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / "images.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(root / "images.json")


def ensure_base(state: dict[str, Any], force: bool, log: _Clock) -> str:
    """The base image's id, made with mmdebstrap and imported into buildah when needed."""
    sources = apt_sources()
    work = images_dir() / "base"
    work.mkdir(parents=True, exist_ok=True)
    tarball = work / f"{SUITE}-rootfs.tar"
    argv = base_argv(tarball, sources, apt_options())
    recipe = base_recipe_hash(argv, sources)
    prev = state.get("base") or {}
    have = image_id(BASE_REF)
    if not force and have and prev.get("recipe_hash") == recipe and prev.get("id") == have:
        log(f"base {BASE_REF}: up to date ({have[:12]})")
        return have
    log(f"base {BASE_REF}: mmdebstrap {SUITE} minbase + {', '.join(BASE_PACKAGES)} "
        f"from {', '.join(sources)} (about a minute)")
    t0 = time.monotonic()
    _run(argv, "mmdebstrap (the Debian base image)", log,
         echo=re.compile(r"^I: (downloading|extracting|installing|creating)"))
    log(f"base rootfs: {tarball.stat().st_size / 1e6:.0f} MB tar in {time.monotonic() - t0:.0f}s; "
        "importing into buildah")
    ctr = _run(["buildah", "from", "scratch"], "buildah from scratch", log).strip().splitlines()[-1]
    try:
        _run(["buildah", "add", ctr, str(tarball), "/"], "buildah add (the base rootfs)", log)
        _run(["buildah", "config", "--cmd", "/bin/bash", "--env", "LANG=C.UTF-8",
              "--label", f"io.mlops.base.recipe={recipe}", ctr], "buildah config", log)
        _run(["buildah", "commit", "--quiet", "--rm", ctr, BASE_REF], "buildah commit (the base)", log)
    except ImageBuildError:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
        raise
    tarball.unlink(missing_ok=True)
    new = image_id(BASE_REF)
    assert new, f"{BASE_REF} not found after commit"
    state["base"] = {"ref": BASE_REF, "id": new, "recipe_hash": recipe, "sources": sources,
                     "build_seconds": round(time.monotonic() - t0, 1)}
    log(f"base {BASE_REF}: {new[:12]} in {time.monotonic() - t0:.0f}s")
    return new


def _secret_file(bundle: Path | None) -> Path:
    """The file given as the `ca` secret: the host's bundle, or an empty file (RUN steps then skip it)."""
    if bundle is not None:
        return bundle
    empty = images_dir() / "no-ca-bundle"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")
    return empty


def _scratch_image(img: Image, binary: Path, dest: str, user: str, ports: Sequence[str], log: _Clock) -> None:
    ctr = _run(["buildah", "from", "scratch"], "buildah from scratch", log).strip().splitlines()[-1]
    try:
        _run(["buildah", "copy", "--chmod", "0755", ctr, str(binary), dest], f"buildah copy {dest}", log)
        _run(scratch_config_argv(ctr, dest, user, img.name, ports), "buildah config", log)
        _run(["buildah", "commit", "--quiet", "--rm", ctr, img.ref], f"buildah commit {img.ref}", log)
    except ImageBuildError:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
        raise


def coredns_binary(log: Progress) -> Path:
    """The CoreDNS binary nodebins builds from its Go module (built now if absent)."""
    from . import nodebins

    spec = nodebins.BUILDS["coredns"]
    path = spec.paths()["coredns"]
    if not path.exists():
        log(f"coredns: building {spec.module} v{spec.version} from its Go module (first time only)")
        nodebins._build_module(spec, log)
    if not path.exists():
        raise ImageBuildError(f"coredns: {path} was not built")
    return path


def _build_one(img: Image, base_ref: str, secret: Path, log: _Clock) -> None:
    if img.kind == "dockerfile":
        _run(build_argv(img, base_ref, secret), f"buildah build {img.dockerfile}", log,
             echo=re.compile(r"STEP \d+/\d+|^COMMIT|--> Using cache|^Successfully"))
    elif img.kind == "pause":
        out = images_dir() / "pause" / "pause"
        out.parent.mkdir(parents=True, exist_ok=True)
        _run(pause_compile_argv(REPO_ROOT / "images" / "pause" / "pause.c", out), "gcc -static pause.c", log)
        if shutil.which("strip"):
            _run(["strip", str(out)], "strip pause", log)
        _scratch_image(img, out, "/pause", "65535:65535", (), log)
    elif img.kind == "coredns":
        _scratch_image(img, coredns_binary(log), "/coredns", "65532:65532", ("53/udp", "53/tcp"), log)
    else:  # pragma: no cover
        raise ValueError(img.kind)


def build(only: Sequence[str] | None = None, force: bool = False, say: Progress = print) -> dict[str, Any]:
    """Build the selected images (all by default) where their inputs changed; returns images.json."""
    log = _Clock(say)
    images = select(only)
    state = load_state()
    base_needed = any(i.needs_base for i in images)
    problems = missing_tools(images, base_needed)
    if problems:
        raise ImageBuildError("cannot build the images:\n  " + "\n  ".join(problems))
    root = images_dir()
    root.mkdir(parents=True, exist_ok=True)
    base_id = ensure_base(state, force, log) if base_needed else None
    if base_needed:
        save_state(state)
    bundle = ca_bundle()
    log(f"CA bundle for RUN steps: {bundle or 'none'} (mounted as a build secret, never in a layer)")
    secret = _secret_file(bundle)
    built = False
    for img in images:
        extra = []
        if img.kind == "coredns":
            binary = coredns_binary(log)
            extra.append(hashlib.sha256(binary.read_bytes()).hexdigest())
        want = input_hash(img, base_id if img.needs_base else None, extra=extra)
        archive = archive_path(img)
        entry = state["images"].get(img.name)
        todo, why = needs_build(entry, want, archive.exists(), image_id(img.ref) is not None, force)
        if not todo:
            log(f"{img.name}: {why} ({img.ref})")
            continue
        log(f"{img.name}: building {img.ref} ({why})")
        t0 = time.monotonic()
        _build_one(img, BASE_REF, secret, log)
        seconds = time.monotonic() - t0
        log(f"{img.name}: built in {seconds:.0f}s; writing {archive}")
        tmp = archive.with_name(archive.name + ".tmp")
        tmp.unlink(missing_ok=True)
        _run(push_argv(img, tmp), f"buildah push {img.ref}", log)
        tmp.replace(archive)
        unc, comp = archive_sizes(archive)
        state["images"][img.name] = {
            "ref": img.ref, "archive": str(archive), "uncompressed_bytes": unc, "compressed_bytes": comp,
            "build_seconds": round(seconds, 1), "input_hash": want, "image_id": image_id(img.ref),
            "base_id": base_id if img.needs_base else None,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        save_state(state)
        log(f"{img.name}: {unc / 1e6:.0f} MB uncompressed, {comp / 1e6:.0f} MB compressed")
        built = True
    if built:
        prune(log)
    return state


def prune(say: Progress) -> None:
    """Drop the images no tag leads to any more (earlier builds' leftovers and the build
    stages' intermediate images). Measured: one day of rebuilds left 16 GB in buildah's
    storage, 1.6 GB after this. The price is the build stages' layer cache: a rebuild after a
    source change then takes as long as a cold one (server 30 s, operator 46 s, runtime 83 s
    here), which was within a few seconds of the cached rebuilds anyway (pip is fast here)."""
    try:
        out = _run(["buildah", "rmi", "--prune"], "buildah rmi --prune", say)
    except ImageBuildError as e:
        # best effort: a working container left by an interrupted build pins its image
        # (`buildah containers` lists them, `buildah rm` removes them); the build succeeded
        say(f"pruning left some images in place: {str(e).splitlines()[-1][:200]}")
        return
    n = len([ln for ln in out.splitlines() if ln.strip()])
    if n:
        say(f"pruned {n} untagged images left by earlier builds")


def summary(state: Mapping[str, Any], names: Iterable[str] | None = None) -> str:
    rows = [f"{'image':<16} {'reference':<42} {'size':>8} {'gzip':>8} {'build':>7}  archive"]
    for name, e in state.get("images", {}).items():
        if names is not None and name not in names:
            continue
        rows.append(f"{name:<16} {e['ref']:<42} {e['uncompressed_bytes'] / 1e6:>6.0f}MB "
                    f"{e['compressed_bytes'] / 1e6:>6.0f}MB {e['build_seconds']:>6.0f}s  {e['archive']}")
    return "\n".join(rows)
