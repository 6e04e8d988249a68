"""Loopback TCP forwards from the host into a cluster namespace (API server, port-forward).

Each accepted connection on 127.0.0.1:<port> gets an upstream socket created inside the
cluster's network namespace (see `netns.socket_in`), so the host never routes to the
cluster's addresses and no veth into the host namespace is needed.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from . import netns

log = logging.getLogger("mlops.localcluster.forward")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _handle(ns: str, target: tuple[str, int], cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    sock = netns.socket_in(ns)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, target), 10)
    except (OSError, asyncio.TimeoutError) as e:
        log.warning("forward to %s:%s in %s failed: %s", *target, ns, e)
        sock.close()
        cw.close()
        return
    ur, uw = await asyncio.open_connection(sock=sock)
    try:
        await asyncio.gather(_pipe(cr, uw), _pipe(ur, cw))
    except asyncio.CancelledError:
        pass  # the forward is shutting down
    finally:
        for w in (uw, cw):
            w.close()


async def start_forward(ns: str, listen_port: int, target: tuple[str, int], host: str = "127.0.0.1") -> asyncio.Server:
    """Listen on host:listen_port and forward each connection to `target` inside `ns`."""
    server = await asyncio.start_server(
        lambda r, w: _handle(ns, target, r, w), host, listen_port, reuse_address=True
    )
    log.info("forwarding %s:%s -> %s:%s in netns %s", host, listen_port, *target, ns)
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
