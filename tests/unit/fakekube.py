"""An in-memory stand-in for `mlops_operator.controllers.kube`, for reconcile tests without a
cluster (in the spirit of sample-controller's `controller_test.go` with its fake clientset).

It keeps objects as the API server returns them and does what the API server does that the
controllers rely on: `metadata.generation` starts at 1 and moves only when the spec changes,
JSON merge patches (a `None` deletes a key), status patches that never touch the spec,
label selectors (`k=v,k2=v2`), 409 on a second create. What the controllers do through it is
recorded in `calls`, and `kopf.event` is captured into `events`.

The integration tests run the same controllers against a real API server; these cover the
decisions in between, fast, one reconcile at a time.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
from kubernetes.client.rest import ApiException

from mlops_operator.controllers import kube


def wire(body: dict[str, Any]) -> None:
    """What the real client does to a body before it leaves: its own serialisation (which fails
    on numpy scalars, as the DriftMonitor's status patch once did in a cluster) and strict JSON
    (the API server refuses NaN and Infinity)."""
    import json

    from kubernetes.client import ApiClient

    json.dumps(ApiClient().sanitize_for_serialization(body), allow_nan=False)


def merge(into: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    out = copy.deepcopy(into)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


class FakeKube:
    def __init__(self) -> None:
        self.custom: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name): Jobs, Deployments, ...
        self.pods: list[dict[str, Any]] = []
        self.proxy: dict[tuple[str, str], str] = {}  # (pod, path) -> body
        self.job_messages: dict[str, tuple[str | None, str]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.deployment_status: Callable[[dict[str, Any]], dict[str, Any]] = lambda d: {}

    # ---------------------------------------------------------------- custom objects
    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "ns")
        meta.setdefault("generation", 1)
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("labels", {})
        self.custom[(plural, meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, plural: str, name: str, namespace: str = "ns") -> dict[str, Any]:
        return self.custom[(plural, namespace, name)]

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        got = self.custom.get((plural, namespace, name))
        return copy.deepcopy(got) if got is not None else None

    async def list_custom(self, plural: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.custom.items())
                if p == plural and ns == namespace and matches(o["metadata"].get("labels") or {}, selector)]

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        wire(status)
        self.calls.append(("patch_status", (plural, name, copy.deepcopy(status))))
        obj = self.custom[(plural, namespace, name)]
        obj["status"] = merge(obj.get("status") or {}, status)

    async def patch_custom(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        wire(patch)
        self.calls.append(("patch_custom", (plural, name, copy.deepcopy(patch))))
        obj = self.custom[(plural, namespace, name)]
        new = merge(obj, {k: v for k, v in patch.items() if k != "status"})
        if new.get("spec") != obj.get("spec"):
            new["metadata"]["generation"] = obj["metadata"]["generation"] + 1
        self.custom[(plural, namespace, name)] = new
        return copy.deepcopy(new)

    async def create_custom(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_custom", (plural, obj["metadata"]["name"])))
        if (plural, namespace, obj["metadata"]["name"]) in self.custom:
            raise ApiException(status=409, reason="AlreadyExists")
        return copy.deepcopy(self.add(plural, obj))

    async def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        self.calls.append(("delete_custom", (plural, name)))
        self.custom.pop((plural, namespace, name), None)

    # ---------------------------------------------------------------- built-in objects
    async def create_or_adopt(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in self.objects:
            kube.check_adoptable(obj, self.objects[key])  # the real rule: same owner uid only
            return copy.deepcopy(self.objects[key]), False
        self.calls.append(("create", key))
        self.objects[key] = copy.deepcopy(obj)
        return copy.deepcopy(obj), True

    def job(self, namespace: str, name: str, state: str, message: str | None = None) -> None:
        """Set a Job's outcome: Running, Complete or Failed (with its termination message)."""
        job = self.objects[("Job", namespace, name)]
        job["status"] = {} if state == "Running" else {"conditions": [{"type": state, "status": "True"}]}
        self.job_messages[name] = (message, "")

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        got = self.objects.get(("Job", namespace, name))
        return copy.deepcopy(got) if got is not None else None

    async def job_termination_message(self, namespace: str, job_name: str) -> tuple[str | None, str]:
        return self.job_messages.get(job_name, (None, ""))

    async def ensure_deployment(self, obj: dict[str, Any], spec_hash: str) -> dict[str, Any]:
        key = ("Deployment", obj["metadata"]["namespace"], obj["metadata"]["name"])
        cur = self.objects.get(key)
        if cur is not None:
            kube.check_adoptable(obj, cur)
        if cur is None or cur["metadata"].get("annotations", {}).get("mlops.dev/spec-hash") != spec_hash:
            self.calls.append(("ensure_deployment", key))
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("annotations", {})["mlops.dev/spec-hash"] = spec_hash
            obj["metadata"]["generation"] = (cur or {"metadata": {}})["metadata"].get("generation", 0) + 1
            self.objects[key] = obj
        dep = self.objects[key]
        dep["status"] = self.deployment_status(dep)
        return copy.deepcopy(dep)

    async def delete_deployment(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_deployment", name))
        self.objects.pop(("Deployment", namespace, name), None)

    async def ensure_hpa(self, obj: dict[str, Any]) -> None:
        self.objects[("HorizontalPodAutoscaler", obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for p in self.pods if matches(p["metadata"].get("labels") or {}, selector)]

    async def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str, **_: Any) -> str:
        return self.proxy[(pod, path)]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    f = FakeKube()
    for name in ("get_custom", "list_custom", "patch_status", "patch_custom", "create_custom", "delete_custom",
                 "create_or_adopt", "read_job", "job_termination_message", "ensure_deployment",
                 "delete_deployment", "ensure_hpa", "list_pods", "pod_proxy_get"):
        monkeypatch.setattr(kube, name, getattr(f, name))
    import kopf

    monkeypatch.setattr(kopf, "event", lambda obj, *, type, reason, message: f.events.append((type, reason, message)))
    return f
