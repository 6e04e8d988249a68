"""SeaweedFS (Apache-2.0): the S3-compatible server of the local cluster and of the S3 store tests.

Built from its published Go module like the other binaries, cached under
`~/.cache/mlops/seaweedfs/`. Never built by default: `mlops binaries --seaweedfs` (or the first
test that needs it) pays the one-time build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .binaries import Progress
from .forward import free_port
from .nodebins import GoBuild, build_module

#: a pseudo-version of the module (the project publishes no module tags); passes `go get` here
SEAWEEDFS_VERSION = "0.0.0-20261109003541-7506e5f91cd6"

SPEC = GoBuild(
    "seaweedfs", "github.com/seaweedfs/seaweedfs", SEAWEEDFS_VERSION, {"weed": "weed"},
    # seaweedfs' own go.mod carries this replace; `go install ...@version` refuses such modules
    replaces=(("github.com/tyler-smith/go-bip39", "github.com/cosmos/go-bip39 v1.0.0"),),
    cache_subdir="seaweedfs",
)


def _say(msg: str) -> None:
    print(f"[mlops] {msg}", file=sys.stderr, flush=True)


def weed_path() -> Path:
    """Where the `weed` binary is (or will be) cached; nothing is built."""
    return SPEC.paths()["weed"]


def ensure_weed(progress: Progress = _say) -> Path:
    """The cached `weed` binary, built from the Go module when missing (about 4 min, once)."""
    path = weed_path()
    if not os.access(path, os.X_OK):
        build_module(SPEC, progress)
    return path


# --- a server on loopback -----------------------------------------------------------------------

@dataclass(frozen=True)
class S3Identity:
    """An access key pair the server accepts, with the S3 actions it may take."""

    name: str
    access_key: str
    secret_key: str = field(repr=False)
    actions: tuple[str, ...] = ("Admin", "Read", "Write", "List", "Tagging")


class SeaweedError(RuntimeError):
    """The S3 server did not start (the message carries the tail of its log)."""


class SeaweedServer:
    """`weed server` (master + volume + filer + S3 gateway in one process) on loopback.

    The lightest combination that answers S3: the gateway needs a filer, the filer a master and a
    volume server; `weed mini` adds an admin UI, workers and WebDAV on fixed ports, `weed s3`
    alone needs the rest started separately. Every port is chosen free on 127.0.0.1 (the gRPC ones
    too: their default, port+10000, collides when two servers run), telemetry is off, buckets are
    never created implicitly (so a missing bucket is an error, as on a real S3), and the data
    lives in `data_dir`, which survives `stop()` (a restarted server sees the same objects).
    """

    def __init__(self, data_dir: Path | str, identities: list[S3Identity], binary: Path | None = None,
                 volume_size_mb: int = 64, s3_port: int = 0, ports: dict[str, int] | None = None,
                 ip: str = "127.0.0.1", bind_ip: str = "127.0.0.1"):
        self.data_dir = Path(data_dir)
        #: the address weed advertises (the master hands it to the filer and the gateway) and the
        #: one it listens on; the in-cluster server (s3cluster.py) advertises the cluster bridge
        self.ip, self.bind_ip = ip, bind_ip
        self.identities = identities
        self.binary = binary
        self.volume_size_mb = volume_size_mb
        self.proc: subprocess.Popen[bytes] | None = None
        #: 0: a free port, chosen on the first start
        self.s3_port = s3_port
        #: fixed ports (the in-cluster server: pods and restarts must find the same ones)
        self._ports: dict[str, int] = dict(ports or {})
        if self._ports:
            self.s3_port = self._ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def _config(self) -> Path:
        doc = {"identities": [
            {"name": i.name, "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
             "actions": list(i.actions)} for i in self.identities]}
        path = self.data_dir / "s3-identities.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        return path

    def command(self) -> list[str]:
        """The `weed server` command line (ports picked on the first call, kept for restarts)."""
        if not self._ports:
            names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")
            self._ports = {n: free_port() for n in names}
            if self.s3_port:
                self._ports["s3"] = self.s3_port
            self.s3_port = self._ports["s3"]
        p = self._ports
        binary = self.binary or weed_path()
        return [
            str(binary), "server", f"-ip={self.ip}", f"-ip.bind={self.bind_ip}", f"-dir={self.data_dir / 'data'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-master.volumeSizeLimitMB={self.volume_size_mb}", "-master.telemetry=false",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}", "-volume.preStopSeconds=0",
            "-volume.max=0", "-volume.minFreeSpace=1GiB",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={self._config()}", "-s3.autoCreateBucket=false",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]

    def start(self, timeout: float = 120) -> "SeaweedServer":
        """Start the server and wait until its S3 gateway answers a signed request."""
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.data_dir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeaweedError(f"weed exited with {self.proc.returncode}:\n{self._tail()}")
            if self._ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise SeaweedError(f"weed's S3 gateway did not answer within {timeout}s:\n{self._tail()}")

    def _ready(self) -> bool:
        """The gateway answers, and a filer and a writable volume stand behind it.

        An unauthenticated ListBuckets gets 403 from the gateway as soon as it listens, before
        the filer has a volume to write to, so readiness asks the master for a writable volume
        (one is grown on first assignment) and the filer for its root.
        """
        try:
            urllib.request.urlopen(f"{self.endpoint}/", timeout=2).close()  # noqa: S310 (loopback)
        except urllib.error.HTTPError:
            pass  # 403 without credentials: the gateway listens
        except OSError:
            return False
        try:
            with urllib.request.urlopen(  # noqa: S310
                    f"http://127.0.0.1:{self._ports['master']}/dir/assign", timeout=5) as r:
                if "fid" not in json.loads(r.read()):
                    return False
            urllib.request.urlopen(f"http://127.0.0.1:{self._ports['filer']}/", timeout=2).close()  # noqa: S310
        except (OSError, ValueError):
            return False
        return True

    def create_bucket(self, name: str, timeout: float = 60) -> None:
        """Create a bucket through `weed shell` (no S3 client needed; idempotent)."""
        m = self._ports["master"]
        p = subprocess.run(
            [str(self.binary or weed_path()), "shell", f"-master=127.0.0.1:{m}.{self._ports['master.grpc']}"],
            input=f"s3.bucket.create -name {name}\nexit\n", capture_output=True, text=True, timeout=timeout,
            cwd=self.data_dir)
        out = p.stdout + p.stderr
        if "already exists" in out:
            return
        if p.returncode != 0 or "error" in out.lower():
            raise SeaweedError(f"creating bucket {name!r} failed ({p.returncode}): {out[-2000:]}")

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL after `timeout`; the data directory is kept.

        weed's graceful shutdown takes about 15 s (its components drain one after the other);
        everything it acknowledged is already written to the data directory by then, and a
        killed process loses nothing the kernel holds, so the wait is short."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "SeaweedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a local server for users (`mlops s3-server`) -----------------------------------------------

def local_identity(data_dir: Path) -> S3Identity:
    """The admin key pair of a local server, made once and kept in `<data_dir>/credentials.env`
    (mode 0600, the AWS_* lines a store reads), so a restart keeps the same credentials."""
    import secrets

    path = data_dir / "credentials.env"
    if path.exists():
        env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return S3Identity("admin", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    data_dir.mkdir(parents=True, exist_ok=True)
    ident = S3Identity("admin", "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"AWS_ACCESS_KEY_ID={ident.access_key}\nAWS_SECRET_ACCESS_KEY={ident.secret_key}\n")
    return ident
