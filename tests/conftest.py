"""Shared fixtures. Cluster tests start one real local control plane per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from mlops_operator.localcluster.forward import free_port

from mlops_operator.localcluster import binaries, cluster, realnode, s3cluster
from mlops_operator.localcluster.config import ClusterConfig

#: tests/<dir>/... gets the marker <dir> (registered in pyproject.toml): `pytest -m unit` runs the unit tests alone
TEST_KINDS = ("unit", "integration", "e2e")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            kind = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # a test outside tests/ (not collected by default)
            continue
        if kind in TEST_KINDS:
            item.add_marker(getattr(pytest.mark, kind))


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
        from kubernetes import config

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


REPO = Path(__file__).resolve().parents[1]


class OperatorProcess:
    """`mlops operator run` as a local process against the test cluster (restartable)."""

    def __init__(self, cluster: Cluster, log: Path):
        self.cluster, self.log = cluster, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import sys

        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig), MLOPS_RUNTIME_IMAGE="mlops-runtime:test",
                   MLOPS_SERVER_IMAGE="mlops-server:test")
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
             "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--metrics-port", "0"],
            env=env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def operator(local_cluster: Cluster, tmp_path_factory) -> OperatorProcess:
    """CRDs installed and the operator running (as a process; the in-cluster path is issue 9's)."""
    local_cluster.kubectl("apply", "-k", str(REPO / "crds"))
    for crd in (REPO / "crds").glob("*.mlops.dev.yaml"):
        local_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd.stem}", "--timeout=60s")
    op = OperatorProcess(local_cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    yield op
    op.stop()


#: The cluster of the real-node tests: the process node and a real node (kubelet + containerd
#: running the built images) in one cluster, beside the process-only test cluster.
REAL_TEST_CLUSTER = os.environ.get("MLOPS_REAL_TEST_CLUSTER", "pytest-real")
#: PodNodeSelector: every pod of a namespace with this annotation runs on the real node
REAL_NODE_SELECTOR = dict([realnode.PIN_ANNOTATION])


def _with_real_node(name: str, timeout: float, **kw: Any):
    """A session's cluster of both kinds of node, up once CoreDNS runs on the real node; taken
    down at the end unless MLOPS_KEEP_TEST_CLUSTER is set."""
    c = Cluster(cluster.up(name, timeout=timeout, nodes=["process", "real"], **kw))
    wait_for(lambda: c.kubectl("rollout", "status", "deploy/coredns", "-n", "kube-system", "--timeout=5s",
                               check=False).returncode == 0, 180, interval=1, what="CoreDNS on the real node")
    yield c
    if not os.environ.get("MLOPS_KEEP_TEST_CLUSTER"):
        cluster.down(name, purge=True)


@pytest.fixture(scope="session")
def real_cluster() -> Cluster:
    yield from _with_real_node(REAL_TEST_CLUSTER, 420)


def enable_namespace(c: Cluster, namespace: str) -> None:
    """What an admin does so the operator deployed from manifests/ (namespace-scoped) may write
    in `namespace`: the RoleBinding of manifests/namespace. The operator run as a local process
    uses the admin's kubeconfig and needs none."""
    c.kubectl("apply", "-k", str(REPO / "manifests" / "namespace"), "-n", namespace)


def make_namespace(c: Cluster, request, pin_real: bool = True, restricted: bool = True,
                   managed: bool = False) -> str:
    """A fresh namespace; `managed`: enabled for the in-cluster operator (enable_namespace)."""
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.originalname.lower())[:40].strip("-")
    name = f"r-{base}-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    c.apply(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": labels, "annotations": REAL_NODE_SELECTOR if pin_real else {}}}))
    if managed:
        enable_namespace(c, name)
    return name


@pytest.fixture
def real_namespace(real_cluster: Cluster, request) -> str:
    """A namespace whose pods all run on the real node, under Pod Security "restricted"."""
    name = make_namespace(real_cluster, request)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


#: The cluster of the two-node s3 tests: the process node, a real node and SeaweedFS in the
#: cluster's network (`mlops up --s3 --nodes process,real`): training on one node, serving on
#: the other, artifacts on S3 (tests/integration/test_store_s3_two_nodes.py and the e2e loop).
S3_TWO_NODE_CLUSTER = os.environ.get("MLOPS_S3_REAL_TEST_CLUSTER", "pytest-s3real")
#: the operator's store prefix in the s3 test clusters' bucket (namespaces below it)
S3_PREFIX = "it"


def credentials(c: Cluster) -> dict[str, str]:
    """The S3 keys `mlops up --s3` made for the cluster (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""
    text = s3cluster.credentials_file(c.cfg).read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def s3_namespace(c: Cluster, request, prefix: str) -> str:
    """A fresh namespace under Pod Security "restricted" holding the store Secret with the
    cluster's keys (what an admin gives each namespace of an s3-mode operator), deleted after
    the test."""
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    c.apply(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
    request.addfinalizer(lambda: c.kubectl("delete", "namespace", ns, "--wait=false", check=False))
    c.apply(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlops-store-s3"},
                        "stringData": credentials(c)}), ns)
    return ns


@pytest.fixture(scope="session")
def s3_two_nodes() -> Cluster:
    yield from _with_real_node(S3_TWO_NODE_CLUSTER, 600, s3=True)


@pytest.fixture(scope="session")
def s3_operator_two_nodes(s3_two_nodes: Cluster, tmp_path_factory) -> Path:
    """The operator as a local process in s3 mode (its log's path); the real node runs the built
    images (their default names), the process node runs the same names as processes."""
    c = s3_two_nodes
    c.kubectl("apply", "-k", str(REPO / "crds"))
    for crd in (REPO / "crds").glob("*.mlops.dev.yaml"):
        c.kubectl("wait", "--for=condition=Established", f"crd/{crd.stem}", "--timeout=60s")
    log = tmp_path_factory.mktemp("op2") / "operator.log"
    env = dict(os.environ, KUBECONFIG=str(c.kubeconfig), MLOPS_STORE=s3cluster.store_uri(S3_PREFIX))
    proc = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
                             "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--metrics-port", "0"],
                            env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT)
    yield log
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
