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

#: the S3 gateway's port on the bridge address; weed's other ports stay off the common ones
#: (the node agent, kubelet and control-plane health ports share this namespace)
PORTS = {"s3": 8333, "s3.grpc": 18333, "master": 19333, "master.grpc": 29333, "volume": 18080,
         "volume.grpc": 28080, "filer": 18888, "filer.grpc": 28888}
#: the component's health port (answers once the bucket exists)
HEALTH_PORT = 10262
#: the bucket the cluster creates (a store URI may use another that the user creates)
BUCKET = "mlops"
COMPONENT = "seaweedfs"


def data_dir(cfg: ClusterConfig) -> Path:
    return cfg.path("seaweedfs")


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
    srv = SeaweedServer(data_dir(cfg), [identity(cfg)], ports=PORTS, ip=NODE_IP, bind_ip="0.0.0.0")
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
