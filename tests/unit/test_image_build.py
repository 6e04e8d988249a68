"""`mlops images` without building anything: the commands it runs, the hashing and cache decisions,
the messages for missing tools and an unreachable index, and what each image's Dockerfile and
requirement set promise (the slim images import nothing they do not install)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mlops_operator.localcluster import images as im

REPO = Path(__file__).resolve().parents[2]
SERVER = im.BY_NAME["mlops-server"]


# --- commands ----------------------------------------------------------------------------------

def test_build_argv_mounts_the_bundle_as_a_secret_only(tmp_path):
    bundle = tmp_path / "proxy-ca.pem"
    argv = im.build_argv(SERVER, im.BASE_REF, bundle, repo=REPO)
    assert argv[:2] == ["buildah", "build"]
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--build-arg") + 1] == "BASE=localhost/mlops-base:bookworm"
    assert argv[argv.index("--secret") + 1] == f"id=ca,src={bundle}"
    assert argv[argv.index("-f") + 1] == str(REPO / "images" / "server.Dockerfile")
    assert argv[argv.index("-t") + 1] == "ghcr.io/mlops-dev/mlops-server:0.1.0"
    assert argv[-1] == str(REPO)
    # the bundle appears once, in the secret, never as a volume, a build argument or a copy
    assert sum(str(bundle) in a for a in argv) == 1
    assert not {"-v", "--volume", "--mount"} & set(argv)
    assert "--pull-never" in argv  # nothing comes from a registry


def test_push_argv_puts_the_reference_in_the_archive(tmp_path):
    argv = im.push_argv(SERVER, tmp_path / "x.oci.tar")
    assert argv[:2] == ["buildah", "push"]
    assert argv[-1] == f"oci-archive:{tmp_path / 'x.oci.tar'}:ghcr.io/mlops-dev/mlops-server:0.1.0"


def test_base_argv_is_a_minbase_bookworm_with_python(tmp_path):
    argv = im.base_argv(tmp_path / "rootfs.tar", ["/etc/apt/sources.list.d/debian.sources"],
                        ['Acquire::Check-Valid-Until "false"'])
    assert argv[0] == "mmdebstrap" and "--variant=minbase" in argv
    assert "--include=python3,python3-venv,ca-certificates" in argv
    assert '--aptopt=Acquire::Check-Valid-Until "false"' in argv
    assert argv[-3:] == ["bookworm", str(tmp_path / "rootfs.tar"), "/etc/apt/sources.list.d/debian.sources"]
    # the recipe hash ignores where the tarball goes, not what goes in it
    a = im.base_recipe_hash(argv, ["deb http://x/debian bookworm main"])
    b = im.base_recipe_hash(im.base_argv(tmp_path / "elsewhere.tar", argv[-1:],
                                         ['Acquire::Check-Valid-Until "false"']), ["deb http://x/debian bookworm main"])
    assert a == b
    assert a != im.base_recipe_hash(argv, ["deb http://y/debian bookworm main"])


def test_apt_sources_are_the_machines_debian_ones(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(textwrap.dedent("""\
        Types: deb
        URIs: http://deb.debian.org/debian
        Suites: bookworm bookworm-updates
        Components: main
    """))
    (d / "nodesource.sources").write_text("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n")
    (d / "google.list.disabled-by-farm").write_text("deb http://deb.debian.org/debian bookworm main\n")
    (tmp_path / "sources.list").write_text("# deb http://deb.debian.org/debian bookworm main\n")
    assert im.apt_sources(tmp_path) == [str(d / "debian.sources")]
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    assert im.apt_sources(tmp_path) == [str(tmp_path / "sources.list"), str(d / "debian.sources")]
    assert im.apt_sources(tmp_path / "nothing") == list(im.DEFAULT_SOURCES)


def test_apt_options_carry_the_hosts_valid_until_and_proxy():
    dump = 'APT "";\nAcquire::Check-Valid-Until "false";\nAcquire::http::Proxy "http://proxy:3128";\n'
    assert im.apt_options(dump) == ['Acquire::Check-Valid-Until "false"', 'Acquire::http::Proxy "http://proxy:3128"']
    assert im.apt_options('APT "";\n') == []


# --- CA bundle ---------------------------------------------------------------------------------

def test_ca_bundle_from_the_environment(tmp_path, monkeypatch):
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    assert im.ca_bundle({}) is None
    assert im.ca_bundle({"SSL_CERT_FILE": str(tmp_path / "missing.pem")}) is None
    assert im.ca_bundle({"SSL_CERT_FILE": str(tmp_path / "missing.pem"), "PIP_CERT": str(pem)}) == pem
    assert im.ca_bundle({"REQUESTS_CA_BUNDLE": str(pem)}) == pem
    # no bundle: the secret is an empty file, which the RUN steps skip ([ -s /run/secrets/ca ])
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path / "cache"))
    empty = im._secret_file(None)
    assert empty.is_file() and empty.stat().st_size == 0
    assert im._secret_file(pem) == pem


@pytest.mark.parametrize("dockerfile", ["runtime.Dockerfile", "server.Dockerfile", "operator.Dockerfile"])
def test_dockerfiles_use_the_bundle_only_as_a_secret(dockerfile):
    text = (REPO / "images" / dockerfile).read_text()
    assert "ARG BASE=python:3.11-slim" in text
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}", "${BASE}"]
    logical = re.sub(r"\\\n", " ", text)
    runs = [line for line in logical.splitlines() if line.startswith("RUN ")]
    for run in runs:
        if "pip install" in run:
            assert "--mount=type=secret,id=ca" in run and "if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi" in run, run
            assert "--no-cache-dir" in run
    for line in logical.splitlines():
        if line.startswith(("COPY", "ADD")):
            assert not re.search(r"\.(pem|crt)\b|ca-certificates|secrets", line), line
    assert re.search(r"^USER 1000$", text, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "slim-venv.sh /opt/mlops" in text


def test_slim_script_precompiles_and_keeps_vendored_libraries_unstripped():
    text = (REPO / "images" / "slim-venv.sh").read_text()
    assert "compileall" in text and "unchecked-hash" in text
    assert "-path '*.libs/*' -prune" in text  # stripping auditwheel-patched libraries breaks them


# --- inputs, hashing, cache decisions ----------------------------------------------------------

def _fake_repo(root: Path) -> Path:
    (root / "images" / "pause").mkdir(parents=True)
    for f in ("server.Dockerfile", "runtime.Dockerfile", "operator.Dockerfile", "slim-venv.sh",
              "server-requirements.txt", "pause/pause.c"):
        (root / "images" / f).write_text(f)
    for f in ("pyproject.toml", "constraints.txt", "README.md"):
        (root / f).write_text(f)
    pkg = root / "operator" / "mlops_operator"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    return root


def test_input_hash_follows_the_inputs_only(tmp_path):
    repo = _fake_repo(tmp_path)
    h = im.input_hash(SERVER, "base1", repo)
    assert h == im.input_hash(SERVER, "base1", repo)
    (repo / "operator" / "mlops_operator" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (repo / "operator" / "mlops_operator" / "stale.pyc").write_bytes(b"\0")
    assert im.input_hash(SERVER, "base1", repo) == h, "bytecode is not an input"
    assert im.input_hash(SERVER, "base2", repo) != h, "a new base rebuilds"
    for f in ("images/server.Dockerfile", "pyproject.toml", "constraints.txt", "images/server-requirements.txt",
              "operator/mlops_operator/__init__.py"):
        before = (repo / f).read_text()
        (repo / f).write_text(before + "changed")
        assert im.input_hash(SERVER, "base1", repo) != h, f
        (repo / f).write_text(before)
    (repo / "operator" / "mlops_operator" / "new.py").write_text("")
    assert im.input_hash(SERVER, "base1", repo) != h, "a new source file"
    # the pause image depends on its C source only
    pause = im.BY_NAME["pause"]
    p = im.input_hash(pause, None, repo)
    (repo / "pyproject.toml").write_text("other")
    assert im.input_hash(pause, None, repo) == p
    (repo / "images" / "pause" / "pause.c").write_text("other")
    assert im.input_hash(pause, None, repo) != p
    # coredns: the binary's digest comes in as `extra`
    core = im.BY_NAME["coredns"]
    assert im.input_hash(core, None, repo, extra=["a"]) != im.input_hash(core, None, repo, extra=["b"])


@pytest.mark.parametrize("entry,archive,image,force,want", [
    (None, False, False, False, (True, "never built")),
    ({"input_hash": "h"}, True, True, False, (False, "up to date")),
    ({"input_hash": "h"}, True, True, True, (True, "--force")),
    ({"input_hash": "old"}, True, True, False, (True, "inputs changed")),
    ({"input_hash": "h"}, False, True, False, (True, "archive missing")),
    ({"input_hash": "h"}, True, False, False, (True, "not in buildah's storage")),
])
def test_needs_build(entry, archive, image, force, want):
    assert im.needs_build(entry, "h", archive, image, force) == want


def test_select():
    assert [i.name for i in im.select(None)] == [i.name for i in im.IMAGES]
    assert [i.name for i in im.select(["mlops-server", "pause"])] == ["pause", "mlops-server"]
    with pytest.raises(im.ImageBuildError, match="unknown image nope; the images are: pause, coredns"):
        im.select(["nope"])


# --- failures ----------------------------------------------------------------------------------

def test_missing_tools_say_what_to_install():
    none = lambda tool: None  # noqa: E731
    msgs = im.missing_tools(im.IMAGES, base_needed=True, which=none)
    assert any(m.startswith("buildah is not installed") and "apt-get install buildah mmdebstrap" in m for m in msgs)
    assert any(m.startswith("mmdebstrap is not installed") and "apt-get install buildah mmdebstrap" in m for m in msgs)
    assert any("gcc is not installed" in m and "apt-get install gcc libc6-dev" in m for m in msgs)
    # the scratch images need neither mmdebstrap nor a base
    only_buildah = lambda tool: "/usr/bin/" + tool if tool == "buildah" else None  # noqa: E731
    assert im.missing_tools([im.BY_NAME["coredns"]], base_needed=False, which=only_buildah) == []


def test_build_fails_clearly_without_buildah(monkeypatch, tmp_path, capsys):
    from mlops_operator.cli.main import main

    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(im.shutil, "which", lambda tool: None)
    with pytest.raises(im.ImageBuildError, match=r"(?s)cannot build the images:.*buildah is not installed.*"
                                                  r"apt-get install buildah mmdebstrap"):
        im.build(only=["mlops-server"], say=lambda m: None)
    assert main(["images", "--only", "mlops-server"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlops: cannot build the images:") and "mmdebstrap is not installed" in err


@pytest.mark.parametrize("line", [
    "pip._vendor.urllib3.exceptions.SSLError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
    "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection: [Errno 101]')",
    "ERROR: No matching distribution found for numpy==2.4.6",
])
def test_pip_network_failures_are_named(line):
    msg = im.explain_failure("buildah build images/server.Dockerfile", f"STEP 5/8\n{line}\nexit status 1\n")
    assert "pip could not reach the package index" in msg and "SSL_CERT_FILE or PIP_CERT" in msg
    assert line in msg  # and the output it comes from


def test_apt_and_other_failures():
    msg = im.explain_failure("mmdebstrap", "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease")
    assert "apt could not reach the Debian mirror" in msg
    msg = im.explain_failure("buildah build x", "some\nother\nerror: boom\n")
    assert msg.startswith("buildah build x failed:") and msg.endswith("error: boom")


def test_a_missing_executable_is_named(monkeypatch):
    with pytest.raises(im.ImageBuildError, match="no-such-tool-xyz is not installed: apt-get install buildah mmdebstrap"):
        im._run(["no-such-tool-xyz", "--version"], "probe", lambda m: None)


# --- archives ----------------------------------------------------------------------------------

def _oci_archive(path: Path, layers: list[dict[str, bytes]], config: dict) -> None:
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict:
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {"digest": f"sha256:{d}", "size": len(data)}

    descs = []
    for files in layers:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as t:
            for name, data in files.items():
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      **add(gzip.compress(raw.getvalue()))})
    cfg = {"mediaType": "application/vnd.oci.image.config.v1+json", **add(json.dumps(config).encode())}
    manifest = json.dumps({"schemaVersion": 2, "config": cfg, "layers": descs}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                 **add(manifest)}]}
    with tarfile.open(path, "w") as t:
        for name, data in [("index.json", json.dumps(index).encode())] + \
                          [(f"blobs/sha256/{d}", b) for d, b in blobs.items()]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def test_archive_sizes(tmp_path):
    a = tmp_path / "x.oci.tar"
    _oci_archive(a, [{"a": b"\0" * 100_000}, {"b/c": b"x" * 5000}], {"config": {"User": "1000"}})
    unc, comp = im.archive_sizes(a)
    assert comp < 10_000 < 100_000 < unc
    assert unc > 100_000 + 5000  # the two layers' tar streams, plus manifest and config


# --- what the slim images leave out ------------------------------------------------------------

def _requirements(name: str) -> list[str]:
    lines = (REPO / "images" / f"{name}-requirements.txt").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def _norm(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("name", ["server", "operator"])
def test_requirement_sets_are_project_dependencies(name):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # the s3 extra too: the server speaks to an s3:// store (payload capture, a monitor's reference)
    deps = {_norm(d) for d in project["dependencies"] + project["optional-dependencies"]["s3"]}
    pins = {_norm(x) for x in (REPO / "constraints.txt").read_text().splitlines() if x and not x.startswith("#")}
    reqs = _requirements(name)
    assert reqs and all(_norm(r) in deps and _norm(r) in pins for r in reqs), set(map(_norm, reqs)) - deps
    assert all(r == _norm(r) for r in reqs), "names only: the versions come from constraints.txt"


#: project dependencies each slim image leaves out, by the module name they import as
_LEFT_OUT = {
    "server": ["sklearn", "scipy", "pandas", "pyarrow", "onnx", "skl2onnx", "kopf", "kubernetes", "yaml",
               "cryptography"],
    "operator": ["sklearn", "pandas", "pyarrow", "onnx", "onnxruntime", "skl2onnx", "orjson", "uvloop",
                 "cryptography", "grpc", "grpcio"],
}
_BLOCKER = """
import os, sys, tempfile
# the packages left out are "not installed": site-packages is replaced by a copy of its
# entries (symlinks) without them; the project itself stays importable (editable install)
_site = next(p for p in sys.path if p.endswith("site-packages"))
_shadow = tempfile.mkdtemp(prefix="slim-site-")
for _e in os.listdir(_site):
    if _e.split(".")[0].split("-")[0] not in BLOCKED:
        os.symlink(os.path.join(_site, _e), os.path.join(_shadow, _e))
sys.path[sys.path.index(_site)] = _shadow
"""


def _run_blocked(name: str, code: str) -> subprocess.CompletedProcess[str]:
    prog = f"BLOCKED = {_LEFT_OUT[name]!r}\n{_BLOCKER}\n{textwrap.dedent(code)}"
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)


def test_the_model_server_runs_without_the_training_stack(tmp_path):
    """The server image's set suffices: the server's modules import, and load and answer a model."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    onx = to_onnx(LogisticRegression().fit(X, X[:, 0] > 0), X[:1], options={"zipmap": False})
    (tmp_path / "m.onnx").write_bytes(onx.SerializeToString())
    p = _run_blocked("server", f"""
        import mlops_operator.serving.run, mlops_operator.serving.app, mlops_operator.serving.grpc_service
        import numpy as np
        from mlops_operator.serving.model import parse_onnx, session
        data = open({str(tmp_path / 'm.onnx')!r}, "rb").read()
        print(parse_onnx(data))
        s = session(data)
        print(s.run(None, {{s.get_inputs()[0].name: np.ones((2, 3), np.float32)}})[0])
        from mlops_operator.serving.run import main
        try:
            main(["--help"])
        except SystemExit as e:
            assert e.code == 0
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("[]")


def test_the_operator_runs_without_the_training_and_serving_stack():
    p = _run_blocked("operator", """
        import mlops_operator.cli.main, mlops_operator.controllers.run, mlops_operator.controllers.handlers
        import numpy as np
        from mlops_operator.drift import fast
        keys, counts = fast._hash_counts(np.array(["a", None, "b", "a", float("nan")] + [str(i) for i in range(3)],
                                                  dtype=object))
        assert keys == ["a", "b", "0", "1", "2"] and list(counts) == [2, 1, 1, 1, 1], (keys, counts)
        from mlops_operator.cli.main import build_parser
        build_parser().parse_args(["operator", "run", "--standalone"])
        print("ok")
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"


def test_value_counts_without_pyarrow_match_pyarrow():
    from mlops_operator.drift import fast

    rng = np.random.default_rng(1)
    vals = rng.choice(np.array(["x", "y", "z", "é", "", None, float("nan")], dtype=object), size=2000)
    want_keys, want_counts = fast._hash_counts(vals)
    p = subprocess.run([sys.executable, "-c", f"""
BLOCKED = ["pyarrow"]
{_BLOCKER}
import pickle, numpy as np
from mlops_operator.drift import fast
vals = pickle.loads({__import__('pickle').dumps(vals)!r})
k, c = fast._hash_counts(vals)
print(pickle.dumps((k, list(map(int, c)))).hex())
"""], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    import pickle

    keys, counts = pickle.loads(bytes.fromhex(p.stdout.strip()))
    assert keys == want_keys and counts == [int(c) for c in want_counts]


# --- the ONNX check the server does without the onnx package -----------------------------------

def test_parse_onnx_agrees_with_the_onnx_package():
    import onnx
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    from mlops_operator.serving.model import ModelLoadError, parse_onnx

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    model = to_onnx(RandomForestClassifier(n_estimators=3, max_depth=3).fit(X, X[:, 1] > 0), X[:1])
    data = model.SerializeToString()
    got = parse_onnx(data)
    assert got == {"ir_version": model.ir_version, "opset_import": len(model.opset_import),
                   "node": len(model.graph.node), "output": len(model.graph.output)}
    # every truncation protobuf refuses, the wire reader refuses too (ModelLoadError, naming ONNX)
    for cut in sorted({1, 2, 5, 17, len(data) // 3, len(data) // 2, len(data) - 7, len(data) - 1}):
        try:
            onnx.ModelProto.FromString(data[:cut])
            protobuf_ok = True
        except Exception:
            protobuf_ok = False
        if not protobuf_ok:
            with pytest.raises(ModelLoadError, match="ONNX"):
                parse_onnx(data[:cut])
    for bad in (b"\x08\x07garbage-that-is-not-a-model" * 3, b"\x08\x07", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(ModelLoadError, match="ONNX"):
            parse_onnx(bad)
    # a graph without nodes is not usable
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    with pytest.raises(ModelLoadError, match="not a usable ONNX model"):
        parse_onnx(empty.SerializeToString())


def test_a_failed_prune_does_not_fail_the_build(monkeypatch):
    """An interrupted build's working container pins an image: `buildah rmi --prune` fails,
    the images were built all the same."""
    from mlops_operator.localcluster import images

    def refuse(argv, what, say, echo=None, timeout=3600):
        raise images.ImageBuildError(f"{what} failed:\nError: image is in use by a container")

    said: list[str] = []
    monkeypatch.setattr(images, "_run", refuse)
    images.prune(said.append)
    assert said and "image is in use by a container" in said[-1]
