"""`mlops up` twice reuses the cluster; `mlops down` leaves no process, port or namespace."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from mlops_operator.localcluster import binaries, cluster, netns, procs
from mlops_operator.localcluster.config import ClusterConfig

pytestmark = pytest.mark.cluster

NAME = "pytest-life"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _mlops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_operator.cli.main", *args],
                          capture_output=True, text=True, timeout=400)


def test_up_twice_reuses_and_down_leaves_nothing_behind():
    try:
        first = _mlops("up", "--name", NAME)
        assert first.returncode == 0, first.stderr
        cfg = ClusterConfig.load(NAME)
        assert cfg is not None
        sup = cluster.supervisor_pid(cfg)
        assert sup is not None
        pids = cluster.session_processes(sup)
        # the supervisor, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, node agent, kube-proxy
        assert len(pids) >= 7
        assert _listening(cfg.api_host_port)
        assert netns.exists(cfg.netns)
        assert f"kubeconfig:  {cfg.kubeconfig_path}" in first.stdout

        # a running pod: its processes and network namespace must go with the cluster too
        kubectl = [str(binaries.binary_path("kubectl")), "--kubeconfig", str(cfg.kubeconfig_path)]
        subprocess.run(kubectl + ["run", "idle", "--image=registry.k8s.io/pause:3.10"], check=True,
                       capture_output=True)
        subprocess.run(kubectl + ["wait", "--for=condition=Ready", "pod/idle", "--timeout=60s"], check=True,
                       capture_output=True)
        assert len(netns.pod_namespaces(cfg.netns)) == 1
        pids = cluster.session_processes(sup)

        second = _mlops("up", "--name", NAME)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert cluster.supervisor_pid(cfg) == sup  # same supervisor: reused, not restarted

        status = _mlops("status", "--name", NAME)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "kube-apiserver" in status.stdout and "healthy" in status.stdout

        down = _mlops("down", "--name", NAME)
        assert down.returncode == 0, down.stderr
        assert cluster.session_processes(sup) == []  # the supervisor's session id is its pid
        for pid in pids:
            assert not procs.pid_alive(pid), f"process {pid} survived mlops down"
        assert not _listening(cfg.api_host_port)
        assert not netns.exists(cfg.netns)
        assert netns.pod_namespaces(cfg.netns) == []

        after = _mlops("status", "--name", NAME)
        assert after.returncode == 1 and "not running" in after.stdout
    finally:
        cluster.down(NAME, purge=True)


def test_a_real_node_cluster_goes_down_without_a_trace():
    """`mlops up --nodes real` alone (no process node); `mlops down --purge` kills every
    container and shim, unmounts every volume and overlay, removes the pod cgroups and the
    netns and socket directory."""
    from mlops_operator.localcluster import realnode

    name = "pytest-rlife"
    try:
        up = _mlops("up", "--name", name, "--nodes", "real")
        assert up.returncode == 0, up.stderr
        cfg = ClusterConfig.load(name)
        assert cfg is not None and cfg.node_kinds == ["real"]
        status = _mlops("status", "--name", name)
        assert status.returncode == 0 and "nodes: real" in status.stdout, status.stdout
        assert "node-agent" not in status.stdout
        kubectl = [str(binaries.binary_path("kubectl")), "--kubeconfig", str(cfg.kubeconfig_path)]
        subprocess.run(kubectl + ["run", "idle", "--image=localhost/mlops-pause:3.10", "--image-pull-policy=Never"],
                       check=True, capture_output=True)
        subprocess.run(kubectl + ["wait", "--for=condition=Ready", "pod/idle", "--timeout=90s"], check=True,
                       capture_output=True)
        assert realnode._cgroup_pids(cfg) and realnode._shim_pids(cfg)
        state, run = cfg.state_dir, realnode.run_dir(cfg)
        assert realnode._mounts_under(state) or realnode._mounts_under(run)
    finally:
        down = _mlops("down", "--name", name, "--purge")
    assert down.returncode == 0, down.stderr
    assert not realnode._cgroup_pids(cfg) and not realnode._shim_pids(cfg)
    assert not realnode._mounts_under(state) and not realnode._mounts_under(run)
    assert not any(d.exists() for d in realnode.cgroup_dirs(cfg))
    assert not netns.exists(cfg.netns) and not run.exists() and not state.exists()
