"""InferenceService controller (thin): resolve the model version (alias or pinned), roll it out
as a Deployment + Service of the model server, and report what serves.

Safety: only a ModelVersion whose digest was verified (Ready) is rolled out; the rolling update
keeps every old pod until a new one is ready (maxUnavailable 0), so a version that cannot load
never takes traffic; when it misses the progress deadline the Deployment is put back on the
version that served, the failed version is recorded, and status and an Event say why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from typing import Any

import kopf

from ..api.conditions import is_true, now, set_condition
from ..registry import aliases as reg
from ..resources.serving import deployment, deployment_name, service, url
from ..resources.store import store_claim
from . import kube
from .metrics import measured
from .settings import Settings

log = logging.getLogger("mlops.controllers.inferenceservice")
PLURAL = "inferenceservices"
_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


def _event(obj: dict[str, Any], etype: str, reason: str, message: str) -> None:
    kopf.event(obj, type=etype, reason=reason, message=message[:1000])


async def resolve(isvc: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(ModelVersion to serve, why not) from the alias or the pinned version."""
    ns, spec = isvc["metadata"]["namespace"], isvc["spec"]
    if spec.get("version"):
        name = f"{spec['model']}-v{spec['version']}"
        mv = await kube.get_custom("modelversions", ns, name)
        return (mv, "") if mv else (None, f"ModelVersion {name} does not exist")
    versions = await kube.list_custom("modelversions", ns, f"mlops.dev/model={spec['model']}")
    mv = reg.holder(versions, spec["alias"])
    return (mv, "") if mv else (None, f"no version of model {spec['model']} holds alias {spec['alias']}")


def rollout_state(dep: dict[str, Any]) -> tuple[str, str]:
    """complete | progressing | failed, and a message, from the Deployment's status."""
    st, want = dep.get("status") or {}, dep["spec"].get("replicas", 1)
    if st.get("observedGeneration", 0) < dep["metadata"].get("generation", 0):
        return "progressing", "the Deployment controller has not seen the new spec yet"
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("status") == "False" and c.get("reason") == "ProgressDeadlineExceeded":
            return "failed", c.get("message", "")
    if st.get("updatedReplicas", 0) >= want and st.get("availableReplicas", 0) >= want and st.get("replicas", 0) == st.get("updatedReplicas", 0):
        return "complete", ""
    return "progressing", f"{st.get('updatedReplicas', 0)}/{want} pods on the new version, {st.get('availableReplicas', 0)} available"


def why_pods_fail(pods: list[dict[str, Any]], version: str) -> str:
    for p in pods:
        if p["metadata"].get("labels", {}).get("mlops.dev/model-version") != version:
            continue
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
            if term and term.get("message"):
                return term["message"].strip()[-800:]
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return "the new pods never became ready"


async def reconcile(namespace: str, name: str, settings: Settings) -> None:
    async with _locks[(namespace, name)]:
        with measured("InferenceService"):
            isvc = await kube.get_custom(PLURAL, namespace, name)
            if isvc is None or isvc["metadata"].get("deletionTimestamp"):
                return
            await _reconcile(isvc, settings)


async def _reconcile(isvc: dict[str, Any], settings: Settings) -> None:
    meta, spec = isvc["metadata"], isvc["spec"]
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    st = dict(isvc.get("status") or {})
    conds = st.get("conditions")
    serving_now = st.get("modelVersion")
    mv, why = await resolve(isvc)
    target = mv
    if mv is not None and not is_true((mv.get("status") or {}).get("conditions"), "Ready"):
        why = f"{mv['metadata']['name']} is not Ready ({_ready_reason(mv)}); it is not rolled out"
        target = None
    if mv is not None and mv["metadata"]["name"] == st.get("failedModelVersion"):
        why = f"{mv['metadata']['name']} failed to roll out earlier: {st.get('failureMessage', '')}"
        target = None
    if target is None and serving_now:
        target = await kube.get_custom("modelversions", ns, serving_now)  # keep what serves
    if target is None:
        conds, changed = set_condition(conds, "Ready", False, "NoModel", why, gen)
        conds, _ = set_condition(conds, "Progressing", False, "NoModel", why, gen)
        await kube.patch_status(PLURAL, ns, name, {"conditions": conds, "observedGeneration": gen})
        if changed:
            _event(isvc, "Warning", "NoModel", why)
        return
    await kube.create_or_adopt(store_claim(ns, settings))
    await kube.create_or_adopt(service(isvc))
    want = deployment(isvc, target, settings)
    h = hashlib.sha256(json.dumps(want["spec"], sort_keys=True).encode()).hexdigest()[:16]
    dep = await kube.ensure_deployment(want, h)
    target_name = target["metadata"]["name"]
    state, msg = rollout_state(dep)
    patch: dict[str, Any] = {"observedGeneration": gen, "url": url(isvc, spec["model"]),
                             "replicas": int(spec.get("replicas", 1)),
                             "readyReplicas": int((dep.get("status") or {}).get("readyReplicas", 0) or 0)}
    if state == "failed" and target_name != serving_now:
        reason = why_pods_fail(await kube.list_pods(ns, f"mlops.dev/inference-service={name}"), target_name)
        patch.update(failedModelVersion=target_name, failureMessage=reason)
        text = f"{target_name} did not become ready ({reason}); {serving_now or 'nothing'} keeps serving"
        conds, changed = set_condition(conds, "Degraded", True, "RolloutFailed", text, gen)
        conds, _ = set_condition(conds, "Progressing", False, "RolloutFailed", text, gen)
        if changed:
            _event(isvc, "Warning", "RolloutFailed", text)
        patch["conditions"] = conds
        await kube.patch_status(PLURAL, ns, name, patch)
        if serving_now:  # put the Deployment back on the version that served
            old = await kube.get_custom("modelversions", ns, serving_now)
            if old is not None:
                back = deployment(isvc, old, settings)
                await kube.ensure_deployment(back, hashlib.sha256(json.dumps(back["spec"], sort_keys=True).encode()).hexdigest()[:16])
        return
    if state == "complete":
        if target_name != serving_now:
            patch.update(modelVersion=target_name, previousModelVersion=serving_now, lastRolloutTime=now())
            _event(isvc, "Normal", "RolledOut", f"serving {target_name}" + (f" (was {serving_now})" if serving_now else ""))
        conds, _ = set_condition(conds, "Ready", True, "Serving", f"{target_name} on {patch['readyReplicas']} pod(s)", gen)
        conds, _ = set_condition(conds, "Progressing", False, "RolloutComplete", "", gen)
        if why:
            conds, _ = set_condition(conds, "Degraded", True, "NotRolledOut", why, gen)
        else:
            conds, _ = set_condition(conds, "Degraded", False, "Serving", "", gen)
    else:
        serving_ok = bool(serving_now) and patch["readyReplicas"] > 0
        conds, _ = set_condition(conds, "Ready", serving_ok, "Serving" if serving_ok else "Starting",
                                 f"{serving_now} serves while {target_name} rolls out" if serving_ok else msg, gen)
        conds, changed = set_condition(conds, "Progressing", True, "RollingOut", f"{target_name}: {msg}", gen)
        if changed:
            _event(isvc, "Normal", "RollingOut", f"rolling out {target_name}")
    patch["conditions"] = conds
    await kube.patch_status(PLURAL, ns, name, patch)


def _ready_reason(mv: dict[str, Any]) -> str:
    c = next((c for c in (mv.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    return f"{c.get('reason')}: {c.get('message')}" if c else "not verified yet"


def register(settings: Settings) -> None:
    @kopf.on.resume("mlops.dev", "v1alpha1", PLURAL)
    @kopf.on.create("mlops.dev", "v1alpha1", PLURAL)
    @kopf.on.update("mlops.dev", "v1alpha1", PLURAL)
    async def isvc_changed(namespace: str, name: str, **_: Any) -> None:
        await reconcile(namespace, name, settings)

    @kopf.on.event("apps", "v1", "deployments", labels={"mlops.dev/inference-service": kopf.PRESENT})
    async def predictor_changed(namespace: str, labels: dict[str, str], **_: Any) -> None:
        await reconcile(namespace, labels["mlops.dev/inference-service"], settings)

    # an alias moved or a version became Ready: every InferenceService of that model looks again
    @kopf.on.event("mlops.dev", "v1alpha1", "modelversions")
    async def version_changed(namespace: str, spec: Any, **_: Any) -> None:
        for isvc in await kube.list_custom(PLURAL, namespace):
            if isvc["spec"].get("model") == spec.get("model"):
                await reconcile(namespace, isvc["metadata"]["name"], settings)
