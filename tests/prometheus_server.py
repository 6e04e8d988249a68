"""A real Prometheus (Debian's, through `mlops prometheus`) for tests against the local cluster,
and the few calls of its HTTP API the tests read: instant and range queries, and the alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlops_operator.localcluster.forward import free_port


class PrometheusProcess:
    """`mlops prometheus` for cluster `name`, its configuration and data in `out`, its output in
    `out/prometheus.log`; `args` are extra options (e.g. --scrape-interval, --max-for)."""

    def __init__(self, name: str, out: Path, *args: str):
        self.port, self.sd_port, self.out = free_port(), free_port(), out
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "prometheus.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "mlops_operator.cli.main", "prometheus", "--name", name,
                                      "--port", str(self.port), "--sd-port", str(self.sd_port),
                                      "--out", str(out / "prom"), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:]

    def _get(self, path: str, **params: Any) -> Any:
        url = f"{self.url}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", query=promql)["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Series of `promql` over [start, end]: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        return self._get("/api/v1/query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}",
                         step=f"{step:g}")["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Prometheus' own active alerts (pending and firing)."""
        return self._get("/api/v1/alerts")["alerts"]

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self._get("/api/v1/rules", type="alert")["groups"] for r in g["rules"]]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def firing_times(series: list[dict[str, Any]]) -> list[float]:
    """The timestamps of a range query's points, all series together, in order."""
    return sorted(float(t) for s in series for t, _ in s["values"])


def wait_ready(p: PrometheusProcess, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.proc.poll() is not None:
            raise AssertionError(f"mlops prometheus exited ({p.proc.returncode}):\n{p.log_tail()}")
        if p.ready():
            return
        time.sleep(1)
    raise AssertionError(f"Prometheus not ready after {timeout:g} s:\n{p.log_tail()}")
