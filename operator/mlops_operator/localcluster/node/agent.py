"""The node agent: registers the Node, keeps its Lease, runs the pods bound to it.

Run by the supervisor inside the cluster network namespace (host mount namespace, so the pod
namespaces it creates under /run/netns are visible to `mlops down`):

    python -m mlops_operator.localcluster.node.agent <cluster>

Stopping the agent does not stop pods (as with a kubelet); a restarted agent adopts them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ... import __version__
from ..config import API_PORT, BRIDGE, CLUSTER_DNS_IP, NODE_IP, ClusterConfig, daemon_config
from . import kubeletapi, podnet, worker
from .apiclient import ApiClient, ApiError
from .podstatus import now

log = logging.getLogger("mlops.node.agent")

KUBELET_PORT = 10250
HEALTHZ_PORT = 10248
LEASE_SECONDS = 20
LEASE_RENEW_SECONDS = 5
STATUS_SECONDS = 10


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class Agent:
    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg
        self.node = cfg.node_name
        self.dir = cfg.path("node")
        self.workers: dict[str, worker.PodWorker] = {}
        pki = cfg.path("pki")
        self.api = ApiClient(f"https://127.0.0.1:{API_PORT}", pki / "ca.crt", pki / "node.crt", pki / "node.key")
        cpus = os.cpu_count() or 1
        self.capacity = {"cpu": str(cpus), "memory": f"{_memory_bytes() // 1024}Ki", "pods": "110",
                         "ephemeral-storage": "100Gi"}
        self.stopping = asyncio.Event()
        self.ready = False
        self._transitions: dict[str, tuple[str, str]] = {}  # node condition -> (status, since)

    # -- node and lease --------------------------------------------------------------------------
    def _node_status(self) -> dict[str, Any]:
        t = now()
        conds = []
        for ctype, reason, msg in (("MemoryPressure", "KubeletHasSufficientMemory", "no memory pressure"),
                                   ("DiskPressure", "KubeletHasNoDiskPressure", "no disk pressure"),
                                   ("PIDPressure", "KubeletHasSufficientPID", "no PID pressure")):
            conds.append({"type": ctype, "status": "False", "reason": reason, "message": msg,
                          "lastHeartbeatTime": t, "lastTransitionTime": self._since(ctype, "False", t)})
        ready = "True" if self.ready else "False"
        conds.append({"type": "Ready", "status": ready,
                      "reason": "KubeletReady" if self.ready else "KubeletNotReady",
                      "message": "mlops local node agent is posting ready status" if self.ready
                      else "pod network not configured yet",
                      "lastHeartbeatTime": t, "lastTransitionTime": self._since("Ready", ready, t)})
        return {
            "capacity": self.capacity, "allocatable": self.capacity, "conditions": conds,
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "",
                "bootID": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                "kernelVersion": platform.release(), "osImage": f"mlops local node ({platform.system()})",
                "containerRuntimeVersion": f"mlops-process://{__version__}",
                "kubeletVersion": f"v{self.cfg.kubernetes_version}", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }

    def _since(self, ctype: str, status: str, t: str) -> str:
        prev = self._transitions.get(ctype)
        if prev and prev[0] == status:
            return prev[1]
        self._transitions[ctype] = (status, t)
        return t

    async def register(self) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {
                    "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "mlops-local"}}}
        try:
            await self.api.create("/api/v1/nodes", body)
            log.info("registered node %s", self.node)
        except ApiError as e:
            if e.status != 409:
                raise
        await self.post_status()
        while True:  # the controller-manager's node IPAM allocates the pod CIDR
            node = await self.api.get(f"/api/v1/nodes/{self.node}")
            if node.get("spec", {}).get("podCIDR"):
                return node
            await asyncio.sleep(0.2)

    async def post_status(self) -> None:
        await self.api.patch(f"/api/v1/nodes/{self.node}/status", {"status": self._node_status()}, strategic=True)

    async def lease_loop(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        while not self.stopping.is_set():
            t = now().replace("Z", ".000000Z")
            try:
                try:
                    await self.api.patch(path, {"spec": {"renewTime": t, "holderIdentity": self.node,
                                                         "leaseDurationSeconds": LEASE_SECONDS}})
                except ApiError as e:
                    if e.status != 404:
                        raise
                    await self.api.create(
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                         "spec": {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS,
                                  "renewTime": t}})
            except Exception as e:
                log.warning("lease renewal failed: %s", e)
            await self._sleep(LEASE_RENEW_SECONDS)

    async def status_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.post_status()
            except Exception as e:
                log.warning("node status update failed: %s", e)
            await self._sleep(STATUS_SECONDS)

    async def _sleep(self, s: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), s)
        except asyncio.TimeoutError:
            pass

    # -- pods ------------------------------------------------------------------------------------
    def _ensure(self, pod: dict[str, Any], ctx: worker.NodeContext) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            w = worker.PodWorker(ctx, pod)
            self.workers[uid] = w
            w.update(pod)
            w.start()
            log.info("pod %s/%s assigned; starting", w.ns, w.name)
        else:
            w.update(pod)

    def _finished(self, uid: str) -> None:
        self.workers.pop(uid, None)

    def lookup(self, ns: str, name: str) -> worker.PodWorker | None:
        return next((w for w in self.workers.values() if w.ns == ns and w.name == name), None)

    async def pod_loop(self, ctx: worker.NodeContext) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node}"}
        while not self.stopping.is_set():
            try:
                lst = await self.api.get("/api/v1/pods", **selector)
                seen = set()
                for pod in lst["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self._ensure(pod, ctx)
                for uid, w in list(self.workers.items()):
                    if uid not in seen:
                        w.vanish()
                await self.cleanup_orphans(seen)
                rv = lst["metadata"]["resourceVersion"]
                async for ev in self.api.watch("/api/v1/pods", rv, **selector):
                    obj = ev["object"]
                    if ev["type"] == "BOOKMARK":
                        continue
                    if ev["type"] == "ERROR":
                        break  # 410 Gone or similar: re-list
                    uid = obj["metadata"]["uid"]
                    if ev["type"] == "DELETED":
                        if uid in self.workers:
                            self.workers[uid].vanish()
                    else:
                        self._ensure(obj, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("pod watch interrupted (%s); re-listing", e)
                await self._sleep(1)

    async def cleanup_orphans(self, live: set[str]) -> None:
        """Pods this node ran that no longer exist: stop their processes, free their network."""
        pods_dir = self.dir / "pods"
        if not pods_dir.exists():
            return
        for d in pods_dir.iterdir():
            if d.name in live or d.name in self.workers:
                continue
            for pidfile in d.glob("containers/*/pid"):
                try:
                    os.killpg(int(pidfile.read_text()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            await asyncio.to_thread(podnet.teardown, podnet.netns_name(self.cfg.name, d.name), podnet.veth_name(d.name))
            self.ipam.release(d.name)
            worker.volumes.remove_pod_dir(d)
            log.info("cleaned up orphaned pod %s", d.name)

    # -- main ------------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        health = web.Application()

        async def healthz(_: web.Request) -> web.Response:  # (aiohttp: bare-function handlers are deprecated)
            return web.Response(text="ok" if self.ready else "starting", status=200 if self.ready else 503)

        health.router.add_get("/healthz", healthz)
        hrunner = web.AppRunner(health, access_log=None)
        await hrunner.setup()
        await web.TCPSite(hrunner, "127.0.0.1", HEALTHZ_PORT).start()
        async with self.api:
            node = await self.register()
            cidr = node["spec"]["podCIDR"]
            self.ipam = podnet.IPAM(self.dir / "ipam", cidr)
            await asyncio.to_thread(podnet.prepare_node_network, BRIDGE, self.ipam.gateway)
            # CoreDNS runs on a real node; a process node's pods use it when the cluster has one
            dns = CLUSTER_DNS_IP if self.cfg.has_real_node else None
            ctx = worker.NodeContext(self.api, self.cfg.name, self.node, NODE_IP, self.dir, self.ipam,
                                     self.capacity, self._finished, cluster_dns=dns)
            runner = web.AppRunner(kubeletapi.make_app(self.lookup), access_log=None)
            await runner.setup()
            tls = kubeletapi.server_tls(self.cfg.path("pki"))
            await web.TCPSite(runner, NODE_IP, KUBELET_PORT, ssl_context=tls).start()
            self.ready = True
            await self.post_status()
            log.info("node %s ready: pod CIDR %s, kubelet API on %s:%s", self.node, cidr, NODE_IP, KUBELET_PORT)
            tasks = [asyncio.create_task(c) for c in (self.lease_loop(), self.status_loop(), self.pod_loop(ctx))]
            await self.stopping.wait()
            log.info("stopping (pods keep running; a restarted agent adopts them)")
            for t in tasks:
                t.cancel()
            for w in self.workers.values():
                if w.main:
                    w.main.cancel()
            await runner.cleanup()
        await hrunner.cleanup()


def main(argv: list[str] | None = None) -> None:
    cfg = daemon_config(sys.argv[1:] if argv is None else argv)
    asyncio.run(Agent(cfg).run())


if __name__ == "__main__":
    main()
