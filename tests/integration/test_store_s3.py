"""The s3:// store against a real S3 server: SeaweedFS (built from its Go module) on loopback.

No Kubernetes cluster is involved. The `seaweed` fixture builds `weed` when it is not cached (once,
about 4-6 min), so these tests never skip because a binary is missing; set MLOPS_TEST_S3=0 to
leave them out on purpose (they are then reported as skipped, with that reason).
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from mlops_operator.localcluster.seaweedfs import S3Identity, SeaweedServer, ensure_weed
from mlops_operator.store import open_store
from mlops_operator.store.s3 import RetryPolicy, S3Store
from mlops_operator.store.s3config import Credentials, parse_s3_uri
from mlops_operator.store.store import (
    AccessDenied,
    ArtifactMissing,
    BucketMissing,
    IntegrityError,
    StoreError,
    StoreUnreachable,
)

pytestmark = pytest.mark.skipif(os.environ.get("MLOPS_TEST_S3", "1").strip().lower() in ("0", "false", "no"),
                                reason="MLOPS_TEST_S3=0: the SeaweedFS tests were disabled on purpose")

ADMIN = S3Identity("admin", "AKADMINTEST0001", "admin-secret-Zq8vX2pL0mN4")
READER = S3Identity("reader", "AKREADERTEST001", "reader-secret-Hy7tR3kW9bC1", actions=("Read", "List"))
BUCKET = "mlops-test"
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> SeaweedServer:
    """One SeaweedFS server for the session (master, volume, filer and S3 gateway on loopback)."""
    weed = ensure_weed()
    srv = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), [ADMIN, READER], binary=weed).start()
    srv.create_bucket(BUCKET)
    yield srv
    srv.stop()


def _store(srv: SeaweedServer, prefix: str | None = None, ident: S3Identity = ADMIN, bucket: str = BUCKET,
           cache: Path | None = None, **kw) -> S3Store:
    uri = f"s3://{bucket}/{prefix or uuid.uuid4().hex[:12]}?endpoint={srv.endpoint}"
    kw.setdefault("retry", RetryPolicy(retries=2, backoff_s=0.1, backoff_max_s=0.5, connect_timeout_s=2,
                                       read_timeout_s=30))
    return S3Store(parse_s3_uri(uri), Credentials(ident.access_key, ident.secret_key),
                   cache_dir=cache or Path(tempfile.mkdtemp(prefix="s3cache-")), **kw)


def _file(d: Path, name: str, data: bytes) -> Path:
    p = d / name
    p.write_bytes(data)
    return p


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n
    return path


def _objects(store: S3Store) -> list[str]:
    return sorted(o.object_name for o in store._client.list_objects(BUCKET, prefix=store.config.prefix + "/",
                                                                    recursive=True))


def test_roundtrip_is_content_addressed_verified_and_idempotent(seaweed, tmp_path):
    store = _store(seaweed)
    onnx = _file(tmp_path, "model.onnx", b"onnx-bytes")
    manifest = _file(tmp_path, "model.json", b'{"format": "mlops.dev/model/v1"}')
    digest, uri = store.put_version("models", "churn", onnx, {"model.json": manifest})
    assert digest == hashlib.sha256(b"onnx-bytes").hexdigest()
    assert uri == f"s3://{BUCKET}/{store.config.prefix}/models/churn/{digest}/"
    assert store.exists("models", "churn", digest)
    assert not store.exists("models", "churn", "0" * 64)
    assert store.local_path(uri, "model.onnx", digest).read_bytes() == b"onnx-bytes"
    assert store.local_path(uri, "model.json").read_bytes() == manifest.read_bytes()
    # a second put of the same content is a no-op with the same answer
    assert store.put_version("models", "churn", onnx, {"model.json": manifest}) == (digest, uri)
    assert _objects(store) == [f"{store.config.prefix}/models/churn/{digest}/model.json",
                               f"{store.config.prefix}/models/churn/{digest}/model.onnx"]
    # another process (a serving pod) with its own empty cache reads it through open_store
    with pytest.raises(ArtifactMissing):
        store.local_path(uri, "missing.json")


def test_open_store_reads_credentials_from_the_environment(seaweed, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN.secret_key)
    monkeypatch.setenv("MLOPS_STORE_CACHE", str(tmp_path / "cache"))
    store = open_store(f"s3://{BUCKET}/env-{uuid.uuid4().hex[:8]}?endpoint={seaweed.endpoint}")
    data = _file(tmp_path, "data.parquet", b"PAR1 rows PAR1")
    digest, uri = store.put_version("datasets", "retail", data, {"profile.json": _file(tmp_path, "p.json", b"{}")})
    path = store.local_path(uri, "data.parquet", digest)
    assert path.read_bytes() == b"PAR1 rows PAR1" and path.is_relative_to(tmp_path / "cache")


def test_large_upload_and_download_stream_in_bounded_memory(seaweed, tmp_path):
    part = 5 * MiB
    size = 64 * MiB  # > part x 4, and several times the bound asserted below
    store = _store(seaweed, part_size=part, concurrency=2, cache=tmp_path / "cache")
    big = _random_file(tmp_path / "data.parquet", size)
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        digest, uri = store.put_version("datasets", "big", big)
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        path = store.local_path(uri, "data.parquet", digest)
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == want and path.stat().st_size == size
    # parts in flight (concurrency), one queued, the one being read, plus a little for the client
    bound = part * (2 + 2) + 4 * MiB
    assert up_peak < bound, f"upload peak {up_peak / MiB:.1f} MiB for a {size // MiB} MiB file"
    assert down_peak < 8 * MiB, f"download peak {down_peak / MiB:.1f} MiB for a {size // MiB} MiB file"
    # multipart indeed (an S3 multipart ETag ends in -<parts>)
    assert store._client.stat_object(BUCKET, store._key_of(uri, "data.parquet")).etag.endswith("-13")


def test_concurrent_writers_of_the_same_version(seaweed, tmp_path):
    prefix = f"conc-{uuid.uuid4().hex[:8]}"
    src = _random_file(tmp_path / "model.onnx", 12 * MiB)  # multipart with 5 MiB parts
    extra = _file(tmp_path, "model.json", b"{}")
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(_store(seaweed, prefix, part_size=5 * MiB).put_version(
                "models", "same", src, {"model.json": extra}))
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(set(results)) == 1 and len(results) == 4
    digest, uri = results[0]
    assert _store(seaweed, prefix).local_path(uri, "model.onnx", digest).read_bytes() == src.read_bytes()


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from minio import Minio
sys.path.insert(0, {operator!r})
from mlops_operator.store.s3 import S3Store
from mlops_operator.store.s3config import Credentials, parse_s3_uri

real = Minio._upload_part
count = 0
def slow_part(self, *a, **kw):
    global count
    etag = real(self, *a, **kw)
    count += 1
    if count == 2:
        print("TWO-PARTS-UPLOADED", flush=True)
        time.sleep(3600)   # killed here, mid-upload
    return etag
Minio._upload_part = slow_part
store = S3Store(parse_s3_uri({uri!r}), Credentials({key!r}, {secret!r}), part_size=5 << 20, concurrency=1)
store.put_version("models", "partial", Path({src!r}))
"""


def test_an_upload_killed_midway_is_never_visible(seaweed, tmp_path):
    """A writer SIGKILLed after two of its parts: no object under the digest, and a later writer
    completes the version."""
    prefix = f"kill-{uuid.uuid4().hex[:8]}"
    store = _store(seaweed, prefix)
    src = _random_file(tmp_path / "model.onnx", 23 * MiB)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    code = _KILLED_WRITER.format(operator=str(REPO / "operator"), uri=store.config.root_uri,
                                 key=ADMIN.access_key, secret=ADMIN.secret_key, src=str(src))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "TWO-PARTS-UPLOADED", proc.stderr.read() if proc.stderr else ""
        assert not store.exists("models", "partial", digest)  # mid-upload
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not store.exists("models", "partial", digest)  # after the crash
    assert _objects(store) == []
    uri = store.uri("models", "partial", digest)
    with pytest.raises(ArtifactMissing, match="missing from the store"):
        store.local_path(uri, "model.onnx", digest)
    assert store.put_version("models", "partial", src) == (digest, uri)
    assert store.local_path(uri, "model.onnx", digest).stat().st_size == 23 * MiB


def test_a_failed_upload_is_aborted_and_not_visible(seaweed, tmp_path, monkeypatch):
    from minio import Minio

    store = _store(seaweed, part_size=5 * MiB, concurrency=1)
    src = _random_file(tmp_path / "model.onnx", 16 * MiB)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    real, calls, aborted = Minio._upload_part, [], []
    real_abort = Minio._abort_multipart_upload

    def failing_part(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk went away")  # the local file fails to read mid-upload
        return real(self, *a, **kw)

    def abort(self, *a, **kw):
        aborted.append(a)
        return real_abort(self, *a, **kw)

    monkeypatch.setattr(Minio, "_upload_part", failing_part)
    monkeypatch.setattr(Minio, "_abort_multipart_upload", abort)
    with pytest.raises(OSError, match="disk went away"):
        store.put_version("models", "failing", src)
    assert aborted, "the multipart upload was not aborted"
    assert not store.exists("models", "failing", digest)


def test_a_corrupted_object_is_refused_by_its_digest(seaweed, tmp_path):
    store = _store(seaweed, cache=tmp_path / "cache")
    onnx = _file(tmp_path, "model.onnx", b"the real model")
    digest, uri = store.put_version("models", "m", onnx)
    key = store._key_of(uri, "model.onnx")
    cached = store.local_path(uri, "model.onnx", digest)
    # someone overwrites the object in the bucket through the S3 API
    import io

    store._client.put_object(BUCKET, key, io.BytesIO(b"tampered model!"), 15)
    fresh = _store(seaweed, store.config.prefix)  # another pod: empty cache
    with pytest.raises(IntegrityError, match="does not match the expected") as e:
        fresh.local_path(uri, "model.onnx", digest)
    assert e.value.reason == "DigestMismatch"
    assert not any(p.is_file() for p in fresh.cache.rglob("*")), "refused bytes were left in the cache"
    # a re-put notices the corruption instead of trusting it
    with pytest.raises(IntegrityError, match="refusing to trust it"):
        store.put_version("models", "m", onnx)
    # a tampered local cache is re-verified and re-fetched (here: refused, the bucket is bad too)
    cached.write_bytes(b"local tamper")
    with pytest.raises(IntegrityError):
        store.local_path(uri, "model.onnx", digest)


def test_a_missing_bucket_is_named(seaweed, tmp_path):
    store = _store(seaweed, bucket="no-such-bucket-here")
    src = _file(tmp_path, "model.onnx", b"x")
    for op in (lambda: store.exists("models", "m", "0" * 64),
               lambda: store.put_version("models", "m", src),
               lambda: store.local_path(store.uri("models", "m", "0" * 64), "model.onnx", "0" * 64)):
        with pytest.raises(BucketMissing, match="bucket 'no-such-bucket-here' does not exist") as e:
            op()
        assert e.value.reason == "StoreBucketMissing"


def test_wrong_credentials_and_missing_permissions_are_access_denied(seaweed, tmp_path):
    src = _file(tmp_path, "model.onnx", b"x")
    wrong = S3Identity("nobody", ADMIN.access_key, "not-the-secret-Pq9zW2")
    unknown = S3Identity("nobody", "AKUNKNOWNKEY0001", "some-secret-Lk3jH7")
    for ident in (wrong, unknown):
        store = _store(seaweed, ident=ident)
        for op in (lambda s=store: s.exists("models", "m", "0" * 64), lambda s=store: s.put_version("models", "m", src)):
            with pytest.raises(AccessDenied, match="access denied") as e:
                op()
            assert e.value.reason == "StoreAccessDenied"
            assert ident.secret_key not in str(e.value) and ident.access_key not in str(e.value)
    # a valid key without write permission
    reader = _store(seaweed, ident=READER)
    with pytest.raises(AccessDenied):
        reader.put_version("models", "m", src)


def test_an_unreachable_endpoint_fails_within_the_retry_budget(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    retry = RetryPolicy(retries=3, backoff_s=0.2, backoff_max_s=0.4, connect_timeout_s=1, read_timeout_s=2)
    store = S3Store(parse_s3_uri(f"s3://{BUCKET}/p?endpoint=http://127.0.0.1:{port}"),
                    Credentials(ADMIN.access_key, ADMIN.secret_key), retry=retry, cache_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(StoreUnreachable, match=f"127.0.0.1:{port}") as e:
        store.exists("models", "m", "0" * 64)
    elapsed = time.monotonic() - started
    assert e.value.reason == "StoreUnreachable"
    assert elapsed <= retry.worst_case_s(), f"{elapsed:.1f}s > bound {retry.worst_case_s()}s"
    assert elapsed >= sum(retry.backoffs()) - 0.05  # it did back off and retry (0, 0.4, 0.4 s)


class _Flaky(http.server.BaseHTTPRequestHandler):
    """An S3 look-alike that answers 503 a given number of times, then 200 to HEAD."""

    failures = 0
    seen = 0

    def do_HEAD(self) -> None:  # noqa: N802
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        for k, v in (("Content-Length", "1"), ("ETag", '"x"'), ("Last-Modified", "Mon, 30 Nov 2026 00:00:00 GMT"),
                     ("x-amz-meta-sha256", "0" * 64)):
            self.send_header(k, v)
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


@pytest.mark.parametrize("failures,ok", [(2, True), (10, False)])
def test_5xx_answers_are_retried_with_backoff_then_reported(tmp_path, failures, ok):
    _Flaky.failures, _Flaky.seen = failures, 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        retry = RetryPolicy(retries=3, backoff_s=0.05, backoff_max_s=0.1, connect_timeout_s=1, read_timeout_s=2)
        store = S3Store(parse_s3_uri(f"s3://{BUCKET}/p?endpoint=http://127.0.0.1:{srv.server_port}"),
                        Credentials(ADMIN.access_key, ADMIN.secret_key), retry=retry, cache_dir=tmp_path)
        if ok:
            assert store.exists("models", "m", "0" * 64)
            assert _Flaky.seen == failures + 1
        else:
            with pytest.raises(StoreUnreachable):
                store.exists("models", "m", "0" * 64)
            assert _Flaky.seen == retry.retries + 1
    finally:
        srv.shutdown()
        srv.server_close()


def test_credentials_appear_in_no_log_record_and_no_error(seaweed, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # everything, from every logger
    # urllib3's own level too: a CLI test earlier in the session (Kube.connect) sets it to ERROR
    caplog.set_level(logging.DEBUG, logger="urllib3")
    secrets = (ADMIN.secret_key, READER.secret_key, "wrong-secret-Mn5bV8")
    texts: list[str] = []
    store = _store(seaweed)
    digest, uri = store.put_version("models", "m", _file(tmp_path, "model.onnx", b"model"))
    store.local_path(uri, "model.onnx", digest)
    texts.append(repr(store))
    failing = [
        lambda: _store(seaweed, ident=S3Identity("x", ADMIN.access_key, "wrong-secret-Mn5bV8")).exists("models", "m", digest),
        lambda: _store(seaweed, ident=READER).put_version("models", "m2", _file(tmp_path, "model.onnx", b"m2")),
        lambda: _store(seaweed, bucket="no-such-bucket-here").exists("models", "m", digest),
        lambda: _store(seaweed).local_path(uri, "model.onnx", "f" * 64),
    ]
    for op in failing:
        with pytest.raises(StoreError) as e:
            op()
        texts += [str(e.value), repr(e.value)]
    texts.append(caplog.text)
    texts += [str(r.args) for r in caplog.records]
    assert caplog.records, "expected the client's debug logging to have recorded something"
    for secret in secrets:
        assert not any(secret in t for t in texts), f"a secret leaked into {[t for t in texts if secret in t][:1]}"
    # and the store's own messages do not name the access key either
    assert not any(ADMIN.access_key in t or READER.access_key in t for t in texts[1:-1 - len(caplog.records)])


def test_the_server_restarts_with_its_data(seaweed, tmp_path):
    """What the fault tests of the next slices rely on: stop, restart, same objects."""
    store = _store(seaweed)
    digest, uri = store.put_version("models", "m", _file(tmp_path, "model.onnx", b"persisted"))
    seaweed.stop()
    try:
        down = _store(seaweed, store.config.prefix,
                      retry=RetryPolicy(retries=1, backoff_s=0.1, connect_timeout_s=1, read_timeout_s=2))
        with pytest.raises(StoreUnreachable):
            down.exists("models", "m", digest)
    finally:
        seaweed.start()
    assert _store(seaweed, store.config.prefix).local_path(uri, "model.onnx", digest).read_bytes() == b"persisted"


def test_fetch_copies_a_version_into_a_local_store_verified(seaweed, tmp_path, monkeypatch):
    """The init container's program (store/fetch.py): s3 -> emptyDir, then the server reads file://."""
    from mlops_operator.store.fetch import main as fetch_main
    from mlops_operator.store.store import FileStore

    store = _store(seaweed)
    digest, _ = store.put_version("models", "churn", _file(tmp_path, "model.onnx", b"onnx!"),
                                  {"model.json": _file(tmp_path, "model.json", b'{"m": 1}')})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN.secret_key)
    dest, log = tmp_path / "models", tmp_path / "termination-log"
    args = ["--store", store.config.root_uri, "--name", "churn", "--digest", digest, "--extra", "model.json",
            "--dest", str(dest), "--termination-log", str(log)]
    assert fetch_main(args) == 0
    import json

    out = json.loads(log.read_text())
    local = FileStore(dest)
    assert out == {"ok": True, "uri": local.uri("models", "churn", digest)}
    assert local.local_path(out["uri"], "model.onnx", digest).read_bytes() == b"onnx!"
    assert local.local_path(out["uri"], "model.json").read_bytes() == b'{"m": 1}'
    assert not (dest / ".fetch-cache").exists()
    assert fetch_main(args) == 0  # a restarted init container: already there, fine

    # a corrupted object: refused, nothing lands in the destination
    import io

    store._client.put_object(BUCKET, store._key_of(store.uri("models", "churn", digest), "model.onnx"),
                             io.BytesIO(b"evil!"), 5)
    dest2 = tmp_path / "models2"
    assert fetch_main([*args[:-4], "--dest", str(dest2), "--termination-log", str(log)]) == 1
    out = json.loads(log.read_text())
    assert out["ok"] is False and out["reason"] == "DigestMismatch"
    assert not any(p.is_file() for p in dest2.rglob("*")) if dest2.exists() else True


class _CutOnce(http.server.BaseHTTPRequestHandler):
    """Serves one object; the first GET breaks off half-way (a connection reset mid-body)."""

    body = b""
    gets = 0
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        type(self).gets += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"x"')
        self.end_headers()
        if type(self).gets == 1:
            self.wfile.write(self.body[: len(self.body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(self.body)

    def log_message(self, *a) -> None:
        pass


def test_a_download_broken_midway_is_restarted_and_verified(tmp_path):
    _CutOnce.body, _CutOnce.gets = os.urandom(3 * MiB), 0
    digest = hashlib.sha256(_CutOnce.body).hexdigest()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOnce)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        store = S3Store(parse_s3_uri(f"s3://{BUCKET}/p?endpoint=http://127.0.0.1:{srv.server_port}"),
                        Credentials(ADMIN.access_key, ADMIN.secret_key), cache_dir=tmp_path,
                        retry=RetryPolicy(retries=2, backoff_s=0.05, connect_timeout_s=1, read_timeout_s=2))
        path = store.local_path(store.uri("models", "m", digest), "model.onnx", digest)
        assert path.read_bytes() == _CutOnce.body
        assert _CutOnce.gets == 2
        assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no partial file left behind
    finally:
        srv.shutdown()
        srv.server_close()


def test_mlops_s3_server_serves_a_store_and_keeps_its_secret_to_a_file(tmp_path, monkeypatch):
    """`mlops s3-server`: a foreground SeaweedFS for an s3:// store outside a cluster."""
    from mlops_operator.localcluster.seaweedfs import local_identity

    data = tmp_path / "s3"
    proc = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "s3-server", "--dir", str(data),
                             "--port", "0", "--bucket", "cli-bucket"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(ln.startswith("data, log") for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
        uri = next(ln.split()[-1] for ln in lines if ln.startswith("store URI"))
        creds = data / "credentials.env"
        assert (creds.stat().st_mode & 0o777) == 0o600
        ident = local_identity(data)  # the same pair on every start
        assert not any(ident.secret_key in ln for ln in lines)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ident.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ident.secret_key)
        store = open_store(uri, cache_dir=tmp_path / "cache")
        digest, vuri = store.put_version("models", "cli", _file(tmp_path, "model.onnx", b"via the cli"))
        assert store.local_path(vuri, "model.onnx", digest).read_bytes() == b"via the cli"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0, "\n".join(lines)


def test_a_server_that_never_answers_times_out_within_the_budget(tmp_path):
    """Connect succeeds (the kernel's backlog), no response ever comes: read timeouts, retried,
    then StoreUnreachable within RetryPolicy.worst_case_s()."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # never accept()ed: requests hang until the read timeout
        retry = RetryPolicy(retries=2, backoff_s=0.1, backoff_max_s=0.2, connect_timeout_s=1, read_timeout_s=1)
        store = S3Store(parse_s3_uri(f"s3://{BUCKET}/p?endpoint=http://127.0.0.1:{listener.getsockname()[1]}"),
                        Credentials(ADMIN.access_key, ADMIN.secret_key), retry=retry, cache_dir=tmp_path)
        started = time.monotonic()
        with pytest.raises(StoreUnreachable, match="unreachable|keeps failing"):
            store.exists("models", "m", "0" * 64)
        elapsed = time.monotonic() - started
    assert (retry.retries + 1) * retry.read_timeout_s - 0.1 <= elapsed <= retry.worst_case_s(), elapsed


def test_a_server_captures_into_the_bucket_and_a_capture_dataset_reads_it_back(seaweed, tmp_path, monkeypatch):
    """Payload capture in s3 mode, the whole path with no PVC: the model server (--capture-store)
    writes its chunks as objects, the capture Dataset's snapshot (data.snapshot --store s3://)
    downloads and joins them; a tampered chunk is refused by the sha256 it was written with."""
    import requests

    from mlops_operator.data.snapshot import run as snapshot
    from tests.unit.test_serving import ServerThread, build_artifact, v2_inputs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN.secret_key)
    monkeypatch.setenv("MLOPS_STORE_CACHE", str(tmp_path / "cache"))
    store = _store(seaweed)
    root = store.config.root_uri
    a = build_artifact(tmp_path / "model")
    rows = a.test.head(6)
    cfg = a.cfg(capture_rate=1.0, capture_flush_seconds=0.2, capture_store=root, capture_service="retail")
    with ServerThread(cfg) as s:
        for i, rid in enumerate(["a", "b"]):
            doc = {"id": rid, "inputs": v2_inputs(rows.iloc[i * 3:(i + 1) * 3], a.feats)}
            r = requests.post(s.url + "/v2/models/retail/infer", json=doc, timeout=10)
            assert r.status_code == 200, r.text
            preds = [str(v) for v in next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]]
            r = requests.post(s.url + "/v2/models/retail/feedback",
                              json={"id": rid, "predictions": preds, "labels": [1, 0, 1]}, timeout=10)
            assert r.status_code == 200, r.text

        def captured() -> dict:
            return requests.get(s.url + "/mlops/v1/models/retail/stats", timeout=5).json()["capture"]
        deadline = time.time() + 20
        while captured()["labels"] < 6 and time.time() < deadline:
            time.sleep(0.1)
        stats = captured()
        assert (stats["rows"], stats["labels"], stats["failed"], stats["dropped"]) == (6, 6, 0, 0), stats
    keys = store._list(store.config.key("captures", "retail") + "/")
    assert keys and all(k.endswith((".requests.parquet", ".labels.parquet")) for k in keys), keys
    assert all(store._recorded_sha256(k) for k in keys)  # each chunk carries its digest

    spec = {"name": "traffic", "spec": {"source": {"type": "capture", "capture": {"inferenceService": "retail"}}}}
    work = tmp_path / "snap"
    work.mkdir()
    out = snapshot(spec, root, tmp_path / "unused", work)
    assert out["rows"] == 6 and out["uri"].startswith("s3://"), out
    data = open_store(root).local_path(out["uri"], "data.parquet", out["digest"])
    import pyarrow.parquet as pq

    t = pq.read_table(data)
    assert t.column("purchased").to_pylist() == [1, 0, 1, 1, 0, 1]

    # a chunk overwritten in the bucket (its recorded sha256 kept): refused, named
    import io

    req = next(k for k in keys if k.endswith(".requests.parquet"))
    st = store._client.stat_object(BUCKET, req)
    meta = {"sha256": store._recorded_sha256(req)}
    store._client.put_object(BUCKET, req, io.BytesIO(b"PAR1 not really PAR1"), 20, metadata=meta)
    assert st.size != 20
    work2 = tmp_path / "snap2"
    work2.mkdir()
    with pytest.raises(IntegrityError, match="does not match"):
        snapshot(spec, root, tmp_path / "unused", work2)


def test_capture_into_a_missing_bucket_is_counted_not_raised(seaweed, tmp_path):
    """A capture area whose bucket is gone: put raises BucketMissing, which the capture writer
    counts (failed rows, lastError) instead of failing a request."""
    area = _store(seaweed, bucket="no-such-bucket-for-capture").captures("svc")
    with pytest.raises(BucketMissing):
        area.put("x.requests.parquet", b"PAR1")
    with pytest.raises(BucketMissing):
        area.local_dir(tmp_path)
