"""HTTP(S) probes to endpoints that exist only inside a cluster namespace.

The components' health ports listen on the namespace's loopback; the probe makes its socket
inside that namespace (`netns.socket_in`) and speaks HTTP over it from the host process.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from . import netns


@dataclass
class ProbeResult:
    ok: bool
    status: int
    body: str


class _NsConnection(http.client.HTTPSConnection):
    def __init__(self, ns: str, host: str, port: int, context: ssl.SSLContext | None, timeout: float):
        super().__init__(host, port, timeout=timeout, context=context or ssl.create_default_context())
        self._ns, self._tls = ns, context

    def connect(self) -> None:
        sock = netns.socket_in(self._ns)
        sock.settimeout(self.timeout)
        sock.connect((self.host, self.port))
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def client_tls(pki: Path | None, stem: str = "admin") -> ssl.SSLContext:
    """TLS context: verify against the cluster CA with a client cert, or trust-on-first-use."""
    if pki is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # component health ports use self-signed certs
        return ctx
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{stem}.crt"), str(pki / f"{stem}.key"))
    return ctx


def probe(ns: str, url: str, pki: Path | None = None, timeout: float = 3.0) -> ProbeResult:
    """GET `url` from inside namespace `ns`; ok means HTTP 200."""
    u = urllib.parse.urlsplit(url)
    tls = client_tls(pki) if u.scheme == "https" else None
    port = u.port or (443 if u.scheme == "https" else 80)
    conn = _NsConnection(ns, u.hostname or "127.0.0.1", port, tls, timeout)
    try:
        conn.request("GET", u.path + (f"?{u.query}" if u.query else ""))
        r = conn.getresponse()
        body = r.read(4096).decode(errors="replace")
        return ProbeResult(r.status == 200, r.status, body)
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        return ProbeResult(False, 0, str(e))
    finally:
        conn.close()
