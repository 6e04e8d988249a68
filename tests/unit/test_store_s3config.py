"""s3:// store configuration: the URI grammar, credentials from the environment, no secret in any
message or repr, and the key layout (no server needed: tests/integration/test_store_s3.py has those)."""

from __future__ import annotations

import pytest

from mlops_operator.store.s3config import Credentials, S3Config, S3ConfigError, parse_s3_uri


def test_minimal_uri_is_aws_with_virtual_hosted_addressing():
    c = parse_s3_uri("s3://my-bucket")
    assert c == S3Config(bucket="my-bucket", prefix="", endpoint=None, region="us-east-1", path_style=False)
    assert c.root_uri == "s3://my-bucket"
    assert c.key("models", "m", "d", "model.onnx") == "models/m/d/model.onnx"


def test_full_uri_for_an_s3_compatible_server():
    c = parse_s3_uri("s3://mlops/team-a/store?endpoint=http://seaweedfs.mlops-system:8333&region=eu-west-1")
    assert c.bucket == "mlops" and c.prefix == "team-a/store"
    assert c.endpoint == "http://seaweedfs.mlops-system:8333"
    assert c.region == "eu-west-1"
    assert c.path_style is True  # an endpoint defaults to path-style
    assert c.key("datasets", "retail", "abc", "data.parquet") == "team-a/store/datasets/retail/abc/data.parquet"
    assert c.location() == "s3://mlops/team-a/store"
    # normalised and parseable again to the same config
    assert parse_s3_uri(c.root_uri) == c


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("false", False), ("no", False)])
def test_path_style_can_be_forced_either_way(value, expected):
    assert parse_s3_uri(f"s3://bkt/p?endpoint=https://s3.example.com&pathStyle={value}").path_style is expected
    assert parse_s3_uri(f"s3://bkt?pathStyle={value}").path_style is expected


def test_trailing_and_double_slashes_in_the_prefix_are_normalised():
    assert parse_s3_uri("s3://bkt//a///b/").prefix == "a/b"


@pytest.mark.parametrize("uri,match", [
    ("file:///store", "not an s3:// URI"),
    ("s3://Upper-Case", "invalid bucket name"),
    ("s3://ab", "invalid bucket name"),
    ("s3://a..b", "invalid bucket name"),
    ("s3://bkt/../etc", "invalid prefix element"),
    ("s3://bkt/.hidden", "invalid prefix element"),
    ("s3://bkt?endpoint=ftp://x", "endpoint must be http"),
    ("s3://bkt?endpoint=http://h:1/path", "without a path"),
    ("s3://bkt?endpoint=http://h:notaport", "invalid endpoint port"),
    ("s3://bkt?region=EU%20WEST", "invalid region"),
    ("s3://bkt?pathStyle=maybe", "pathStyle must be true or false"),
    ("s3://bkt?endpiont=http://h", "unknown s3:// option"),
    ("s3://bkt?region=a&region=b", "given 2 times"),
    ("s3://bkt#frag", "unexpected fragment"),
])
def test_bad_uris_say_what_is_wrong(uri, match):
    with pytest.raises(S3ConfigError, match=match) as e:
        parse_s3_uri(uri)
    assert e.value.reason == "StoreConfigInvalid"


def test_credentials_in_a_uri_are_refused_without_repeating_them():
    for uri in ("s3://AKIAEXAMPLE:wJalrXUtnFEMIsecret@bucket/p",
                "s3://bucket/p?endpoint=http://AKIAEXAMPLE:wJalrXUtnFEMIsecret@host:8333"):
        with pytest.raises(S3ConfigError) as e:
            parse_s3_uri(uri)
        assert "wJalrXUtnFEMIsecret" not in str(e.value) and "AKIAEXAMPLE" not in str(e.value)
        assert "AWS_ACCESS_KEY_ID" in str(e.value) or "credentials" in str(e.value)


def test_credentials_from_the_environment():
    assert Credentials.from_env({}) is None
    c = Credentials.from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
                              "AWS_SESSION_TOKEN": "tok-value"})
    assert c == Credentials("AKID", "s3cr3t-value", "tok-value")
    assert Credentials.from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "x"}).session_token is None
    for partial in ({"AWS_ACCESS_KEY_ID": "AKID"}, {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}):
        with pytest.raises(S3ConfigError, match="incomplete") as e:
            Credentials.from_env(partial)
        assert "s3cr3t-value" not in str(e.value)


def test_repr_of_credentials_hides_the_secret_parts():
    c = Credentials("AKID", "s3cr3t-value", "tok-value")
    assert "s3cr3t-value" not in repr(c) and "tok-value" not in repr(c) and "AKID" in repr(c)
    assert "s3cr3t-value" not in str(c)


def test_store_keys_and_version_uris():
    from mlops_operator.store import StoreError
    from mlops_operator.store.s3 import S3Store

    store = S3Store(parse_s3_uri("s3://bkt/pre/fix?endpoint=http://127.0.0.1:1"),
                    Credentials("AKID", "s3cr3t-value"))
    uri = store.uri("models", "churn", "d" * 64)
    assert uri == f"s3://bkt/pre/fix/models/churn/{'d' * 64}/"
    assert store._key_of(uri, "model.onnx") == f"pre/fix/models/churn/{'d' * 64}/model.onnx"
    assert "s3cr3t-value" not in repr(store) and "AKID" not in repr(store)
    for bad in (f"s3://other/pre/fix/models/churn/{'d' * 64}/", f"s3://bkt/elsewhere/models/churn/{'d' * 64}/",
                "s3://bkt/pre/fix/models/churn/", f"s3://bkt/pre/fix/pickles/x/{'d' * 64}/",
                f"file:///store/models/churn/{'d' * 64}/"):
        with pytest.raises(StoreError):
            store._key_of(bad, "model.onnx")
    for name in ("..", "a/b", ".hidden"):
        with pytest.raises(StoreError):
            store.uri("models", name, "d" * 64)
        with pytest.raises(StoreError):
            store._key_of(uri, name)


def test_open_store_builds_an_s3_store_from_uri_and_environment(monkeypatch):
    from mlops_operator.store import open_store
    from mlops_operator.store.s3 import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    store = open_store("s3://bkt/p?endpoint=http://127.0.0.1:1")
    assert isinstance(store, S3Store) and store.config.prefix == "p"
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(S3ConfigError, match="incomplete"):
        open_store("s3://bkt/p")


def test_retry_policy_bound_is_finite_and_grows_with_retries():
    from mlops_operator.store.s3 import RetryPolicy

    p = RetryPolicy(retries=3, backoff_s=0.5, backoff_max_s=1.0, connect_timeout_s=1, read_timeout_s=2)
    assert p.backoffs() == [0.0, 1.0, 1.0]  # urllib3: the first retry at once, then factor * 2**(n-1), capped
    assert p.worst_case_s() == 4 * 3 + 2.0
    assert RetryPolicy(retries=0).worst_case_s() < RetryPolicy(retries=4).worst_case_s()


def test_operator_settings_select_the_store(monkeypatch):
    from mlops_operator.resources.store import store_env
    from mlops_operator.settings import Settings

    for k in ("MLOPS_STORE", "MLOPS_STORE_SECRET"):
        monkeypatch.delenv(k, raising=False)
    s = Settings.from_env()
    assert not s.store_is_s3 and s.store_uri == "file:///store" and store_env(s) == []

    monkeypatch.setenv("MLOPS_STORE", "s3://mlops/prod?endpoint=http://seaweedfs.mlops-system:8333")
    monkeypatch.setenv("MLOPS_STORE_SECRET", "team-s3")
    s = Settings.from_env()
    assert s.store_is_s3 and s.store_uri == "s3://mlops/prod?endpoint=http://seaweedfs.mlops-system:8333"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in store_env(s)}
    assert env["AWS_ACCESS_KEY_ID"] == {"name": "team-s3", "key": "AWS_ACCESS_KEY_ID", "optional": False}
    assert env["AWS_SECRET_ACCESS_KEY"]["optional"] is False and env["AWS_SESSION_TOKEN"]["optional"] is True
    assert all("value" not in e for e in store_env(s))  # by reference only, never a value

    monkeypatch.setenv("MLOPS_STORE", "s3://Bad_Bucket")
    with pytest.raises(S3ConfigError, match="invalid bucket name"):
        Settings.from_env()


def test_the_operator_refuses_an_s3_store_until_the_workloads_use_it(monkeypatch):
    from mlops_operator.controllers.handlers import register_all
    from mlops_operator.settings import Settings

    monkeypatch.setenv("MLOPS_STORE", "s3://mlops/prod?endpoint=http://seaweedfs:8333")
    with pytest.raises(RuntimeError, match="do not use the s3:// store yet"):
        register_all(Settings.from_env())
