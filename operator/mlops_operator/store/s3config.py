"""Configuration of an `s3://` store: where the bucket is (the URI) and who we are (the environment).

The store URI carries everything that is not secret and travels in Job arguments, pod specs and
status as it is:

    s3://<bucket>[/<prefix>][?endpoint=http://seaweedfs.mlops-system:8333&region=us-east-1&pathStyle=true]

- `endpoint`: an S3-compatible server (SeaweedFS, Ceph RGW, ...); absent means AWS S3 itself.
- `region`: signing region (default `us-east-1`, what most S3-compatible servers expect).
- `pathStyle`: `http://host/bucket/key` addressing instead of `http://bucket.host/key`; the default
  is true when an `endpoint` is given (S3-compatible servers seldom have wildcard DNS), false for AWS.

Credentials never appear in a URI (one with `user:password@` is refused, and the refusal does not
repeat it): they come from the standard variables `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
optionally `AWS_SESSION_TOKEN`, which a pod gets from a Secret (`env[].valueFrom.secretKeyRef`).
Without them requests are anonymous (a public bucket); web identity (IRSA) and instance-profile
credentials are not wired yet.
`Credentials.__repr__` hides the secret, so a logged config or a traceback shows no key.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from .store import StoreError

DEFAULT_REGION = "us-east-1"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{1,40}$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]{0,254}$")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_KNOWN = ("endpoint", "region", "pathStyle")


class S3ConfigError(StoreError):
    """The s3:// URI or the credentials in the environment are malformed."""

    reason = "StoreConfigInvalid"


@dataclass(frozen=True)
class Credentials:
    """Static credentials; the secret parts are left out of repr (logs, tracebacks, status)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Credentials | None":
        """AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); None when neither is set."""
        e = os.environ if env is None else env
        key, secret = e.get("AWS_ACCESS_KEY_ID", "").strip(), e.get("AWS_SECRET_ACCESS_KEY", "").strip()
        if not key and not secret:
            return None
        if not key or not secret:
            missing = "AWS_SECRET_ACCESS_KEY" if key else "AWS_ACCESS_KEY_ID"
            raise S3ConfigError(f"S3 credentials incomplete: {missing} is not set (both or neither)")
        return cls(key, secret, e.get("AWS_SESSION_TOKEN", "").strip() or None)


@dataclass(frozen=True)
class S3Config:
    """Where an s3:// store lives. Holds no secret: safe to log and to put in status."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str = DEFAULT_REGION
    path_style: bool = False

    @property
    def root_uri(self) -> str:
        """The URI this config was parsed from, normalised (query keys in a fixed order)."""
        q = {}
        if self.endpoint:
            q["endpoint"] = self.endpoint
        if self.region != DEFAULT_REGION:
            q["region"] = self.region
        if self.path_style != bool(self.endpoint):
            q["pathStyle"] = "true" if self.path_style else "false"
        base = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return base + ("?" + urllib.parse.urlencode(q, safe=":/") if q else "")

    def key(self, *parts: str) -> str:
        """The object key of `parts` under the prefix."""
        return "/".join(p for p in (self.prefix, *parts) if p)

    def location(self) -> str:
        """`s3://bucket/prefix` for messages (no endpoint query, never a credential)."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_s3_uri(uri: str) -> S3Config:
    """Parse a store root URI; S3ConfigError says which part is wrong (without echoing userinfo)."""
    u = urllib.parse.urlsplit(uri)
    if u.scheme != "s3":
        raise S3ConfigError(f"not an s3:// URI: scheme {u.scheme!r}")
    if "@" in u.netloc:
        # never repeat the URI: the part before '@' is a credential
        raise S3ConfigError("s3:// URIs must not carry credentials (user:password@); "
                            "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from a Secret instead")
    bucket = u.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise S3ConfigError(f"invalid bucket name {bucket!r} in {uri!r} "
                            "(3-63 characters: lowercase letters, digits, '.', '-')")
    parts = [p for p in u.path.split("/") if p]
    for p in parts:
        if not _PREFIX_PART.match(p):
            raise S3ConfigError(f"invalid prefix element {p!r} in {uri!r}")
    if u.fragment:
        raise S3ConfigError(f"unexpected fragment in {uri!r}")
    query = urllib.parse.parse_qs(u.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_KNOWN))
    if unknown:
        raise S3ConfigError(f"unknown s3:// option(s) {', '.join(unknown)} in {uri!r} (known: {', '.join(_KNOWN)})")
    for k, values in query.items():
        if len(values) != 1:
            raise S3ConfigError(f"s3:// option {k!r} given {len(values)} times")
    opt = {k: values[0] for k, values in query.items()}
    endpoint = _endpoint(opt["endpoint"]) if "endpoint" in opt else None
    region = opt.get("region", DEFAULT_REGION)
    if not _REGION.match(region):
        raise S3ConfigError(f"invalid region {region!r}")
    path_style = endpoint is not None
    if "pathStyle" in opt:
        flag = opt["pathStyle"].lower()
        if flag not in _TRUE + _FALSE:
            raise S3ConfigError(f"pathStyle must be true or false, not {opt['pathStyle']!r}")
        path_style = flag in _TRUE
    return S3Config(bucket=bucket, prefix="/".join(parts), endpoint=endpoint, region=region, path_style=path_style)


def _endpoint(value: str) -> str:
    e = urllib.parse.urlsplit(value)
    if e.scheme not in ("http", "https") or not e.hostname:
        raise S3ConfigError(f"endpoint must be http(s)://host[:port], not {value!r}")
    if e.username or e.password:
        raise S3ConfigError("the endpoint must not carry credentials (user:password@)")
    if e.path not in ("", "/") or e.query or e.fragment:
        raise S3ConfigError(f"endpoint must be http(s)://host[:port] without a path, not {value!r}")
    try:
        e.port  # noqa: B018 (raises on a malformed port)
    except ValueError as err:
        raise S3ConfigError(f"invalid endpoint port in {value!r}") from err
    return f"{e.scheme}://{e.netloc}"
