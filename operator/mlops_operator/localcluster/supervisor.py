"""The daemon behind `mlops up`: keeps the control plane running until `mlops down`.

It is started in a new session, so every process it spawns shares its session id and
`mlops down` can account for all of them even after a crash. It starts components in
dependency order once their prerequisites answer health checks, restarts a component that
exits (exponential backoff), serves the loopback forward to the API server, and publishes
`run/status.json` for `mlops status`. SIGTERM stops everything in reverse order and deletes
the cluster's network namespace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from . import binaries, health, netns, nodebins, realnode
from .components import Component, control_plane
from .config import API_PORT, BRIDGE, NODE_IP, NODE_NETWORK, SERVICE_CIDR, ClusterConfig, daemon_config
from .forward import start_forward
from .procs import session_processes

log = logging.getLogger("mlops.localcluster.supervisor")

STOP_GRACE_SECONDS = 10.0


@dataclass
class Running:
    comp: Component
    proc: asyncio.subprocess.Process | None = None
    state: str = "waiting"
    restarts: int = 0
    healthy: bool = False
    last_exit: int | None = None
    backoff: float = 1.0
    started_at: float = 0.0
    detail: str = ""
    task: asyncio.Task | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, cfg: ClusterConfig, components: list[Component]):
        self.cfg = cfg
        self.procs = {c.name: Running(c) for c in components}
        self.stopping = asyncio.Event()
        self.started = time.time()

    # -- health ----------------------------------------------------------------------------------
    def _probe(self, r: Running) -> bool:
        pki = self.cfg.path("pki") if r.comp.name == "kube-apiserver" else None
        res = health.probe(self.cfg.netns, r.comp.health_url, pki=pki, timeout=2.0)
        r.detail = "" if res.ok else (res.body.strip().splitlines() or [""])[-1][:200]
        return res.ok

    async def _health_loop(self) -> None:
        while not self.stopping.is_set():
            for r in self.procs.values():
                if r.comp.oneshot:
                    continue  # healthy once it has exited 0 (see _keep_running)
                if r.proc is not None and r.proc.returncode is None:
                    if self.held(r.comp.name):
                        r.proc.terminate()
                        continue
                    r.healthy = await asyncio.to_thread(self._probe, r)
                    r.state = "healthy" if r.healthy else "starting"
                else:
                    r.healthy = False
            self._write_status()
            try:
                await asyncio.wait_for(self.stopping.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def _write_status(self) -> None:
        doc = {
            "pid": os.getpid(),
            "sid": os.getsid(0),
            "started": self.started,
            "updated": time.time(),
            "server": self.cfg.server_url,
            "stopping": self.stopping.is_set(),
            "components": {
                n: {"pid": r.proc.pid if r.proc and r.proc.returncode is None else None,
                    "state": r.state, "healthy": r.healthy, "restarts": r.restarts,
                    "lastExit": r.last_exit, "detail": r.detail}
                for n, r in self.procs.items()
            },
        }
        tmp = self.cfg.path("run", "status.json.tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.cfg.path("run", "status.json"))

    # -- processes -------------------------------------------------------------------------------
    def held(self, name: str) -> bool:
        """`mlops component stop NAME` holds a component stopped until `mlops component start`."""
        return self.cfg.path("run", "hold", name).exists()

    async def _keep_running(self, r: Running) -> None:
        """Start `r` once its prerequisites are healthy; restart it whenever it exits."""
        while not self.stopping.is_set():
            while not all(self.procs[d].healthy for d in r.comp.after) or self.held(r.comp.name):
                if self.held(r.comp.name):
                    r.state = "held"
                if self.stopping.is_set():
                    return
                await asyncio.sleep(0.2)
            logf = open(self.cfg.path("logs", f"{r.comp.name}.log"), "ab")
            logf.write(f"--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            logf.flush()
            r.proc = await asyncio.create_subprocess_exec(
                *netns.exec_prefix(self.cfg.netns), *r.comp.argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **r.comp.env} if r.comp.env else None,
            )
            logf.close()
            r.state, r.started_at = "starting", time.monotonic()
            log.info("started %s pid=%s", r.comp.name, r.proc.pid)
            code = await r.proc.wait()
            r.last_exit, r.healthy = code, False
            if self.stopping.is_set():
                r.state = "stopped"
                return
            if r.comp.oneshot and code == 0:
                r.state, r.healthy = "done", True
                log.info("%s done", r.comp.name)
                return
            # A component that ran a while before failing starts its backoff afresh.
            if time.monotonic() - r.started_at > 60:
                r.backoff = 1.0
            if self.held(r.comp.name):
                r.state = "held"
                log.info("%s stopped and held (mlops component start %s)", r.comp.name, r.comp.name)
                continue
            r.restarts += 1
            r.state = "restarting"
            log.warning("%s exited with %s; restarting in %.0fs", r.comp.name, code, r.backoff)
            try:
                await asyncio.wait_for(self.stopping.wait(), r.backoff)
            except asyncio.TimeoutError:
                pass
            r.backoff = min(r.backoff * 2, 30.0)

    async def _stop_all(self) -> None:
        for r in reversed(list(self.procs.values())):
            if r.proc is not None and r.proc.returncode is None:
                r.proc.terminate()
                try:
                    await asyncio.wait_for(r.proc.wait(), STOP_GRACE_SECONDS)
                except asyncio.TimeoutError:
                    r.proc.kill()
                    await r.proc.wait()
                r.state = "stopped"
                log.info("stopped %s", r.comp.name)

    async def _kill_leftovers(self) -> None:
        """Pods outlive the node agent by design; on cluster stop, end them (TERM, then KILL)."""
        me = os.getpid()
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = [p for p in session_processes(os.getsid(0)) if p != me]
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and [p for p in session_processes(os.getsid(0)) if p != me]:
                await asyncio.sleep(0.1)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        prefix = NODE_NETWORK.split("/")[1]
        netns.create_cluster_netns(self.cfg.netns, BRIDGE, f"{NODE_IP}/{prefix}", SERVICE_CIDR)
        if self.cfg.has_real_node:  # the real node's own address, beside the control plane's
            netns.ip("-n", self.cfg.netns, "addr", "replace", f"{realnode.REAL_NODE_IP}/32", "dev", BRIDGE)
        server = await start_forward(self.cfg.netns, self.cfg.api_host_port, (NODE_IP, API_PORT))
        s3_forward = None
        if self.cfg.s3 and self.cfg.s3_host_port:  # the host's way to the in-cluster S3 gateway
            from .s3cluster import PORTS

            s3_forward = await start_forward(self.cfg.netns, self.cfg.s3_host_port, (NODE_IP, PORTS["s3"]))
        for r in self.procs.values():
            r.task = asyncio.create_task(self._keep_running(r))
        health_task = asyncio.create_task(self._health_loop())
        await self.stopping.wait()
        log.info("stopping")
        server.close()
        if s3_forward is not None:
            s3_forward.close()
        await self._stop_all()
        for r in self.procs.values():
            if r.task:
                r.task.cancel()
        health_task.cancel()
        await self._kill_leftovers()
        if self.cfg.has_real_node:
            for what in await asyncio.to_thread(realnode.teardown, self.cfg):
                log.info("real node: %s", what)
        netns.delete_cluster_namespaces(self.cfg.netns)
        self._write_status()
        log.info("stopped; namespace %s deleted", self.cfg.netns)


def main(argv: list[str] | None = None) -> None:
    cfg = daemon_config(sys.argv[1:] if argv is None else argv)
    bins = {n: binaries.binary_path(n) for n in (*binaries.KUBE_COMPONENTS, "etcd")}
    if cfg.has_real_node:
        bins.update(nodebins.node_binary_paths())
    sup = Supervisor(cfg, control_plane(cfg, bins))
    cfg.path("run", "supervisor.pid").write_text(str(os.getpid()))
    try:
        asyncio.run(sup.run())
    finally:
        cfg.path("run", "supervisor.pid").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
