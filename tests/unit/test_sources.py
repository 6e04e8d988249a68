"""Dataset sources: http(s) downloads with sha256, directories, formats; duration strings."""

from __future__ import annotations

import hashlib
import http.server
import threading
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
    assert _rows(sources.open_source(good, tmp_path, work)) == 2
    bad = {"type": "http", "http": {"url": f"{served}/data.csv", "sha256": "0" * 64}}
    with pytest.raises(sources.SourceError, match="expected 0000"):
        list(sources.open_source(bad, tmp_path, work))
    missing = {"type": "http", "http": {"url": f"{served}/nope.csv"}}
    with pytest.raises(sources.SourceError, match="404"):
        list(sources.open_source(missing, tmp_path, work))


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
