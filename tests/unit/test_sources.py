"""Dataset sources: http(s) downloads with sha256, directories, formats; duration strings."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_operator.api.durations import parse_duration
from mlops_operator.data import sources

CSV = b"a,b\n1,x\n2,y\n"


@pytest.fixture
def served(tmp_path):
    (tmp_path / "data.csv").write_bytes(CSV)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _rows(batches):
    return sum(b.num_rows for b in batches)


def test_http_source_is_downloaded_and_checked(served, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    good = {"type": "http", "http": {"url": f"{served}/data.csv", "sha256": hashlib.sha256(CSV).hexdigest()}}
    local = {"allow_private_http": True}  # the test server is on loopback
    assert _rows(sources.open_source(good, tmp_path, work, **local)) == 2
    bad = {"type": "http", "http": {"url": f"{served}/data.csv", "sha256": "0" * 64}}
    with pytest.raises(sources.SourceError, match="expected 0000"):
        list(sources.open_source(bad, tmp_path, work, **local))
    missing = {"type": "http", "http": {"url": f"{served}/nope.csv"}}
    with pytest.raises(sources.SourceError, match="404"):
        list(sources.open_source(missing, tmp_path, work, **local))


def test_directory_sources_read_every_file_in_order_and_parquet(tmp_path):
    d = tmp_path / "exports"
    d.mkdir()
    (d / "2.csv").write_bytes(b"a,b\n3,z\n")
    (d / "1.csv").write_bytes(CSV)
    (d / ".hidden.csv").write_bytes(b"junk")
    batches = list(sources.open_source({"type": "file", "file": {"path": "exports"}}, tmp_path, tmp_path))
    assert [v for b in batches for v in b.column("a").to_pylist()] == ["1", "2", "3"]
    pq.write_table(pa.table({"a": [1.0, 2.0]}), tmp_path / "t.parquet")
    assert _rows(sources.open_source({"type": "file", "file": {"path": "t.parquet"}}, tmp_path, tmp_path)) == 2


def test_source_paths_cannot_leave_the_volume(tmp_path):
    with pytest.raises(sources.SourceError, match="leaves the mounted volume"):
        sources.open_source({"type": "file", "file": {"path": "../../etc/passwd"}}, tmp_path, tmp_path)
    (tmp_path / "x.txt").write_text("?")
    with pytest.raises(sources.SourceError, match="cannot tell the format"):
        list(sources.open_source({"type": "file", "file": {"path": "x.txt"}}, tmp_path, tmp_path))


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5m", "5", "1d", "m5"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# ------------------------------------------------------------------ hostile http servers (issue 16)

class _Hostile(http.server.BaseHTTPRequestHandler):
    """Servers that misbehave: trickle, send too much, redirect inward."""

    protocol_version = "HTTP/1.1"
    stop = threading.Event()

    def log_message(self, *a):
        pass

    def _drip(self, data: bytes, every: float) -> None:
        for i in range(len(data)):
            if self.stop.wait(every):
                return
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()

    def do_GET(self):
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _get(self):
        path = self.path.split("?", 1)[0]
        if path == "/data.csv":
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV)
        elif path == "/trickle-body":  # one byte at a time, each well within the per-read timeout
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            self._drip(b"a,b\n" + b"1,x\n" * 25000, 0.2)
        elif path == "/trickle-headers":  # never finishes its headers
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._drip(b"X-Slow: " + b"z" * 10000, 0.2)
        elif path == "/endless.csv":  # no Content-Length, and (nearly) no end
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"a,b\n")
            line = b"1,x\n" * 16384
            for _ in range(1024):  # 64 MiB at most, so a broken client cannot fill the disk
                if self.stop.is_set():
                    return
                self.wfile.write(line)
        elif path == "/huge.csv":  # declares more than the cap
            self.send_response(200)
            self.send_header("Content-Length", str(11 * 1024 ** 3))
            self.end_headers()
            self.wfile.write(b"a,b\n")
            self.stop.wait(30)
        elif path.startswith("/to/"):  # redirect to the URL after /to/
            self.send_response(302)
            self.send_header("Location", self.path[len("/to/"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)


@pytest.fixture
def hostile():
    _Hostile.stop = threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    _Hostile.stop.set()
    server.shutdown()
    server.server_close()


def _fetch(url, tmp_path, allow_private=True, **http_fields):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    src = {"type": "http", "http": {"url": url, **http_fields}}
    return list(sources.open_source(src, tmp_path, work, allow_private_http=allow_private))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_trickling_server_hits_the_total_deadline(hostile, tmp_path, path):
    """Each byte arrives well within the per-read timeout: only a total deadline ends it."""
    started = time.monotonic()
    with pytest.raises(sources.SourceError, match=r"timeoutSeconds=2\b"):
        _fetch(f"http://127.0.0.1:{hostile}{path}", tmp_path, timeoutSeconds=2)
    assert time.monotonic() - started < 6
    assert not list((tmp_path / "work").iterdir())  # the partial download is gone


@pytest.mark.timeout(60)
def test_an_endless_body_stops_at_max_bytes(hostile, tmp_path):
    cap = 1 << 20
    with pytest.raises(sources.SourceError, match=rf"maxBytes={cap}\b"):
        _fetch(f"http://127.0.0.1:{hostile}/endless.csv", tmp_path, maxBytes=cap)
    assert not list((tmp_path / "work").iterdir())


@pytest.mark.timeout(30)
def test_a_declared_content_length_over_max_bytes_fails_before_the_body(hostile, tmp_path):
    started = time.monotonic()
    with pytest.raises(sources.SourceError, match=r"Content-Length 11811160064 .*maxBytes=10737418240"):
        _fetch(f"http://127.0.0.1:{hostile}/huge.csv", tmp_path)  # default cap: 10 GiB
    assert time.monotonic() - started < 5


def test_http_source_limits_have_safe_defaults():
    from mlops_operator.api.dataset import HttpSource

    h = HttpSource(url="https://example.com/x.csv")
    assert h.timeout_seconds == 600 and h.max_bytes == 10 * 1024 ** 3
    assert sources.DEFAULT_TIMEOUT_SECONDS == 600 and sources.DEFAULT_MAX_BYTES == h.max_bytes


# ------------------------------------------------------------------ SSRF (issue 16)

PUBLIC = "93.184.216.34"  # a globally routable address; tests map it onto the local server


@pytest.fixture
def no_connect(monkeypatch):
    """Fail any connection attempt: a refused URL must be refused before connecting."""
    tried = []

    def refuse(ip, port, timeout):
        tried.append(ip)
        raise AssertionError(f"connected to {ip}")
    monkeypatch.setattr(sources, "_open_socket", refuse)
    return tried


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1/x.csv", "loopback"),
    ("http://127.1.2.3:8080/x.csv", "loopback"),
    ("http://10.1.2.3/x.csv", "private"),
    ("http://172.16.0.9/x.csv", "private"),
    ("http://192.168.1.1/x.csv", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/x.csv", "loopback"),
    ("http://[fd00::5]/x.csv", "private"),
    ("http://[fe80::1]/x.csv", "link-local"),
    ("http://[::ffff:127.0.0.1]/x.csv", "loopback"),
    ("http://0.0.0.0/x.csv", "unspecified"),
    ("http://224.0.0.1/x.csv", "multicast"),
    ("http://240.0.0.1/x.csv", "reserved"),
    ("http://100.64.0.1/x.csv", "non-public"),  # shared (carrier-grade NAT) space
])
def test_private_and_internal_addresses_are_refused_by_default(tmp_path, no_connect, url, kind):
    with pytest.raises(sources.SourceError, match=rf"{kind}.*MLOPS_HTTP_SOURCE_ALLOW_PRIVATE"):
        _fetch(url, tmp_path, allow_private=False)
    assert no_connect == []


def test_a_name_resolving_to_an_internal_address_is_refused(tmp_path, no_connect, monkeypatch):
    names = {"metadata.example": ["169.254.169.254"], "mixed.example": [PUBLIC, "10.0.0.7"]}
    monkeypatch.setattr(sources, "_resolve", lambda host, port: names[host])
    with pytest.raises(sources.SourceError, match=r"metadata\.example.*169\.254\.169\.254.*link-local"):
        _fetch("http://metadata.example/computeMetadata/v1/", tmp_path, allow_private=False)
    # one internal address among public ones is enough to refuse (the client could pick it)
    with pytest.raises(sources.SourceError, match=r"10\.0\.0\.7.*private"):
        _fetch("http://mixed.example/x.csv", tmp_path, allow_private=False)
    assert no_connect == []


@pytest.fixture
def fake_dns(hostile, monkeypatch):
    """public.example -> a public address and internal.example -> 10.0.0.5, both actually served
    by the local hostile server; records the addresses connected to."""
    names = {"public.example": [PUBLIC], "internal.example": ["10.0.0.5"]}
    monkeypatch.setattr(sources, "_resolve", lambda host, port: names.get(host, [host]))
    connected = []
    real = sources._open_socket

    def to_local(ip, port, timeout):
        connected.append(ip)
        return real("127.0.0.1", hostile, timeout)
    monkeypatch.setattr(sources, "_open_socket", to_local)
    return connected


def test_a_redirect_to_an_internal_address_is_refused(tmp_path, hostile, fake_dns):
    url = f"http://public.example:{hostile}/to/http://internal.example:{hostile}/data.csv"
    with pytest.raises(sources.SourceError, match=r"redirect.*internal\.example.*10\.0\.0\.5.*private"):
        _fetch(url, tmp_path, allow_private=False)
    assert fake_dns == [PUBLIC]  # the first hop was fetched, the internal one never connected
    # a redirect between public hosts is followed, and the connection goes to the checked address
    ok = f"http://public.example:{hostile}/to/http://public.example:{hostile}/data.csv"
    assert _rows(_fetch(ok, tmp_path, allow_private=False)) == 2
    assert fake_dns == [PUBLIC, PUBLIC, PUBLIC]


def test_the_operator_opt_in_lets_internal_sources_through(tmp_path, hostile, fake_dns):
    url = f"http://public.example:{hostile}/to/http://internal.example:{hostile}/data.csv"
    assert _rows(_fetch(url, tmp_path, allow_private=True)) == 2
    assert fake_dns == [PUBLIC, "10.0.0.5"]
    assert _rows(_fetch(f"http://127.0.0.1:{hostile}/data.csv", tmp_path, allow_private=True)) == 2


def test_redirects_are_bounded_and_stay_on_http(tmp_path, hostile, fake_dns):
    with pytest.raises(sources.SourceError, match="redirect to a file URL"):
        _fetch(f"http://public.example:{hostile}/to/file:///etc/passwd", tmp_path, allow_private=False)
    loop = f"http://public.example:{hostile}/to/" * 8 + f"http://public.example:{hostile}/data.csv"
    with pytest.raises(sources.SourceError, match="too many redirects"):
        _fetch(loop, tmp_path, allow_private=False)
