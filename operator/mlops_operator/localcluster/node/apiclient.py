"""A small asyncio client for the Kubernetes REST API, authenticated by client certificate.

The node agent needs only a handful of verbs (get, list, watch, create, patch, delete) on a
few resources; aiohttp is already a dependency, and a thin client keeps the agent's start-up
and per-request cost low (the pod start path makes several calls per pod).
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, method: str, path: str):
        self.status = status
        self.body = body
        try:
            self.message = json.loads(body).get("message", body)
        except ValueError:
            self.message = body
        super().__init__(f"{method} {path}: HTTP {status}: {self.message}")


class ApiClient:
    def __init__(self, server: str, ca: Path, cert: Path, key: Path):
        self.server = server.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=str(ca))
        self._ssl.load_cert_chain(str(cert), str(key))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ApiClient":
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use ApiClient as an async context manager"
        return self._session

    async def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json", timeout: float = 30) -> Any:
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(method, url, data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
            if r.status >= 400:
                raise ApiError(r.status, text, method, path)
            return json.loads(text) if text else None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any, strategic: bool = False) -> Any:
        ctype = "application/strategic-merge-patch+json" if strategic else "application/merge-patch+json"
        return await self.request("PATCH", path, body, content_type=ctype)

    async def put(self, path: str, body: Any) -> Any:
        return await self.request("PUT", path, body)

    async def delete(self, path: str, body: Any = None) -> Any:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, resource_version: str, **params: Any) -> AsyncIterator[dict]:
        """Yield watch events until the server closes the stream (caller re-lists on 410)."""
        q = dict(params, watch="true", resourceVersion=resource_version, allowWatchBookmarks="true",
                 timeoutSeconds="300")
        url = self.server + path + "?" + urlencode(q)
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=330)) as r:
            if r.status >= 400:
                raise ApiError(r.status, await r.text(), "WATCH", path)
            async for line in r.content:
                if line.strip():
                    yield json.loads(line)
