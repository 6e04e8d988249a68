"""Shared fixtures. Cluster tests start one real local control plane per test session."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from mlops_operator.localcluster import binaries, cluster
from mlops_operator.localcluster.config import ClusterConfig

#: Name of the cluster the test session starts (separate from the user's `local` cluster).
TEST_CLUSTER = os.environ.get("MLOPS_TEST_CLUSTER", "pytest")


@dataclass
class Cluster:
    cfg: ClusterConfig

    @property
    def kubeconfig(self) -> Path:
        return self.cfg.kubeconfig_path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [str(binaries.binary_path("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str, namespace: str | None = None) -> None:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=manifest)

    def pods(self, namespace: str, selector: str = "") -> list[dict]:
        args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
        return self.get_json(*args)["items"]

    def wait_pod(self, namespace: str, name: str, phase: str | tuple[str, ...], timeout: float = 60) -> dict:
        phases = (phase,) if isinstance(phase, str) else phase

        def check():
            p = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
            if p.returncode != 0:
                return None
            pod = json.loads(p.stdout)
            return pod if pod.get("status", {}).get("phase") in phases else None

        return wait_for(check, timeout, what=f"pod {namespace}/{name} in phase {phases}")

    def api_client(self):
        from kubernetes import client, config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.25, what: str = "") -> Any:
    """Poll until `predicate` returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}")


@pytest.fixture(scope="session")
def local_cluster() -> Cluster:
    cfg = cluster.up(TEST_CLUSTER, timeout=300)
    yield Cluster(cfg)
    if not os.environ.get("MLOPS_KEEP_TEST_CLUSTER"):
        cluster.down(TEST_CLUSTER, purge=True)


@pytest.fixture
def namespace(local_cluster: Cluster, request) -> str:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.originalname.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    local_cluster.kubectl("create", "namespace", name)
    yield name
    local_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
