"""Kubeconfig files for the admin and each control-plane component (embedded credentials)."""

from __future__ import annotations

import base64
from pathlib import Path

from .pki import write_private

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(server: str, pki: Path, stem: str, cluster: str, user: str) -> str:
    """A kubeconfig for `server` authenticating with the client certificate `<stem>.crt`."""
    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server, "certificate-authority-data": _b64(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(pki / f"{stem}.crt"),
            "client-key-data": _b64(pki / f"{stem}.key")}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, server: str, pki: Path, stem: str, cluster: str, user: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    write_private(tmp, render(server, pki, stem, cluster, user).encode())
    tmp.replace(path)
    return path

