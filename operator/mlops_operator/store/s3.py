"""The `s3://` artifact store: the same content-addressed layout as the file store, in a bucket.

    s3://<bucket>/<prefix>/datasets/<name>/<sha256>/data.parquet   profile.json ...
    s3://<bucket>/<prefix>/models/<name>/<sha256>/model.onnx       model.json
    s3://<bucket>/<prefix>/captures/<service>/<chunk>.parquet       (S3CaptureArea: captured traffic)

Client: the MinIO Python client (Apache-2.0; the MinIO *server* is AGPL and is not used). Chosen by
measurement (benchmarks/s3_client.py, benchmarks/README.md): boto3 cannot be installed beside the
kubernetes client (botocore needs python-dateutil<3, kubernetes 37 needs >=3), and obstore reports
a refused connection, a missing bucket and a bad key as untyped `GenericError` text, where minio
gives S3 error codes and urllib3 exception types that map one to one onto the reasons below.

Semantics, and why:

- **Commit point.** The primary file (data.parquet, model.onnx) is uploaded *last*, as one PUT or
  one multipart upload. S3 makes an object visible only when its PUT or CompleteMultipartUpload
  succeeds, atomically; an upload that dies leaves parts that no GET, HEAD or LIST of objects ever
  shows (and is aborted when the process lives to see the failure). So a version "exists" exactly
  when its primary object does, and its extras are already in place by then. Upload-to-a-temp-key
  then server-side copy would add a second full write of every byte (CopyObject is limited to 5 GiB,
  beyond that a multipart copy) and leave visible temp objects after a crash, for no gain.
- **Idempotent, concurrent writers.** The key is the content's sha256, so two writers of the same
  version write the same bytes; whichever completes last wins with identical content. A writer that
  finds the primary object already present (same size, same `sha256` metadata) does nothing.
  Unlike the file store's rename, S3 has no "first writer wins" for the extras: two writers that
  both start before either commits may leave the second one's model.json / profile.json. Both
  describe the same primary bytes (readers check model.json's onnxSha256 against the digest).
- **Streaming.** Files go up in `part_size` parts with at most `concurrency` parts in flight:
  memory is about part_size x (concurrency + 2) whatever the file size (measured with tracemalloc
  on a 256 MiB file: 20.1 MiB for 5 MiB x 2, 32.1 MiB for the default 8 MiB x 2). Reads stream to a local
  file in 1 MiB chunks, hashed on the fly.
- **Verified reads.** `local_path(uri, name, digest)` downloads to a temporary file, checks the
  sha256 and only then renames it into the cache; a cached copy is re-hashed on every call.
- **Bounded retries.** Every request is retried by urllib3 on connection errors, read timeouts and
  500/502/503/504 with exponential backoff; a download broken mid-stream is restarted. The worst
  case for one request is `RetryPolicy.worst_case_s()`; past it the error is raised with its reason.
- **Errors** are StoreError subclasses with a `reason` (BucketMissing, AccessDenied,
  StoreUnreachable, IntegrityError, ArtifactMissing) for a condition and an Event; messages name
  the bucket, key and endpoint and never a credential (server messages are scrubbed of the keys).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from .s3config import Credentials, S3Config
from .store import (
    CHUNK,
    AccessDenied,
    ArtifactMissing,
    ArtifactStore,
    CaptureArea,
    BucketMissing,
    FileStore,
    IntegrityError,
    StoreError,
    StoreUnreachable,
    _check_part,
    sha256_file,
)

#: S3's smallest part (except the last); our default is larger to keep the part count low
MIN_PART = 5 << 20
SHA_META = "sha256"  # stored as x-amz-meta-sha256 on the primary object

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
           "AllAccessDisabled", "AccountProblem", "InvalidSecurity", "MissingSecurityHeader"}
_MISSING_KEY = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long the store insists before it says the endpoint is unreachable."""

    #: retries after the first attempt, per request (connection errors, timeouts, 5xx)
    retries: int = 4
    #: backoff before retry n (n >= 2; the first retry is immediate) is backoff_s * 2**(n-1),
    #: at most backoff_max_s (urllib3's schedule)
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0

    def backoffs(self) -> list[float]:
        """The sleeps before each retry of one request."""
        return [0.0 if n == 1 else min(self.backoff_max_s, self.backoff_s * 2 ** (n - 1))
                for n in range(1, self.retries + 1)]

    def worst_case_s(self) -> float:
        """Upper bound of one request's total time (every attempt timing out, full backoffs)."""
        return (self.retries + 1) * (self.connect_timeout_s + self.read_timeout_s) + sum(self.backoffs())

    def urllib3_retry(self) -> urllib3.Retry:
        return urllib3.Retry(
            total=self.retries, connect=self.retries, read=self.retries, status=self.retries, other=0,
            backoff_factor=self.backoff_s, backoff_max=self.backoff_max_s,
            status_forcelist=(500, 502, 503, 504),
            # every request the store makes is idempotent (PUT of the same bytes under the same key,
            # a part, GET, HEAD); CompleteMultipartUpload retried after success answers NoSuchUpload,
            # which put_version resolves by looking at the object
            allowed_methods=None,
            raise_on_status=False,  # the last 5xx response goes to minio, which raises S3Error/ServerError
            respect_retry_after_header=True,
        )


class S3Store(ArtifactStore):
    """An artifact store in an S3 bucket (AWS or any S3-compatible server, e.g. SeaweedFS)."""

    PRIMARY = FileStore.PRIMARY

    def __init__(self, config: S3Config, credentials: Credentials | None = None, *,
                 cache_dir: Path | str | None = None, part_size: int = 8 << 20, concurrency: int = 2,
                 retry: RetryPolicy | None = None):
        if part_size < MIN_PART:
            raise StoreError(f"part size {part_size} is below S3's minimum of {MIN_PART} bytes")
        self.config = config
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        self.retry = retry or RetryPolicy()
        # per user: another user's directory under /tmp could be unwritable (or planted; the
        # digest check would refuse planted bytes, but failing to write is an outage)
        self.cache = Path(cache_dir or os.environ.get("MLOPS_STORE_CACHE")
                          or Path(tempfile.gettempdir()) / f"mlops-store-cache-{os.getuid()}")
        self._secrets = tuple(s for s in ((credentials.access_key_id, credentials.secret_access_key,
                                           credentials.session_token) if credentials else ()) if s)
        endpoint = urllib.parse.urlsplit(config.endpoint or f"https://s3.{config.region}.amazonaws.com")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self.retry.connect_timeout_s, read=self.retry.read_timeout_s),
            maxsize=max(4, self.concurrency + 2), retries=self.retry.urllib3_retry(),
        )
        self._client = Minio(
            endpoint.netloc, secure=endpoint.scheme == "https", region=config.region, http_client=http,
            access_key=credentials.access_key_id if credentials else None,
            secret_key=credentials.secret_access_key if credentials else None,
            session_token=credentials.session_token if credentials else None,
        )
        if config.path_style:
            self._client.disable_virtual_style_endpoint()
        else:
            self._client.enable_virtual_style_endpoint()

    def __repr__(self) -> str:
        return f"S3Store({self.config.root_uri!r})"

    # --- layout -------------------------------------------------------------------------------

    def _key(self, kind: str, name: str, digest: str, filename: str | None = None) -> str:
        if kind not in self.PRIMARY:
            raise StoreError(f"unknown artifact kind {kind!r}")
        return self.config.key(kind, _check_part(name), _check_part(digest),
                               *((_check_part(filename),) if filename else ()))

    def uri(self, kind: str, name: str, digest: str) -> str:
        return f"s3://{self.config.bucket}/{self._key(kind, name, digest)}/"

    def captures(self, service: str) -> CaptureArea:
        return S3CaptureArea(self, service)

    def _key_of(self, uri: str, filename: str) -> str:
        """The object key of `filename` in the version at `uri`, which must lie in this store."""
        u = urllib.parse.urlsplit(uri)
        base = u.path.strip("/")
        if u.scheme != "s3" or u.netloc != self.config.bucket or u.query or u.fragment:
            raise StoreError(f"{uri} is not in this store ({self.config.location()})")
        parts = base.split("/") if base else []
        prefix = self.config.prefix.split("/") if self.config.prefix else []
        rest = parts[len(prefix):]
        if parts[:len(prefix)] != prefix or len(rest) != 3 or rest[0] not in self.PRIMARY:
            raise StoreError(f"{uri} is not a version of this store ({self.config.location()}/<kind>/<name>/<sha256>/)")
        return self._key(rest[0], rest[1], rest[2], filename)

    # --- the interface ------------------------------------------------------------------------

    def exists(self, kind: str, name: str, digest: str) -> bool:
        return self._stat(self._key(kind, name, digest, self.PRIMARY[kind])) is not None

    def put_version(self, kind: str, name: str, primary: Path,
                    extras: dict[str, Path] | None = None) -> tuple[str, str]:
        digest = sha256_file(primary)
        key = self._key(kind, name, digest, self.PRIMARY[kind])
        size = primary.stat().st_size
        if self._committed(key, digest, size):
            return digest, self.uri(kind, name, digest)
        for fname, src in (extras or {}).items():
            self._upload(self._key(kind, name, digest, fname), Path(src), None)
        try:
            self._upload(key, primary, digest)  # the commit point: the version exists from here on
        except StoreError:
            # a concurrent writer may have completed the same version meanwhile (e.g. our
            # CompleteMultipartUpload was retried after it had succeeded): identical bytes, done
            if not self._committed(key, digest, size):
                raise
        return digest, self.uri(kind, name, digest)

    def local_path(self, uri: str, filename: str, digest: str | None = None) -> Path:
        key = self._key_of(uri, filename)
        dest = self.cache / self.config.bucket / key
        if digest is not None and dest.exists():
            if sha256_file(dest) == digest:  # verified on every read, cached or not
                return dest
            dest.unlink()
        self._download(key, dest, digest)
        return dest

    # --- S3 operations ------------------------------------------------------------------------

    def _committed(self, key: str, digest: str, size: int) -> bool:
        """Whether the primary object is in place; IntegrityError when it is but is not these bytes."""
        st = self._stat(key)
        if st is None:
            return False
        stored = _sha256_of(st)
        if st.size != size or (stored is not None and stored != digest):
            raise IntegrityError(f"{self._where(key)} exists but is not the content of sha256 {digest} "
                                 f"(size {st.size}, recorded sha256 {stored}); refusing to trust it")
        return True

    def _stat(self, key: str) -> Any | None:
        """The object's metadata, None when absent. A HEAD has no error body, so a 404 cannot say
        whether the key or the whole bucket is missing: ask about the bucket before saying "absent"."""
        try:
            return self._call(lambda: self._client.stat_object(self.config.bucket, key), key)
        except ArtifactMissing:
            if not self._call(lambda: self._client.bucket_exists(self.config.bucket), key):
                raise self._bucket_missing() from None
            return None

    def _bucket_missing(self) -> BucketMissing:
        return BucketMissing(f"bucket {self.config.bucket!r} does not exist"
                             + (f" at {self.config.endpoint}" if self.config.endpoint else "")
                             + " (create it, or point the store URI at an existing bucket)")

    def _upload(self, key: str, src: Path, digest: str | None) -> None:
        size = src.stat().st_size
        meta = {SHA_META: digest} if digest else None

        def put() -> None:
            with open(src, "rb") as f:
                self._client.put_object(self.config.bucket, key, f, size, metadata=meta,  # type: ignore[arg-type]
                                        part_size=self.part_size, num_parallel_uploads=self.concurrency)
        self._call(put, key)

    def _put_bytes(self, key: str, data: bytes) -> None:
        """One PUT of a small object (a capture chunk) with its sha256 as metadata: S3 shows it
        only once the PUT completed, so a reader never sees part of it."""
        meta = {SHA_META: hashlib.sha256(data).hexdigest()}
        self._call(lambda: self._client.put_object(self.config.bucket, key, io.BytesIO(data), len(data),
                                                   metadata=meta), key)  # type: ignore[arg-type]

    def _list(self, prefix: str) -> list[str]:
        """The keys under `prefix` (every page; a missing bucket is BucketMissing)."""
        return self._call(lambda: [o.object_name for o in self._client.list_objects(
            self.config.bucket, prefix=prefix, recursive=True) if o.object_name], prefix)

    def _recorded_sha256(self, key: str) -> str | None:
        st = self._stat(key)
        if st is None:
            raise ArtifactMissing(f"{self._where(key)} is missing from the store")
        return _sha256_of(st)

    def _download(self, key: str, dest: Path, digest: str | None) -> None:
        """GET `key` into `dest` through a temporary file, hashed on the fly; a stream broken
        mid-way is restarted until the retry budget is spent."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.retry.worst_case_s()
        attempt = 0
        while True:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    for chunk in self._stream(key):
                        h.update(chunk)
                        out.write(chunk)
                got = h.hexdigest()
                if digest is not None and got != digest:
                    raise IntegrityError(f"{self._where(key)}: sha256 {got} does not match the expected {digest}; "
                                         "refusing to use it")
                os.replace(tmp, dest)
                return
            except (Urllib3HTTPError, OSError) as e:
                attempt += 1
                if attempt > self.retry.retries or time.monotonic() >= deadline:
                    raise StoreUnreachable(f"{self._where(key)}: download broke off {attempt} times "
                                           f"({type(e).__name__}: {self._scrub(str(e))})") from None
                time.sleep(min(self.retry.backoff_max_s, self.retry.backoff_s * 2 ** (attempt - 1)))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _stream(self, key: str) -> Iterator[bytes]:
        resp = self._call(lambda: self._client.get_object(self.config.bucket, key), key)
        try:
            yield from resp.stream(CHUNK)
        finally:
            resp.close()
            resp.release_conn()

    # --- errors -------------------------------------------------------------------------------

    def _where(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}" + (f" at {self.config.endpoint}" if self.config.endpoint else "")

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _call(self, fn: Callable[[], T], key: str) -> T:
        """Run one client call, turning what S3 and the network say into the store's errors."""
        try:
            return fn()
        except S3Error as e:
            raise self._s3_error(e, key) from None
        except (ServerError, InvalidResponseError) as e:
            status = getattr(e, "status_code", None) or getattr(e, "_code", None)
            if status in (401, 403):
                raise AccessDenied(f"{self._where(key)}: access denied (HTTP {status}); check the store's "
                                   "credentials Secret and the key's permissions on the bucket") from None
            raise StoreUnreachable(f"{self._where(key)}: the server keeps failing "
                                   f"({type(e).__name__}: {self._scrub(str(e))[:300]}) after "
                                   f"{self.retry.retries} retries") from None
        except Urllib3HTTPError as e:
            raise StoreUnreachable(
                f"{self._where(key)}: endpoint unreachable after {self.retry.retries} retries "
                f"({type(e).__name__}: {self._scrub(str(e))[:300]})") from None

    def _s3_error(self, e: S3Error, key: str) -> StoreError:
        code = e.code or ""
        msg = self._scrub(e.message or "")
        status = e.response.status if e.response is not None else 0
        if code == "NoSuchBucket":
            return self._bucket_missing()
        if code in _DENIED:
            return AccessDenied(f"{self._where(key)}: access denied ({code}); check the store's credentials "
                                "Secret and the key's permissions on the bucket")
        if code in _MISSING_KEY:
            return ArtifactMissing(f"{self._where(key)} is missing from the store")
        if status >= 500:
            return StoreUnreachable(f"{self._where(key)}: the server keeps failing ({code} HTTP {status}: "
                                    f"{msg[:200]}) after {self.retry.retries} retries")
        return StoreError(f"{self._where(key)}: S3 error {code}: {msg[:300]}")


def _sha256_of(stat: Any) -> str | None:
    """The sha256 an object was written with (x-amz-meta-sha256; header names in any case)."""
    meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
    return meta.get(f"x-amz-meta-{SHA_META}")


class S3CaptureArea(CaptureArea):
    """Capture chunks as objects ``<prefix>/captures/<service>/<chunk>``, each written with one PUT
    and its sha256 as metadata; read back by downloading every chunk, each checked against that
    sha256 (a chunk without it, e.g. copied in by hand, is taken as it is: Parquet checks its own
    footer)."""

    def __init__(self, store: S3Store, service: str):
        self.store = store
        self.prefix = store.config.key("captures", _check_part(service)) + "/"
        self.service = service

    def put(self, name: str, data: bytes) -> None:
        self.store._put_bytes(self.prefix + _check_part(name), data)

    def local_dir(self, workdir: Path) -> Path:
        dest = workdir / "captures" / self.service
        dest.mkdir(parents=True, exist_ok=True)
        for key in sorted(self.store._list(self.prefix)):
            name = key[len(self.prefix):]
            if "/" in name or name.startswith(".") or not name.endswith(".parquet"):
                continue
            self.store._download(key, dest / name, self.store._recorded_sha256(key))
        return dest
