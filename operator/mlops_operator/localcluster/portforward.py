"""`mlops port-forward`: reach a Service or Pod of the local cluster from the machine's loopback.

A Service is reached at its ClusterIP (kube-proxy inside the cluster namespace routes it to
a ready endpoint, as for any in-cluster client); a Pod at its pod IP.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

from kubernetes import client, config

from .config import ClusterConfig
from .forward import start_forward


class PortForwardError(RuntimeError):
    pass


@dataclass
class Target:
    kind: str
    name: str
    ip: str
    port: int


def resolve(cfg: ClusterConfig, namespace: str, target: str, remote: int) -> Target:
    kind, _, name = target.partition("/")
    if not name:
        kind, name = "pod", kind
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(cfg.kubeconfig_path)))
    try:
        if kind in ("svc", "service", "services"):
            svc = api.read_namespaced_service(name, namespace)
            spec = svc.spec or client.V1ServiceSpec()
            ip = spec.cluster_ip
            if not ip or ip == "None":
                raise PortForwardError(f"service {namespace}/{name} has no ClusterIP (headless)")
            if remote not in [p.port for p in spec.ports or []]:
                raise PortForwardError(f"service {namespace}/{name} has no port {remote}")
            return Target("svc", name, ip, remote)
        if kind in ("pod", "pods", "po"):
            pod = api.read_namespaced_pod(name, namespace)
            status = pod.status or client.V1PodStatus()
            if not status.pod_ip or status.phase != "Running":
                raise PortForwardError(f"pod {namespace}/{name} is not running (phase {status.phase})")
            return Target("pod", name, status.pod_ip, remote)
    except client.ApiException as e:
        if e.status == 404:
            raise PortForwardError(f"{kind} {namespace}/{name} not found") from e
        raise
    raise PortForwardError(f"cannot forward to {target!r}: use svc/NAME or pod/NAME")


async def serve(cfg: ClusterConfig, t: Target, local: int, address: str = "127.0.0.1") -> None:
    server = await start_forward(cfg.netns, local, (t.ip, t.port), host=address)
    print(f"Forwarding from {address}:{local} -> {t.kind}/{t.name}:{t.port} ({t.ip}:{t.port})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
