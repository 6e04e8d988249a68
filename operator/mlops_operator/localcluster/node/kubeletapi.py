"""The slice of the kubelet HTTPS API that users touch most: `kubectl logs` (with -f).

The API server reaches it at <node InternalIP>:10250 with its kubelet-client certificate;
only that identity and the cluster admin are authorised.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Callable

from aiohttp import web

ALLOWED_CLIENTS = {"kube-apiserver-kubelet-client", "mlops-admin"}

#: (namespace, pod name) -> worker (anything with .log_path(container, previous) and .rec)
Lookup = Callable[[str, str], object | None]


def _client_cn(request: web.Request) -> str | None:
    transport = request.transport
    ssl_obj = transport.get_extra_info("ssl_object") if transport else None
    cert = ssl_obj.getpeercert() if ssl_obj else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def _tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:]) if lines else b""


def make_app(lookup: Lookup) -> web.Application:
    @web.middleware
    async def authz(request: web.Request, handler):
        if request.path != "/healthz" and _client_cn(request) not in ALLOWED_CLIENTS:
            return web.Response(status=403, text="Forbidden: client not allowed by the local node\n")
        return await handler(request)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        q = request.query
        worker = lookup(ns, pod)
        if worker is None:
            return web.Response(status=404, text=f'pod "{pod}" not found on this node\n')
        path: Path | None = worker.log_path(container, previous=q.get("previous") == "true")  # type: ignore[attr-defined]
        if path is None:
            msg = (f'previous terminated container "{container}" in pod "{pod}" not found'
                   if q.get("previous") == "true" else f'container "{container}" in pod "{pod}" not found')
            return web.Response(status=400 if q.get("previous") == "true" else 404, text=msg + "\n")
        if not path.exists():
            return web.Response(status=400, text=f'container "{container}" in pod "{pod}" is waiting to start\n')
        limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        data = path.read_bytes()
        if q.get("tailLines"):
            data = _tail(data, int(q["tailLines"]))
        if limit is not None:
            data = data[:limit]
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        if q.get("follow") == "true" and limit is None:
            offset = path.stat().st_size
            rec = next((c for c in worker.rec.containers + worker.rec.init if c.name == container), None)  # type: ignore[attr-defined]
            started = rec.restart_count if rec else 0
            while True:
                size = path.stat().st_size if path.exists() else offset
                if size > offset:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read(size - offset)
                    offset = size
                    await resp.write(chunk)
                    continue
                # a follow ends when this run of the container has ended
                if rec is None or rec.state == "terminated" or rec.restart_count != started:
                    break
                await asyncio.sleep(0.2)
        await resp.write_eof()
        return resp

    app = web.Application(middlewares=[authz])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    return app


def server_tls(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "kubelet.crt"), str(pki / "kubelet.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
