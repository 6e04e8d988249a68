"""The artifact store: content addressing, idempotent writes, verification on read."""

from __future__ import annotations

import hashlib

import pytest

from mlops_operator.store import FileStore, IntegrityError, StoreError, open_store


def test_put_is_content_addressed_and_idempotent(tmp_path):
    src = tmp_path / "data.parquet"
    src.write_bytes(b"rows")
    store = FileStore(tmp_path / "store")
    d1, uri1 = store.put_version("datasets", "retail", src, {"profile.json": _file(tmp_path, "p.json", b"{}")})
    d2, uri2 = store.put_version("datasets", "retail", src)
    assert d1 == d2 == hashlib.sha256(b"rows").hexdigest()
    assert uri1 == uri2 and uri1.endswith(f"/datasets/retail/{d1}/")
    assert store.exists("datasets", "retail", d1)
    assert store.local_path(uri1, "data.parquet", d1).read_bytes() == b"rows"
    assert store.local_path(uri1, "profile.json").read_text() == "{}"
    leftovers = [p for p in (tmp_path / "store" / "datasets" / "retail").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_read_refuses_corrupted_bytes(tmp_path):
    src = _file(tmp_path, "model.onnx", b"onnx-bytes")
    store = FileStore(tmp_path / "store")
    digest, uri = store.put_version("models", "m", src)
    path = store.local_path(uri, "model.onnx", digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="does not match the expected"):
        store.local_path(uri, "model.onnx", digest)
    with pytest.raises(IntegrityError):  # a re-put notices the corruption instead of trusting it
        store.put_version("models", "m", src)


def test_paths_cannot_escape_the_root(tmp_path):
    store = FileStore(tmp_path / "store")
    src = _file(tmp_path, "x", b"x")
    for bad in ("..", "a/b", ".hidden", ""):
        with pytest.raises(StoreError):
            store.put_version("datasets", bad, src)
    with pytest.raises(StoreError, match="outside the store root"):
        store.local_path((tmp_path / "elsewhere").as_uri() + "/", "data.parquet")
    with pytest.raises(StoreError, match="unknown artifact kind"):
        store.put_version("pickles", "x", src)


def test_open_store_schemes(tmp_path):
    assert isinstance(open_store(tmp_path.as_uri()), FileStore)
    with pytest.raises(StoreError, match="invalid bucket name"):  # s3:// is parsed (test_store_s3config.py)
        open_store("s3://Bad_Bucket/prefix")
    with pytest.raises(StoreError, match="unsupported") as e:
        open_store("ftp://user:hunter2@x")
    assert "hunter2" not in str(e.value)


def _file(d, name, data):
    p = d / name
    p.write_bytes(data)
    return p


def test_verify_reports_the_store_errors_reason(tmp_path):
    from mlops_operator.store.verify import verify

    store = FileStore(tmp_path / "store")
    digest, uri = store.put_version("models", "m", _file(tmp_path, "model.onnx", b"onnx"))
    out = verify((tmp_path / "store").as_uri(), uri, "model.onnx", "0" * 64)
    assert out["ok"] is False and out["reason"] == "DigestMismatch" and "does not match" in out["error"]
    out = verify((tmp_path / "store").as_uri(), uri, "model.json", digest)
    assert out["ok"] is False and out["reason"] == "ArtifactMissing"
    out = verify("s3://Bad_Bucket", uri, "model.onnx", digest)
    assert out["ok"] is False and out["reason"] == "StoreConfigInvalid"
