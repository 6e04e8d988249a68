"""Thin async wrappers over the official kubernetes client for what controllers do often:
create-or-adopt children, patch a custom object's status, read a Job's outcome.

Create-or-adopt is what makes reconcilers idempotent: children have deterministic names, so a
restarted operator that repeats a create gets 409 and adopts the existing object instead of
making a second one.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Executor
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from ..api.base import GROUP, VERSION


def _api() -> client.ApiClient:
    return client.ApiClient()


#: (connect, read) seconds of every API call: without one, a stalled connection to the API server
#: (or through its pod proxy to a server that stopped answering) held a reconcile forever
API_TIMEOUT = (5.0, 30.0)


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("_request_timeout", API_TIMEOUT)
    return await asyncio.to_thread(fn, *args, **kwargs)


def _create_fn(obj: dict[str, Any]):
    api = _api()
    kind, ns = obj["kind"], obj["metadata"].get("namespace")
    if kind == "Job":
        return client.BatchV1Api(api).create_namespaced_job, client.BatchV1Api(api).read_namespaced_job, ns
    if kind == "PersistentVolumeClaim":
        core = client.CoreV1Api(api)
        return core.create_namespaced_persistent_volume_claim, core.read_namespaced_persistent_volume_claim, ns
    if kind == "ConfigMap":
        core = client.CoreV1Api(api)
        return core.create_namespaced_config_map, core.read_namespaced_config_map, ns
    if kind == "Deployment":
        apps = client.AppsV1Api(api)
        return apps.create_namespaced_deployment, apps.read_namespaced_deployment, ns
    if kind == "Service":
        core = client.CoreV1Api(api)
        return core.create_namespaced_service, core.read_namespaced_service, ns
    raise ValueError(f"create_or_adopt does not handle {kind}")


class Blocked(Exception):
    """A child cannot be made for a reason the user or an admin must see: said on the owner as
    `Stalled=True` with `reason` and a Warning Event (controllers/conflicts.py), then retried."""

    reason = "Blocked"


class NameTaken(Blocked):
    """The name of a child is held by an object another owner controls (or one being deleted
    after its owner went): it is not adopted. Retried; the condition and Event say which."""

    reason = "NameTaken"


class Refused(Blocked):
    """The API server refused to create or change a child (HTTP 403): the operator may not write
    in this namespace, or the admission policy of manifests/base/admission-policy.yaml denied
    the workload (a ServiceAccount the namespace does not allow, host access). The message is
    the API server's."""

    reason = "Forbidden"


def api_message(e: ApiException) -> str:
    """The `message` of a Kubernetes Status in an error's body, else its HTTP status."""
    try:
        body = json.loads(e.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except (TypeError, ValueError):
        pass
    return f"HTTP {e.status} {e.reason or ''}".strip()


def _refused(e: ApiException, verb: str, obj: dict[str, Any]) -> Exception:
    """`e` as Refused when it is a 403, else unchanged."""
    if e.status != 403:
        return e
    meta = obj["metadata"]
    return Refused(f"the API server refused to {verb} {obj['kind']} {meta['name']} in namespace "
                   f"{meta.get('namespace')}: {api_message(e)}")


def _controller_uid(obj: dict[str, Any]) -> str | None:
    return next((r.get("uid") for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def check_adoptable(want: dict[str, Any], got: dict[str, Any]) -> None:
    """Adopt an existing object only when the same owner (by uid) controls it: a parent deleted
    and re-applied under the same name (as GitOps does) must not inherit its predecessor's Job."""
    mine = _controller_uid(want)
    if mine is None:
        return  # shared objects with no owner (the namespace's store claim)
    theirs = _controller_uid(got)
    if theirs != mine:
        kind, name = want["kind"], want["metadata"]["name"]
        whose = f"owner uid {theirs}" if theirs else "no owner"
        raise NameTaken(f"{kind} {name} exists with {whose}, not this object's ({mine}); it is not adopted"
                        + (" (it is being deleted)" if got["metadata"].get("deletionTimestamp") else ""))


async def create_or_adopt(obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create `obj`; if it exists already and the same owner controls it, return the existing
    one. (object, created). Raises NameTaken for an object of another owner."""
    create, read, ns = _create_fn(obj)
    try:
        made = await call(create, ns, obj)
        return _api().sanitize_for_serialization(made), True
    except ApiException as e:
        if e.status != 409:
            raise _refused(e, "create", obj) from None
    got = _api().sanitize_for_serialization(await call(read, obj["metadata"]["name"], ns))
    check_adoptable(obj, got)
    return got, False


async def get_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await call(client.CustomObjectsApi(_api()).get_namespaced_custom_object,
                          GROUP, VERSION, namespace, plural, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


#: (plural, namespace, name) -> the Degraded=True condition a pod of that object that cannot
#: start put there (controllers/pods.py), while that pod is stuck. A controller's status write
#: computed from a read made before the pod handler wrote (e.g. a Dataset's right after creating
#: its Job, whose pod the scheduler refuses at once) would otherwise drop it, and an
#: unschedulable pod sends no further event to put it back (seen on the real scheduler).
_held_degraded: dict[tuple[str, str, str], dict[str, Any]] = {}


def hold_degraded(plural: str, namespace: str, name: str, condition: dict[str, Any] | None) -> None:
    """Keep `condition` (Degraded=True) in every status write of the object until released (None)."""
    if condition is None:
        _held_degraded.pop((plural, namespace, name), None)
    else:
        _held_degraded[(plural, namespace, name)] = condition


def _keep_held(plural: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    held = _held_degraded.get((plural, namespace, name))
    conds = status.get("conditions")
    if held is None or conds is None:
        return status
    if any(c.get("type") == "Degraded" and c.get("status") == "True" for c in conds):
        return status  # the writer has its own reason for Degraded=True: its word stands
    # observed at the generation the writer observed (its conditions say which)
    gen = max((c["observedGeneration"] for c in conds if isinstance(c.get("observedGeneration"), int)), default=None)
    kept = held if gen is None else {**held, "observedGeneration": gen}
    return {**status, "conditions": [c for c in conds if c.get("type") != "Degraded"] + [kept]}


async def patch_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    await call(client.CustomObjectsApi(_api()).patch_namespaced_custom_object_status,
               GROUP, VERSION, namespace, plural, name, {"status": _keep_held(plural, namespace, name, status)})


async def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        job = await call(client.BatchV1Api(_api()).read_namespaced_job, name, namespace)
        return _api().sanitize_for_serialization(job)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def job_state(job: dict[str, Any]) -> str:
    """Running, Complete or Failed, from the Job's conditions."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return c["type"]
    return "Running"


def killed_by_kernel(reason: str | None, exit_code: int | None, container: str, memory_limit: str | None) -> str | None:
    """Why the kernel ended a container, in the words an admin needs (None if it did not).

    An OOM-killed process writes no termination message, so without this the status would
    show only an empty log tail."""
    if reason != "OOMKilled":
        return None
    limit = f"its memory limit of {memory_limit}" if memory_limit else "the memory available to it"
    return (f"OOMKilled: container {container!r} exceeded {limit} (exit code {exit_code}); "
            "raise resources.limits.memory")


#: Waiting reasons that do not resolve by waiting: the image is missing or the container
#: config is unusable (a ConfigMap or Secret missing, a non-root image run as root).
STUCK_REASONS = frozenset({"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError"})


def stuck_reason(pod: dict[str, Any]) -> str | None:
    """'<reason>: <message>' of the first container of `pod` that cannot start, else None."""
    st = pod.get("status") or {}
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            return f"{waiting['reason']}: {waiting.get('message') or 'container ' + cs.get('name', '?')}".strip()
    return None


async def job_termination_message(namespace: str, job_name: str) -> tuple[str | None, str]:
    """The newest pod's termination message of a Job, and a log tail for failures. A container
    the kernel killed gets that said first (see killed_by_kernel)."""
    core = client.CoreV1Api(_api())
    pods = await call(core.list_namespaced_pod, namespace, label_selector=f"job-name={job_name}")
    items = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp, reverse=True)
    for pod in items:
        for cs in pod.status.container_statuses or []:
            term = cs.state.terminated if cs.state else None
            if term is not None:
                tail = ""
                if term.exit_code != 0:
                    try:
                        tail = await call(core.read_namespaced_pod_log, pod.metadata.name, namespace, tail_lines=20)
                    except ApiException:
                        tail = ""
                spec = next((c for c in pod.spec.containers if c.name == cs.name), None)
                limits = (spec.resources.limits or {}) if spec is not None and spec.resources else {}
                killed = killed_by_kernel(term.reason, term.exit_code, cs.name, limits.get("memory"))
                if killed:
                    return killed + (f"\n{term.message}" if term.message else ""), tail
                return term.message, tail
    return None, ""


async def list_custom(plural: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    got = await call(client.CustomObjectsApi(_api()).list_namespaced_custom_object, GROUP, VERSION, namespace,
                     plural, label_selector=selector or "")
    return got.get("items") or []


async def create_custom(plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    return await call(client.CustomObjectsApi(_api()).create_namespaced_custom_object, GROUP, VERSION, namespace,
                      plural, obj)


async def patch_custom(plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (lists are replaced whole, `None` deletes a key)."""
    api = client.CustomObjectsApi(_api())
    return await call(api.patch_namespaced_custom_object, GROUP, VERSION, namespace, plural, name, patch)


async def delete_custom(plural: str, namespace: str, name: str) -> None:
    try:
        await call(client.CustomObjectsApi(_api()).delete_namespaced_custom_object, GROUP, VERSION, namespace,
                   plural, name)
    except ApiException as e:
        if e.status != 404:
            raise


def is_conflict(e: Exception) -> bool:
    return isinstance(e, ApiException) and e.status == 409


async def ensure_deployment(obj: dict[str, Any], spec_hash: str) -> dict[str, Any]:
    """Create the Deployment, or replace its spec when `spec_hash` (an annotation) differs."""
    obj = dict(obj, metadata=dict(obj["metadata"], annotations={**(obj["metadata"].get("annotations") or {}),
                                                                 "mlops.dev/spec-hash": spec_hash}))
    cur, created = await create_or_adopt(obj)
    if created or (cur["metadata"].get("annotations") or {}).get("mlops.dev/spec-hash") == spec_hash:
        return cur
    obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
    if obj["spec"].get("replicas") is None:  # an autoscaler owns the replica count
        obj["spec"]["replicas"] = cur["spec"].get("replicas")
    apps = client.AppsV1Api(_api())
    try:
        got = await call(apps.replace_namespaced_deployment, obj["metadata"]["name"], obj["metadata"]["namespace"],
                         obj)
    except ApiException as e:
        raise _refused(e, "update", obj) from None
    return _api().sanitize_for_serialization(got)


async def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = await call(client.CoreV1Api(_api()).list_namespaced_pod, namespace, label_selector=selector)
    return _api().sanitize_for_serialization(pods).get("items") or []


async def delete_deployment(namespace: str, name: str) -> None:
    try:
        await call(client.AppsV1Api(_api()).delete_namespaced_deployment, name, namespace)
    except ApiException as e:
        if e.status != 404:
            raise


#: pod_proxy_get's defaults: a whole answer takes at most this long and holds at most this many
#: bytes. The largest answers read are a model server's stats document and its reference, both
#: bounded by the model, not the traffic (serving/monitor.py, issue 17): about 20 kB for the
#: 18-feature retail model, about 25 kB per numeric feature at most (a reference of 1000 rows
#: has up to 1000 histogram edges), so under 4 MB for a 150-feature model
POD_PROXY_TIMEOUT_SECONDS = 30.0
POD_PROXY_MAX_BYTES = 16 << 20
_PROXY_CHUNK = 1 << 16


#: a proxied read is sent once. urllib3's default, Retry(3), sent a GET whose answer did not come
#: within the read timeout three more times: a pod that accepts but never answers received four
#: requests and held the reading thread four timeouts long (120 s, measured in
#: benchmarks/drift_scrape.py) while its caller had long given up. The caller reads again on its
#: next tick.
_PROXY_RETRIES = urllib3.util.Retry(total=0)


class PodProxyError(RuntimeError):
    """A pod's answer through the proxy was too large or too slow; the message says which."""


class PodProxyTimeout(PodProxyError):
    """No answer, or not all of it, within the read's timeout."""


def _proxy_request(api: client.CoreV1Api, namespace: str, target: str, path: str, timeout: float) -> Any:
    """GET through the pod proxy with the path's query string passed as query parameters.

    The generated ``connect_get_namespaced_pod_proxy_with_path`` takes the path as a path
    parameter and percent-encodes a ``?`` in it, so ``stats?cursor=...`` reached the pod as a
    path ending in ``%3Fcursor=...`` (a 404). The API server forwards the request's own query
    parameters to the pod, so they are sent as such here, with the client's own serialisation
    and authentication. Returns the raw (unread) urllib3 response; non-2xx raises ApiException."""
    parts = urlsplit(path.lstrip("/"))
    ac = api.api_client
    request = ac.param_serialize(
        method="GET",
        resource_path="/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
        path_params={"namespace": namespace, "name": target, "path": parts.path},
        query_params=parse_qsl(parts.query, keep_blank_values=True),
        header_params={"Accept": "*/*"},
        auth_settings=["BearerToken"],
    )
    resp = ac.call_api(*request, _request_timeout=timeout)
    if not 200 <= resp.status <= 299:
        resp.read()
        raise ApiException.from_response(http_resp=resp, body=None, data=None)
    return resp.response


async def pod_proxy_get(namespace: str, pod: str, port: int, path: str, *,
                        timeout: float = POD_PROXY_TIMEOUT_SECONDS, max_bytes: int = POD_PROXY_MAX_BYTES,
                        executor: Executor | None = None) -> str:
    """GET a pod's HTTP endpoint through the API server's pod proxy (works wherever the operator
    runs, in or out of the cluster; needs `pods/proxy` get).

    Bounded: the request has `timeout` seconds in all (urllib3's timeout bounds the connect and
    each socket read; the body is read in chunks against the same deadline, so a pod that drips
    its answer is cut off too), sent once (no retry of a read that timed out, so the reading thread
    ends with the timeout; PodProxyTimeout), and an answer over `max_bytes` is refused
    (PodProxyError) after reading at most that much, instead of being read whole into memory.

    The read runs on `executor` (default: the loop's), so a caller that reads many pods can keep
    them off the executor that every other API call of the operator shares."""
    ac = _api()
    pools = getattr(ac.rest_client, "pool_manager", None)
    if pools is not None:  # a client of its own (kube._api makes one per call): no retries
        pools.connection_pool_kw["retries"] = _PROXY_RETRIES
    api = client.CoreV1Api(ac)
    where = f"{namespace}/{pod}:{port}/{path.lstrip('/')}"

    def get() -> bytes:
        deadline = time.monotonic() + timeout
        try:
            # raw bytes: the client would otherwise turn a JSON body into the str() of a dict
            resp: Any = _proxy_request(api, namespace, f"{pod}:{port}", path, timeout)
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.MaxRetryError) as e:
            if isinstance(e, urllib3.exceptions.MaxRetryError) and not isinstance(
                    e.reason, urllib3.exceptions.TimeoutError):
                raise
            raise PodProxyTimeout(f"{where}: no answer within {timeout:g} s") from None
        parts, size = [], 0
        try:
            for chunk in resp.stream(_PROXY_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise PodProxyError(f"{where}: the answer has more than {max_bytes} bytes; not read further")
                parts.append(chunk)
                if time.monotonic() > deadline:
                    raise PodProxyTimeout(f"{where}: the answer did not arrive within {timeout:g} s")
        except urllib3.exceptions.TimeoutError:
            resp.close()
            raise PodProxyTimeout(f"{where}: the answer did not arrive within {timeout:g} s") from None
        except BaseException:
            resp.close()  # half read: drop the connection rather than return it to the pool
            raise
        resp.release_conn()
        return b"".join(parts)

    # not call(): get() sets its own timeout
    return (await asyncio.get_running_loop().run_in_executor(executor, get)).decode()


async def ensure_hpa(obj: dict[str, Any]) -> None:
    api = client.AutoscalingV2Api(_api())
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        await call(api.create_namespaced_horizontal_pod_autoscaler, ns, obj)
    except ApiException as e:
        if e.status != 409:
            raise
        await call(api.patch_namespaced_horizontal_pod_autoscaler, name, ns, {"spec": obj["spec"]})
