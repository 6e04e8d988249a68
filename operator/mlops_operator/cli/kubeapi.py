"""The plugin's thin layer over the kubernetes client: credentials, namespace, user, and the calls.

Like any kubectl plugin it honours --kubeconfig (else $KUBECONFIG, else ~/.kube/config), --context
and -n/--namespace (default: the context's namespace, else "default"); inside a pod with no
kubeconfig it falls back to the in-cluster service account.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..api.base import GROUP, VERSION

PLURALS = {"Dataset": "datasets", "TrainingRun": "trainingruns", "ModelVersion": "modelversions",
           "InferenceService": "inferenceservices", "DriftMonitor": "driftmonitors"}
KIND_OF = {v: k for k, v in PLURALS.items()}


class CliError(RuntimeError):
    """A failure to report in one line (exit code 1)."""


class NotFound(CliError):
    pass


class Forbidden(CliError):
    """403: RBAC refuses the user this call (the web view says "no permission" instead of the data)."""


class Conflict(CliError):
    """409: the object changed since it was read (or already exists)."""


@dataclass
class Kube:
    namespace: str
    user: str
    context: str | None
    server: str | None = None
    _api: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------------------ connection
    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None,
                namespace: str | None = None) -> "Kube":
        import yaml
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        # urllib3 would log a line per retry of an unreachable server before our one-line error
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        cfg = client.Configuration()
        cfg.retries = 1
        # an explicit path: the client reads $KUBECONFIG once, at import, not at each call
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        have_file = bool(kubeconfig) or any(os.path.exists(p) for p in path.split(os.pathsep) if p)
        if not have_file and os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except ConfigException as e:
                raise CliError(f"no cluster credentials: {e}") from None
            ns = namespace or _incluster_namespace()
            return cls(namespace=ns, user=_incluster_user(ns), context=None, server=cfg.host,
                       _api=client.ApiClient(cfg))
        if not have_file:
            raise CliError(f"no cluster credentials: no kubeconfig at {path} "
                           "(set KUBECONFIG or pass --kubeconfig; `mlops kubeconfig` prints the local cluster's)")
        try:
            contexts, current = config.list_kube_config_contexts(config_file=path)
            chosen = current
            if context:
                chosen = next((c for c in contexts if c.get("name") == context), None)
                if chosen is None:
                    names = ", ".join(c.get("name", "?") for c in contexts) or "none"
                    raise CliError(f"context {context!r} not found in the kubeconfig (contexts: {names})")
            config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                    persist_config=False)
        except ConfigException as e:
            raise CliError(f"no usable cluster credentials in {path}: {e}") from None
        except OSError as e:
            raise CliError(f"cannot read kubeconfig {path}: {e}") from None
        except yaml.YAMLError as e:
            raise CliError(f"kubeconfig {path} is not YAML: {str(e).splitlines()[0]}") from None
        ctx = (chosen or {}).get("context") or {}
        return cls(namespace=namespace or ctx.get("namespace") or "default",
                   user=ctx.get("user") or os.environ.get("USER") or "kubectl-mlops",
                   context=(chosen or {}).get("name"), server=cfg.host, _api=client.ApiClient(cfg))

    # ------------------------------------------------------------------------------ errors
    def _call(self, what: str, fn, *args, **kwargs):
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status == 404:
                raise NotFound(f"{what} not found in namespace {self.namespace}"
                               + (" (is the mlops operator's CRD installed?)" if _crd_missing(e) else "")) from None
            if e.status == 403:
                raise Forbidden(f"{what}: {_api_message(e)}") from None
            if e.status == 409:
                raise Conflict(f"{what}: {_api_message(e)}") from None
            raise CliError(f"{what}: {_api_message(e)}") from None
        except HTTPError as e:
            raise CliError(f"cannot reach the Kubernetes API server at {self.server}: {_root(e)}") from None

    def _json(self, what: str, fn, *args, **kwargs) -> dict[str, Any]:
        """Call without the client's typed models: they reject objects with fields they do not know
        or miss (version skew, minimal kubelets), and the plugin only needs the JSON."""
        resp = self._call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            data = resp.data if hasattr(resp, "data") else resp.read()
        finally:
            _release(resp)
        try:
            return json.loads(data or b"{}")
        except ValueError:
            raise CliError(f"{what}: the API server answered with something that is not JSON") from None

    # ------------------------------------------------------------------------------ custom objects
    def _custom(self):
        from kubernetes import client
        return client.CustomObjectsApi(self._api)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        kind = KIND_OF.get(plural, plural)
        return self._call(f'{kind} "{name}"', self._custom().get_namespaced_custom_object,
                          GROUP, VERSION, self.namespace, plural, name)

    def get_or_none(self, plural: str, name: str | None) -> dict[str, Any] | None:
        if not name:
            return None
        try:
            return self.get(plural, name)
        except NotFound:
            return None

    def list(self, plural: str, label_selector: str | None = None, all_namespaces: bool = False) -> list[dict]:
        kind = KIND_OF.get(plural, plural)
        kw = {"label_selector": label_selector} if label_selector else {}
        if all_namespaces:
            got = self._call(f"{kind}s", self._custom().list_cluster_custom_object, GROUP, VERSION, plural, **kw)
        else:
            got = self._call(f"{kind}s", self._custom().list_namespaced_custom_object,
                             GROUP, VERSION, self.namespace, plural, **kw)
        items = got.get("items") or []
        for it in items:  # list items carry no kind; compare and lineage need it
            it.setdefault("kind", kind)
            it.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        return items

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = KIND_OF.get(plural, plural)
        return self._call(f'{kind} "{name}"', self._custom().patch_namespaced_custom_object,
                          GROUP, VERSION, self.namespace, plural, name, body,
                          _content_type="application/merge-patch+json")

    # ------------------------------------------------------------------------------ pods
    def _core(self):
        from kubernetes import client
        return client.CoreV1Api(self._api)

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        return self._json(f'creating pod "{pod["metadata"]["name"]}"',
                          self._core().create_namespaced_pod, self.namespace, pod)

    def read_pod(self, name: str) -> dict[str, Any]:
        return self._json(f'pod "{name}"', self._core().read_namespaced_pod, name, self.namespace)

    def pod_events(self, name: str) -> builtins.list[dict[str, Any]]:  # (`list` here is Kube.list)
        try:
            got = self._json("events", self._core().list_namespaced_event, self.namespace,
                             field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}")
        except CliError:
            return []
        items = got.get("items") or []
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def pod_log(self, name: str, container: str | None = None) -> bytes:
        # the raw bytes: the generated client would try to parse a log that looks like JSON
        kw = {"container": container} if container else {}
        resp = self._call(f'log of pod "{name}"', self._core().read_namespaced_pod_log, name, self.namespace,
                          _preload_content=False, **kw)
        try:
            return resp.data if hasattr(resp, "data") else resp.read()
        finally:
            _release(resp)

    def delete_pod(self, name: str) -> None:
        try:
            self._json(f'pod "{name}"', self._core().delete_namespaced_pod, name, self.namespace,
                       grace_period_seconds=0, propagation_policy="Background")
        except NotFound:
            pass

    def wait_pod_ready(self, name: str, timeout: float, poll: float = 0.25) -> dict[str, Any]:
        """The pod once it is Ready, or once it ended (Succeeded/Failed: the caller says why);
        CliError with its status when `timeout` passes first."""
        from .export import describe_pod, pod_ready

        deadline = time.monotonic() + timeout
        while True:
            pod = self.read_pod(name)
            if pod_ready(pod) or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return pod
            if time.monotonic() >= deadline:
                raise CliError(f"pod {name} was not ready within {timeout:g}s: "
                               f"{describe_pod(pod, self.pod_events(name))}")
            time.sleep(poll)

    def pod_proxy_stream(self, name: str, port: int, path: str, query: dict[str, str] | None = None,
                         timeout: float = 60.0, headers: dict[str, str] | None = None) -> Any:
        """GET `path` of a pod through the API server's pod proxy (needs `pods/proxy` get), unread:
        the caller streams the urllib3 response (`.stream()`, `.headers`) and releases it.

        The query goes as the request's own parameters (the API server forwards them to the pod), as
        do `headers` (a secret belongs in a header: the audit log records the URL with its query);
        the generated `connect_get_namespaced_pod_proxy_with_path` would percent-encode a `?` into
        the path. `timeout` bounds the connect and each socket read, not the whole body."""
        ac = self._api
        req = ac.param_serialize(
            method="GET", resource_path="/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
            path_params={"namespace": self.namespace, "name": f"{name}:{port}", "path": path.lstrip("/")},
            query_params=list((query or {}).items()), header_params={"Accept": "*/*", **(headers or {})},
            auth_settings=["BearerToken"])
        what = f'pod "{name}" port {port} /{path.lstrip("/")} (through the pod proxy)'
        resp = self._call(what, ac.call_api, *req, _request_timeout=timeout)
        raw = resp.response
        if not 200 <= resp.status <= 299:
            body = raw.read(4096).decode("utf-8", errors="replace").strip()
            _release(raw)
            raise CliError(f"{what}: HTTP {resp.status}: {body[:500]}")
        return raw

    def read_secret(self, name: str) -> dict[str, str]:
        """The decoded data of a Secret in the namespace (NotFound, Forbidden as CliError subclasses)."""
        import base64

        got = self._json(f'Secret "{name}"', self._core().read_namespaced_secret, name, self.namespace)
        out = {}
        for k, v in (got.get("data") or {}).items():
            try:
                out[k] = base64.b64decode(v).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise CliError(f'Secret "{name}": key {k} is not base64-encoded UTF-8') from None
        return out

    def wait_pod(self, name: str, timeout: float, poll: float = 0.5) -> dict[str, Any]:
        """The pod once it Succeeded or Failed; CliError with its status when `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.read_pod(name)
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return pod
            if time.monotonic() >= deadline:
                from .export import describe_pod

                raise CliError(f"pod {name} did not finish within {timeout:g}s: "
                               f"{describe_pod(pod, self.pod_events(name))}")
            time.sleep(poll)


def _release(resp: Any) -> None:
    try:
        resp.release_conn()
    except Exception:  # noqa: BLE001 - best effort
        pass


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _incluster_user(ns: str) -> str:
    return f"system:serviceaccount:{ns}:{os.environ.get('MLOPS_SERVICE_ACCOUNT', 'default')}"


def _api_message(e: Any) -> str:
    try:
        body = json.loads(e.body or "")
        if isinstance(body, dict) and body.get("message"):
            return f"{body['message']} (HTTP {e.status})"
    except (TypeError, ValueError):
        pass
    return f"HTTP {e.status} {e.reason or ''}".strip()


def _crd_missing(e: Any) -> bool:
    try:
        body = json.loads(e.body or "")
    except (TypeError, ValueError):
        return False
    # a missing CRD answers 404 with the generic "the server could not find the requested resource"
    return isinstance(body, dict) and "could not find the requested resource" in (body.get("message") or "")


def _root(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    return str(reason or e)
