"""controllers.kube.pod_proxy_get, the operator's only read of a pod's HTTP answers (the model
server's /stats, /reference and /metrics through the API server's pod proxy): bounded in time
and in bytes, with a fake CoreV1Api whose answer is read like urllib3's HTTPResponse."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from mlops_operator.controllers import kube


class FakeResponse:
    """What `_preload_content=False` gives: a urllib3 HTTPResponse, read with stream()/read()."""

    def __init__(self, chunks: list[bytes], delay: float = 0.0):
        self.chunks = list(chunks)
        self.delay = delay
        self.status = 200
        self.reason = "OK"
        self.headers: dict = {}
        self.read_bytes = 0
        self.closed = False
        self.released = False

    def stream(self, amt: int = 2 ** 16, decode_content: bool = True):
        while self.chunks:
            data = self.read(amt)
            if data:
                yield data

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        if not self.chunks:
            return b""
        if self.delay:
            time.sleep(self.delay)
        head = self.chunks.pop(0)
        if amt is not None and len(head) > amt:
            head, rest = head[:amt], head[amt:]
            self.chunks.insert(0, rest)
        self.read_bytes += len(head)
        return head

    @property
    def data(self) -> bytes:  # what the old code read: everything, whatever its size
        out = b"".join(self.chunks)
        self.read_bytes += len(out)
        self.chunks = []
        return out

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


class LoopbackApiServer:
    """An HTTP server on a loopback port that answers pod proxy paths as the API server would:
    pods named `stall-*` accept the request and never answer (until the server closes); the
    others answer at once with `{"version": "1", "instance": <pod>}`. Counts the requests per
    pod. `client()` is a real kubernetes ApiClient pointed at it (a new one per call, as
    kube._api makes them)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.release = threading.Event()
        #: stalled requests being held now, and the most held at once
        self.stalled_now = self.stalled_peak = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                pod = unquote(urlsplit(self.path).path).split("/pods/", 1)[1].split(":", 1)[0]
                outer.requests[pod] += 1
                if pod.startswith("stall"):
                    with lock:
                        outer.stalled_now += 1
                        outer.stalled_peak = max(outer.stalled_peak, outer.stalled_now)
                    outer.release.wait(30)
                    with lock:
                        outer.stalled_now -= 1
                    return
                body = json.dumps({"version": "1", "instance": pod}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def client(self) -> Any:
        from kubernetes import client as k8s

        return k8s.ApiClient(k8s.Configuration(host=self.url))

    def __enter__(self) -> "LoopbackApiServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake_api(monkeypatch):
    """A real kubernetes ApiClient (its own URL building, quoting and auth) whose REST layer
    records the request and answers with `answer["resp"]`."""
    from urllib.parse import parse_qs, unquote, urlsplit

    from kubernetes import client as k8s
    from kubernetes.client import rest

    calls: list[dict] = []
    answer: dict = {}
    api_client = k8s.ApiClient(k8s.Configuration(host="https://apiserver.test:6443"))

    def request(method, url, headers=None, body=None, post_params=None, _request_timeout=None):
        u = urlsplit(url)
        prefix = "/api/v1/namespaces/"
        namespace, _, rest_of = u.path[len(prefix):].partition("/pods/")
        name, _, quoted = rest_of.partition("/proxy/")
        path = unquote(quoted)  # the client quotes "/" in the path parameter; the API server unquotes
        calls.append({"method": method, "url": url, "namespace": namespace, "name": unquote(name), "path": path,
                      "query": parse_qs(u.query, keep_blank_values=True), "_request_timeout": _request_timeout})
        return rest.RESTResponse(answer["resp"])

    monkeypatch.setattr(api_client.rest_client, "request", request)
    monkeypatch.setattr(kube, "_api", lambda: api_client)
    return calls, answer


def test_pod_proxy_get_reads_a_normal_answer_with_a_timeout(fake_api):
    calls, answer = fake_api
    answer["resp"] = FakeResponse([b'{"format": ', b'"x"}'])
    text = asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8080, "/v2/models/m/stats"))
    assert text == '{"format": "x"}'
    call = calls[0]
    assert (call["name"], call["namespace"], call["path"]) == ("pod-1:8080", "ns", "v2/models/m/stats")
    assert call["method"] == "GET" and call["query"] == {}
    assert call["_request_timeout"] == kube.POD_PROXY_TIMEOUT_SECONDS
    assert answer["resp"].released
    # the caller can choose both bounds
    answer["resp"] = FakeResponse([b"ok"])
    assert asyncio.run(kube.pod_proxy_get("ns", "p", 1, "x", timeout=3.5, max_bytes=2)) == "ok"
    assert calls[-1]["_request_timeout"] == 3.5


def test_pod_proxy_get_stops_reading_over_the_byte_limit(fake_api):
    _, answer = fake_api
    chunk = b"x" * (1 << 20)
    answer["resp"] = resp = FakeResponse([chunk] * 100)  # 100 MiB on offer
    with pytest.raises(kube.PodProxyError, match=f"more than {kube.POD_PROXY_MAX_BYTES} bytes"):
        asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8080, "v2/models/m/stats"))
    assert resp.read_bytes <= kube.POD_PROXY_MAX_BYTES + (1 << 20)  # stopped at the limit, not read to the end
    assert resp.closed  # the connection is dropped, not returned to the pool half read
    answer["resp"] = FakeResponse([b"y" * 100])
    with pytest.raises(kube.PodProxyError, match="more than 10 bytes"):
        asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8080, "metrics", max_bytes=10))


def test_pod_proxy_get_gives_up_on_a_slow_answer_after_its_timeout(fake_api):
    """urllib3's timeout bounds each socket read; a pod that drips its answer is cut off at the
    total deadline too."""
    _, answer = fake_api
    answer["resp"] = resp = FakeResponse([b"x"] * 1000, delay=0.05)  # 50 s in all
    t0 = time.monotonic()
    with pytest.raises(kube.PodProxyError, match="within 0.3"):
        asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8080, "v2/models/m/stats", timeout=0.3))
    assert time.monotonic() - t0 < 2.0
    assert resp.closed


def test_pod_proxy_get_passes_the_query_string_to_the_pod(fake_api):
    """The query goes as the request's query parameters, which the API server forwards to the
    pod; the generated client would percent-encode `?` into the path (a 404 at the pod)."""
    calls, answer = fake_api
    answer["resp"] = FakeResponse([b"{}"])
    asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8082, "v2/models/m/stats?cursor=abc.3"))
    assert calls[-1]["path"] == "v2/models/m/stats" and "%3F" not in calls[-1]["url"].upper()
    assert calls[-1]["query"] == {"cursor": ["abc.3"]}
    answer["resp"] = FakeResponse([b"{}"])
    asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8082, "v2/models/m/stats?cursor="))
    assert calls[-1]["query"] == {"cursor": [""]}  # an empty cursor (start one) is kept
    answer["resp"] = FakeResponse([b"{}"])
    asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8082, "v2/models/m/reference?dataset=d&digest=sha256%3Aab"))
    assert calls[-1]["query"] == {"dataset": ["d"], "digest": ["sha256:ab"]}


def test_pod_proxy_get_raises_the_api_servers_error(fake_api):
    from kubernetes.client.rest import ApiException

    _, answer = fake_api
    answer["resp"] = resp = FakeResponse([b'{"kind":"Status","code":404}'])
    resp.status, resp.reason = 404, "Not Found"
    with pytest.raises(ApiException) as e:
        asyncio.run(kube.pod_proxy_get("ns", "pod-1", 8082, "v2/models/m/stats"))
    assert e.value.status == 404


def test_pod_proxy_get_sends_a_stalled_read_once_and_ends_with_its_timeout(monkeypatch):
    """A pod that accepts and never answers (measured through a real API server in
    benchmarks/drift_scrape.py): urllib3's default Retry(3) sent the GET four times and held the
    reading thread four timeouts long. Now one request, ended at the timeout, a PodProxyTimeout."""
    with LoopbackApiServer() as srv:
        monkeypatch.setattr(kube, "_api", srv.client)
        t0 = time.monotonic()
        with pytest.raises(kube.PodProxyTimeout, match="no answer within 1 s"):
            asyncio.run(kube.pod_proxy_get("ns", "stall-0", 8082, "mlops/v1/models/m/stats?cursor=", timeout=1.0))
        assert time.monotonic() - t0 < 2.5  # four tries would take 4 s
        assert srv.requests["stall-0"] == 1
        # an answering pod through the same client path
        assert json.loads(asyncio.run(kube.pod_proxy_get("ns", "ok-0", 8082, "x", timeout=5.0))) == {
            "version": "1", "instance": "ok-0"}
