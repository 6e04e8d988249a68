"""The web view's server: stdlib http.server on loopback, reading through the API server with the
user's own credentials (kubeapi.Kube), so RBAC decides what a page shows. Read-only (GET only),
stateless (every page is read fresh), no database, nothing deployed in the cluster.

Because it holds the user's credentials, it answers only requests addressed to a loopback host
name (a web page elsewhere cannot rebind its own DNS name to 127.0.0.1 and read the cluster
through it), never frames, and its Content-Security-Policy allows no script at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import sys
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..kubeapi import CliError, Forbidden, Kube
from . import pages
from .layout import Listing, error_page

DEFAULT_PORT = 8700
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header, without its port ("[::1]:8700" -> "[::1]")."""
    h = header.strip()
    if h.startswith("["):
        return h[: h.find("]") + 1] if "]" in h else h
    return h.rsplit(":", 1)[0]


def fetch(kube: Kube, plural: str, kind: str, selector: str | None = None) -> Listing:
    """One kind's objects in kube.namespace, or why not: a 403 is 'forbidden', never another namespace."""
    try:
        return Listing(kind, kube.list(plural, label_selector=selector))
    except Forbidden as e:
        return Listing(kind, error=str(e), forbidden=True)
    except CliError as e:
        return Listing(kind, error=str(e))


def render(kube: Kube, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
    """(HTTP status, HTML) of one page for namespace ?ns= (default: the kubeconfig context's).
    A page whose main kind the user may not list answers 403 with the page that says so; one whose
    main kinds could not be read at all (API server unreachable) 502, with the reason."""
    ns = (query.get("ns") or [""])[0] or kube.namespace
    if not NAMESPACE.match(ns):
        return 400, error_page(400, f"{ns[:80]!r} is not a namespace name (lower-case letters, digits and '-').")
    k = dataclasses.replace(kube, namespace=ns)
    who: dict[str, Any] = {"context": kube.context, "user": kube.user}

    def listing(plural: str, kind: str, selector: str | None = None) -> Listing:
        return fetch(k, plural, kind, selector)

    main: list[Listing]
    if path == "/runs":
        runs = listing("trainingruns", "TrainingRun")
        main, html = [runs], pages.runs_page(ns, runs, query.get("run") or [], **who)
    elif path == "/versions":
        mvs = listing("modelversions", "ModelVersion")
        model = (query.get("model") or [""])[0] or None
        main = [mvs]
        html = pages.versions_page(ns, mvs, listing("trainingruns", "TrainingRun"), listing("datasets", "Dataset"),
                                   listing("inferenceservices", "InferenceService"), model, **who)
    elif path == "/monitoring":
        services, monitors = listing("inferenceservices", "InferenceService"), listing("driftmonitors", "DriftMonitor")
        main = [services, monitors]
        html = pages.monitoring_page(ns, services, monitors,
                                     listing("trainingruns", "TrainingRun", "mlops.dev/drift-monitor"),
                                     listing("modelversions", "ModelVersion"), **who)
    elif path == "/datasets":
        datasets = listing("datasets", "Dataset")
        main, html = [datasets], pages.datasets_page(ns, datasets, **who)
    elif path == "/":
        main = [listing(p, kind) for kind, p in (("Dataset", "datasets"), ("TrainingRun", "trainingruns"),
                                                 ("ModelVersion", "modelversions"),
                                                 ("InferenceService", "inferenceservices"),
                                                 ("DriftMonitor", "driftmonitors"))]
        html = pages.overview_page(ns, main, **who)
    else:
        return 404, error_page(404, f"no page {path[:80]!r}: try /runs, /versions, /monitoring or /datasets", ns)
    if all(li.forbidden for li in main):
        return 403, html
    return (502 if all(not li.ok for li in main) else 200), html  # e.g. the API server is unreachable


def handler(kube: Kube, log: Callable[[str], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mlops-ui"
        sys_version = ""

        def _send(self, status: int, body: str, content_type: str = "text/html; charset=utf-8") -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not is_loopback(host_name(self.headers.get("Host") or "")):
                self._send(400, error_page(400, "this view answers only requests to localhost or 127.0.0.1"))
                return
            url = urlsplit(self.path)
            if url.path == "/healthz":
                self._send(200, "ok\n", "text/plain; charset=utf-8")
                return
            try:
                status, html = render(kube, url.path, parse_qs(url.query))
            except Exception:  # noqa: BLE001 - one broken object must not take the server down
                log(traceback.format_exc())
                status, html = 500, error_page(500, "the page failed to render; the server log has the details")
            self._send(status, html)

        do_HEAD = do_GET

        def do_POST(self) -> None:  # noqa: N802
            self._send(405, error_page(405, "read-only: this view only answers GET"))

        do_PUT = do_DELETE = do_PATCH = do_POST

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log(f"{self.address_string()} {format % args}")

    return Handler


def make_server(kube: Kube, address: str = "127.0.0.1", port: int = DEFAULT_PORT,
                log: Callable[[str], None] | None = None) -> ThreadingHTTPServer:
    """The server, bound (port 0: any free port); call serve_forever(). Refuses non-loopback addresses:
    whoever reaches the port reads the cluster with the user's credentials."""
    if not is_loopback(address):
        raise CliError(f"refusing to serve on {address}: the view reads the cluster with your credentials, so it "
                       "listens on loopback only (127.0.0.1, ::1 or localhost)")
    say = log or (lambda m: print(m, file=sys.stderr))
    cls = ThreadingHTTPServer
    if ":" in address:
        import socket

        class V6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        cls = V6
    srv = cls((address.strip("[]"), port), handler(kube, say))
    srv.daemon_threads = True
    return srv


def serve(kube: Kube, address: str = "127.0.0.1", port: int = DEFAULT_PORT, quiet: bool = False) -> int:
    try:
        srv = make_server(kube, address, port, log=(lambda m: None) if quiet else None)
    except OSError as e:
        raise CliError(f"cannot listen on {address}:{port}: {e.strerror or e}") from None
    host, bound = str(srv.server_address[0]), int(srv.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    print(f"mlops ui: http://{shown}:{bound}/runs?ns={kube.namespace}  (read-only, as {kube.user}"
          f"{' in context ' + kube.context if kube.context else ''}; Ctrl-C stops it)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0
