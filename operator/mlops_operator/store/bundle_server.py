"""Serve the verified files of one stored version over HTTP: `python -m mlops_operator.store.bundle_server`.

Why: a PVC store can only be read by a pod that mounts it, and `kubectl mlops export` runs outside the
cluster. It used to print the bundle into the pod's log, but a real kubelet rotates a container log
at about 10 MiB (containerLogMaxSize) and the log API returns only the newest file, so a larger model
could not leave the cluster. This server runs in the short-lived export pod instead; the plugin reads
it through the API server's pod proxy (`pods/proxy`), which streams bodies of any size and needs no
exec support from the node (the process node has none) and no port-forward.

Digest checks at both ends: before it listens, the server verifies model.onnx (the primary file)
against the digest the plugin was given (FileStore.local_path) and hashes every other file; each
answer carries the sha256 and the length of its bytes (`X-Mlops-Sha256`, `Content-Length`), and the
plugin hashes what arrives. A store whose bytes do not match makes the pod fail before anything is
served, with the reason in its termination message.

Requests need the plugin's one-off token in the `X-Mlops-Token` header: other pods on the pod network
reach this port too. The pod holds only the token's sha256 (MLOPS_EXPORT_TOKEN_SHA256), so whoever
may read the pod spec (the `view` role) cannot use it, and the header keeps it out of the URL, which
the API server's audit log records. `GET /healthz` (no token) is the readiness probe; `GET /done`
ends the server with exit code 0. A connection idle for IDLE_TIMEOUT_S is closed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .store import CHUNK, FileStore, StoreError, _check_part, sha256_file

TOKEN_ENV = "MLOPS_EXPORT_TOKEN_SHA256"
TOKEN_HEADER = "X-Mlops-Token"
SHA_HEADER = "X-Mlops-Sha256"
#: a connection that sends nothing for this long is closed (no thread held by an idle client)
IDLE_TIMEOUT_S = 30.0
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Served:
    """One file of the bundle as verified at start: its path, length and sha256."""

    path: Path
    size: int
    sha256: str


def prepare(store_root: Path | str, uri: str, files: list[str], digest: str) -> dict[str, Served]:
    """The files of the version at `uri`, the first (the primary) verified against `digest`.

    StoreError (ArtifactMissing, IntegrityError, ...) when a file is missing or does not match."""
    if not files:
        raise StoreError("no file to serve")
    store = FileStore(store_root)
    out: dict[str, Served] = {}
    for i, name in enumerate(files):
        path = store.local_path(uri, _check_part(name), digest if i == 0 else None)
        out[name] = Served(path, path.stat().st_size, digest if i == 0 else sha256_file(path))
    return out


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_server(bundle: dict[str, Served], token_hash: str, host: str = "0.0.0.0",  # noqa: S104 (pod's netns)
                port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for `bundle`, answering whoever sends the token whose
    sha256 is `token_hash`; `server.done` is set once /done was asked."""
    if len(token_hash) != 64:
        raise ValueError(f"no token: set {TOKEN_ENV} to the sha256 of the plugin's token")
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        server_version = "mlops-bundle"
        protocol_version = "HTTP/1.1"
        timeout = IDLE_TIMEOUT_S

        def log_message(self, fmt: str, *args: object) -> None:
            pass  # what matters is printed once a file was served

        def _plain(self, code: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            u = urllib.parse.urlsplit(self.path)
            name = u.path.strip("/")
            if name == "healthz":
                return self._plain(200, "ok")
            given = self.headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(token_sha256(given), token_hash):
                return self._plain(403, f"wrong or missing token ({TOKEN_HEADER})")
            if name == "done":
                self._plain(200, "bye")
                done.set()
                threading.Thread(target=self.server.shutdown, daemon=True).start()
                return None
            f = bundle.get(name)
            if f is None:
                return self._plain(404, f"no file {name!r} in this bundle (have: {', '.join(bundle)})")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(f.size))
            self.send_header(SHA_HEADER, f.sha256)
            self.end_headers()
            with open(f.path, "rb") as src:
                while chunk := src.read(CHUNK):
                    self.wfile.write(chunk)
            print(f"served {name} ({f.size} bytes, sha256 {f.sha256})", file=sys.stderr, flush=True)
            return None

    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    srv.done = done  # type: ignore[attr-defined]
    return srv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlops_operator.store.bundle_server",
                                description="Serve verified files of a stored version over HTTP (export pod).")
    p.add_argument("--uri", required=True, help="version URI, e.g. file:///store/models/<model>/<digest>/")
    p.add_argument("--file", action="append", required=True, dest="files",
                   help="file of the version to serve (repeat); the first is the primary file")
    p.add_argument("--digest", required=True, help="sha256 the first --file must have; refuse to serve otherwise")
    p.add_argument("--store-root", default="/store", help="root of the file store (default /store)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--termination-log", default="/dev/termination-log", type=Path)
    a = p.parse_args(argv)
    try:
        bundle = prepare(a.store_root, a.uri, a.files, a.digest)
        srv = make_server(bundle, os.environ.get(TOKEN_ENV, ""), port=a.port)
    except (StoreError, ValueError, OSError) as e:
        msg = f"export refused: {e}"
        print(msg, file=sys.stderr, flush=True)
        try:
            a.termination_log.write_text(msg[:3500])
        except OSError:
            pass  # outside a pod
        return 1
    print(f"serving {', '.join(f'{n} ({s.size} bytes)' for n, s in bundle.items())} on port {a.port}",
          file=sys.stderr, flush=True)
    with srv:
        srv.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
