"""The local cluster's S3 server (`mlops up --s3`): SeaweedFS where every pod can reach it.

Pods cannot reach the host's loopback, so `mlops s3-server` is no store for them. This runs the
same `weed server` as a supervised component of the cluster, inside the cluster's network
namespace, listening on the bridge address every pod routes to (NODE_IP, both kinds of node),
at a fixed port, so a store URI written once stays valid across restarts:

    s3://mlops/<prefix>?endpoint=http://10.240.0.1:8333

The supervisor restarts it when it exits and `mlops hold` stops it (the fault tests). Its data
and its admin key pair live in the cluster's state directory (`seaweedfs/`, the key pair in
`credentials.env`, mode 0600): `mlops down` keeps them, `--purge` removes them. The host reaches
the gateway through a loopback forward (`s3HostPort` in `mlops status`), like the API server.

    python -m mlops_operator.localcluster.s3cluster <cluster>     (what the supervisor runs)
"""

from __future__ import annotations

import http.server
import signal
import sys
import threading
from pathlib import Path

from .config import NODE_IP, ClusterConfig, daemon_config
from .seaweedfs import S3Identity, SeaweedServer, local_identity, weed_path

#: the S3 gateway's port on the bridge address (the same in every cluster: each has its own netns)
S3_PORT = 8333
#: kept for the host forward (supervisor) and the endpoint; the others are per cluster (ports())
PORTS = {"s3": S3_PORT}
_PORT_NAMES = ("s3.grpc", "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc")
#: the component's health port (answers once the bucket exists)
HEALTH_PORT = 10262
#: the bucket the cluster creates (a store URI may use another that the user creates)
BUCKET = "mlops"
COMPONENT = "seaweedfs"


def data_dir(cfg: ClusterConfig) -> Path:
    return cfg.path("seaweedfs")


def ports(cfg: ClusterConfig) -> dict[str, int]:
    """weed's ports for this cluster, chosen once and kept (`<state>/seaweedfs/ports.json`).

    Not fixed: weed also serves each gRPC port on a Unix socket whose path it hard-codes from the
    port number (`/tmp/seaweedfs-volume-grpc-<port>.sock`, weed/command/server.go), a path every
    network namespace shares. Two clusters on one machine with the same ports would talk to each
    other's volume servers ("volume 8 not found"). So each cluster draws its own from 20000-29999
    (clear of the control plane's and the nodes' ports), skipping sockets that exist."""
    import json
    import random

    path = data_dir(cfg) / "ports.json"
    try:
        got = json.loads(path.read_text())
        if set(_PORT_NAMES) <= set(got):
            return {**{k: int(got[k]) for k in _PORT_NAMES}, "s3": S3_PORT}
    except (OSError, ValueError):
        pass
    taken = {int(p.stem.rsplit("-", 1)[1]) for p in Path("/tmp").glob("seaweedfs-*.sock")
             if p.stem.rsplit("-", 1)[1].isdigit()}  # gRPC and the filer's HTTP port both get one
    rng = random.SystemRandom()
    chosen: dict[str, int] = {}
    for name in _PORT_NAMES:
        while True:
            port = rng.randrange(20000, 30000)
            if port not in taken and port not in chosen.values():
                chosen[name] = port
                break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chosen))
    return {**chosen, "s3": S3_PORT}


def endpoint() -> str:
    """The S3 endpoint as pods (and the operator's Jobs) reach it."""
    return f"http://{NODE_IP}:{PORTS['s3']}"


def identity(cfg: ClusterConfig) -> S3Identity:
    """The cluster server's admin key pair (made on first use, kept in the state directory)."""
    return local_identity(data_dir(cfg))


def credentials_file(cfg: ClusterConfig) -> Path:
    """AWS_ACCESS_KEY_ID=... / AWS_SECRET_ACCESS_KEY=... lines: `kubectl create secret generic
    mlops-store-s3 --from-env-file=<this>` makes the Secret a namespace's workloads read."""
    identity(cfg)
    return data_dir(cfg) / "credentials.env"


def store_uri(prefix: str = "mlops", bucket: str = BUCKET) -> str:
    """The operator's MLOPS_STORE for this cluster's server."""
    return f"s3://{bucket}/{prefix}?endpoint={endpoint()}"


def binary_ready() -> bool:
    """Whether `weed` is built (a cluster never builds it during `up` behind the user's back
    without saying so: cluster.up builds it first, with progress)."""
    return weed_path().exists()


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: object) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    cfg = daemon_config(sys.argv[1:] if argv is None else argv)
    srv = SeaweedServer(data_dir(cfg), [identity(cfg)], ports=ports(cfg), ip=NODE_IP, bind_ip="0.0.0.0")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    srv.start(timeout=180)
    try:
        srv.create_bucket(BUCKET)
        health = http.server.ThreadingHTTPServer(("127.0.0.1", HEALTH_PORT), _Health)
        threading.Thread(target=health.serve_forever, daemon=True).start()
        # exit when weed does, so the supervisor restarts the pair
        while not stop.wait(1.0):
            if srv.proc is None or srv.proc.poll() is not None:
                raise SystemExit(f"weed exited with {srv.proc.returncode if srv.proc else '?'}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
