"""Read a Dataset source as a stream of Arrow record batches (never the whole file in memory).

CSV columns are read as strings and typed by `columns.cast`, so a bad value becomes a counted
validation failure with examples rather than a reader crash. Parquet keeps its types.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


BATCH_ROWS = 65536
CSV_BLOCK = 1 << 20  # 1 MiB: as fast as 4 MiB, ~120 MB less peak memory (benchmarks/dataset)


class SourceError(RuntimeError):
    """The source cannot be read (missing file, bad download, unknown format)."""


def _format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.lower()
    for ext, fmt in ((".csv", "csv"), (".csv.gz", "csv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return fmt
    raise SourceError(f"cannot tell the format of {path.name}: set format to csv or parquet")


def _csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    opener = __import__("gzip").open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise SourceError(f"{path.name} is empty (no header row)")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK),
        convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                             strings_can_be_null=True),
    )
    for batch in reader:
        yield batch


def _parquet_batches(path: Path) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)


def file_batches(path: Path, fmt: str = "auto") -> Iterator[pa.RecordBatch]:
    """A file, or every file of a directory in name order (hidden files skipped)."""
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    files = (sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir()
             else [path])
    if not files:
        raise SourceError(f"directory {path} holds no files")
    for f in files:
        kind = _format(f, fmt)
        yield from (_csv_batches(f) if kind == "csv" else _parquet_batches(f))


# ------------------------------------------------------------------------------ http(s)
#
# Downloads guard against hostile or broken servers and against reaching into the cluster:
#
# - a total deadline (HttpSource.timeoutSeconds) besides the per-read timeout: a watchdog shuts
#   the socket down when it passes, so a server that trickles a byte at a time (in the body or
#   in its headers) cannot hold the snapshot forever;
# - a byte cap (HttpSource.maxBytes), checked against Content-Length up front and while streaming;
# - no connection to loopback, link-local (cloud metadata), private, unspecified, multicast or
#   reserved addresses, for the URL and every redirect hop, unless the operator's admin allows
#   them (MLOPS_HTTP_SOURCE_ALLOW_PRIVATE=true, passed to the Job as --allow-private-http).
#   Each host is resolved once, every address checked, and the connection goes to a checked
#   address (TLS still verifies the certificate against the host name), so DNS rebinding between
#   the check and the connection does not work. Residual risks: a public address that the
#   network routes into the cluster (e.g. the cluster's own load balancer) is not recognised,
#   and the system resolver's own timeouts apply to name resolution. Proxy variables
#   (http_proxy, ...) are not used: a proxy would connect on our behalf, unchecked.

DEFAULT_TIMEOUT_SECONDS = 600
DEFAULT_MAX_BYTES = 10 * 1024 ** 3
MAX_REDIRECTS = 5
CHUNK = 1 << 20
ALLOW_PRIVATE_SETTING = "MLOPS_HTTP_SOURCE_ALLOW_PRIVATE"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_problem(address: str) -> str | None:
    """Why a connection to `address` is refused by default (e.g. 'loopback'), or None if it is a
    publicly routable unicast address. IPv6 forms embedding an IPv4 address are judged by it."""
    ip = ipaddress.ip_address(address)
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or \
            (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            candidates.append(embedded)
    candidates.append(ip)
    for a in candidates:
        for kind, hit in (("unspecified", a.is_unspecified), ("loopback", a.is_loopback),
                          ("link-local", a.is_link_local), ("multicast", a.is_multicast),
                          ("reserved", a.is_reserved), ("private", a.is_private),
                          ("site-local", getattr(a, "is_site_local", False)),
                          ("non-public", not a.is_global)):
            if hit:
                return kind
    return None


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (once: the connection uses these very addresses)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _open_socket(ip: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((ip, port), timeout=timeout)


def _shown(url: str) -> str:
    """A URL for messages: without credentials or query string (signed URLs carry secrets)."""
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc.rsplit("@", 1)[-1], p.path, "", ""))


class _Deadline:
    """The total time limit of a download: when it passes, the current socket is shut down,
    which ends whatever read is blocked on it."""

    def __init__(self, seconds: float):
        self.seconds, self.expired = seconds, False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._at = time.monotonic() + self.seconds
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        return max(0.0, self._at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:  # the plain socket's shutdown, also for TLS sockets: it wakes a blocked recv
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _Connection(http.client.HTTPConnection):
    """An http connection to pre-checked addresses of the URL's host."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float, deadline: _Deadline):
        super().__init__(host, port, timeout=timeout)
        self._addresses, self._deadline, self._per_op = addresses, deadline, timeout

    def _raw_connect(self) -> socket.socket:
        error: OSError | None = None
        for ip in self._addresses:
            try:
                sock = _open_socket(ip, self.port, max(0.001, min(self._per_op, self._deadline.remaining())))
            except OSError as e:
                error = e
                continue
            self._deadline.watch(sock)
            return sock
        raise error or OSError(f"no address for {self.host}")

    def connect(self) -> None:
        self.sock = self._raw_connect()


class _TlsConnection(_Connection):
    default_port = 443

    def connect(self) -> None:
        sock = self._raw_connect()
        self.sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        self._deadline.watch(self.sock)


def _open(url: str, timeout: float, deadline: _Deadline, allow_private: bool) -> tuple[Any, _Connection]:
    """(response, connection) of a GET of `url`, following redirects; every hop's host is checked."""
    hop = url
    for n in range(MAX_REDIRECTS + 1):
        p = urllib.parse.urlsplit(hop)
        what = "" if n == 0 else f"it redirects to {_shown(hop)}, and "
        if p.scheme not in ("http", "https"):
            refused = "the URL" if n == 0 else f"redirect to a {p.scheme} URL ({_shown(hop)})"
            raise SourceError(f"download of {_shown(url)} refused: {refused}: only http and https are allowed")
        if not p.hostname:
            raise SourceError(f"download of {_shown(url)} failed: {_shown(hop)} names no host")
        port = p.port or (443 if p.scheme == "https" else 80)
        addresses = _resolve(p.hostname, port)
        if not allow_private:
            for ip in addresses:
                problem = address_problem(ip)
                if problem:
                    host = ip if ip == p.hostname else f"{p.hostname} resolves to {ip}"
                    article = "an" if problem[0] in "aeiou" else "a"
                    raise SourceError(
                        f"download of {_shown(url)} refused: {what}{host}, {article} {problem} address. "
                        "Sources inside the cluster or a private network need the operator setting "
                        f"{ALLOW_PRIVATE_SETTING}=true (an administrator's decision)")
        cls = _TlsConnection if p.scheme == "https" else _Connection
        conn = cls(p.hostname, port, addresses, timeout, deadline)
        target = (p.path or "/") + (f"?{p.query}" if p.query else "")
        try:
            conn.request("GET", target, headers={"User-Agent": "mlops-operator-snapshot",
                                                 "Accept-Encoding": "identity"})
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location")
            conn.close()
            if not location:
                raise SourceError(f"download of {_shown(url)} failed: HTTP {resp.status} without a Location")
            hop = urllib.parse.urljoin(hop, location)
            continue
        if not 200 <= resp.status < 300:
            conn.close()
            raise SourceError(f"download of {_shown(url)} failed: HTTP {resp.status} {resp.reason}"
                              + (f" (from {_shown(hop)})" if hop != url else ""))
        return resp, conn
    raise SourceError(f"download of {_shown(url)} failed: too many redirects (more than {MAX_REDIRECTS})")


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60, *,
             total_timeout: float = DEFAULT_TIMEOUT_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES,
             allow_private: bool = False) -> Path:
    """Stream an http(s) download to `dest`, checking its sha256 when one is declared.

    `timeout` bounds each network operation, `total_timeout` the whole download (including
    redirects) and `max_bytes` its size. Addresses that are not publicly routable are refused
    unless `allow_private` (see the notes above)."""
    h = hashlib.sha256()
    size = 0
    late = (f"download of {_shown(url)} took longer than timeoutSeconds={total_timeout:g} (the total time "
            "allowed) and was stopped: the server is stalled or too slow")
    try:
        with _Deadline(total_timeout) as deadline:
            try:
                resp, conn = _open(url, timeout, deadline, allow_private)
                with contextlib.closing(conn), open(dest, "wb") as out:
                    declared = resp.getheader("Content-Length")
                    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
                        raise SourceError(f"download of {_shown(url)} refused: its Content-Length {int(declared)} "
                                          f"is over maxBytes={max_bytes}")
                    while chunk := resp.read1(CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise SourceError(f"download of {_shown(url)} stopped: it is larger than "
                                              f"maxBytes={max_bytes}")
                        h.update(chunk)
                        out.write(chunk)
                    if deadline.expired:  # the watchdog's shutdown can look like the end of the body
                        raise SourceError(late)
                    if resp.length:  # the connection ended before Content-Length bytes came
                        raise SourceError(f"download of {_shown(url)} failed: the connection closed after "
                                          f"{size} bytes, {resp.length} short of its Content-Length")
            except (OSError, http.client.HTTPException, ValueError) as e:
                if deadline.expired:
                    raise SourceError(late) from e
                raise SourceError(f"download of {_shown(url)} failed: {type(e).__name__}: {e}") from e
    except SourceError:
        dest.unlink(missing_ok=True)
        raise
    if sha256 and h.hexdigest() != sha256:
        raise SourceError(f"download of {_shown(url)} has sha256 {h.hexdigest()}, expected {sha256}")
    return dest


def open_source(source: dict[str, Any], source_root: Path, workdir: Path, *,
                allow_private_http: bool = False, store_uri: str | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of a Dataset's `spec.source` (wire form, camelCase). `allow_private_http`
    is the operator's setting, never the Dataset's: see download(). `store_uri`: the artifact
    store a capture source reads (default: a file store at `source_root`)."""
    kind = source["type"]
    if kind == "file":
        rel = source["file"]["path"].lstrip("/")
        path = (source_root / rel).resolve()
        if not path.is_relative_to(source_root.resolve()):
            raise SourceError(f"source path {rel!r} leaves the mounted volume")
        return file_batches(path, source["file"].get("format", "auto"))
    if kind == "http":
        h = source["http"]
        name = h["url"].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download"
        dest = download(h["url"], workdir / name, h.get("sha256"),
                        total_timeout=float(h.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
                        max_bytes=int(h.get("maxBytes") or DEFAULT_MAX_BYTES), allow_private=allow_private_http)
        return file_batches(dest, h.get("format", "auto"))
    if kind == "generator":
        from . import retail, retail_ranking

        g = source["generator"]
        if g.get("kind", "retail") == "retailRanking":
            return retail_ranking.batches(int(g.get("rows", 10000)), seed=int(g.get("seed", 0)),
                                          shift=float(g.get("behaviourShift", 0.0)))
        return retail.batches(int(g.get("rows", 10000)), seed=int(g.get("seed", 0)),
                              behaviour_shift=float(g.get("behaviourShift", 0.0)))
    if kind == "capture":
        from .capture import capture_batches

        from ..store.store import open_store

        c = source["capture"]
        area = open_store(store_uri or source_root.resolve().as_uri()).captures(c["inferenceService"])
        return capture_batches(area.local_dir(workdir), since=c.get("since"),
                               until=c.get("until"), labelled_only=bool(c.get("labelledOnly", True)))
    raise SourceError(f"unknown source type {kind!r}")


