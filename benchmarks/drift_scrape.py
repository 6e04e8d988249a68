"""Benchmark: the DriftMonitor's scrape per tick against the number of serving pods, through the
real API server's pod proxy (issue 17, item 5).

    PYTHONPATH=operator .venv/bin/python -m benchmarks.drift_scrape [--pods 1,10,25,50,100] [--keep]

What runs: a local cluster `bench-scrape` with the process node (started, or reused when it
runs), a namespace, and N pods that each answer the monitor port (8082, resources/serving.
MONITOR_PORT) with a real model server's stats document. The document is made here by the real
model server (serving/app.py, in-process as tests/unit/test_serving.py runs it) after 2,000 rows
of retail traffic; each pod serves it from a ConfigMap with a stdlib HTTP server, with its own
pod name as `instance`, so the pods cost the node little and what is measured is the path:
operator -> API server (TLS, authn/authz, pods/proxy) -> pod.

Per N (pods labelled as the operator selects them), the median of 5 ticks after one warm-up:
* `list_s`: `driftmonitor._ready_pods` (the pod list of a tick);
* `scrape_s`: `driftmonitor._scrape` as the controller calls it (its concurrency and timeout);
* `accumulate_s`: `monitoring.windows.accumulate` of what arrived (the rest of a tick's work
  before the window is judged; merge + evaluate at 1..100 pods is in drift_production);
* bytes read per tick; CPU seconds per tick of the kube-apiserver process (/proc/<pid>/stat,
  minus its idle rate measured before) and of this process (the operator's side: TLS, JSON).

Variants: the concurrency (1, 4, 8, 16 at the largest N), and one stalled pod (accepts, never
answers) and eight stalled pods among 25: the tick must be bounded by SCRAPE_TIMEOUT_S, and the
healthy pods must still be read.

Results: benchmarks/results/drift_scrape.json; benchmarks/README.md has the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "drift_scrape.json"
NS = "scrape"
ISVC = "retail"
IMAGE = "ghcr.io/mlops-dev/mlops-server:0.1.0"  # the process node runs `command`, not the image
HZ = os.sysconf("SC_CLK_TCK")

STUB = r'''
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
doc = json.load(open("/etc/stub/doc.json"))
doc["instance"] = os.environ["POD_NAME"]
body = json.dumps(doc, separators=(",", ":")).encode()
stall = os.environ.get("STALL") == "1"

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if stall:  # accepts, reads the request, never answers
            time.sleep(3600)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        if stall:
            print("request", time.time(), self.path, flush=True)

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("0.0.0.0", 8082), H).serve_forever()
'''


# ------------------------------------------------------------------------------ the document

def real_stats_doc(rows: int = 2000) -> dict[str, Any]:
    """The stats document of the real model server after `rows` rows of retail traffic in
    requests of 20 rows and feedback for half of them, read with a cursor as the monitor reads."""
    import requests

    from tests.unit.test_serving import ServerThread, build_artifact, v2_inputs

    with tempfile.TemporaryDirectory() as tmp:
        art = build_artifact(Path(tmp), rows=3000 + rows * 3 // 2)
        frame = art.test.iloc[:rows]
        with ServerThread(art.cfg(instance="stats-000")) as srv, requests.Session() as http:
            http.get(f"{srv.url}/mlops/v1/models/retail/stats", params={"cursor": ""}, timeout=30).raise_for_status()
            for i in range(0, rows, 20):
                r = http.post(f"{srv.url}/v2/models/retail/infer",
                              json={"inputs": v2_inputs(frame.iloc[i:i + 20], art.feats)}, timeout=30)
                r.raise_for_status()
            r = http.get(f"{srv.url}/mlops/v1/models/retail/stats", params={"cursor": ""}, timeout=30)
            r.raise_for_status()
            return r.json()


# ------------------------------------------------------------------------------ the cluster

def kubectl(cfg: Any, *args: str, input: str | None = None, check: bool = True) -> str:
    from mlops_operator.localcluster import binaries

    p = subprocess.run([str(binaries.binary_path("kubectl")), "--kubeconfig", str(cfg.kubeconfig_path), *args],
                       input=input, text=True, capture_output=True)
    if check and p.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr}")
    return p.stdout


def pod(name: str, track: str = "stable", stall: bool = False) -> dict[str, Any]:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    if stall:
        env.append({"name": "STALL", "value": "1"})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"mlops.dev/inference-service": ISVC, "mlops.dev/track": track}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "stats", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": ["python", "/etc/stub/server.py"], "env": env,
                                     "ports": [{"containerPort": 8082, "name": "monitor"}],
                                     "readinessProbe": {"tcpSocket": {"port": 8082}, "periodSeconds": 1},
                                     "volumeMounts": [{"name": "stub", "mountPath": "/etc/stub"}]}],
                     "volumes": [{"name": "stub", "configMap": {"name": "stats-stub"}}]}}


def apply_pods(cfg: Any, pods: list[dict[str, Any]]) -> None:
    kubectl(cfg, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))


async def wait_ready(names: set[str], timeout: float = 600.0) -> float:
    from mlops_operator.controllers import kube

    t = time.perf_counter()
    while True:
        ready = {p["metadata"]["name"] for p in await kube.list_pods(NS, "mlops.dev/inference-service=" + ISVC)
                 if any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (p.get("status") or {}).get("conditions") or [])}
        if names <= ready:
            return time.perf_counter() - t
        if time.perf_counter() - t > timeout:
            raise TimeoutError(f"pods not ready after {timeout:g}s: {sorted(names - ready)[:10]}")
        await asyncio.sleep(1.0)


def apiserver_pid(cfg: Any) -> int:
    doc = json.loads(cfg.path("run", "status.json").read_text())
    return int(doc["components"]["kube-apiserver"]["pid"])


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ  # utime, stime (fields 14, 15)


def stub_memory() -> dict[str, Any]:
    """RSS of the stub servers and of their parents (the node's per-container shims)."""
    rss: dict[int, int] = {}
    servers = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if b"/etc/stub/server.py" not in (d / "cmdline").read_bytes():
                continue
            servers += 1
            for pid in (int(d.name), int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss[pid] = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return {"servers": servers, "rss_MB": round(sum(rss.values()) / 1e6, 1),
            "rss_MB_per_pod": round(sum(rss.values()) / 1e6 / max(servers, 1), 1)}


def mem_available_MB() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------ measuring

class Counter:
    """Wraps kube.pod_proxy_get (bytes and reads) and kube._proxy_request (the read's thread:
    how long each proxied request lived, and how many were sent, retries included)."""

    def __init__(self) -> None:
        from mlops_operator.controllers import kube

        self.kube = kube
        self.orig_get, self.orig_req = kube.pod_proxy_get, kube._proxy_request
        self.bytes = 0
        self.reads = 0
        self.requests: list[tuple[str, float, float, str]] = []  # target, start, end, outcome
        self.lock = threading.Lock()
        self.inflight = 0

        async def get(*a: Any, **kw: Any) -> str:
            raw = await self.orig_get(*a, **kw)
            self.bytes += len(raw.encode())
            self.reads += 1
            return raw

        def req(api: Any, namespace: str, target: str, path: str, timeout: float) -> Any:
            t = time.monotonic()
            with self.lock:
                self.inflight += 1
            try:
                resp = self.orig_req(api, namespace, target, path, timeout)
            except BaseException as e:
                with self.lock:
                    self.inflight -= 1
                    self.requests.append((target, t, time.monotonic(), type(e).__name__))
                raise
            with self.lock:
                self.inflight -= 1
                self.requests.append((target, t, time.monotonic(), "ok"))
            return resp

        kube.pod_proxy_get, kube._proxy_request = get, req

    def reset(self) -> None:
        self.bytes, self.reads = 0, 0


async def ticks(counter: Counter, api_pid: int, idle_rate: float, n_pods: int, repeat: int = 5,
                concurrency: int | None = None, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from mlops_operator.controllers import driftmonitor as dm
    from mlops_operator.monitoring.windows import Window, accumulate

    saved = dm.SCRAPE_CONCURRENCY
    if concurrency is not None:
        dm.SCRAPE_CONCURRENCY = concurrency
    try:
        state: dict[str, Any] = {}
        rows: list[dict[str, float]] = []
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            pods = await dm._ready_pods(NS, ISVC)
            pods = pods[:n_pods] + list(extra or [])
            t1 = time.perf_counter()
            counter.reset()
            api0, me0 = cpu_s(api_pid), time.process_time()
            docs, problems = await dm._scrape(NS, pods, "retail", 3, state)
            t2 = time.perf_counter()
            api1, me1 = cpu_s(api_pid), time.process_time()
            res = accumulate(Window(0.0), state, docs)
            t3 = time.perf_counter()
            state = res.pods
            if i == 0:
                continue  # warm-up
            rows.append({"list_s": t1 - t0, "scrape_s": t2 - t1, "accumulate_s": t3 - t2,
                         "bytes": counter.bytes, "docs": len(docs), "problems": len(problems),
                         "apiserver_cpu_s": api1 - api0 - idle_rate * (t2 - t1),
                         "apiserver_cpu_raw_s": api1 - api0, "client_cpu_s": me1 - me0})
            await asyncio.sleep(0.5)
        out: dict[str, Any] = {"pods": len(pods), "concurrency": dm.SCRAPE_CONCURRENCY}
        for k in rows[0]:
            out[k] = round(statistics.median(r[k] for r in rows), 4)
        out["scrape_s_runs"] = [round(r["scrape_s"], 3) for r in rows]
        out["problems_example"] = problems[:2]
        return out
    finally:
        dm.SCRAPE_CONCURRENCY = saved


async def idle_apiserver_rate(api_pid: int, seconds: float = 10.0) -> float:
    a, t = cpu_s(api_pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_s(api_pid) - a) / (time.perf_counter() - t)


async def stalled(counter: Counter, n: int, stall_pods: list[dict[str, Any]]) -> dict[str, Any]:
    """One tick with `len(stall_pods)` stalled pods among n, listed first (the worst order: they
    take the first slots); while it runs, what another API call of the operator waits (a no-op on
    the loop's default executor, which kube.call uses, and a real pod list); then how long the
    stalled reads' threads (and their proxied requests) lived on after the tick returned."""
    from mlops_operator.controllers import driftmonitor as dm
    from mlops_operator.controllers import kube

    healthy = (await dm._ready_pods(NS, ISVC))[: n - len(stall_pods)]
    counter.requests.clear()
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    task = asyncio.create_task(dm._scrape(NS, stall_pods + healthy, "retail", 3, {}))
    ended: list[float] = []
    task.add_done_callback(lambda _: ended.append(time.monotonic()))  # the probes below may wait longer
    await asyncio.sleep(1.0)
    t = time.monotonic()
    await loop.run_in_executor(None, lambda: None)
    noop_wait = time.monotonic() - t
    t = time.monotonic()
    await kube.list_pods(NS, "mlops.dev/track=none")
    list_wait = time.monotonic() - t
    docs, problems = await task
    t1 = ended[0]
    stall_names = {p["metadata"]["name"] for p in stall_pods}
    deadline = time.monotonic() + 150  # wait for the stalled reads' threads to end
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        with counter.lock:
            if counter.inflight == 0:
                break
    with counter.lock:
        reqs = [r for r in counter.requests if r[0].split(":")[0] in stall_names]
    return {"pods": n, "stalled": len(stall_pods), "scrape_s": round(t1 - t0, 3), "docs": len(docs),
            "problems": len(problems), "healthy_unread": n - len(stall_pods) - len(docs),
            "problems_example": problems[:3],
            "other_api_call_waited_s": {"noop_on_default_executor": round(noop_wait, 3),
                                        "list_pods": round(list_wait, 3)},
            "stalled_requests_sent": len(reqs),
            "stalled_request_outcomes": sorted({r[3] for r in reqs}),
            "stalled_thread_lived_s_max": round(max((r[2] for r in reqs), default=t0) - t0, 1)}


# ------------------------------------------------------------------------------ main

async def run(cfg: Any, ns_pods: list[int], doc: dict[str, Any], conc_sweep: list[int]) -> dict[str, Any]:
    from kubernetes import config as kconfig

    config = kconfig
    config.load_kube_config(str(cfg.kubeconfig_path))
    kubectl(cfg, "create", "namespace", NS, check=False)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stats-stub", "namespace": NS},
          "data": {"doc.json": json.dumps(doc, separators=(",", ":")), "server.py": STUB}}
    kubectl(cfg, "apply", "-f", "-", input=json.dumps(cm))
    api_pid = apiserver_pid(cfg)
    counter = Counter()
    res: dict[str, Any] = {"per_n": [], "concurrency": [], "stalled": [], "memory": []}
    idle = await idle_apiserver_rate(api_pid)
    res["apiserver_idle_cpu_per_s"] = round(idle, 4)
    print(f"kube-apiserver pid {api_pid}, idle CPU {idle:.3f} s/s", flush=True)
    have = 0
    mem0 = mem_available_MB()
    for n in sorted(ns_pods):
        if n > have:
            apply_pods(cfg, [pod(f"stats-{i:03d}") for i in range(have, n)])
            t = await wait_ready({f"stats-{i:03d}" for i in range(n)})
            have = n
            await asyncio.sleep(3.0)  # let the node settle after the starts
            m = {"pods": n, "ready_wait_s": round(t, 1), "mem_available_drop_MB": round(mem0 - mem_available_MB()),
                 **stub_memory()}
            res["memory"].append(m)
            print("memory", m, flush=True)
        r = await ticks(counter, api_pid, idle, n)
        res["per_n"].append(r)
        print("tick", r, flush=True)
        if n == 25:
            stall = [pod(f"stall-{i}", track="stall", stall=True) for i in range(8)]
            apply_pods(cfg, stall)
            await wait_ready({p["metadata"]["name"] for p in stall})
            from mlops_operator.controllers import kube

            objs = [p for p in await kube.list_pods(NS, "mlops.dev/track=stall")]
            objs.sort(key=lambda p: p["metadata"]["name"])
            for k in (1, 8):
                s = await stalled(counter, 25, objs[:k])
                res["stalled"].append(s)
                print("stalled", s, flush=True)
            kubectl(cfg, "delete", "pod", "-n", NS, "-l", "mlops.dev/track=stall", "--wait=true")
    for c in conc_sweep:
        r = await ticks(counter, api_pid, idle, have, concurrency=c)
        res["concurrency"].append(r)
        print("concurrency", r, flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", default="1,10,25,50,100")
    ap.add_argument("--concurrency", default="1,4,8,16", help="swept at the largest N")
    ap.add_argument("--name", default="bench-scrape")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)
    from mlops_operator.localcluster import cluster

    doc = real_stats_doc()
    doc_bytes = len(json.dumps(doc, separators=(",", ":")))
    print(f"stats document: {doc_bytes:,} bytes, {doc['drift']['rows']} rows in its drift section", flush=True)
    t = time.perf_counter()
    cfg = cluster.up(a.name, nodes=["process"], timeout=420, say=lambda m: print(m, flush=True))
    up_s = time.perf_counter() - t
    try:
        res = asyncio.run(run(cfg, [int(x) for x in a.pods.split(",")], doc,
                              [int(x) for x in a.concurrency.split(",") if x]))
    finally:
        if not a.keep:
            try:
                kubectl(cfg, "delete", "namespace", NS, "--wait=true", "--timeout=180s", check=False)
            finally:
                cluster.down(a.name, purge=True, say=lambda m: print(m, flush=True))
    from mlops_operator.controllers import driftmonitor as dm

    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "loadavg_at_end": os.getloadavg()},
           "cluster_up_s": round(up_s, 1), "stats_document_bytes": doc_bytes,
           "scrape_concurrency": dm.SCRAPE_CONCURRENCY, "scrape_timeout_s": dm.SCRAPE_TIMEOUT_S,
           "default_executor_workers": min(32, (os.cpu_count() or 1) + 4), **res}
    if not a.no_save:
        Path(a.out).parent.mkdir(exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
