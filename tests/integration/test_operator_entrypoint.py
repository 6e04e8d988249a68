"""`mlops operator run` connects to the current kubeconfig, names the cluster, serves liveness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from mlops_operator.localcluster.forward import free_port
from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.cluster


def test_operator_starts_names_the_cluster_and_serves_liveness(local_cluster: Cluster, tmp_path):
    port = free_port()
    log = tmp_path / "operator.log"
    env = dict(os.environ, KUBECONFIG=str(local_cluster.kubeconfig))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
             "--liveness", f"http://127.0.0.1:{port}/healthz"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: f"connecting to cluster {local_cluster.cfg.server_url}" in log.read_text(), 60,
                 what="the startup line naming the cluster")
        wait_for(lambda: "operator started on Kubernetes v1.36.3" in log.read_text(), 60,
                 what="the startup line with the server version")
        assert "Traceback" not in log.read_text()

        def live():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(live, 60, what="the liveness endpoint")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("operator did not exit within 30s of SIGTERM:\n" + log.read_text()) from None
    assert code == 0, log.read_text()


def test_operator_without_a_reachable_cluster_fails_clearly(tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    env = dict(os.environ, KUBECONFIG=str(kc))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    p = subprocess.run(
        [sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
         "--liveness", f"http://127.0.0.1:{free_port()}/healthz"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 1
    assert "mlops: no cluster credentials (in-cluster: Service host/port is not set." in p.stderr
    assert "Traceback" not in p.stderr
