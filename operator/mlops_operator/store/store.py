"""The artifact store, addressed by URI: `file://` on a volume, `s3://` on an S3-compatible server.

Layout (content-addressed, write-once):

    datasets/<dataset>/<sha256>/data.parquet   profile.json   validation.json
    models/<model>/<sha256>/model.onnx         model.json
    captures/<service>/<chunk>.parquet         (CaptureArea: an InferenceService's captured traffic)

The digest is the sha256 of the primary file (data.parquet, model.onnx). Writers stage into a
temporary directory on the same volume and rename it into place, so a reader never sees a
half-written version and a second writer of the same content is a no-op. Every read verifies
the digest it was given before returning bytes or a path.
"""

from __future__ import annotations

import abc
import hashlib
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class StoreError(RuntimeError):
    """The store cannot do what was asked. `reason` is a CamelCase word for a condition's reason
    and an Event's reason (what a controller shows); the message says what and where, and never
    carries a credential."""

    reason = "StoreError"


class IntegrityError(StoreError):
    """Bytes in the store do not match the digest they were addressed by."""

    reason = "DigestMismatch"


class ArtifactMissing(StoreError):
    """No object (or file) under the key a version names."""

    reason = "ArtifactMissing"


class BucketMissing(StoreError):
    """The bucket of an s3:// store does not exist."""

    reason = "StoreBucketMissing"


class AccessDenied(StoreError):
    """The store refused our credentials (unknown key, bad signature) or their permissions."""

    reason = "StoreAccessDenied"


class StoreUnreachable(StoreError):
    """The store's endpoint did not answer (refused, timed out, 5xx) within the retry budget."""

    reason = "StoreUnreachable"


#: every reason a StoreError carries (s3config's StoreConfigInvalid included): a Job's
#: termination message naming one of these becomes the condition reason and Event reason of the
#: resource that needed the store, so `kubectl get` says "the store", not "the Job failed"
STORE_REASONS = frozenset({"StoreError", "DigestMismatch", "ArtifactMissing", "StoreBucketMissing",
                           "StoreAccessDenied", "StoreUnreachable", "StoreConfigInvalid"})


#: the store could not be asked (as opposed to: it answered with wrong bytes)
STORE_ACCESS_REASONS = frozenset({"StoreAccessDenied", "StoreBucketMissing", "StoreUnreachable", "StoreConfigInvalid"})


def store_reason(doc: object, default: str) -> str:
    """The store's reason in a Job's JSON result (`{"error": ..., "reason": ...}`), else `default`."""
    reason = doc.get("reason") if isinstance(doc, dict) else None
    return reason if reason in STORE_REASONS else default


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_part(part: str) -> str:
    if not part or "/" in part or part in (".", "..") or part.startswith("."):
        raise StoreError(f"invalid store path element {part!r}")
    return part


class CaptureArea(abc.ABC):
    """An InferenceService's captured traffic in a store (``captures/<service>/``): Parquet chunks
    the serving pods write (serving/capture.py) and a capture Dataset's snapshot reads back
    (data/capture.py). Not content-addressed (a chunk is named by pod, start and sequence), but
    written whole or not at all, and checked on the way back where the backend can."""

    @abc.abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Store the whole chunk `data` under `name`, or raise; a reader never sees part of it."""

    @abc.abstractmethod
    def local_dir(self, workdir: Path) -> Path:
        """A local directory holding every chunk written so far (downloaded into `workdir` when
        the store is remote, each verified), for the reader to glob."""


class DirectoryCaptureArea(CaptureArea):
    """Chunks as files in a directory (the store's volume, mounted read-write when capturing)."""

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)

    def put(self, name: str, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{_check_part(name)}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.dir / name)  # complete or absent, never half a chunk

    def local_dir(self, workdir: Path) -> Path:
        return self.dir


class ArtifactStore(abc.ABC):
    """What controllers, Jobs and servers need from a store, whatever the backend."""

    @abc.abstractmethod
    def captures(self, service: str) -> CaptureArea:
        """Where the InferenceService `service` captures its traffic in this store."""

    @abc.abstractmethod
    def put_version(self, kind: str, name: str, primary: Path,
                    extras: dict[str, Path] | None = None) -> tuple[str, str]:
        """Store `primary` (+ extra files) under its sha256; return (digest, uri)."""

    @abc.abstractmethod
    def local_path(self, uri: str, filename: str, digest: str | None = None) -> Path:
        """A local path to `filename` of the version at `uri`, verified against `digest` if given."""

    @abc.abstractmethod
    def exists(self, kind: str, name: str, digest: str) -> bool: ...

    @abc.abstractmethod
    def uri(self, kind: str, name: str, digest: str) -> str: ...


class FileStore(ArtifactStore):
    """A directory on a (shared) volume: a PVC in a cluster, a host directory locally."""

    PRIMARY = {"datasets": "data.parquet", "models": "model.onnx"}

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _dir(self, kind: str, name: str, digest: str) -> Path:
        if kind not in self.PRIMARY:
            raise StoreError(f"unknown artifact kind {kind!r}")
        return self.root / kind / _check_part(name) / _check_part(digest)

    def uri(self, kind: str, name: str, digest: str) -> str:
        return self._dir(kind, name, digest).resolve().as_uri() + "/"

    def captures(self, service: str) -> CaptureArea:
        return DirectoryCaptureArea(self.root / "captures" / _check_part(service))

    def exists(self, kind: str, name: str, digest: str) -> bool:
        return (self._dir(kind, name, digest) / self.PRIMARY[kind]).exists()

    def put_version(self, kind: str, name: str, primary: Path,
                    extras: dict[str, Path] | None = None) -> tuple[str, str]:
        digest = sha256_file(primary)
        final = self._dir(kind, name, digest)
        if (final / self.PRIMARY[kind]).exists():
            if sha256_file(final / self.PRIMARY[kind]) != digest:
                raise IntegrityError(f"{final / self.PRIMARY[kind]} exists but does not match its digest {digest}")
            return digest, self.uri(kind, name, digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=final.parent))
        try:
            shutil.copyfile(primary, stage / self.PRIMARY[kind])
            for fname, src in (extras or {}).items():
                shutil.copyfile(src, stage / _check_part(fname))
            for p in stage.iterdir():
                p.chmod(0o444)
            stage.chmod(0o755)
            try:
                os.rename(stage, final)
            except OSError:
                if not (final / self.PRIMARY[kind]).exists():  # lost a race with an identical writer: fine
                    raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return digest, self.uri(kind, name, digest)

    def local_path(self, uri: str, filename: str, digest: str | None = None) -> Path:
        u = urllib.parse.urlsplit(uri)
        if u.scheme != "file":
            raise StoreError(f"{uri}: this store reads file:// URIs only")
        base = Path(urllib.parse.unquote(u.path))
        try:
            base.resolve().relative_to(self.root.resolve())
        except ValueError as e:
            raise StoreError(f"{uri} is outside the store root {self.root}") from e
        path = base / _check_part(filename)
        if not path.exists():
            raise ArtifactMissing(f"{path} is missing from the store")
        if digest is not None:
            got = sha256_file(path)
            if got != digest:
                raise IntegrityError(f"{path}: sha256 {got} does not match the expected {digest}; refusing to use it")
        return path

    def open_verified(self, uri: str, filename: str, digest: str) -> BinaryIO:
        return open(self.local_path(uri, filename, digest), "rb")


def open_store(uri: str, cache_dir: Path | None = None) -> ArtifactStore:
    """The store for a root URI: file:///path, or s3://bucket/prefix?endpoint=...&region=...&pathStyle=...
    (store/s3config.py; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). `cache_dir`:
    where an s3:// store keeps the verified local copies it returns (default $MLOPS_STORE_CACHE)."""
    u = urllib.parse.urlsplit(uri)
    if u.scheme == "file":
        return FileStore(urllib.parse.unquote(u.path))
    if u.scheme == "s3":
        from .s3config import Credentials, parse_s3_uri

        config = parse_s3_uri(uri)
        try:
            from .s3 import S3Store
        except ImportError as e:  # the `s3` extra is not installed
            raise StoreError(f"s3:// stores need the S3 client ({e.name}); install mlops-operator[s3]") from None
        return S3Store(config, Credentials.from_env(), cache_dir=cache_dir)
    raise StoreError(f"unsupported store URI scheme {u.scheme!r}: use file:///path or s3://bucket/prefix")
