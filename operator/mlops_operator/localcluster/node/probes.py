"""Readiness, liveness and startup probes: httpGet, tcpSocket and exec, as the kubelet runs them.

The agent lives in the cluster namespace, where every pod IP is routed, so httpGet and
tcpSocket probes connect to the pod IP exactly as a kubelet does; exec probes run inside the
container's namespaces through nsenter.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, Mapping

Obj = Mapping[str, Any]


@dataclass
class ProbeSpec:
    kind: str  # httpGet | tcpSocket | exec | grpc
    action: dict[str, Any]
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_api(cls, probe: Obj | None) -> "ProbeSpec | None":
        if not probe:
            return None
        kind = next((k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in probe), None)
        if kind is None:
            return None
        return cls(kind, dict(probe[kind]), probe.get("initialDelaySeconds", 0), probe.get("periodSeconds", 10),
                   probe.get("timeoutSeconds", 1), probe.get("successThreshold", 1),
                   probe.get("failureThreshold", 3))


def resolve_port(port: int | str, container: Obj) -> int:
    """A probe port may name one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')!r}")


async def http_get(host: str, action: Obj, container: Obj, timeout: float) -> tuple[bool, str]:
    port = resolve_port(action["port"], container)
    path = action.get("path") or "/"
    tls = None
    if action.get("scheme", "HTTP").upper() == "HTTPS":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates either
    target = action.get("host") or host
    headers = {"Host": f"{target}:{port}", "User-Agent": "kube-probe/1.36", "Accept": "*/*",
               "Connection": "close"}
    for h in action.get("httpHeaders") or []:
        headers[h["name"]] = h["value"]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(target, port, ssl=tls), timeout)
    try:
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(req.encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.decode(errors="replace").split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}" if not 200 <= code < 400 else ""
    finally:
        writer.close()


async def tcp_socket(host: str, action: Obj, container: Obj, timeout: float) -> tuple[bool, str]:
    port = resolve_port(action["port"], container)
    _, writer = await asyncio.wait_for(asyncio.open_connection(action.get("host") or host, port), timeout)
    writer.close()
    return True, ""


async def exec_probe(pid: int, action: Obj, env: Mapping[str, str], timeout: float) -> tuple[bool, str]:
    cmd = list(action.get("command") or [])
    proc = await asyncio.create_subprocess_exec(
        "nsenter", "-t", str(pid), "-n", "-m", "-u", "--", *cmd, env=dict(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"command timed out after {timeout}s"
    return proc.returncode == 0, out.decode(errors="replace")[-512:]


async def run_probe(spec: ProbeSpec, pod_ip: str, container: Obj, pid: int | None,
                    env: Mapping[str, str]) -> tuple[bool, str]:
    """One probe attempt: (success, message)."""
    try:
        if spec.kind == "httpGet":
            return await http_get(pod_ip, spec.action, container, spec.timeout)
        if spec.kind == "tcpSocket":
            return await tcp_socket(pod_ip, spec.action, container, spec.timeout)
        if spec.kind == "exec":
            if pid is None:
                return False, "container is not running"
            return await exec_probe(pid, spec.action, env, spec.timeout)
        return False, f"{spec.kind} probes are not supported by the local node"
    except (OSError, asyncio.TimeoutError, ValueError) as e:
        return False, f"{type(e).__name__}: {e}"
